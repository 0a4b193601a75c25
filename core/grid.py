"""The output grid: CRS, transform and size, and its windows (tiles)."""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from dataclasses import dataclass

from affine import Affine

MIN_TILE_SIZE = 16  # pixels; smaller tiles cost far more than they save
MAX_TILE_SIZE = 2048  # pixels; memory grows with the square (the default model took 8 GB at 2048 px)
DEFAULT_TILE_SIZE = 512  # pixels
WINDOW_BYTES = 2 << 30  # the most a window of the whole series may hold (float32), whatever its number of dates
MIN_AUTO_TILE_SIZE = 128  # pixels; an automatic tile is never smaller (a series of thousands of dates)
AUTO_TILE_STEP = 64  # pixels; automatic tiles are multiples of it: whole output blocks (64 px at least) fill them


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

    def sub(self, row: int, col: int, width: int, height: int) -> Grid:
        """The `width` x `height` px of this grid from pixel (row, col), on its pixel edges."""
        return Grid(self.crs_wkt, self.window_transform(row, col), width, height)

    def offset_in(self, outer: Grid) -> tuple[int, int]:
        """(row, col) of this grid's first pixel in `outer`, a grid on the same pixel edges (e.g. the one it
        was cropped from)."""
        col, row = (round(v) for v in ~outer.transform * (self.transform.c, self.transform.f))
        return row, col

    def crop(self, left: float, bottom: float, right: float, top: float) -> Grid | None:
        """The whole pixels of this grid that the box (in its CRS) touches, on the same pixel edges; None
        when the box lies outside it."""
        inv = ~self.transform
        cols, rows = zip(*(inv * xy for xy in ((left, top), (right, top), (left, bottom), (right, bottom))),
                         strict=True)
        eps = 1e-6  # a box on pixel edges, as transformed, takes no sliver of the next pixel
        col0, col1 = max(0, math.floor(min(cols) + eps)), min(self.width, math.ceil(max(cols) - eps))
        row0, row1 = max(0, math.floor(min(rows) + eps)), min(self.height, math.ceil(max(rows) - eps))
        if col1 <= col0 or row1 <= row0:
            return None
        return self.sub(row0, col0, col1 - col0, row1 - row0)


def crs_name(wkt: str) -> str:
    """EPSG:n for an EPSG coordinate system, else "its own CRS" (for messages)."""
    from rasterio.crs import CRS

    code = CRS.from_wkt(wkt).to_epsg(confidence_threshold=90)
    return f"EPSG:{code}" if code else "its own CRS"


def within_extent(grid: Grid, extent, crs: str | None = None, of: str = "the S2 grid") -> Grid:
    """The part of `grid` inside `extent` (xmin, ymin, xmax, ymax in `crs`; None or "": the grid's CRS), as
    whole pixels of the grid; ValueError saying what is wrong with the extent or that it misses the grid
    (named `of`)."""
    import rasterio
    from rasterio.crs import CRS
    from rasterio.errors import CRSError
    from rasterio.warp import transform_bounds

    try:
        box = [float(v) for v in extent]
    except (TypeError, ValueError):
        raise ValueError(f"the extent {extent!r} is not four numbers (xmin ymin xmax ymax)") from None
    if len(box) != 4 or not all(map(math.isfinite, box)) or box[0] >= box[2] or box[1] >= box[3]:
        raise ValueError(f"the extent {' '.join(f'{v:g}' for v in box)} is not xmin ymin xmax ymax with "
                         "xmin < xmax and ymin < ymax")
    if crs:
        try:
            with rasterio.Env():  # PROJ's "crs not found" to logging, not stderr: the message below says it
                src = CRS.from_user_input(crs)
        except CRSError:
            shown = crs if len(crs) <= 60 else crs[:57] + "..."
            raise ValueError(f"the extent's CRS '{shown}' is not a coordinate system GDAL knows") from None
        try:
            box = list(transform_bounds(src, grid.crs_wkt, *box, densify_pts=21))
        except Exception:  # noqa: BLE001 - e.g. outside the projection's area
            raise ValueError(f"the extent cannot be transformed from {crs_name(src.to_wkt())} to the "
                             f"{crs_name(grid.crs_wkt)} of {of}") from None
    cropped = grid.crop(*box) if all(map(math.isfinite, box)) else None
    if cropped is None:
        left, bottom, right, top = grid.bounds
        raise ValueError(f"the extent does not overlap {of}, which covers {left:.0f}, {bottom:.0f} to "
                         f"{right:.0f}, {top:.0f} ({crs_name(grid.crs_wkt)})")
    return cropped


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


