"""Leaf area index from Sentinel-2 with ESA SNAP's LAI network (v3.0, S2A), its std and flags.

The network (Weiss & Baret ATBD, coefficients in core/data/snap_lai_v3) maps 8 surface
reflectances (B03 B04 B05 B06 B07 B8A B11 B12) and 3 angle cosines to LAI through 5 tanh units.
Like SNAP's BiophysicalOp, an input outside the definition domain (band min/max, then the
populated cells of a 10-step grid over the 8 bands) is flagged but still computed (SNAP's grid
flags a large share of real pixels: 50-85 % of clear 31UDS pixels); an output within
`tolerance` of [min, max] is clamped to the bound, and one further out is flagged and NaN.
The LAI std is propagated by linearisation: the analytical Jacobian of the network w.r.t. the
8 reflectances combined with independent per-band stds.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from .atomic import GEOTIFF_SUFFIXES, check_output_file, first_line, new_dirs_removed_on_error
from .errors import InputError, Problem
from .progress import Feedback

DATA_DIR = Path(__file__).resolve().parent / "data" / "snap_lai_v3"
LAI_BANDS = ["B03", "B04", "B05", "B06", "B07", "B8A", "B11", "B12"]
METHOD = "ESA SNAP LAI v3"

# flag bits of LaiResult.flags
FLAG_INPUT_OUT_OF_DOMAIN = 1
FLAG_OUTPUT_TOO_LOW = 2
FLAG_OUTPUT_TOO_HIGH = 4
FLAG_INVALID_INPUT = 8
FLAGS_DOC = ("1 input outside SNAP definition domain, 2 LAI below min-tolerance (NaN), "
             "4 LAI above max+tolerance (NaN), 8 invalid (NaN) input")

# used when the metadata lack an angle (typical mid-latitude summer acquisition, near nadir)
DEFAULT_SUN_ZENITH = 40.0
DEFAULT_VIEW_ZENITH = 5.0
DEFAULT_AZIMUTH = 0.0  # sun and view azimuth both 0 -> relative azimuth 0

_CHUNK = 1 << 16  # pixels per vectorised step (bounds temporaries to a few MB)

# tag names per angle, most specific first; a name ending with "*" matches a prefix and its
# values are averaged (e.g. Earth Engine's per-band MEAN_INCIDENCE_ZENITH_ANGLE_B2 ...)
_TAG_KEYS: dict[str, tuple[str, ...]] = {
    "sun_zenith": ("MEAN_SUN_ZENITH_ANGLE", "MEAN_SOLAR_ZENITH_ANGLE", "SUN_ZENITH_ANGLE",
                   "SOLAR_ZENITH_ANGLE", "SUN_ZENITH", "SZA"),
    "sun_azimuth": ("MEAN_SUN_AZIMUTH_ANGLE", "MEAN_SOLAR_AZIMUTH_ANGLE", "SUN_AZIMUTH_ANGLE",
                    "SOLAR_AZIMUTH_ANGLE", "SUN_AZIMUTH", "SAA"),
    "view_zenith": ("MEAN_VIEW_ZENITH_ANGLE", "MEAN_INCIDENCE_ZENITH_ANGLE", "VIEW_ZENITH_ANGLE",
                    "VIEWING_ZENITH_ANGLE", "VIEW_ZENITH", "VZA", "MEAN_INCIDENCE_ZENITH_ANGLE_*"),
    "view_azimuth": ("MEAN_VIEW_AZIMUTH_ANGLE", "MEAN_INCIDENCE_AZIMUTH_ANGLE", "VIEW_AZIMUTH_ANGLE",
                     "VIEWING_AZIMUTH_ANGLE", "VIEW_AZIMUTH", "VAA", "MEAN_INCIDENCE_AZIMUTH_ANGLE_*"),
}


def angle_tags(tags: dict[str, str]) -> dict[str, str]:
    """The angles found in `tags`, under their first (canonical) names: what an image derived from
    that acquisition (the synthesized S2) carries, so that LAI estimated from it uses them too."""
    upper = {str(k).upper(): v for k, v in (tags or {}).items()}
    found = {keys[0]: _tag_value(upper, keys) for keys in _TAG_KEYS.values()}
    return {k: f"{v:g}" for k, v in found.items() if v is not None}


def _tag_value(upper: dict[str, str], keys: tuple[str, ...]) -> float | None:
    for key in keys:
        if key.endswith("*"):
            vals = [_to_float(v) for k, v in upper.items() if k.startswith(key[:-1])]
            vals = [v for v in vals if v is not None]
            if vals:
                return float(np.mean(vals))
        elif key in upper:
            v = _to_float(upper[key])
            if v is not None:
                return v
    return None


def _to_float(text: str) -> float | None:
    try:
        v = float(str(text).strip())
    except ValueError:
        return None
    return v if math.isfinite(v) else None


@dataclass
class Angles:
    """Sun and view angles in degrees (scalars or arrays broadcastable to (h, w))."""

    sun_zenith: float | np.ndarray = DEFAULT_SUN_ZENITH
    sun_azimuth: float | np.ndarray = DEFAULT_AZIMUTH
    view_zenith: float | np.ndarray = DEFAULT_VIEW_ZENITH
    view_azimuth: float | np.ndarray = DEFAULT_AZIMUTH

    @classmethod
    def from_tags(cls, tags: dict[str, str]) -> tuple[Angles, list[str]]:
        """Angles from GDAL metadata; missing ones get the defaults, listed in the warnings.

        Defaults: sun zenith 40 deg, view zenith 5 deg; a missing sun or view azimuth makes the
        relative azimuth 0 (the missing azimuth is set equal to the other one).
        """
        upper = {str(k).upper(): v for k, v in (tags or {}).items()}
        return cls.from_values(**{name: _tag_value(upper, keys) for name, keys in _TAG_KEYS.items()})

    @classmethod
    def from_values(cls, sun_zenith: float | None = None, sun_azimuth: float | None = None,
                    view_zenith: float | None = None, view_azimuth: float | None = None
                    ) -> tuple[Angles, list[str]]:
        """Angles from scalars (e.g. a row of Stack.angles); None or NaN gets the defaults of from_tags."""
        got = {"sun_zenith": sun_zenith, "sun_azimuth": sun_azimuth, "view_zenith": view_zenith,
               "view_azimuth": view_azimuth}
        got = {k: None if v is None or not math.isfinite(float(v)) else float(v) for k, v in got.items()}
        defaulted = []
        if got["sun_zenith"] is None:
            got["sun_zenith"] = DEFAULT_SUN_ZENITH
            defaulted.append(f"sun zenith = {DEFAULT_SUN_ZENITH:g} deg")
        if got["view_zenith"] is None:
            got["view_zenith"] = DEFAULT_VIEW_ZENITH
            defaulted.append(f"view zenith = {DEFAULT_VIEW_ZENITH:g} deg")
        if got["sun_azimuth"] is None or got["view_azimuth"] is None:
            missing = [n.replace("_", " ") for n in ("sun_azimuth", "view_azimuth") if got[n] is None]
            known = got["sun_azimuth"] if got["sun_azimuth"] is not None else got["view_azimuth"]
            known = DEFAULT_AZIMUTH if known is None else known
            got["sun_azimuth"] = got["view_azimuth"] = known
            defaulted.append(f"relative azimuth = 0 deg ({' and '.join(missing)} missing)")
        warnings = []
        if defaulted:
            warnings.append("LAI: angles missing from the metadata, using defaults: " + "; ".join(defaulted))
        return cls(**got), warnings

    def cosines(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """cos(view zenith), cos(sun zenith), cos(sun azimuth - view azimuth): the network's inputs 9-11."""
        rad = np.deg2rad
        return (np.cos(rad(np.asarray(self.view_zenith, dtype=np.float64))),
                np.cos(rad(np.asarray(self.sun_zenith, dtype=np.float64))),
                np.cos(rad(np.asarray(self.sun_azimuth, dtype=np.float64)
                           - np.asarray(self.view_azimuth, dtype=np.float64))))


