"""Read windows of a whole S1/S2 series onto the output grid, as a `Stack`.

S2 reflectance is resampled bilinearly, masks by nearest neighbour, S1 by averaging in
linear power (never in dB). Files already on the grid are read directly.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.warp import reproject, transform_bounds
from rasterio.windows import Window, from_bounds

from .errors import InputError, Problem
from .grid import Grid, Tile, canonical_wkt
from .inventory import LARGE_PX, Inventory, RasterInfo, build, clear_from_mask, spread_windows, vrt_sources
from .stack import Stack


def _aligned_window(src: Grid, dst: Grid) -> Window | None:
    """The window of src that is exactly dst, when both share CRS, pixel size and alignment."""
    if src.crs_wkt != dst.crs_wkt:
        return None
    st, dt_ = src.transform, dst.transform
    if not (np.isclose(st.a, dt_.a) and np.isclose(st.e, dt_.e)):
        return None
    col, row = (dt_.c - st.c) / st.a, (dt_.f - st.f) / st.e
    if not (np.isclose(col, round(col), atol=1e-3) and np.isclose(row, round(row), atol=1e-3)):
        return None
    return Window(int(round(col)), int(round(row)), dst.width, dst.height)


def _subdivision(src: Grid, dst: Grid) -> tuple[int, int, int] | None:
    """(k, col, row) when each src pixel holds exactly k x k dst pixels (same CRS, aligned): dst pixel
    (0, 0) is then fine pixel (col, row) counted from the src origin in dst pixels."""
    if src.crs_wkt != dst.crs_wkt:
        return None
    st, dt_ = src.transform, dst.transform
    k = st.a / dt_.a
    col, row = (dt_.c - st.c) / dt_.a, (dt_.f - st.f) / dt_.e
    if not (np.isclose(k, round(k)) and round(k) >= 1 and np.isclose(st.e / dt_.e, k)
            and np.isclose(col, round(col), atol=1e-3) and np.isclose(row, round(row), atol=1e-3)):
        return None
    return int(round(k)), int(round(col)), int(round(row))


def _bilinear_axis(start: int, n: int, k: int, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fine pixels start .. start + n - 1 along one axis of a grid k times finer than a source of `size`
    pixels (fine pixel 0 = the first of source pixel 0): the source pixels before and after each fine
    pixel's centre (the edge pixel beyond the source's first or last centre) and the float32 weight of
    the one after."""
    u = (start + np.arange(n) + 0.5) / k - 0.5
    left = np.floor(u).astype(np.int64)
    return np.clip(left, 0, size - 1), np.clip(left + 1, 0, size - 1), (u - left).astype("float32")


def _quiet_in_memory_warning() -> None:
    """Ignore rasterio's NotGeoreferencedWarning ("Dataset has no geotransform...") from `reproject`: it is about
    the in-memory datasets it wraps around numpy arrays, never about a file, whose grid `_read_onto` passes. A
    process-wide filter (the reads run in threads, where catch_warnings is not safe), added again when missing
    (pytest and the QGIS console reset the filters)."""
    for action, message, category, module, _line in warnings.filters:  # the filter that decides it, if any
        if (issubclass(NotGeoreferencedWarning, category) and (module is None or module.match("rasterio.warp"))
                and (message is None or message.match("Dataset has no geotransform"))):
            if action == "ignore":
                return
            break
    warnings.filterwarnings("ignore", category=NotGeoreferencedWarning, module=_WARP_MODULE)


_WARP_MODULE = r"rasterio\.warp"
_quiet_in_memory_warning()

EXACT_IN_FLOAT32 = {"uint8", "int8", "uint16", "int16", "float32"}  # file types float32 holds exactly
# a window's files are read by this many threads (GDAL decodes and warps, and numpy rescales, without the GIL)
READ_THREADS = max(1, min(4, os.cpu_count() or 1))


CACHE_MB = 256  # a SeriesReader's GDAL block cache: enough for tiled inputs, whatever their size
CACHE_SHARE = 0.25  # striped inputs may raise it to this share of the machine's memory (strip_cache_mb)


