"""Reading the real series onto the S2 10 m grid: S1 20 m resampling and reprojection, SCL masks, nodata."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import rasterio
from helpers import blocks_read, craft
from rasterio.warp import Resampling, calculate_default_transform, reproject
from sentinel_densify.core import inventory
from sentinel_densify.core.errors import InputError
from sentinel_densify.core.reader import SeriesReader, load_stack


def warp_copy(src: Path, dst: Path, crs: str) -> Path:
    """A real S1 file warped to another CRS (nearest neighbour, so values stay real)."""
    with rasterio.open(src) as ds:
        transform, width, height = calculate_default_transform(ds.crs, crs, ds.width, ds.height, *ds.bounds)
        out = np.full((ds.count, height, width), np.nan, "float32")
        reproject(ds.read(), out, src_transform=ds.transform, src_crs=ds.crs, dst_transform=transform,
                  dst_crs=crs, src_nodata=np.nan, dst_nodata=np.nan, resampling=Resampling.nearest)
        return craft(src, dst, data=out, crs=crs, transform=transform, width=width, height=height)


@pytest.fixture(scope="module")
def files(uds_dir):
    s2 = sorted((uds_dir / "S2").glob("*_L2A_10m.tif"))
    scl = sorted((uds_dir / "S2").glob("*_SCL_20m.tif"))
    s1 = sorted((uds_dir / "S1").glob("*.tif"))
    return s2, scl, s1


def _inv(s2, s1=(), masks=()):
    return inventory.build([str(p) for p in s2], [str(p) for p in s1], [str(p) for p in masks])


def _blocks(a: np.ndarray) -> np.ndarray:
    """Mean of each 2x2 block of (..., 2h, 2w)."""
    return a.reshape(*a.shape[:-2], a.shape[-2] // 2, 2, a.shape[-1] // 2, 2).mean(axis=(-3, -1))


def test_s1_20m_onto_10m_grid(files):
    s2, _, s1 = files
    inv = _inv(s2[40:41], s1[60:62])
    with rasterio.open(s1[60]) as ds:
        native = ds.read()
    with SeriesReader(inv) as r:
        on_grid = r.read_s1(inv.s1[0], inv.grid)
    assert on_grid.shape == (2, 64, 64) and on_grid.dtype == np.float32
    assert np.isfinite(on_grid).all()
    assert native.min() - 0.5 <= on_grid.min() and on_grid.max() <= native.max() + 0.5
    lin_native = np.power(10.0, native / 10.0)
    lin_blocks = _blocks(np.power(10.0, on_grid / 10.0))
    ratio = lin_blocks[:, 1:-1, 1:-1] / lin_native[:, 1:-1, 1:-1]  # interior blocks
    assert np.median(np.abs(ratio - 1)) < 0.12
    assert np.corrcoef(lin_blocks.ravel(), lin_native.ravel())[0, 1] > 0.9


@pytest.mark.parametrize("crs", ["EPSG:3857", "EPSG:4326"])
def test_s1_from_another_crs_lands_on_the_grid(files, tmp_path, crs):
    s2, _, s1 = files
    warped = warp_copy(s1[60], tmp_path / s1[60].name, crs)
    with rasterio.open(warped) as ds:
        assert ds.crs.to_string() == crs
    inv_same = _inv(s2[40:41], s1[60:61])
    inv_other = _inv(s2[40:41], [warped])
    with SeriesReader(inv_same) as r:
        same = r.read_s1(inv_same.s1[0], inv_same.grid)
    with SeriesReader(inv_other) as r:
        other = r.read_s1(inv_other.s1[0], inv_other.grid)
    assert other.shape == (2, 64, 64)
    inner = (slice(None), slice(4, -4), slice(4, -4))  # the warped footprint may clip the border
    assert np.isfinite(other[inner]).mean() > 0.95
    diff = np.abs(other - same)[inner]
    assert np.nanmedian(diff) < 1.0  # dB
    ok = np.isfinite(other[inner]) & np.isfinite(same[inner])
    assert np.corrcoef(other[inner][ok], same[inner][ok])[0, 1] > 0.9


def test_scl_20m_masks_s2_10m_by_blocks(files):
    s2, scl, _ = files
    with rasterio.open(scl[14]) as ds:  # 2017-11-02, partly cloudy
        classes = ds.read(1)
    clear20 = np.isin(classes, inventory.SCL_CLEAR)
    assert 0.2 < clear20.mean() < 0.9
    inv = _inv(s2[14:15], masks=scl[14:15])
    with SeriesReader(inv) as r:
        refl = r.read_s2(inv.s2[0], inv.grid)
    assert refl.shape == (10, 64, 64)
    expected = np.kron(clear20, np.ones((2, 2), bool))
    np.testing.assert_array_equal(np.isfinite(refl).all(axis=0), expected)
    assert (np.isnan(refl).all(axis=0) == ~expected).all()  # every band masked together
    with rasterio.open(s2[14]) as ds:
        dn = ds.read()
    np.testing.assert_allclose(refl[:, expected], dn[:, expected] * 1e-4, rtol=1e-6)


def test_nodata_kept_as_nan(files, tmp_path):
    s2, _, s1 = files
    with rasterio.open(s2[40]) as ds:
        dn = ds.read()
    dn[:, 10:20, 30:40] = 0  # the file's nodata value
    holed = craft(s2[40], tmp_path / s2[40].name, data=dn)
    with rasterio.open(s1[60]) as ds:
        db = ds.read()
    db[:, 0:5, 0:5] = np.nan
    s1_holed = craft(s1[60], tmp_path / s1[60].name, data=db)
    inv = _inv([holed], [s1_holed])
    with SeriesReader(inv) as r:
        refl = r.read_s2(inv.s2[0], inv.grid)
        back = r.read_s1(inv.s1[0], inv.grid)
    assert np.isnan(refl[:, 10:20, 30:40]).all()
    assert np.isfinite(refl).all(axis=0).sum() == 64 * 64 - 100
    assert np.isnan(back[:, 0:8, 0:8]).all()
    assert np.isfinite(back[:, 16:, 16:]).all()


def test_load_stack_of_a_subset(uds_subset):
    stack = load_stack([str(p) for p in uds_subset["s2"]], [str(p) for p in uds_subset["s1"]],
                       [str(p) for p in uds_subset["masks"]])
    assert stack.s2.shape == (20, 10, 64, 64)
    assert stack.s1.shape == (len(uds_subset["s1"]), 2, 64, 64)
    assert np.all(np.diff(stack.s2_days) > 0) and np.all(np.diff(stack.s1_days) > 0)
    clear = stack.valid.reshape(20, -1).mean(axis=1)
    assert clear.min() < 0.5 < clear.max()  # cloudy and clear dates both present
    refl = stack.s2[stack.valid[:, None].repeat(10, 1)]
    assert 0 <= np.percentile(refl, 1) and np.percentile(refl, 99) < 1.0
    assert -35 < np.nanmin(stack.s1) and np.nanmax(stack.s1) < 15
    assert np.isfinite(stack.angles).all()


def test_unreadable_pixels_name_the_file(files, tmp_path, corrupt_copy):
    s2, scl, s1 = files
    bad = corrupt_copy(s2[40], tmp_path / s2[40].name)
    inv = _inv([s2[39], bad], [s1[60]])  # the header is fine: the inventory accepts it
    with pytest.raises(InputError) as err, SeriesReader(inv) as r:
        r.read_window(inv.grid)
    assert bad.name in str(err.value) and "cannot read its pixels" in str(err.value)


def test_a_reader_without_s1_never_reads_it(files, tmp_path, corrupt_copy):
    """SeriesReader(s1=False) (for methods that do not use S1): the same S2 as a full reader, no S1 acquisition
    in its stacks, and an S1 file whose pixels cannot be read is not touched; a full reader names that file."""
    s2, scl, s1 = files
    bad = corrupt_copy(s1[60], tmp_path / s1[60].name)
    inv = _inv(s2[38:41], [s1[59], bad], scl[38:41])
    full = load_stack([str(p) for p in s2[38:41]], [str(s1[59])], [str(p) for p in scl[38:41]])
    with SeriesReader(inv, s1=False) as r:
        stack = r.read_window(inv.grid)
        opened = {path for _, path in r._open}
    assert np.array_equal(stack.s2, full.s2, equal_nan=True) and np.array_equal(stack.s2_days, full.s2_days)
    assert stack.s1.shape == (0, 2, 64, 64) and stack.s1_days.size == 0
    assert not opened & {str(s1[59]), str(bad)} and len(opened) == 6  # three S2 files and their masks
    with pytest.raises(InputError, match=f"{bad.name}: cannot read its pixels"), SeriesReader(inv) as r:
        r.read_window(inv.grid)


def test_a_window_s_files_are_read_by_several_threads_into_the_same_arrays(files, tmp_path, corrupt_copy):
    """read_window shares a window's files among its reader threads: the arrays are those of reading them one by
    one in the caller's thread (S2 with 20 m masks, S1 at 20 m), each file is opened by one thread only, on
    every window; when two files fail, the one first in the series is named, whichever thread read it."""
    from sentinel_densify.core.grid import Grid

    s2, scl, s1 = files
    inv = _inv(s2[30:40], s1[50:57], scl[30:40])
    g = inv.grid
    windows = [g, Grid(g.crs_wkt, g.window_transform(5, 9), 40, 31)]
    with SeriesReader(inv, threads=1) as one, SeriesReader(inv, threads=3) as three:
        for dst in windows:
            want, got = one.read_window(dst), three.read_window(dst)
            assert np.array_equal(got.s2, want.s2, equal_nan=True) and np.array_equal(got.s1, want.s1, equal_nan=True)
            assert np.isfinite(got.s2).any() and np.isfinite(got.s1).all()
        threads = {thread for thread, _ in three._open}
        paths = [path for _, path in three._open]
        alone = {thread for thread, _ in one._open}
        one.read_s2(inv.s2[0], g)  # read_s2 itself reads in the caller's thread
        caller = {thread for thread, _ in one._open} - alone
    assert len(threads) == 3 and sorted(paths) == sorted({str(p) for p in s2[30:40] + scl[30:40] + s1[50:57]})
    assert len(alone) == 1 and caller == {threading.get_ident()} and not alone & caller

    # with 2 threads, S2 file 1 goes to the second reader and file 2 to the first: file 1 is named all the same
    first, second = (corrupt_copy(s2[k], tmp_path / s2[k].name) for k in (31, 32))
    inv = _inv([s2[30], first, second, s2[33]], s1[50:52])
    with pytest.raises(InputError) as err, SeriesReader(inv, threads=2) as r:
        r.read_window(inv.grid)
    assert first.name in str(err.value) and second.name not in str(err.value)


class _Counted(SeriesReader):
    """SeriesReader counting the windows its numpy upsampling took (True) or left to GDAL (False)."""

    def __init__(self, inv, fast: bool = True):
        super().__init__(inv)
        self.fast, self.taken = fast, []

    def _upsample(self, *args) -> bool:
        done = self.fast and super()._upsample(*args)
        self.taken.append(done)
        return done


def test_s1_upsampling_in_numpy_equals_gdals_warp(files, tmp_path):
    """S1 at 20 m onto the aligned 10 m grid is upsampled in numpy, as GDAL's bilinear warp does it (edges
    included); a window reaching outside the file, or needing a source pixel without value, is left to GDAL."""
    from sentinel_densify.core.grid import Grid

    s2, _, s1 = files
    with rasterio.open(s1[60]) as ds:
        db = ds.read()
    db[:, 5, 5] = np.nan  # needed by every window but the far edge's
    holed = craft(s1[60], tmp_path / s1[60].name, data=db)
    inv = _inv(s2[40:41], [s1[61], holed])
    g = inv.grid
    windows = {"whole": (0, 0, 64, 64), "corner": (0, 0, 37, 41), "far edge": (31, 35, 29, 33),
               "inside": (5, 3, 20, 17), "beyond the file": (50, 50, 20, 20)}
    for name, (row, col, w, h) in windows.items():
        dst = Grid(g.crs_wkt, g.window_transform(row, col), w, h)
        with _Counted(inv) as fast, _Counted(inv, fast=False) as warp:
            got = [fast.read_s1(info, dst) for info in inv.s1]
            want = [warp.read_s1(info, dst) for info in inv.s1]
        with_hole = name in ("whole", "corner", "inside")
        assert fast.taken == [name != "beyond the file" and not (info.path == str(holed) and with_hole)
                              for info in inv.s1], name
        for a, b in zip(got, want, strict=True):
            np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
            np.testing.assert_allclose(a, b, atol=2e-5, rtol=0)
            assert np.isfinite(a).mean() > 0.4, name  # beyond the file: 14 x 14 of 20 x 20


class _Logged(SeriesReader):
    """SeriesReader logging each tile it starts to read (position and thread), with an event per tile started."""

    def __init__(self, inv, fail_at: int | None = None):
        import threading

        super().__init__(inv)
        self.fail_at, self.log = fail_at, []
        self.started = [threading.Event() for _ in range(16)]

    def read_tile(self, tile, grid=None):
        import threading

        self.log.append((tile.row0, tile.col0, threading.current_thread().name))
        self.started[len(self.log) - 1].set()
        if len(self.log) - 1 == self.fail_at:
            raise InputError([])
        return super().read_tile(tile, grid)


def test_tiles_are_read_ahead_in_a_background_thread_with_the_same_pixels(files):
    """read_tiles gives every tile's stack in order, the pixels read_tile gives; the next tile is read in
    another thread while the caller holds this one, never more than one ahead."""
    from sentinel_densify.core.grid import tiles

    s2, scl, s1 = files
    inv = _inv(s2[36:42], s1[56:62], scl[36:42])
    all_tiles = list(tiles(inv.grid, 32, halo=5))
    assert len(all_tiles) == 4
    with _Logged(inv) as r:
        got = []
        for n, (tile, stack) in enumerate(r.read_tiles(all_tiles)):
            got.append((tile, stack))
            assert len(r.log) <= n + 2  # this tile and at most the next one read
            if n + 1 < len(all_tiles):  # the next tile's read starts while the caller holds this one
                assert r.started[n + 1].wait(60), f"tile {n + 1} not read ahead"
        log = r.log
    with SeriesReader(inv) as r:
        want = [r.read_tile(t) for t in all_tiles]
    assert [t for t, _ in got] == all_tiles
    for (_, a), b in zip(got, want, strict=True):
        assert a.s1.shape[0] == 6 and np.isfinite(a.s1).mean() > 0.9
        for name in ("s2", "s1", "s2_days", "s1_days", "angles"):
            assert np.array_equal(getattr(a, name), getattr(b, name), equal_nan=True), name
    assert [(t.row0, t.col0) for t in all_tiles] == [entry[:2] for entry in log]
    assert all(name.startswith("densify-read") for *_, name in log)


def test_a_read_ahead_error_is_raised_at_its_tile_and_a_cancel_stops_reading(files):
    """A tile that cannot be read raises in the caller's loop after the tiles before it; leaving the loop early
    (a cancel, with or without closing the loop) starts no further read, and the reader closes with nothing
    still reading."""
    from sentinel_densify.core.grid import tiles

    s2, scl, s1 = files
    inv = _inv(s2[38:41], s1[58:61], scl[38:41])
    all_tiles = list(tiles(inv.grid, 32))
    with _Logged(inv, fail_at=2) as r:
        seen = []
        with pytest.raises(InputError):
            for tile, _stack in r.read_tiles(all_tiles):
                seen.append(tile)
        assert seen == all_tiles[:2] and len(r.log) == 3
    with _Logged(inv) as r:
        loop = r.read_tiles(all_tiles)
        next(loop)  # the caller cancels while working on the first tile
        loop.close()
        assert len(r.log) <= 2 and not r._pools  # the first tile and at most the one read ahead
    with pytest.raises(KeyboardInterrupt), _Logged(inv) as r:
        for _tile, _stack in r.read_tiles(all_tiles):
            assert r.started[1].wait(60)
            raise KeyboardInterrupt  # the loop is left, not closed: the reader's close waits for the read
    assert len(r.log) == 2 and not r._open


def test_reprojecting_says_nothing_about_georeferencing(files, tmp_path, densify):
    """Finding 10: rasterio's "NotGeoreferencedWarning: Dataset has no geotransform" came on stderr among densify's
    own warnings when S1 files were reprojected by the reader threads at once (rasterio 1.3's in-memory datasets
    that `reproject` wraps around numpy arrays; the files are georeferenced and the pixels the same as read one
    at a time). Neither a run nor the reader says it."""
    import warnings

    s2, scl, s1 = files
    warped = [warp_copy(p, tmp_path / "S1" / p.name, "EPSG:32632") for p in s1[56:66]]
    inv = _inv(s2[40:42], warped, scl[40:42])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with SeriesReader(inv, threads=4) as r:
            stacks = [r.read_window(inv.grid) for _ in range(5)]
    assert not [w for w in caught if "geotransform" in str(w.message)], [str(w.message) for w in caught]
    assert np.isfinite(stacks[0].s1).any() and all(np.array_equal(s.s1, stacks[0].s1, equal_nan=True) for s in stacks)
    res = densify("run", "--s2", str(s2[40]), str(s2[41]), "--mask", str(scl[40]), str(scl[41]), "--s1",
                  str(tmp_path / "S1"), "--date", "2018-03-05", "--no-lai", "--out", str(tmp_path / "out"))
    assert res.returncode == 0, res.stderr
    assert "NotGeoreferencedWarning" not in res.stderr and "geotransform" not in res.stderr, res.stderr


def test_the_clear_fraction_of_a_large_grid_is_read_in_windows(files, tmp_path, monkeypatch):
    """Read at reduced resolution, a full tile without overviews was decoded whole, in one piece: seconds and
    gigabytes per image, for each image the dialog looks at. A grid over LARGE_PX is now sampled in windows
    (a few of the file's blocks, the fraction near the truth). An image clear only away from the windows still
    counts as clear: where the windows of every image show none, any_clear searches the masks at full resolution
    and reads an image only in strips where its mask shows clear pixels (none for an overcast one)."""
    from sentinel_densify.core.reader import any_clear, read_clear_fraction

    s2 = files[0]
    n, tile, k = 2048, 256, 2048 // 64
    src = next(p for p in s2 if (rasterio.open(p).read() > 0).all())
    yy, xx = np.mgrid[0:n, 0:n]
    big = craft(src, tmp_path / "S2" / src.name, data=np.tile(rasterio.open(src).read(), (1, k, k)), width=n,
                height=n, tiled=True, blockxsize=tile, blockysize=tile)

    def mask(name: str, clear: np.ndarray) -> Path:
        with rasterio.open(big) as ds:
            profile = dict(ds.profile, count=1, dtype="uint8", nodata=None)
        path = tmp_path / name / src.name.replace("L2A_10m", "SCL_20m")
        path.parent.mkdir()
        with rasterio.open(path, "w", **profile) as out:
            out.write(np.where(clear, 4, 9).astype("uint8")[None])
            out.set_band_description(1, "SCL")
        return path

    clouds = mask("clouds", np.hypot(yy - 700, xx - 900) > 600)  # a round cloud
    inv = inventory.build([str(big)], [], [str(clouds)], check_clear=False)
    assert max(inv.grid.width, inv.grid.height) > inventory.LARGE_PX and inv.masks
    read = blocks_read(monkeypatch, big, tile)
    truth = float((np.hypot(yy - 700, xx - 900) > 600).mean())
    assert abs(read_clear_fraction(inv, inv.s2[0]) - truth) < 0.05
    assert 0 < len(set(read)) <= inventory.SAMPLED_WINDOWS[0] ** 2
    monkeypatch.undo()

    spot = mask("spot", (abs(yy - 115) < 16) & (abs(xx - 115) < 16))  # clear between the windows only
    inv = inventory.build([str(big)], [], [str(spot)], check_clear=False)
    assert read_clear_fraction(inv, inv.s2[0]) == 0
    read = blocks_read(monkeypatch, big, tile)
    assert any_clear(inv, inv.s2[0])
    assert {r for r, _ in read} == {0}  # the image read only in the strip where its mask shows the clear spot
    inventory.check_some_clear(inv)  # no error
    overcast = mask("overcast", np.zeros((n, n), bool))
    inv = inventory.build([str(big)], [], [str(overcast)], check_clear=False)
    read.clear()
    assert not any_clear(inv, inv.s2[0]) and read == []  # the mask alone says so
    monkeypatch.undo()
    with pytest.raises(InputError, match="no clear Sentinel-2 observation"):
        inventory.build([str(big)], [], [str(overcast)])


def test_striped_inputs_get_a_block_cache_for_a_row_of_windows(files, tmp_path, monkeypatch):
    """Scale audit, finding 2: the reader's GDAL block cache was 256 MB whatever the inputs, so a few striped
    full-tile S2 images (SNAP's and many GDAL exports: strips across the width, 116 MB per date for one row of
    512 px windows) no longer fit, and every window of a row decoded the same strips again (6x the reading after 6
    windows). The engine now sizes the cache to hold a row of windows' strips of every striped file (tiled files
    add nothing; nor does a grid one window wide, e.g. an extent; the files behind a VRT count), at most a quarter of
    the memory, and warns when that is not enough."""
    from osgeo import gdal
    from sentinel_densify.core import engine, reader
    from sentinel_densify.core.request import DensifyRequest

    s2, scl, _ = files
    striped = inventory.build([str(p) for p in s2[:6]], masks=[str(p) for p in scl[:6]], check_clear=False)
    per_file = []
    for i in striped.s2:  # the real S2 files are stored in strips; the SCL's blocks hold a window's 32 rows
        with rasterio.open(i.path) as ds:
            (rows, cols), width = ds.block_shapes[0], ds.width
            assert cols == width and rows < 64
            per_file.append((64 + rows) * width * ds.count * np.dtype(ds.dtypes[0]).itemsize)
    expected = reader.CACHE_MB + int(np.ceil(sum(per_file) / 2**20))
    names = [i.name for i in striped.s2]
    assert reader.strip_cache_mb(striped, 64, across=2) == (expected, expected, names) and expected > reader.CACHE_MB
    assert reader.strip_cache_mb(striped, 64, across=1) == (256, 256, [])  # one window a row: nothing read twice
    tiled = [craft(p, tmp_path / "tiled" / p.name, tiled=True, blockxsize=16, blockysize=16) for p in s2[:6]]
    assert reader.strip_cache_mb(inventory.build([str(p) for p in tiled], check_clear=False), 64, 2) == (256, 256, [])
    stacked = tmp_path / "vrt" / s2[0].name.replace(".tif", ".vrt")  # strips behind a VRT (its own blocks: 128 px)
    stacked.parent.mkdir()
    gdal.BuildVRT(str(stacked), [str(s2[0])]).FlushCache()
    behind = inventory.build([str(stacked)], check_clear=False)
    assert reader.strip_cache_mb(behind, 64, 2)[1] == reader.CACHE_MB + int(np.ceil(per_file[0] / 2**20))

    used = []

    class Recording(reader.SeriesReader):
        def __init__(self, inv, cache_mb=reader.CACHE_MB, **kwargs):
            used.append(cache_mb)
            super().__init__(inv, cache_mb=cache_mb, **kwargs)

    monkeypatch.setattr(engine, "SeriesReader", Recording)
    request = DensifyRequest(s2=[str(p) for p in s2[:6]], masks=[str(p) for p in scl[:6]], method="linear",
                             target_date=striped.s2[2].when.date(), out_dir=str(tmp_path / "a"), lai=False,
                             tile_size=32)
    result = engine.run(request)
    assert used[-1] > reader.CACHE_MB and not any("strips, not tiles" in w for w in result.warnings)
    monkeypatch.setattr(reader, "CACHE_SHARE", 0.0)  # a machine too small for them
    result = engine.run(DensifyRequest(**{**request.__dict__, "out_dir": str(tmp_path / "b")}))
    assert used[-1] == reader.CACHE_MB
    warning = next(w for w in result.warnings if w.startswith("6 inputs stored in strips, not tiles ("))
    assert names[0] in warning and warning.endswith(" or give an extent")
    g = striped.grid
    part = DensifyRequest(**{**request.__dict__, "out_dir": str(tmp_path / "c"), "extent": (
        g.transform.c, g.transform.f - 64 * g.res, g.transform.c + 48 * g.res, g.transform.f), "tile_size": 32})
    warning = next(w for w in engine.run(part).warnings if w.startswith("6 inputs stored in strips"))
    assert not warning.endswith(" or give an extent")  # an extent was given


def test_the_memory_is_read_on_windows_too(monkeypatch):
    """Where POSIX's sysconf is missing (Windows), the memory comes from GlobalMemoryStatusEx, not an assumed 8 GB.
    Windows cannot run here: its kernel32 is a stand-in that fills the structure as Windows does (it checks the
    structure's declared size, 64 bytes in winbase.h)."""
    import ctypes
    import os

    from sentinel_densify.core import reader

    posix = reader._memory_mb()
    assert posix == os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    monkeypatch.delattr(os, "sysconf")

    class Kernel32:
        @staticmethod
        def GlobalMemoryStatusEx(ref):  # noqa: N802 (Windows API name)
            status = ref._obj
            if status.dwLength != 64 or ctypes.sizeof(status) != 64:
                return 0
            status.ullTotalPhys = 31 * 2**30 + 5 * 2**20
            return 1

    monkeypatch.setattr(ctypes, "windll", type("WinDLL", (), {"kernel32": Kernel32()})(), raising=False)
    assert reader._memory_mb() == 31 * 1024 + 5
    monkeypatch.delattr(ctypes, "windll")
    assert reader._memory_mb() == 8192  # neither answers


def test_overlapping_readers_leave_gdal_s_cache_as_they_found_it(files):
    """Second audit: GDAL's block cache is the process's, and each reader restored the size it saw when it opened, so
    readers that overlapped (a run, and the dialog's checks) and closed out of order left the process with another's
    size (3000 MB after both had closed), or cut a run's cache back to 256 MB while it ran. While readers are open the
    size is the largest one asked for; after the last, the size from before the first."""
    from rasterio.env import get_gdal_config
    from sentinel_densify.core.reader import CACHE_MB

    s2, scl, _ = files
    inv = inventory.build([str(s2[0])], masks=[str(scl[0])], check_clear=False)
    before = int(get_gdal_config("GDAL_CACHEMAX"))

    def size() -> int:
        return int(get_gdal_config("GDAL_CACHEMAX")) // 2**20

    opened, close = threading.Event(), threading.Event()

    def run() -> None:  # a run's reader, in a worker thread (as the dialog's task's)
        with SeriesReader(inv, cache_mb=3000):
            opened.set()
            close.wait(60)

    worker = threading.Thread(target=run)
    worker.start()
    opened.wait(60)
    checks = SeriesReader(inv)  # the dialog's checks, during the run, on the main thread
    assert size() == 3000
    close.set()
    worker.join(60)
    assert size() == CACHE_MB  # the run closed first
    checks.close()
    assert int(get_gdal_config("GDAL_CACHEMAX")) == before
