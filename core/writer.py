"""Atomic, tiled, compressed GeoTIFF outputs with overviews, descriptions, nodata and tags."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.windows import Window

from .grid import Grid


class AtomicRaster:
    """A GeoTIFF written to a hidden temporary name and renamed into place on `commit()`.

    Use as a context manager: leaving the block by an exception (cancel, crash) removes
    the temporary file, so no half-written output is ever left at `path`.
    """

    def __init__(self, path: str | Path, grid: Grid, count: int, dtype: str = "float32",
                 descriptions: list[str] | None = None, nodata: float | None = float("nan"),
                 tags: dict[str, str] | None = None, band_tags: list[dict] | None = None,
                 blocksize: int = 256):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.path.with_name(f".{self.path.stem}.{uuid.uuid4().hex[:8]}.partial.tif")
        tiled = grid.width >= blocksize and grid.height >= blocksize
        profile = dict(driver="GTiff", width=grid.width, height=grid.height, count=count, dtype=dtype,
                       crs=grid.crs_wkt, transform=grid.transform, nodata=nodata, compress="deflate",
                       predictor=3 if dtype.startswith("float") else 2, BIGTIFF="IF_SAFER",
                       interleave="band")
        if tiled:
            profile.update(tiled=True, blockxsize=blocksize, blockysize=blocksize)
        self._ds = rasterio.open(self.tmp, "w", **profile)
        for i, desc in enumerate(descriptions or [], start=1):
            self._ds.set_band_description(i, desc)
        if tags:
            self._ds.update_tags(**{k: str(v) for k, v in tags.items()})
        for i, bt in enumerate(band_tags or [], start=1):
            self._ds.update_tags(i, **{k: str(v) for k, v in bt.items()})
        self._done = False

    def write(self, data: np.ndarray, row: int = 0, col: int = 0) -> None:
        """Write (count, h, w) data at (row, col)."""
        data = np.asarray(data)
        if data.ndim == 2:
            data = data[None]
        self._ds.write(data.astype(self._ds.dtypes[0], copy=False),
                       window=Window(col, row, data.shape[-1], data.shape[-2]))

    def update_tags(self, **tags: str) -> None:
        self._ds.update_tags(**{k: str(v) for k, v in tags.items()})

    def commit(self) -> Path:
        """Build overviews, close and rename into place."""
        levels = [f for f in (2, 4, 8, 16, 32) if min(self._ds.width, self._ds.height) // f >= 64]
        if levels:
            self._ds.build_overviews(levels, Resampling.average)
            self._ds.update_tags(ns="rio_overview", resampling="average")
        self._ds.close()
        os.replace(self.tmp, self.path)
        self._done = True
        return self.path

    def discard(self) -> None:
        if not self._ds.closed:
            self._ds.close()
        for p in (self.tmp, Path(str(self.tmp) + ".aux.xml"), Path(str(self.tmp) + ".ovr")):
            if p.exists():
                p.unlink()

    def __enter__(self) -> AtomicRaster:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None or not self._done:
            self.discard()


def write_array(path: str | Path, grid: Grid, data: np.ndarray, **kwargs) -> Path:
    """Write a whole (count, h, w) array atomically."""
    data = np.asarray(data)
    if data.ndim == 2:
        data = data[None]
    with AtomicRaster(path, grid, data.shape[0], str(data.dtype), **kwargs) as out:
        out.write(data)
        return out.commit()