def strip_cache_mb(inv: Inventory, rows: int, across: int, s1: bool = True) -> tuple[int, int, list[str]]:
    """(the GDAL block cache in MB for reading windows of `rows` rows of the grid in row-major order, `across` windows
    to a row; the MB it would take; the striped files' names). CACHE_MB, plus, when a row holds several windows, for
    each file stored in strips shorter than a window (as SNAP and many GDAL exports write them; the files behind a VRT
    or an image read from several files count as themselves), the decoded strips one row of windows covers: every
    window of that row reads them again, and decodes them again once they left the cache. At most CACHE_SHARE of the
    memory."""
    strips: dict[str, int] = {}
    if across > 1:
        infos = [*inv.s2, *inv.masks.values(), *(inv.s1 if s1 else [])]
        files = dict.fromkeys(f for info in infos for f in (info.files or _sources(info.path)))
        strips = {f: n for f in files if (n := _strip_bytes(f, inv.grid, rows))}
    wanted = CACHE_MB + int(np.ceil(sum(strips.values()) / 2**20))
    names = [os.path.basename(f) for f in strips]
    return min(wanted, max(CACHE_MB, int(_memory_mb() * CACHE_SHARE))), wanted, names


def _sources(path: str) -> list[str]:
    """The files whose blocks a read of `path` decodes: a VRT's sources, else the file itself."""
    return (vrt_sources(path) or [path]) if path.lower().endswith(".vrt") else [path]


def _strip_bytes(path: str, grid: Grid, rows: int) -> int:
    """The decoded bytes of the strips a window of `rows` rows of `grid` covers in a file stored in strips (blocks as
    wide as the file, fewer rows than the window); 0 for a tiled file, or one that cannot be read."""
    try:
        with rasterio.open(path) as ds:
            (block_rows, block_cols), width, count, dtype = ds.block_shapes[0], ds.width, ds.count, ds.dtypes[0]
            same_crs = ds.crs is not None and canonical_wkt(ds.crs.to_wkt()) == grid.crs_wkt
            res = abs(ds.transform.e)
    except (RasterioError, OSError):
        return 0
    file_rows = int(np.ceil(rows * (grid.res / res if same_crs and res else 1.0)))
    if block_cols < width or block_rows >= file_rows:
        return 0
    return (file_rows + block_rows) * width * count * np.dtype(dtype).itemsize


