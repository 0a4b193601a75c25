"""Helpers the test modules share (importable: pytest puts tests/ on the path, see pyproject.toml)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio


def craft(src: Path, dst: Path, data=None, tags: dict | None = None, drop_tags=(), descriptions=None,
          **profile) -> Path:
    """Write dst from a real raster: same profile, tags and band descriptions unless overridden
    (never touches src)."""
    with rasterio.open(src) as ds:
        prof, arr, descs = ds.profile, ds.read(), list(ds.descriptions)
        old = {k: v for k, v in ds.tags().items() if k not in drop_tags}
    arr = arr if data is None else np.asarray(data)
    prof.update(count=arr.shape[0], dtype=str(arr.dtype), **profile)
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(dst, "w", **prof) as out:
        out.write(arr)
        out.update_tags(**{**old, **(tags or {})})
        for i, d in enumerate(descs if descriptions is None else descriptions, 1):
            if i <= arr.shape[0]:
                out.set_band_description(i, d or "")
    return dst


def read_array(path) -> np.ndarray:
    """All bands of a raster."""
    with rasterio.open(path) as ds:
        return ds.read()
