"""A PNG quick-look of a run: clear images before/after, the synthesized image, uncertainty, LAI."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import Resampling

from .atomic import atomic_path
from .dates import date_from_metadata, date_from_name
from .errors import InputError, Problem
from .inventory import s2_scaling

RGB = ("B04", "B03", "B02")
MAX_PX = 1024  # panels are read decimated to at most this many pixels a side


def _read(path: str | Path, bands: list[int] | None = None) -> tuple[np.ndarray, dict, tuple]:
    """Bands (1-based) of a raster, decimated to MAX_PX, float32 with nodata as NaN."""
    try:
        with rasterio.open(path) as ds:
            f = max(1, int(np.ceil(max(ds.width, ds.height) / MAX_PX)))
            shape = (len(bands or range(ds.count)), max(1, ds.height // f), max(1, ds.width // f))
            data = ds.read(bands, out_shape=shape, resampling=Resampling.average if f > 1
                           else Resampling.nearest).astype("float32")
            if ds.nodata is not None and not np.isnan(ds.nodata):
                data[data == ds.nodata] = np.nan
            return data, ds.tags(), ds.descriptions
    except rasterio.errors.RasterioIOError as exc:
        raise InputError(Problem(str(path), f"cannot be read ({exc})")) from None


def true_colour(path: str | Path) -> tuple[np.ndarray, dt.datetime | None]:
    """(h, w, 3) surface reflectance B04/B03/B02 of an S2 image (or synthesized output) and its date."""
    with rasterio.open(path) as ds:
        desc = [d.upper() if d else "" for d in ds.descriptions]
    idx = [desc.index(b) + 1 if b in desc else i for b, i in zip(RGB, (3, 2, 1), strict=True)]
    data, tags, _ = _read(path, idx)
    scale, offset = s2_scaling(tags)
    scale = scale or 1e-4
    offset *= scale
    when = date_from_metadata(tags) or date_from_name(path)
    return np.moveaxis(data * scale + offset, 0, -1), when


def nanmean0(a: np.ndarray) -> np.ndarray:
    """The mean over the first axis, ignoring NaN; NaN where all are, without numpy's "Mean of empty slice"."""
    seen = ~np.isnan(a)
    count, total = seen.sum(axis=0), np.where(seen, a, 0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / count, np.nan).astype(a.dtype, copy=False)


def stretch(rgb: np.ndarray, lo: float, hi: float) -> np.ndarray:
    out = np.clip((rgb - lo) / np.maximum(hi - lo, 1e-6), 0, 1)
    return np.where(np.isfinite(out), out, 1.0)  # nodata white


def quicklook(png_path: str | Path, synthesized: str | Path, uncertainty: str | Path,
              lai: str | Path | None = None, before: str | Path | None = None,
              after: str | Path | None = None, title: str | None = None) -> Path:
    """Write a row of panels (before, synthesized, after true colour; mean std; LAI) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    synth, when = true_colour(synthesized)
    finite = synth[np.isfinite(synth).all(axis=-1)]
    if finite.size == 0:
        raise InputError(Problem(str(synthesized), "has no valid pixel to show"))
    lo, hi = np.percentile(finite, 2), np.percentile(finite, 98)  # one stretch: natural colours

    panels: list[tuple[str, np.ndarray, dict]] = []
    for label, path in (("before", before), ("synthesized", None), ("after", after)):
        if label == "synthesized":
            day = f" {when:%Y-%m-%d}" if when else ""
            panels.append((f"synthesized{day}", stretch(synth, lo, hi), {}))
        elif path is not None:
            rgb, day = true_colour(path)
            panels.append((f"{label}: {day:%Y-%m-%d}" if day else label, stretch(rgb, lo, hi), {}))
    std, tags, desc = _read(uncertainty)
    scale = float(tags.get("REFLECTANCE_SCALE", 1.0))
    names = [d or "" for d in desc]
    if "mean_std" in names:  # the engine's own band-mean, when written
        std = std[[names.index("mean_std")]]
    mean_std = nanmean0(std) * scale
    vmax = float(np.nanpercentile(mean_std, 98)) if np.isfinite(mean_std).any() else 1.0
    panels.append(("mean uncertainty (reflectance std)", mean_std,
                   dict(cmap="magma", vmin=0.0, vmax=max(vmax, 1e-4), colorbar=True)))
    if lai is not None:
        lai_band = _read(lai, [1])[0][0]
        panels.append(("LAI (m²/m²)", lai_band, dict(cmap="YlGn", vmin=0.0, vmax=6.0, colorbar=True)))

    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 4.0), squeeze=False)
    for ax, (label, img, opts) in zip(axes[0], panels, strict=True):
        colorbar = opts.pop("colorbar", False)
        shown = ax.imshow(img, interpolation="nearest", **opts)
        if colorbar:
            fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04)
        ax.set_title(label, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    png = Path(png_path)
    with atomic_path(png) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    return png
