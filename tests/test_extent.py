"""An area to compute (extent): the S2 grid's whole pixels within it, with context beyond its edges, on the
real 31UDS series (core, engine and `densify run`)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
import rasterio
from helpers import read_array
from rasterio.warp import transform_bounds
from sentinel_densify.core import engine
from sentinel_densify.core.errors import InputError
from sentinel_densify.core.grid import Grid, canonical_wkt, covering_grid, tiles, within_extent
from sentinel_densify.core.request import DensifyRequest

KINDS = ("synthesized", "uncertainty", "lai")


@pytest.fixture(scope="module")
def s2_grid(uds_subset) -> Grid:
    with rasterio.open(uds_subset["s2"][0]) as ds:
        return Grid(canonical_wkt(ds.crs.to_wkt()), ds.transform, ds.width, ds.height)


def test_crop_takes_the_whole_pixels_the_box_touches(s2_grid):
    g = s2_grid
    x0, y0 = g.transform.c, g.transform.f  # upper-left corner; 10 m pixels
    on_edges = g.crop(x0 + 100, y0 - 300, x0 + 400, y0 - 100)  # pixel edges: exactly those pixels
    assert (on_edges.width, on_edges.height) == (30, 20)
    assert on_edges.transform == g.window_transform(10, 10) and on_edges.crs_wkt == g.crs_wkt
    inside = g.crop(x0 + 105, y0 - 295, x0 + 395, y0 - 105)  # inside those pixels: the same ones
    assert inside == on_edges
    beyond = g.crop(x0 - 1000, y0 - 50, x0 + 35, y0 + 1000)  # clipped to the grid
    assert beyond == Grid(g.crs_wkt, g.transform, 4, 5)
    assert g.crop(x0 - 100, y0 - 100, x0 - 10, y0 - 10) is None  # outside
    assert g.crop(x0 + 640, y0 - 100, x0 + 700, y0 - 10) is None  # touching the right edge only


def test_an_extent_in_another_crs_is_transformed(s2_grid):
    g = s2_grid
    x0, y0 = g.transform.c, g.transform.f
    lonlat = transform_bounds(g.crs_wkt, "EPSG:4326", x0 + 100, y0 - 300, x0 + 400, y0 - 100)
    cropped = within_extent(g, lonlat, "EPSG:4326")
    # the box in degrees, transformed back, covers the same area within a pixel each side
    assert cropped.crs_wkt == g.crs_wkt
    assert 30 <= cropped.width <= 32 and 20 <= cropped.height <= 22
    assert abs(cropped.transform.c - (x0 + 100)) <= 10 and abs(cropped.transform.f - (y0 - 100)) <= 10
    assert within_extent(g, (x0 + 100, y0 - 300, x0 + 400, y0 - 100)) == g.crop(x0 + 100, y0 - 300, x0 + 400,
                                                                               y0 - 100)


@pytest.mark.parametrize("extent, crs, said", [
    ((5, 0, 1, 1), None, "xmin < xmax"),
    ((0, 0, 1, float("nan")), None, "xmin ymin xmax ymax"),
    ((0, 0, 1), None, "xmin ymin xmax ymax"),
    (("a", 0, 1, 1), None, "not four numbers"),
    ((0, 0, 1, 1), "EPSG:999999", "not a coordinate system"),
    ((0, 0, 1, 1), None, "does not overlap the S2 grid, which covers 501360, 5629040 to 502000, 5629680 "
                         "(EPSG:32631)"),
    ((2.0, 40.0, 2.1, 40.1), "EPSG:4326", "does not overlap"),  # Spain: not in 31UDS
])
def test_bad_extents_are_said(s2_grid, extent, crs, said):
    with pytest.raises(ValueError, match="extent") as err:
        within_extent(s2_grid, extent, crs)
    assert said in str(err.value)


def test_tiles_take_their_context_beyond_the_extent(s2_grid):
    area = s2_grid.crop(*_box(s2_grid, 10, 14, 30, 30))
    got = list(tiles(area, 16, halo=5, within=s2_grid))  # cut where the S2 grid's tiles are (rows, columns 16, 32)
    assert [(t.row, t.col) for t in got] == [(r, c) for r in (0, 6, 22) for c in (0, 2, 18)]
    first, last = got[0], got[-1]
    assert (first.row0, first.col0) == (-5, -5)  # context above and left of the extent, inside the S2 grid
    assert (last.row0 + last.height0, last.col0 + last.width0) == (30 + 5, 30 + 5)
    corner = s2_grid.crop(*_box(s2_grid, 0, 50, 20, 14))  # at the S2 grid's top and right edges
    t = list(tiles(corner, 32, halo=5, within=s2_grid))[0]
    assert (t.row0, t.col0, t.height0, t.width0) == (0, -5, 25, 19)  # no context beyond the S2 grid
    assert list(tiles(area, 16, halo=5)) != got  # without `within`: none beyond the extent


def _box(g: Grid, row: int, col: int, height: int, width: int) -> tuple[float, float, float, float]:
    """The bounds of a window of g (rows and columns)."""
    return Grid(g.crs_wkt, g.window_transform(row, col), width, height).bounds


def _req(sub, out, date, **kw) -> DensifyRequest:
    return DensifyRequest(s2=[str(p) for p in sub["s2"]], s1=[str(p) for p in sub["s1"]],
                          masks=[str(p) for p in sub["masks"]], target_date=date, out_dir=str(out), **kw)


@pytest.fixture(scope="module")
def whole(uds_subset, tmp_path_factory):
    """The bundled model on the whole 64 px grid, in 32 px tiles."""
    return engine.run(_req(uds_subset, tmp_path_factory.mktemp("whole"), dt.date(2018, 3, 1), tile_size=32))


def test_an_extent_is_computed_on_the_whole_run_s_windows(s2_grid):
    """An extent is computed on the whole tiles of the S2 grid around it (and `shift` px beyond it, where the
    windows are blended), cut where the whole grid's run cuts them: the same windows, read with the same context."""
    part = s2_grid.crop(*_box(s2_grid, 18, 14, 30, 26))
    cover = covering_grid(part, s2_grid, 16, 4)  # the grid's tile edges: rows and columns 20, 36, 52
    assert cover.offset_in(s2_grid) == (0, 0) and (cover.height, cover.width) == (52, 52)
    whole = {(t.row, t.col): t for t in tiles(s2_grid, 16, halo=12, shift=4)}
    r, c = cover.offset_in(s2_grid)
    for t in tiles(cover, 16, halo=12, within=s2_grid, shift=4):
        w = whole[(t.row + r, t.col + c)]
        assert (t.height, t.width, t.row0 + r, t.col0 + c, t.height0, t.width0) == (
            w.height, w.width, w.row0, w.col0, w.height0, w.width0)
    inner = s2_grid.crop(*_box(s2_grid, 40, 40, 4, 4))  # clear of the blending: one tile
    assert covering_grid(inner, s2_grid, 16, 4).offset_in(s2_grid) == (36, 36)
    assert covering_grid(inner, s2_grid, 16, 4).height == 16
    assert covering_grid(s2_grid, s2_grid, 16, 4) == s2_grid


