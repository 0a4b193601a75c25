"""Atomic, tiled, compressed GeoTIFF outputs with overviews, descriptions, nodata and tags."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.errors import RasterioError
from rasterio.windows import Window

from .atomic import OutputError, check_written, ensure_folder, first_line, partial_name, place_or_discard
from .grid import Grid

WRITE_ERRORS = (OSError, RasterioError)
BLOCK_SIZE = 256  # px: the outputs' blocks (tiles of the GeoTIFF), unless block_size_for says otherwise


_TIFF_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4,
                    16: 8, 17: 8, 18: 8}
_BLOCK_TAGS = {273: 279, 324: 325}  # StripOffsets -> StripByteCounts, TileOffsets -> TileByteCounts


def tiff_problem(path: str | Path) -> str | None:
    """What makes the TIFF at `path` incomplete (None when nothing does): a directory, a tag value or
    an image block that lies past the end of the file, or a block never written."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size

        def read(offset: int, n: int) -> bytes:
            if offset < 0 or offset + n > size:
                raise EOFError
            f.seek(offset)
            return f.read(n)

        try:
            head = read(0, 16 if size >= 16 else 8)
            order = {b"II": "<", b"MM": ">"}.get(head[:2])
            if order is None:
                return "not a TIFF file"
            magic = int.from_bytes(head[2:4], "little" if order == "<" else "big")
            big = magic == 43
            if magic not in (42, 43):
                return "not a TIFF file"
            ints = {2: np.dtype(f"{order}u2"), 4: np.dtype(f"{order}u4"), 8: np.dtype(f"{order}u8")}
            word = 8 if big else 4

            def uint(raw: bytes) -> int:
                return int(np.frombuffer(raw, ints[len(raw)])[0])

            ifd, seen = uint(head[8:16] if big else head[4:8]), set()
            while ifd and ifd not in seen:
                seen.add(ifd)
                n = uint(read(ifd, 8 if big else 2))
                entry = 20 if big else 12
                start = ifd + (8 if big else 2)
                table = read(start, n * entry + word)
                arrays: dict[int, np.ndarray] = {}
                for i in range(n):
                    e = table[i * entry:(i + 1) * entry]
                    tag, kind = uint(e[0:2]), uint(e[2:4])
                    count = uint(e[4:12] if big else e[4:8])
                    raw = e[12:20] if big else e[8:12]
                    nbytes = count * _TIFF_TYPE_SIZES.get(kind, 1)
                    value = raw[:nbytes] if nbytes <= word else read(uint(raw), nbytes)
                    if (tag in _BLOCK_TAGS or tag in _BLOCK_TAGS.values()) and kind in (3, 4, 16):
                        arrays[tag] = np.frombuffer(value, ints[_TIFF_TYPE_SIZES[kind]]).astype(np.uint64)
                for offsets_tag, counts_tag in _BLOCK_TAGS.items():
                    if offsets_tag in arrays:
                        offsets, counts = arrays[offsets_tag], arrays.get(counts_tag, np.zeros(0, np.uint64))
                        if offsets.size != counts.size or (offsets == 0).any() or (counts == 0).any():
                            return f"directory at offset {ifd}: an image block was never written"
                        if (offsets + counts > size).any():
                            return f"directory at offset {ifd}: an image block lies past the end of the file"
                ifd = uint(table[n * entry:n * entry + word])
        except EOFError:
            return "cut short: part of it lies past the end of the file"
    return None