def auto_tile_size(values_per_pixel: int, halo: int = 0) -> int:
    """The default tile size for a series of `values_per_pixel` float32 values per pixel (dates x bands of S2, and
    of S1 when read): DEFAULT_TILE_SIZE, or the largest multiple of AUTO_TILE_STEP px whose window (the tile and
    its halo) holds no more than WINDOW_BYTES, at least MIN_AUTO_TILE_SIZE. Memory then stays bounded however long
    the series is, not only however large the raster; and the outputs' blocks (writer.block_size_for) divide the
    tiles, so no two windows write one block."""
    side = int((WINDOW_BYTES / (4 * max(1, values_per_pixel))) ** 0.5) - 2 * halo
    return max(MIN_AUTO_TILE_SIZE, min(DEFAULT_TILE_SIZE, side // AUTO_TILE_STEP * AUTO_TILE_STEP))


def _starts(n: int, size: int, shift: int, offset: int = 0) -> list[int]:
    """Where the tiles of `size` along an axis of n px start, the edges between them `shift` px past multiples of
    `size` (the first tile that much larger), counted from `offset` px before this axis' first pixel (the axis is
    part of a larger one whose tiles it keeps)."""
    first = size + shift + max(0, -(-(offset + 1 - size - shift) // size)) * size  # the first edge past `offset`
    return [0, *(edge - offset for edge in range(first, offset + n, size))]


def covering_grid(part: Grid, outer: Grid, size: int, shift: int = 0) -> Grid:
    """The part of `outer` made of its whole tiles (`tiles(outer, size, shift=shift)`) that hold `part` and `shift` px
    around it. Computed on it (`tiles(..., within=outer)`), `part`'s pixels come from the windows the whole grid's run
    reads, blended with the same neighbours: an extent gets the whole run's pixels (a learned model chooses its
    dates per window)."""
    size = max(MIN_TILE_SIZE, int(size))

    def span(lo: int, hi: int, n: int) -> tuple[int, int]:
        starts = [*_starts(n, size, shift), n]
        lo, hi = max(0, lo - shift), min(n, hi + shift)
        return max(s for s in starts if s <= lo), min(s for s in starts if s >= hi)

    row, col = part.offset_in(outer)
    r0, r1 = span(row, row + part.height, outer.height)
    c0, c1 = span(col, col + part.width, outer.width)
    return outer.sub(r0, c0, c1 - c0, r1 - r0)


def tiles(grid: Grid, size: int, halo: int = 0, within: Grid | None = None, shift: int = 0) -> Iterator[Tile]:
    """Non-overlapping tiles of `size` covering the grid, each with up to `halo` px of context, taken
    within `within` (a grid on the same pixels that holds this one, e.g. the S2 grid around an extent;
    default: this grid), so tiles at the grid's edges see the pixels beyond them; the edges between tiles are
    `within`'s own (a grid from `covering_grid` is cut into `within`'s tiles). shift: the edges between
    tiles lie that many px past multiples of `size` (the first row and column of tiles that much larger), so
    that windows blended over `shift` px either side of their edges (window_blend) complete the pixels of
    [k * size, (k + 1) * size): whole blocks of the outputs when `size` is a multiple of their block size."""
    size = max(MIN_TILE_SIZE, int(size))
    outer = within or grid
    row_off, col_off = grid.offset_in(outer)
    top, left = -row_off, -col_off  # the outer grid's edges in this grid's pixels
    bottom, right = outer.height - row_off, outer.width - col_off
    rows, cols = _starts(grid.height, size, shift, row_off), _starts(grid.width, size, shift, col_off)
    for row, next_row in zip(rows, [*rows[1:], grid.height], strict=True):
        for col, next_col in zip(cols, [*cols[1:], grid.width], strict=True):
            h, w = next_row - row, next_col - col
            r0, c0 = max(top, row - halo), max(left, col - halo)
            r1, c1 = min(bottom, row + h + halo), min(right, col + w + halo)
            yield Tile(row, col, h, w, r0, c0, r1 - r0, c1 - c0)