def test_an_extent_gives_the_whole_run_s_pixels_there(whole, uds_subset, s2_grid, tmp_path):
    """The bundled model (3x3 convolutions, a field-scale S1 filter, its own tiles in each window) over an
    extent: the outputs are the whole run's pixels within it, at its edges too (computed on the whole run's
    windows around it)."""
    box = _box(s2_grid, 18, 14, 30, 26)
    part = engine.run(_req(uds_subset, tmp_path, dt.date(2018, 3, 1), tile_size=32, extent=box))
    for kind in KINDS:
        with rasterio.open(part.outputs[kind]) as ds, rasterio.open(whole.outputs[kind]) as ref:
            assert ds.shape == (30, 26) and ds.crs == ref.crs
            assert ds.transform == ref.transform * ref.transform.translation(14, 18)
        got, ref = read_array(part.outputs[kind]), read_array(whole.outputs[kind])[:, 18:48, 14:40]
        assert np.isfinite(got).all()
        # before: windows of the extent's own, up to 0.6 DN of 4700 off (the model's tiles); without the context
        # beyond the extent, its edges were up to 900 DN off
        np.testing.assert_array_equal(got, ref, err_msg=kind)
    assert part.mode == whole.mode


@pytest.mark.parametrize("method", ["default", "linear"])
def test_an_extent_chooses_the_whole_run_s_dates_and_calibration(uds_dir, method, tmp_path):
    """Docs audit: on the whole real series on 2018-08-29 an extent's own, smaller window left out 2018-09-11 (2.9 %
    clear over the grid, 1.0 % there, under the 2 % a date needs to join the model's nearest dates) and moved
    every pixel (median 50 DN, up to 220). The baselines' std, calibrated on a sample of the extent, differed too.
    Both now come from the whole run's windows and sample."""
    series = {"s2": sorted((uds_dir / "S2").glob("*_L2A_10m.tif")), "s1": sorted((uds_dir / "S1").glob("*.tif")),
              "masks": sorted((uds_dir / "S2").glob("*_SCL_20m.tif"))}
    day = dt.date(2018, 8, 29)
    ref = engine.run(_req(series, tmp_path / "whole", day, method=method, lai=False))
    with rasterio.open(ref.outputs["synthesized"]) as ds:
        t = ds.transform
    box = (501500, 5629200, 501800, 5629500)  # rows 18-48, columns 14-44 of the 64 px grid
    part = engine.run(_req(series, tmp_path / "part", day, method=method, lai=False, extent=box))
    for kind in ("synthesized", "uncertainty"):
        with rasterio.open(part.outputs[kind]) as ds:
            col, row = (round(v) for v in ~t * (ds.transform.c, ds.transform.f))
            assert (row, col, ds.height, ds.width) == (18, 14, 30, 30)
        np.testing.assert_array_equal(read_array(part.outputs[kind]),
                                      read_array(ref.outputs[kind])[:, 18:48, 14:44], err_msg=kind)