def _memory_mb() -> int:
    """The machine's physical memory in MB: POSIX's sysconf, Windows' GlobalMemoryStatusEx (8 GB where neither
    answers)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    except (AttributeError, ValueError, OSError):  # not a POSIX system
        pass
    try:
        import ctypes

        class MemoryStatusEx(ctypes.Structure):  # MEMORYSTATUSEX, winbase.h
            _fields_ = [("dwLength", ctypes.c_uint32), ("dwMemoryLoad", ctypes.c_uint32),
                        *((name, ctypes.c_uint64) for name in ("ullTotalPhys", "ullAvailPhys", "ullTotalPageFile",
                                                               "ullAvailPageFile", "ullTotalVirtual",
                                                               "ullAvailVirtual", "ullAvailExtendedVirtual"))]

        status = MemoryStatusEx(dwLength=ctypes.sizeof(MemoryStatusEx))
        if ctypes.windll.kernel32.GlobalMemoryStatusEx(ctypes.byref(status)) and status.ullTotalPhys:
            return status.ullTotalPhys // 2**20
    except (AttributeError, OSError):  # no windll: neither POSIX nor Windows
        pass
    return 8192


class _GdalCache:
    """GDAL's block cache size, which is the process's (QGIS renders with it too): while readers are open, the largest
    size one of them asked for (a bounded cache keeps a run's memory flat however large the rasters are); the size
    from before the first again once the last has closed. Readers that overlap (a run, and the dialog's checks) never
    undo one another's size."""

    def __init__(self):
        self._lock = threading.Lock()
        self._asked: dict[int, int] = {}  # ticket -> bytes
        self._tickets = 0
        self._before = 0

    def ask(self, nbytes: int) -> int:
        """Raise the cache to at least `nbytes` until `release` of the ticket returned."""
        from rasterio.env import get_gdal_config

        with self._lock:
            if not self._asked:
                self._before = int(get_gdal_config("GDAL_CACHEMAX") or 0)
            self._tickets += 1
            self._asked[self._tickets] = int(nbytes)
            self._apply()
            return self._tickets

    def release(self, ticket: int) -> None:
        with self._lock:
            if self._asked.pop(ticket, None) is not None:
                self._apply()

    def _apply(self) -> None:
        from rasterio.env import set_gdal_config

        set_gdal_config("GDAL_CACHEMAX", max(self._asked.values()) if self._asked else self._before)


_CACHE = _GdalCache()


class SeriesReader(AbstractContextManager):
    """Keeps the series' files open while windows are read (`s1` False: the S1 files are not read, for a
    method that does not use them; its stacks then hold no S1 acquisition)."""

    def __init__(self, inv: Inventory, cache_mb: int = CACHE_MB, s1: bool = True, threads: int | None = None):
        self.inv = inv
        self.s1 = s1
        # (thread, path) -> the file open in that thread: a dataset is never used by two threads
        self._open: dict[tuple[int, str], rasterio.io.DatasetReader] = {}
        self._pools: list[ThreadPoolExecutor] = []  # read_tiles' threads, finished before the files close
        # read_window's reader threads: file k of a window always goes to reader k % n, so each file is opened
        # once, whichever thread asks for the window
        self._readers = [ThreadPoolExecutor(1, thread_name_prefix=f"densify-read-{k}")
                         for k in range(max(1, threads or READ_THREADS))]
        # GDAL's block cache: `cache_mb`, or more while a reader that asked for more is open (_GdalCache). Not
        # GDAL_NUM_THREADS: GDAL 3.6's multi-threaded GeoTIFF decoding returns a corrupt block's bytes without an error.
        self._cache = _CACHE.ask(cache_mb * 2**20)
        self._env = rasterio.Env()  # rasterio's environment while open: GDAL's messages go to Python's logging
        self._env.__enter__()

    def _ds(self, path: str):
        key = (threading.get_ident(), path)
        if key not in self._open:
            self._open[key] = rasterio.open(path)
        return self._open[key]

    def close(self) -> None:
        for pool in self._pools:  # a read_tiles left unfinished (an error or cancel in the caller's loop)
            pool.shutdown(cancel_futures=True)
        for pool in self._readers:
            pool.shutdown(cancel_futures=True)
        for ds in self._open.values():
            ds.close()
        self._open.clear()
        if self._env is not None:
            self._env.__exit__(None, None, None)
            self._env = None
        if self._cache is not None:
            _CACHE.release(self._cache)
            self._cache = None

    def __exit__(self, *exc) -> None:
        self.close()

    def read_onto(self, info: RasterInfo, dst: Grid, indexes: list[int], resampling: Resampling,
                  linear_from_db: bool = False, out: np.ndarray | None = None) -> np.ndarray:
        """(len(indexes), h, w) float32 of a file on grid dst, NaN for nodata and outside (into `out`
        when given).

        A file whose header reads but whose pixels do not (truncated, corrupt blocks, gone from a
        network share) raises an InputError naming it."""
        if out is None:
            out = np.empty((len(indexes), dst.height, dst.width), dtype="float32")
        try:
            return self._read_onto(info, dst, indexes, resampling, linear_from_db, out)
        except (RasterioError, OSError) as exc:  # rasterio's RasterioIOError is an OSError
            raise InputError(Problem(info.path, f"cannot read its pixels ({exc})")) from exc

    def _read_onto(self, info: RasterInfo, dst: Grid, indexes: list[int], resampling: Resampling,
                   linear_from_db: bool, out: np.ndarray) -> np.ndarray:
        ds = self._ds(info.path)
        win = _aligned_window(info.grid, dst)
        if win is not None:
            # clip to the file and place the part that exists
            c0, r0 = max(0, win.col_off), max(0, win.row_off)
            c1, r1 = min(ds.width, win.col_off + win.width), min(ds.height, win.row_off + win.height)
            inside = (c0, r0, c1, r1) == (win.col_off, win.row_off, win.col_off + win.width, win.row_off + win.height)
            if inside and {ds.dtypes[i - 1] for i in indexes} <= EXACT_IN_FLOAT32:
                # the whole window in the file: GDAL converts straight into `out` (no copy, no NaN fill)
                ds.read(indexes, window=win, out=out)
                return self._values(info, out, linear_from_db)
            out.fill(np.nan)
            if c1 > c0 and r1 > r0:
                data = ds.read(indexes, window=Window(c0, r0, c1 - c0, r1 - r0)).astype("float32")
                out[:, r0 - win.row_off:r1 - win.row_off, c0 - win.col_off:c1 - win.col_off] = \
                    self._values(info, data, linear_from_db)
            return out
        sub = _subdivision(info.grid, dst)
        if (sub is not None and sub[0] > 1 and resampling == Resampling.bilinear
                and self._upsample(ds, info, indexes, sub, linear_from_db, out)):
            return out
        out.fill(np.nan)
        if sub is not None and resampling == Resampling.nearest:  # e.g. a 20 m mask on a 10 m grid: repeat pixels
            k, col, row = sub
            rows, cols = (row + np.arange(dst.height)) // k, (col + np.arange(dst.width)) // k
            rin, cin = (rows >= 0) & (rows < ds.height), (cols >= 0) & (cols < ds.width)
            if rin.any() and cin.any():
                r0, r1, c0, c1 = rows[rin].min(), rows[rin].max() + 1, cols[cin].min(), cols[cin].max() + 1
                data = ds.read(indexes, window=Window(c0, r0, c1 - c0, r1 - r0)).astype("float32")
                data = self._nodata_to_nan(info.nodata, data)
                out[np.ix_(np.arange(len(indexes)), np.flatnonzero(rin), np.flatnonzero(cin))] = \
                    data[np.ix_(np.arange(len(indexes)), rows[rin] - r0, cols[cin] - c0)]
            return out
        left, bottom, right, top = dst.bounds
        if info.grid.crs_wkt != dst.crs_wkt:
            left, bottom, right, top = transform_bounds(dst.crs_wkt, info.grid.crs_wkt, left, bottom,
                                                        right, top, densify_pts=21)
        src_win = from_bounds(left, bottom, right, top, ds.transform)
        src_win = src_win.round_offsets(op="floor").round_lengths(op="ceil")
        col0, row0 = max(0, int(src_win.col_off) - 2), max(0, int(src_win.row_off) - 2)
        col1 = min(ds.width, int(src_win.col_off + src_win.width) + 2)
        row1 = min(ds.height, int(src_win.row_off + src_win.height) + 2)
        if col1 <= col0 or row1 <= row0:
            return out
        read_win = Window(col0, row0, col1 - col0, row1 - row0)
        data = self._values(info, ds.read(indexes, window=read_win).astype("float32"), linear_from_db)
        _quiet_in_memory_warning()
        reproject(data, out, src_transform=ds.window_transform(read_win), src_crs=info.grid.crs_wkt,
                  src_nodata=np.nan, dst_transform=dst.transform, dst_crs=dst.crs_wkt, dst_nodata=np.nan,
                  resampling=resampling, num_threads=2)
        return out

    def _upsample(self, ds, info: RasterInfo, indexes: list[int], sub: tuple[int, int, int], linear_from_db: bool,
                  out: np.ndarray) -> bool:
        """Bilinear upsampling by an integer factor onto an aligned grid (e.g. S1 at 20 m onto the 10 m S2
        grid) in numpy, when the grid lies inside the file and every source pixel it needs is valid: what
        GDAL's warper computes there (within float32 rounding; at the file's edge, the edge pixel's value),
        in a fraction of its time. False (nothing written) otherwise: the caller warps."""
        k, col, row = sub
        h, w = out.shape[1:]
        if col < 0 or row < 0 or col + w > k * ds.width or row + h > k * ds.height:
            return False
        c0, c1, cf = _bilinear_axis(col, w, k, ds.width)
        r0, r1, rf = _bilinear_axis(row, h, k, ds.height)
        window = Window(int(c0[0]), int(r0[0]), int(c1[-1] - c0[0]) + 1, int(r1[-1] - r0[0]) + 1)
        data = self._values(info, ds.read(indexes, window=window).astype("float32"), linear_from_db)
        if np.isnan(data).any():
            return False
        (c0, c1), (r0, r1) = (c0 - c0[0], c1 - c0[0]), (r0 - r0[0], r1 - r0[0])
        cols = data[:, :, c0] * (1 - cf) + data[:, :, c1] * cf
        np.add(cols[:, r0, :] * (1 - rf)[:, None], cols[:, r1, :] * rf[:, None], out=out)
        return True

    @classmethod
    def _values(cls, info: RasterInfo, data: np.ndarray, linear_from_db: bool) -> np.ndarray:
        """float32 `data` of the file, in place: NaN for its nodata, and linear power where it holds dB."""
        cls._nodata_to_nan(info.nodata, data)
        if linear_from_db:
            np.power(np.float32(10.0), data / np.float32(10.0), out=data)
        return data

    @staticmethod
    def _nodata_to_nan(nodata: float | None, data: np.ndarray) -> np.ndarray:
        """NaN where `data` is the file's nodata value (the inventory's: 0 for integer S2 without one)."""
        if nodata is not None and not np.isnan(nodata):
            np.copyto(data, np.float32(np.nan), where=data == nodata)
        return data

    def read_s2(self, info: RasterInfo, dst: Grid, out: np.ndarray | None = None) -> np.ndarray:
        """(B, h, w) reflectance in the inventory's band order, NaN where not clear (into `out` when
        given)."""
        idx = [info.bands.index(b) + 1 for b in self.inv.bands]
        refl = self.read_onto(info, dst, idx, Resampling.bilinear, out=out)
        refl *= info.scale  # in place: the same float32 values as refl * scale + offset
        if info.offset:
            refl += info.offset
        bad = ~np.isfinite(refl).all(axis=0)
        mask = self.inv.masks.get(info.path)
        if mask is not None:
            m = self.read_onto(mask, dst, [mask.mask_band or 1], Resampling.nearest)[0]
            bad |= ~clear_from_mask(mask.mask_kind, m)
        np.copyto(refl, np.float32(np.nan), where=bad)
        return refl

    def read_s1(self, info: RasterInfo, dst: Grid) -> np.ndarray:
        """(2, h, w) VV, VH backscatter in dB, resampled in linear power."""
        idx = [info.bands.index("VV") + 1, info.bands.index("VH") + 1]
        # upsampling within one CRS (20 m -> 10 m): bilinear; otherwise area average; both in linear power
        same_crs = info.grid.crs_wkt == dst.crs_wkt
        resampling = Resampling.bilinear if same_crs and info.grid.res > dst.res * 1.01 else Resampling.average
        lin = self.read_onto(info, dst, idx, resampling, linear_from_db=info.s1_db)
        with np.errstate(divide="ignore", invalid="ignore"):
            return (10.0 * np.log10(lin)).astype("float32")

    def read_window(self, dst: Grid) -> Stack:
        """The whole series on grid dst (without S1 when this reader does not read it), its files shared
        among the reader threads; the same arrays as reading them one by one. A file's read error is raised
        here (the first file's in the series' order when several fail)."""
        inv = self.inv
        s2 = np.empty((len(inv.s2), len(inv.bands), dst.height, dst.width), "float32")
        s1_files = inv.s1 if self.s1 else []
        s1 = np.empty((len(s1_files), 2, dst.height, dst.width), "float32")

        def s1_into(info: RasterInfo, t: int) -> None:
            s1[t] = self.read_s1(info, dst)

        jobs: list[Callable[[], object]] = [
            *(lambda info=info, t=t: self.read_s2(info, dst, out=s2[t]) for t, info in enumerate(inv.s2)),
            *(lambda info=info, t=t: s1_into(info, t) for t, info in enumerate(s1_files))]
        n = len(self._readers)
        parts = [self._readers[k].submit(self._in_env, list(range(k, len(jobs), n)), jobs)
                 for k in range(min(n, len(jobs)))]
        failed = [f.result() for f in parts]  # every reader has ended: none still writes into s2, s1
        first = min((f for f in failed if f is not None), key=lambda f: f[0], default=None)
        if first is not None:
            raise first[1]
        return Stack(s2, inv.s2_days, s1, inv.s1_days[:len(s1_files)], list(inv.bands), s2_angles(inv))

    def _in_env(self, order: list[int], jobs: list[Callable[[], object]]) -> tuple[int, BaseException] | None:
        """Run jobs[k] for k in `order`, in this thread, in a rasterio environment of its own (rasterio's hold per
        thread); the first failing job's number and error, after which this thread reads no more."""
        with rasterio.Env():
            for k in order:
                try:
                    jobs[k]()
                except Exception as exc:  # noqa: BLE001 - raised by read_window, in the caller's thread
                    return k, exc
        return None

    def read_tile(self, tile: Tile, grid: Grid | None = None) -> Stack:
        """The extended window of a tile of `grid` (default: the inventory's)."""
        return self.read_window((grid or self.inv.grid).sub(tile.row0, tile.col0, tile.width0, tile.height0))

    def read_tiles(self, tiles: Sequence[Tile], grid: Grid | None = None) -> Iterator[tuple[Tile, Stack]]:
        """Each tile (of `grid`, default: the inventory's) with its stack, in order. The next tile is read in a
        background thread while the caller works on this one (GDAL and numpy release the GIL): reading overlaps
        computing, with at most two stacks in memory. One tile is read at a time (by read_window's reader threads,
        each file always by the same one, so no open file is shared); a read's error is raised here, and closing the
        generator (a cancel) waits for the read under way."""
        with ThreadPoolExecutor(1, thread_name_prefix="densify-read") as pool:  # it waits for the readers
            self._pools.append(pool)
            try:
                ahead = pool.submit(self.read_tile, tiles[0], grid) if tiles else None
                for n, tile in enumerate(tiles):
                    stack = ahead.result()
                    ahead = pool.submit(self.read_tile, tiles[n + 1], grid) if n + 1 < len(tiles) else None
                    yield tile, stack
            finally:
                pool.shutdown(cancel_futures=True)  # waits for a read under way
                self._pools.remove(pool)


def s2_angles(inv: Inventory) -> np.ndarray:
    """(T2, 4) sun zenith, sun azimuth, view zenith, view azimuth (degrees, NaN unknown)."""
    keys = ("MEAN_SUN_ZENITH_ANGLE", "MEAN_SUN_AZIMUTH_ANGLE", "MEAN_VIEW_ZENITH_ANGLE",
            "MEAN_VIEW_AZIMUTH_ANGLE")
    out = np.full((len(inv.s2), 4), np.nan)
    for t, info in enumerate(inv.s2):
        for k, key in enumerate(keys):
            try:
                out[t, k] = float(info.tags.get(key, "nan"))
            except ValueError:
                pass
    return out


def read_clear_fraction(inv: Inventory, info: RasterInfo, max_size: int = 128) -> float:
    """Fraction of clear pixels of one S2 acquisition, read at reduced resolution (at most `max_size` px a side);
    on a grid wider or higher than LARGE_PX, from `spread_windows` at full resolution instead: read at reduced
    resolution, the grid of a full tile without overviews is decoded whole (seconds and gigabytes per image)."""
    g = inv.grid
    if max(g.width, g.height) > LARGE_PX:
        parts = [g.sub(int(w.row_off), int(w.col_off), int(w.width), int(w.height))
                 for w in spread_windows(g.width, g.height)]
    else:
        f = max(1, int(np.ceil(max(g.width, g.height) / max_size)))
        parts = [Grid(g.crs_wkt, g.transform * g.transform.scale(f, f), max(1, g.width // f), max(1, g.height // f))]
    clear = 0
    with SeriesReader(inv, s1=False) as r:
        for part in parts:
            clear += int(np.isfinite(r.read_s2(info, part)).all(axis=0).sum())
    return clear / sum(p.width * p.height for p in parts)


def any_clear(inv: Inventory, info: RasterInfo) -> bool:
    """Whether one S2 acquisition has a clear pixel on the grid, at full resolution, by strips of STRIP_PX rows:
    its mask first (a full tile's SCL reads in a fraction of a second), the image only in strips where the mask
    shows clear pixels, up to the first clear pixel found."""
    g = inv.grid
    mask = inv.masks.get(info.path)
    with SeriesReader(inv, s1=False) as r:
        for row in range(0, g.height, STRIP_PX):
            strip = g.sub(row, 0, g.width, min(STRIP_PX, g.height - row))
            if mask is not None:
                m = r.read_onto(mask, strip, [mask.mask_band or 1], Resampling.nearest)[0]
                if not clear_from_mask(mask.mask_kind, m).any():
                    continue
            if np.isfinite(r.read_s2(info, strip)).all(axis=0).any():
                return True
    return False


STRIP_PX = 256  # any_clear reads the grid by strips of this many rows


def sample_stack(inv: Inventory, reader: SeriesReader, grid: Grid | None = None, n_windows: int = 6, size: int = 64,
                 seed: int = 0) -> Stack:
    """A pixel sample of the whole series on `grid` (default: the inventory's; random windows side by side) for
    calibration."""
    g = grid or inv.grid
    if g.width * g.height <= n_windows * size * size:
        return reader.read_window(g)
    rng = np.random.default_rng(seed)
    size = min(size, g.width, g.height)
    parts = []
    for _ in range(n_windows):
        r = int(rng.integers(0, g.height - size + 1))
        c = int(rng.integers(0, g.width - size + 1))
        parts.append(reader.read_window(g.sub(r, c, size, size)))
    first = parts[0]
    return Stack(np.concatenate([p.s2 for p in parts], axis=-1), first.s2_days,
                 np.concatenate([p.s1 for p in parts], axis=-1), first.s1_days, first.bands, first.angles)


def load_stack(s2: list[str], s1: list[str] | None = None, masks: list[str] | None = None,
               band_order: list[str] | None = None) -> Stack:
    """The whole series of a (small) area in memory: for evaluation and training."""
    inv = build(s2, s1 or [], masks or [], band_order=band_order)
    with SeriesReader(inv) as reader:
        stack = reader.read_window(inv.grid)
    stack.warnings = list(inv.warnings)  # the inventory's (no masks, swapped sensors, ...): for the shells
    return stack
