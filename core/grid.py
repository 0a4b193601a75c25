"""The output grid: CRS, transform and size, and its windows (tiles)."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass

from affine import Affine

MIN_TILE_SIZE = 16  # pixels; smaller tiles cost far more than they save
MAX_TILE_SIZE = 2048  # pixels; memory grows with the square (the default model took 8 GB at 2048 px)


@functools.lru_cache(maxsize=256)
def canonical_wkt(wkt: str) -> str:
    """One WKT per coordinate system: the EPSG definition when `wkt` is one (GDAL's GeoTIFF, JP2 and ENVI
    readers spell the same UTM zone differently, e.g. UNIT["metre"] and UNIT["Meter"]), else `wkt`."""
    from rasterio.crs import CRS
    from rasterio.errors import CRSError

    try:
        code = CRS.from_wkt(wkt).to_epsg(confidence_threshold=90)
    except CRSError:
        return wkt
    return CRS.from_epsg(code).to_wkt() if code else wkt


@dataclass(frozen=True)
class Grid:
    """A north-up raster grid."""

    crs_wkt: str
    transform: Affine
    width: int
    height: int

    @property
    def res(self) -> float:
        return abs(self.transform.a)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top)."""
        t = self.transform
        left, top = t.c, t.f
        right, bottom = t * (self.width, self.height)
        return (min(left, right), min(top, bottom), max(left, right), max(top, bottom))

    def window_transform(self, row: int, col: int) -> Affine:
        return self.transform * Affine.translation(col, row)


@dataclass(frozen=True)
class Tile:
    """A window of the grid, with the halo-extended window it is computed on."""

    row: int
    col: int
    height: int
    width: int
    # extended window (includes halo, clipped to the grid)
    row0: int
    col0: int
    height0: int
    width0: int

    @property
    def inner(self) -> tuple[slice, slice]:
        """Where the tile sits inside its extended window."""
        r, c = self.row - self.row0, self.col - self.col0
        return slice(r, r + self.height), slice(c, c + self.width)


def tiles(grid: Grid, size: int, halo: int = 0) -> Iterator[Tile]:
    """Non-overlapping tiles of `size` covering the grid, each with up to `halo` px of context."""
    size = max(MIN_TILE_SIZE, int(size))
    for row in range(0, grid.height, size):
        for col in range(0, grid.width, size):
            h, w = min(size, grid.height - row), min(size, grid.width - col)
            r0, c0 = max(0, row - halo), max(0, col - halo)
            r1, c1 = min(grid.height, row + h + halo), min(grid.width, col + w + halo)
            yield Tile(row, col, h, w, r0, c0, r1 - r0, c1 - c0)