def verify_raster(path: str | Path) -> None:
    """Raise (OSError, RasterioError or ValueError) unless the GeoTIFF at `path` is complete.

    Checks that every TIFF directory, tag value and image block lies inside the file (a write cut
    short by a full disk or a file size limit fails this), then reopens it with rasterio and
    decodes the last block of each band.
    """
    problem = tiff_problem(path)
    if problem:
        raise ValueError(problem)
    with rasterio.Env(), rasterio.open(path) as ds:
        for b in range(1, ds.count + 1):
            bh, bw = ds.block_shapes[b - 1]
            ds.read(b, window=ds.block_window(b, (ds.height - 1) // bh, (ds.width - 1) // bw))


def block_size_for(tile: int, largest: int = BLOCK_SIZE) -> int:
    """The outputs' block size for a run in tiles of `tile` px: the largest multiple of 16 px (GeoTIFF's rule) from
    `largest` down to 64 px that divides `tile`, else `largest`. Each window then writes whole blocks: a block two
    windows share is compressed twice and its first copy left in the file (384 px tiles in 256 px blocks: files
    about 10 % larger and a slower run)."""
    return next((size for size in range(largest, 63, -16) if tile % size == 0), largest)


class AtomicRaster:
    """A GeoTIFF written to a hidden temporary name and renamed into place on `commit()`.

    Use as a context manager: leaving the block by an exception (cancel, crash) removes
    the temporary file, so no half-written output is ever left at `path`. `commit()` checks the
    closed file (`verify_raster`) first: a write cut short (disk full) raises OutputError instead.
    """

    def __init__(self, path: str | Path, grid: Grid, count: int, dtype: str = "float32",
                 descriptions: list[str] | None = None, nodata: float | None = float("nan"),
                 tags: dict[str, str] | None = None, band_tags: list[dict] | None = None,
                 blocksize: int = BLOCK_SIZE):
        self.path = Path(path)
        ensure_folder(self.path.parent, self.path)
        self.tmp = partial_name(self.path, ".tif")
        tiled = grid.width >= blocksize and grid.height >= blocksize
        profile = dict(driver="GTiff", width=grid.width, height=grid.height, count=count, dtype=dtype,
                       crs=grid.crs_wkt, transform=grid.transform, nodata=nodata, compress="deflate",
                       # deflate level 1: half the compression time of the default 6, files about 2 % larger
                       zlevel=1, predictor=3 if dtype.startswith("float") else 2, BIGTIFF="IF_SAFER",
                       interleave="band")
        if tiled:
            profile.update(tiled=True, blockxsize=blocksize, blockysize=blocksize)
        self._ds = None
        self._done = False
        # until this returns, the caller (its ExitStack) has nothing to discard: any failure here, Ctrl-C included,
        # removes the temporary file itself
        try:
            self._ds = rasterio.open(self.tmp, "w", **profile)
            for i, desc in enumerate(descriptions or [], start=1):
                self._ds.set_band_description(i, desc)
            if tags:
                self._ds.update_tags(**{k: str(v) for k, v in tags.items()})
            for i, bt in enumerate(band_tags or [], start=1):
                self._ds.update_tags(i, **{k: str(v) for k, v in bt.items()})
        except WRITE_ERRORS as exc:
            self.discard()
            raise OutputError(f"cannot write {self.path}: {first_line(exc)}") from exc
        except BaseException:
            self.discard()
            raise

    def write(self, data: np.ndarray, row: int = 0, col: int = 0) -> None:
        """Write (count, h, w) data at (row, col)."""
        data = np.asarray(data)
        if data.ndim == 2:
            data = data[None]
        try:
            self._ds.write(data.astype(self._ds.dtypes[0], copy=False),
                           window=Window(col, row, data.shape[-1], data.shape[-2]))
        except WRITE_ERRORS as exc:
            raise OutputError(f"could not write {self.path}: {first_line(exc)}") from exc

    def update_tags(self, **tags: str) -> None:
        self._ds.update_tags(**{k: str(v) for k, v in tags.items()})

    def commit(self) -> Path:
        """Build overviews, close, check the file (`verify_raster`) and rename it into place.

        On any failure the temporary file is removed, an existing file at `path` is left as it
        was, and OutputError names `path`.
        """
        self.finish()
        return self.place()

    def finish(self) -> None:
        """Build overviews, close and check the temporary file (OutputError when incomplete); several
        outputs are all finished before any is placed, so a failure replaces none of them."""
        try:
            levels = [f for f in (2, 4, 8, 16, 32) if min(self._ds.width, self._ds.height) // f >= 64]
            if levels:
                self._ds.build_overviews(levels, Resampling.average)
                self._ds.update_tags(ns="rio_overview", resampling="average")
            self._ds.close()
        except WRITE_ERRORS as exc:
            self.discard()
            raise OutputError(f"could not write {self.path}: {first_line(exc)}") from exc
        try:
            check_written(self.tmp, self.path, verify_raster)
        except OutputError:
            self.discard()
            raise

    def place(self) -> Path:
        """Rename the finished temporary file onto `path`."""
        place_or_discard(self)
        self._done = True
        return self.path

    def discard(self) -> None:
        """Close and remove the temporary file and its side files."""
        try:
            if self._ds is not None and not self._ds.closed:
                self._ds.close()
        except WRITE_ERRORS:
            pass  # a write that fails on close (disk full): the file is removed anyway
        finally:
            for p in (self.tmp, Path(str(self.tmp) + ".aux.xml"), Path(str(self.tmp) + ".ovr")):
                p.unlink(missing_ok=True)

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