def test_an_extent_outside_the_grid_or_without_clear_pixels_is_refused(uds_subset, s2_grid, tmp_path):
    x0, y0 = s2_grid.transform.c, s2_grid.transform.f
    out = tmp_path / "out"
    with pytest.raises(InputError) as err:
        engine.run(_req(uds_subset, out, dt.date(2018, 3, 1), method="linear",
                        extent=(x0 - 5000, y0 + 100, x0 - 4000, y0 + 900)))
    assert "does not overlap the S2 grid of " + uds_subset["s2"][0].name in str(err.value)
    assert not out.exists() or not any(out.iterdir())
    # one S2 date, in a corner its SCL mask says is cloudy: no clear observation in the extent
    s2, scl = uds_subset["s2"][:20], uds_subset["masks"][:20]
    cloudy = _cloudy_corner(scl)
    assert cloudy is not None, "no date with a cloudy corner in the slice"
    t, (row, col) = cloudy
    one = {"s2": [s2[t]], "masks": [scl[t]], "s1": []}
    with pytest.raises(InputError, match="no clear Sentinel-2 observation in the extent"):
        engine.run(_req(one, out, dt.date(2018, 3, 1), method="linear", extent=_box(s2_grid, row, col, 8, 8)))


def _cloudy_corner(scl_files) -> tuple[int, tuple[int, int]] | None:
    """(date index, (row, col) of an 8 x 8 window at 10 m) wholly cloudy in a date's SCL, or None."""
    for t, path in enumerate(scl_files):
        scl = rasterio.open(path).read(1)  # 20 m
        cloudy = np.isin(scl, (3, 8, 9, 10))
        for r in range(0, scl.shape[0] - 4, 4):
            for c in range(0, scl.shape[1] - 4, 4):
                if cloudy[r:r + 4, c:c + 4].all():
                    return t, (2 * r, 2 * c)
    return None


