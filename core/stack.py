"""In-memory series of one window: what methods read."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

S2_BANDS = ["B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12"]
# all 13 bands, in the order of L1C products and SEN12MS(-CR) files
S2_L1C_BANDS = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12"]
S1_BANDS = ["VV", "VH"]


def all_finite(x: np.ndarray) -> np.ndarray:
    """np.isfinite(x).all(axis=1), read from the sum over axis 1 (NaN or inf where any term is): about three
    times faster on a window's series and without a bool array of x's size. Exact for values far below
    float32's maximum (3e38), as reflectance, DN and dB are."""
    with np.errstate(invalid="ignore", over="ignore"):
        return np.isfinite(np.add.reduce(x, axis=1))


def zero_invalid(x: np.ndarray, copy: bool = True) -> np.ndarray:
    """x (a copy, or x itself changed in place) with 0 wherever it is not finite (NaN: not clear, no data): as
    np.nan_to_num(x, nan=0.0) but faster, and an inf becomes 0 too, not float32's maximum."""
    out = np.array(x, copy=True) if copy else x
    np.copyto(out, 0, where=~np.isfinite(out))
    return out


@dataclass
class Stack:
    """Co-registered S1/S2 series over one window of the output grid.

    s2: (T2, B, h, w) float32 surface reflectance (DN * scale + offset), NaN where the
        pixel is not clear (cloud, shadow, nodata...).
    s2_days / s1_days: acquisition times, days since 1970-01-01 UTC (float64), ascending.
    s1: (T1, 2, h, w) float32 backscatter in dB (VV, VH), NaN for nodata.
    angles: (T2, 4) sun zenith, sun azimuth, view zenith, view azimuth in degrees (NaN unknown).
    """

    s2: np.ndarray
    s2_days: np.ndarray
    s1: np.ndarray
    s1_days: np.ndarray
    bands: list[str] = field(default_factory=lambda: list(S2_BANDS))
    angles: np.ndarray | None = None
    warnings: list[str] = field(default_factory=list)  # what reading the inputs warned of (load_stack)
    # `valid` when whoever made the stack already knows it (screen_haze); never computed and kept here, since
    # s2 may be changed in place
    clear: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def valid(self) -> np.ndarray:
        """(T2, h, w) True where the S2 pixel is clear (all bands finite)."""
        return self.clear if self.clear is not None else all_finite(self.s2)

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.s2.shape[-2:])  # type: ignore[return-value]

    def days_to_clear(self, day: float) -> np.ndarray:
        """(h, w) days from `day` to each pixel's nearest clear S2 observation (inf where none)."""
        out = np.full(self.shape, np.inf)
        for t in np.argsort(np.abs(self.s2_days - day))[::-1]:  # nearest last: it wins
            out[np.isfinite(self.s2[t]).all(axis=0)] = abs(self.s2_days[t] - day)
        return out

    def select_s2(self, keep: np.ndarray) -> Stack:
        """A stack with only the S2 acquisitions where `keep` (bool, T2) is True."""
        return Stack(self.s2[keep], self.s2_days[keep], self.s1, self.s1_days, self.bands,
                     None if self.angles is None else self.angles[keep],
                     clear=None if self.clear is None else self.clear[keep])

    def select_s1(self, keep: np.ndarray) -> Stack:
        return Stack(self.s2, self.s2_days, self.s1[keep], self.s1_days[keep], self.bands,
                     self.angles, clear=self.clear)

    def crop(self, rows: slice, cols: slice) -> Stack:
        return Stack(self.s2[..., rows, cols], self.s2_days, self.s1[..., rows, cols],
                     self.s1_days, self.bands, self.angles,
                     clear=None if self.clear is None else self.clear[..., rows, cols])