@dataclass
class LaiResult:
    """LAI, its 1-sigma std and flags (bits: see FLAGS_DOC), each (h, w)."""

    lai: np.ndarray  # float32
    lai_std: np.ndarray  # float32
    flags: np.ndarray  # uint8


@dataclass(frozen=True)
class SnapNet:
    """The network's coefficients and SNAP's definition domain."""

    norm: np.ndarray  # (11, 2) min, max
    denorm: np.ndarray  # (2,) min, max
    w1: np.ndarray  # (5, 11)
    b1: np.ndarray  # (5,)
    w2: np.ndarray  # (5,)
    b2: float
    dom_min: np.ndarray  # (8,)
    dom_max: np.ndarray  # (8,)
    dom_cells: np.ndarray  # sorted int64 keys of the populated grid cells
    tolerance: float
    out_min: float
    out_max: float

    def forward(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw LAI (N,) and its gradient (N, 11) w.r.t. the un-normalised inputs x (N, 11)."""
        lo, hi = self.norm[:, 0], self.norm[:, 1]
        scale_in = 2.0 / (hi - lo)
        z = (x - lo) * scale_in - 1.0
        h = np.tanh(z @ self.w1.T + self.b1)
        y = h @ self.w2 + self.b2
        scale_out = 0.5 * (self.denorm[1] - self.denorm[0])
        lai = (y + 1.0) * scale_out + self.denorm[0]
        grad = (((1.0 - h * h) * self.w2) @ self.w1) * (scale_out * scale_in)
        return lai, grad

    def outside_domain(self, bands8: np.ndarray) -> np.ndarray:
        """(N,) True where the 8 reflectances (N, 8) are outside SNAP's definition domain.

        SNAP's rule: each band outside [min, max] -> outside; otherwise the cell index
        floor(10 (x - min) / (max - min) + 1) of every band must form a populated grid cell.
        """
        out = ((bands8 < self.dom_min) | (bands8 > self.dom_max)).any(axis=1)
        cells = np.floor(10.0 * (bands8 - self.dom_min) / (self.dom_max - self.dom_min) + 1.0)
        cells = np.clip(np.nan_to_num(cells), 0, 15).astype(np.int64)
        keys = _cell_keys(cells)
        out |= ~_isin_sorted(keys, self.dom_cells)
        return out


def _cell_keys(cells: np.ndarray) -> np.ndarray:
    """One int64 key per row of 8 cell indices (each 0..15)."""
    return (cells << (4 * np.arange(cells.shape[1], dtype=np.int64))).sum(axis=1)


def _isin_sorted(keys: np.ndarray, table: np.ndarray) -> np.ndarray:
    pos = np.clip(np.searchsorted(table, keys), 0, len(table) - 1)
    return table[pos] == keys


@lru_cache(maxsize=1)
def load_net(folder: str | None = None) -> SnapNet:
    """The bundled SNAP LAI v3 coefficients (cached)."""
    d = Path(folder) if folder else DATA_DIR

    def csv(name: str) -> np.ndarray:
        path = d / f"{name}.csv"
        try:
            return np.loadtxt(path, delimiter=",", ndmin=2, dtype=np.float64)
        except (OSError, ValueError) as exc:
            raise InputError(Problem(str(path), f"cannot read the SNAP LAI coefficients ({exc})")) from exc

    dom = csv("definition_domain_minmax")
    grid = csv("definition_domain_grid").astype(np.int64)
    tol, lo, hi = csv("extreme_cases").ravel()[:3]
    return SnapNet(norm=csv("normalisation"), denorm=csv("denormalisation").ravel(),
                   w1=csv("layer1_weights"), b1=csv("layer1_bias").ravel(),
                   w2=csv("layer2_weights").ravel(), b2=float(csv("layer2_bias").ravel()[0]),
                   dom_min=dom[0], dom_max=dom[1], dom_cells=np.unique(_cell_keys(grid)),
                   tolerance=abs(float(tol)), out_min=float(lo), out_max=float(hi))


def run_network(x: np.ndarray, band_std: np.ndarray | None = None,
                net: SnapNet | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SNAP's algorithm on inputs x (N, 11): 8 reflectances then the 3 angle cosines.

    Returns LAI (N,) float64, its linearised std (N,) (0 when band_std (N, 8) is None) and
    flags (N,) uint8. An output within `tolerance` outside [min, max] is clamped to the bound;
    one further out is flagged 2 / 4 and set to NaN (SNAP's reference test cases expect NaN
    there). Rows with a non-finite input give NaN and flag 8.
    """
    net = net or load_net()
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[0]
    lai = np.full(n, np.nan)
    std = np.full(n, np.nan)
    flags = np.zeros(n, np.uint8)
    for s in range(0, n, _CHUNK):
        xs = x[s:s + _CHUNK]
        ok = np.isfinite(xs).all(axis=1)
        flags[s:s + _CHUNK][~ok] = FLAG_INVALID_INPUT
        xv = xs[ok]
        raw, grad = net.forward(xv)
        f = np.where(net.outside_domain(xv[:, :8]), FLAG_INPUT_OUT_OF_DOMAIN, 0).astype(np.uint8)
        lo, hi, tol = net.out_min, net.out_max, net.tolerance
        f[raw < lo - tol] |= FLAG_OUTPUT_TOO_LOW
        f[raw > hi + tol] |= FLAG_OUTPUT_TOO_HIGH
        val = np.clip(raw, lo, hi)
        if band_std is None:
            sd = np.zeros_like(val)
        else:
            bs = np.asarray(band_std[s:s + _CHUNK], dtype=np.float64)[ok]
            sd = np.sqrt(((grad[:, :8] * bs) ** 2).sum(axis=1))
        extreme = (f & (FLAG_OUTPUT_TOO_LOW | FLAG_OUTPUT_TOO_HIGH)) > 0
        val[extreme] = np.nan
        sd[extreme] = np.nan
        idx = np.flatnonzero(ok) + s
        lai[idx], std[idx], flags[idx] = val, sd, f
    return lai, std, flags


def band_indices(bands: list[str], source: str | None = None) -> list[int]:
    """Positions of LAI_BANDS in `bands`; InputError naming the missing ones."""
    norm = [str(b).strip().upper() for b in bands]
    alias = {f"B{int(b[1:]):02d}" if b[1:].isdigit() else b: i for i, b in enumerate(norm)}
    missing = [b for b in LAI_BANDS if b not in alias]
    if missing:
        raise InputError(Problem(source, f"LAI needs bands {' '.join(LAI_BANDS)}; missing: "
                                          f"{', '.join(missing)} (bands given: {' '.join(map(str, bands))})"))
    return [alias[b] for b in LAI_BANDS]


def estimate(refl: np.ndarray, bands: list[str], angles: Angles, std: np.ndarray | None = None,
             source: str | None = None) -> LaiResult:
    """LAI, its std and flags from (B, h, w) surface reflectance (0..1, NaN nodata).

    `bands` names the B planes (must include LAI_BANDS); `std` is the per-band 1-sigma
    (same shape) or None (LAI std 0). `source` names the input in errors.
    """
    refl = np.asarray(refl)
    if refl.ndim != 3 or refl.shape[0] != len(bands):
        raise InputError(Problem(source, f"reflectance must be (bands={len(bands)}, h, w), got {refl.shape}"))
    if std is not None and np.shape(std) != refl.shape:
        raise InputError(Problem(source, f"std shape {np.shape(std)} differs from reflectance {refl.shape}"))
    idx = band_indices(bands, source)
    _, h, w = refl.shape
    cos = np.broadcast_arrays(*(np.broadcast_to(c, (h, w)) for c in angles.cosines()))
    x = np.concatenate([refl[idx].reshape(8, -1), np.stack([c.reshape(-1) for c in cos])]).T
    band_std = None if std is None else np.asarray(std)[idx].reshape(8, -1).T
    lai, sd, flags = run_network(x, band_std)
    return LaiResult(lai.reshape(h, w).astype(np.float32), sd.reshape(h, w).astype(np.float32),
                     flags.reshape(h, w))


# the median surface reflectance over LAI_BANDS of an image's valid pixels is at least 0.024 in the 118 31UDS
# images (the darkest pixel's median over the bands 0.012) and at most 1.29 (thick cloud); SNAP's test cases
# 0.026 to 0.33; clear deep water down to about 0.0006 (Sen2Cor's NIR and SWIR near 0). Below or above these bounds
# it is not reflectance: scaled twice (~2e-5), or DN (~1000).
PLAUSIBLE_MEDIAN = (2e-4, 2.0)
RUN_TAGS = ("TARGET_DATE", "METHOD", "MODEL")  # what tells one Densify run's outputs from another's
SYNTHESIS_TAGS = (*RUN_TAGS, "MODE", "MODEL_VERSION", "MODEL_BUNDLED", "PROCESSING_LEVEL")  # copied to its LAI
SAMPLE_PIXELS = 100_000  # about this many pixels of an image, spread over it, judge its reflectance


def reflectance_warnings(refl: np.ndarray, source: str) -> list[str] | None:
    """A warning (in a list; [] when none) when the median of `refl` (B, ...: an image, or a sample of its pixels)
    over its valid pixels (all bands finite, not all exactly 0: a fill) is outside PLAUSIBLE_MEDIAN: the image's
    scaling is wrong and its LAI meaningless; None when no pixel is valid (nothing to judge). `source` names the
    image."""
    values = np.asarray(refl).reshape(len(refl), -1)
    values = values[:, np.isfinite(values).all(axis=0) & (values != 0).any(axis=0)]
    if not values.size:
        return None
    median = float(np.median(values))
    low, high = PLAUSIBLE_MEDIAN
    what = f"LAI: the reflectance of {source} is implausibly"
    found = f"(median {median:.3g} over its valid pixels' bands {' '.join(LAI_BANDS)}"
    if median < low:
        return [f"{what} low {found}, where land and water are about 0.001 to 0.5): probably scaled twice, e.g. a DN "
                "scale (a GDAL band scale or a REFLECTANCE_SCALE tag of 0.0001) on values already in reflectance; its "
                "LAI is meaningless (near 0): fix the file's scale, or give the image as DN"]
    if median > high:
        return [f"{what} high {found}, where it is at most about 1): probably DN (0-10000) read as reflectance, e.g. "
                "a REFLECTANCE_SCALE tag or GDAL band scale of 1; its LAI is meaningless: tag it "
                "REFLECTANCE_SCALE=0.0001, or remove the scale of 1"]
    return []


def lai_file(s2_path: str | Path, out_path: str | Path, feedback: Feedback | None = None,
             band_order: list[str] | None = None, block_pixels: int = 1 << 18,
             std_path: str | Path | None = None, extent=None, extent_crs: str | None = None,
             warnings: list[str] | None = None) -> Path:
    """LAI, LAI_std and flags of an S2 image: a raster file, or the one acquisition of a .SAFE product,
    folder or zip archive (inventory.single_s2); with `extent` (xmin, ymin, xmax, ymax in `extent_crs`,
    default the image's CRS), only the image's whole pixels it touches (grid.within_extent).

    LAI_std is propagated from the per-band reflectance std of `std_path` (the uncertainty file
    written with a synthesized image: bands described B03_std, ...; on the same grid), else 0 (a
    single image carries no reflectance std). Reads the image in row blocks of about `block_pixels`
    pixels and writes a 3-band float32 GeoTIFF on the input's grid, atomically. Returns the output path; the
    run's warnings (angles missing from the metadata) go to the file's tags and to `warnings` when given.
    """
    from rasterio.windows import Window

    from .band_files import subdataset_product
    from .grid import within_extent
    from .inventory import S2Reader, note_warnings, offset_warnings, single_s2
    from .writer import AtomicRaster

    feedback = feedback or Feedback()
    s2_path, out_path = str(s2_path), Path(out_path)  # str: a GDAL /vsizip/... path stays whole
    check_output_file(out_path, {"S2 image": s2_path, "uncertainty": None if std_path is None else str(std_path)},
                      suffix=GEOTIFF_SUFFIXES)
    info = single_s2(s2_path, band_order)
    grid, col0, row0 = info.grid, 0, 0
    if extent is not None:
        try:
            grid = within_extent(info.grid, extent, extent_crs, of=f"the S2 image {Path(s2_path).name}")
        except ValueError as exc:
            raise InputError(Problem(s2_path, str(exc))) from None
        row0, col0 = grid.offset_in(info.grid)
    width, height = grid.width, grid.height
    order = None if info.path != s2_path else band_order  # an image made of band files names its bands

    def window(row: int, h: int) -> Window:  # rows of the output, in the image
        return Window(col0, row0 + row, width, h)

    with contextlib.ExitStack() as opened:  # the image (and uncertainty) open throughout: each block decoded once
        image = opened.enter_context(S2Reader(info.path, band_order=order))
        rows = max(1, min(height, block_pixels // max(1, width)))  # a few rows at a time: GDAL's cache keeps the
        # row of tiles they cross decoded for the next ones (rows as high as the tiles took GBs for 1024 px tiles)
        std_of = _std_reader(str(std_path), info.grid, info.tags, opened) if std_path is not None else None
        first = image.read(window(0, rows), LAI_BANDS)
        angles, notes = Angles.from_tags(first.tags)
        # guesses made reading it (e.g. a DN scale tag on reflectance ignored), an offset it seems to lack
        notes = note_warnings([info], masks_used=False) + offset_warnings([info]) + notes
        tags = {"method": METHOD, "flags": FLAGS_DOC, "source": Path(subdataset_product(s2_path) or s2_path).name,
                "angles_deg": (f"sun zenith {angles.sun_zenith:g}, sun azimuth {angles.sun_azimuth:g}, "
                               f"view zenith {angles.view_zenith:g}, view azimuth {angles.view_azimuth:g}"),
                "LAI_std": (f"propagated from the reflectance std of {Path(str(std_path)).name}" if std_of else
                            "0: no reflectance std given (single image)")}
        if notes:
            tags["warnings"] = " | ".join(notes)
            if warnings is not None:
                warnings += notes
        if info.files:  # an acquisition given as band files (a .SAFE, or one of its band files)
            tags["band_files"] = ", ".join(info.files)
        for key in ("ACQUISITION_DATETIME", *SYNTHESIS_TAGS):  # how a synthesized input was made, kept with its LAI
            if key in first.tags:
                tags[key] = first.tags[key]
        with new_dirs_removed_on_error(out_path.parent), AtomicRaster(  # a failure leaves no folder it made
                out_path, grid, 3, "float32", descriptions=["LAI", "LAI_std", "flags"], tags=tags) as out:
            step = max(1, width * height // SAMPLE_PIXELS)  # the reflectance's plausibility: judged on every step-th
            sample = []  # pixel of the image (a first block of sea or cloud is not the image)
            for row in range(0, height, rows):
                feedback.check()
                h = min(rows, height - row)
                img = first if row == 0 else image.read(window(row, h), LAI_BANDS)
                sample.append(img.refl.reshape(len(img.bands), -1)[:, (-row * width) % step::step].copy())
                std = std_of(img.bands, window(row, h)) if std_of else None
                res = estimate(img.refl, img.bands, angles, std=std, source=str(s2_path))
                out.write(np.stack([res.lai, res.lai_std, res.flags.astype(np.float32)]), row=row)
                feedback.report(100.0 * (row + h) / height, "LAI")
            if found := reflectance_warnings(np.concatenate(sample, axis=1), tags["source"]):
                notes += found
                out.update_tags(warnings=" | ".join(notes))
                if warnings is not None:
                    warnings += found
            feedback.check()
            return out.commit()


def _std_reader(path: str, grid, image_tags: dict[str, str] | None, opened: contextlib.ExitStack):
    """A reader (the file kept open in `opened`) of the per-band reflectance std of `path` (bands described
    <band>_std, DN scaled by its REFLECTANCE_SCALE; untagged: DN unless its values are below 2, i.e. already
    reflectance; its nodata as NaN) on `grid`; InputError naming the file when it does not fit, or when it is
    the uncertainty of another run than the image (their RUN_TAGS differ, e.g. another date or method picked
    from the layer list)."""
    import rasterio
    from rasterio.crs import CRS
    from rasterio.errors import RasterioIOError

    from .inventory import looks_like_reflectance, s2_scaling

    try:
        ds = opened.enter_context(rasterio.open(path))
        names = [d or "" for d in ds.descriptions]
        same = (ds.width, ds.height) == (grid.width, grid.height) and ds.transform.almost_equals(grid.transform)
        crs_ok = ds.crs is not None and ds.crs == CRS.from_wkt(grid.crs_wkt)
        tags = ds.tags()
        scale = s2_scaling(tags)[0]
        if scale is None:  # untagged: reflectance or DN, told as the inventory tells an S2 image's
            scale = 1.0 if looks_like_reflectance(path) else 1e-4
    except RasterioIOError as exc:
        raise InputError(Problem(path, f"cannot be read ({first_line(exc)})")) from None
    except ValueError as exc:  # a REFLECTANCE_SCALE tag that is not a number
        raise InputError(Problem(path, f"its reflectance scale is not a number ({exc})")) from None
    theirs = image_tags or {}
    differ = [f"{key} {tags[key]}, the image's {theirs[key]}" for key in RUN_TAGS
              if tags.get(key) and theirs.get(key) and tags[key] != theirs[key]]
    if differ:
        raise InputError(Problem(path, f"is the uncertainty of another run ({'; '.join(differ)}): give the one "
                                       "written with that image"))
    if not (same and crs_ok):
        raise InputError(Problem(path, "the uncertainty file is not on the S2 image's grid (another size, "
                                       "position or CRS): give the one written with that image"))
    missing = [b for b in LAI_BANDS if f"{b}_std" not in names]
    if missing:
        raise InputError(Problem(path, f"no band described {', '.join(b + '_std' for b in missing)}: give the "
                                       "uncertainty file written with the synthesized image"))

    def read(bands: list[str], window) -> np.ndarray:
        try:
            idx = [names.index(f"{b}_std") + 1 for b in bands]
            std = ds.read(idx, window=window, masked=True).astype(np.float32).filled(np.nan)
            return std * np.float32(scale)
        except RasterioIOError as exc:
            raise InputError(Problem(path, f"its pixels cannot be read ({first_line(exc)})")) from None

    return read