def test_densify_run_with_an_extent_in_degrees(densify, uds_dir, s2_grid, tmp_path):
    x0, y0 = s2_grid.transform.c, s2_grid.transform.f
    west, south, east, north = transform_bounds(s2_grid.crs_wkt, "EPSG:4326", x0 + 105, y0 - 395, x0 + 305,
                                                y0 - 105)
    out = tmp_path / "out"
    proc = densify("run", "--s2", str(uds_dir / "S2"), "--s1", str(uds_dir / "S1"), "--date", "2018-07-01",
                   "--out", str(out), "--model", "linear", "--no-lai",
                   "--extent", str(west), str(south), str(east), str(north), "--extent-crs", "EPSG:4326")
    assert proc.returncode == 0, proc.stderr
    with rasterio.open(out / "synthesized_20180701.tif") as ds:
        assert 20 <= ds.width <= 22 and 29 <= ds.height <= 31
        assert x0 + 90 <= ds.transform.c <= x0 + 100 and y0 - 100 <= ds.transform.f <= y0 - 90
    proc = densify("run", "--s2", str(uds_dir / "S2"), "--date", "2018-07-01", "--out", str(tmp_path / "b"),
                   "--extent-crs", "EPSG:4326")
    assert proc.returncode != 0 and "--extent XMIN YMIN XMAX YMAX" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "b").exists()


def test_an_unknown_extent_crs_is_one_message_without_proj_s_line(densify, uds_dir, tmp_path):
    """Error audit: PROJ printed "ERROR 1: PROJ: proj_create_from_database: crs not found" before the message that
    says the same; the message alone is shown now."""
    s2 = str(sorted((uds_dir / "S2").glob("*_L2A_10m.tif"))[40])
    proc = densify("run", "--s2", s2, "--date", "2018-03-01", "--out", str(tmp_path / "out"), "--model", "linear",
                   "--extent", "0", "0", "1", "1", "--extent-crs", "EPSG:999999")
    assert proc.returncode == 1
    assert proc.stderr.strip() == ("densify run: Bad input: the extent's CRS 'EPSG:999999' is not a coordinate system "
                                   "GDAL knows"), proc.stderr


@pytest.mark.parametrize("method", ["linear", "nearest", "linear-haze", "default"])
def test_tiny_extents_at_the_windows_edges_are_the_whole_run_s_pixels(uds_subset, s2_grid, method, tmp_path):
    """Second audit: a one-pixel extent's mean std (the uncertainty's last band) was 1 ulp off the whole run's:
    numpy's mean of a 1 x 1 block adds the bands in another order. Pixels at a corner of the 32 px windows and a
    2 x 2 block across their edge, for a per-pixel baseline, a blended baseline (its halo) and the model."""
    day = dt.date(2018, 3, 1)
    whole = engine.run(_req(uds_subset, tmp_path / "whole", day, method=method, tile_size=32))
    for n, (row, col, size) in enumerate(((0, 0, 1), (31, 32, 1), (63, 63, 1), (31, 31, 2))):
        part = engine.run(_req(uds_subset, tmp_path / f"p{n}", day, method=method, tile_size=32,
                               extent=_box(s2_grid, row, col, size, size)))
        for kind in KINDS:
            np.testing.assert_array_equal(read_array(part.outputs[kind]),
                                          read_array(whole.outputs[kind])[:, row:row + size, col:col + size],
                                          err_msg=f"{kind} at {row}, {col}")


@pytest.mark.parametrize("method, computed", [("linear", (2, 2)), ("linear-haze", (64, 64)), ("default", (64, 64))])
def test_only_blended_methods_compute_the_whole_run_s_windows(uds_subset, s2_grid, method, computed, tmp_path,
                                                              monkeypatch):
    """Second audit: a method without a halo is per pixel, so its extent needs no more than its own pixels; the
    blended ones (the model, linear-haze) compute the whole run's windows around it: here the four 32 px windows
    that meet at the 2 x 2 px extent, i.e. the whole 64 px grid."""
    grids = []
    real = engine.tiles

    def spy(grid, *args, **kwargs):
        grids.append((grid.height, grid.width))
        return real(grid, *args, **kwargs)

    monkeypatch.setattr(engine, "tiles", spy)
    engine.run(_req(uds_subset, tmp_path, dt.date(2018, 3, 1), method=method, tile_size=32, lai=False,
                    extent=_box(s2_grid, 31, 31, 2, 2)))
    assert grids == [computed]
