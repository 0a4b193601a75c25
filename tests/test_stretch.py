"""The stretch of result layers (plugin/layers.py: stretch, common_limits, on the QGIS main thread): QGIS's own 2-98 %
cut on a small band; on a large one from a few full-resolution windows, never every pixel (seconds of frozen QGIS per
full-tile band) nor the overviews (their averages narrow the tails); a series' common stretch on the definition of a
single date's."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.transform import from_origin

SIZE = 3000  # px a side: a band larger than layers.EXACT_PX (4 Mpx)
BLOCK = 64  # the outputs' blocks here (core/writer.py: block_size_for a run's tiles): 2209 blocks a band


def _rchar() -> int | None:
    """Bytes this process has read from files (page-cache hits included): what GDAL asked for."""
    try:
        with open("/proc/self/io") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("rchar"))
    except OSError:
        return None


@pytest.fixture(scope="module")
def big(tmp_path_factory) -> dict:
    """Two dates' uncertainty outputs as core/writer.py writes them (tiled, deflate, average overviews 2-32), 3000 px a
    side: per-pixel noise with long tails (which the overviews' averages narrow a lot), a strip of NaN (no data); and
    the exact 2-98 % of their mean_std bands, per date and pooled."""
    from sentinel_densify.core.grid import Grid
    from sentinel_densify.core.writer import AtomicRaster

    folder = tmp_path_factory.mktemp("stretch")
    grid = Grid(CRS.from_epsg(32631).to_wkt(), Affine(10, 0, 399960, 0, -10, 5800020), SIZE, SIZE)
    rng = np.random.default_rng(0)
    paths, exact, means = [], [], []
    for k in range(2):
        data = rng.lognormal(4.5 + 0.4 * k, 0.8, (2, SIZE, SIZE)).astype(np.float32)
        data[:, :, :300] = np.nan
        path = folder / f"uncertainty_2018030{k + 1}.tif"
        with AtomicRaster(path, grid, 2, descriptions=["B04_std", "mean_std"], blocksize=BLOCK) as raster:
            raster.write(data)
            raster.commit()
        paths.append(str(path))
        mean = data[1][np.isfinite(data[1])]
        exact.append(tuple(np.percentile(mean, [2, 98])))
        means.append(mean)
    with rasterio.open(paths[0]) as ds:
        assert ds.block_shapes[1] == (BLOCK, BLOCK) and ds.overviews(2) == [2, 4, 8, 16, 32]
    pooled = tuple(np.percentile(np.concatenate(means), [2, 98]))
    return {"paths": paths, "exact": exact, "pooled": pooled}


def _close(limits, expected) -> bool:
    """Within 1 % of the exact cut's range at either end."""
    span = expected[1] - expected[0]
    return abs(limits[0] - expected[0]) < 0.01 * span and abs(limits[1] - expected[1]) < 0.01 * span


def test_a_large_band_is_stretched_from_a_few_full_resolution_windows(big, qgis_app, monkeypatch):
    """style_uncertainty on a 9 Mpx band (a full tile has 120 Mpx): read from at most 16 x 16 windows, each inside one
    block of the file, at full resolution (not the overviews), a small part of the file; the limits within 1 % of the
    exact 2-98 % of every pixel. (QGIS's exact statistics, sampleSize 0, read every pixel of the band: seconds per
    full-tile band on the main thread.)"""
    from qgis.core import QgsRasterLayer
    from rasterio.io import DatasetReader
    from sentinel_densify.plugin.layers import style_uncertainty

    path = big["paths"][0]
    layer = QgsRasterLayer(path, "Uncertainty", "gdal")
    assert layer.isValid()
    reads = []
    read = DatasetReader.read

    def spy(self, indexes=None, *args, **kwargs):  # every rasterio read recorded, its result untouched
        reads.append((self.name, indexes, kwargs.get("window"), kwargs.get("out_shape")))
        return read(self, indexes, *args, **kwargs)

    monkeypatch.setattr(DatasetReader, "read", spy)
    before = _rchar()
    style_uncertainty(layer)
    done = _rchar()
    if before is not None:
        size = Path(path).stat().st_size  # 2 bands and their overviews
        assert done - before < 0.1 * size, f"read {(done - before) / 2**20:.1f} MiB of a {size / 2**20:.1f} MiB file"
    assert 0 < len(reads) <= 256
    pixels = 0
    for name, band, window, out_shape in reads:
        assert name == path and band == 2 and out_shape is None and window is not None  # full resolution, mean_std
        row, col = int(window.row_off), int(window.col_off)
        h, w = int(window.height), int(window.width)
        assert row // BLOCK == (row + h - 1) // BLOCK and col // BLOCK == (col + w - 1) // BLOCK  # one block each
        pixels += h * w
    assert pixels <= 256 * BLOCK * BLOCK
    renderer = layer.renderer()
    limits = (renderer.classificationMin(), renderer.classificationMax())
    assert _close(limits, big["exact"][0]), (limits, big["exact"][0])


def test_a_series_is_stretched_as_each_date_alone(big, qgis_app):
    """common_limits (a series' shared stretch) reads as a single date's stretch does: a one-date series gets that
    date's very limits, and two dates the 2-98 % of their pooled pixels within 1 %. (Read decimated, from the
    overviews' averages, the series got narrower limits than any date alone.)"""
    from qgis.core import QgsRasterLayer
    from sentinel_densify.plugin.layers import common_limits, stretch

    paths = big["paths"]
    alone = [stretch(QgsRasterLayer(p, "u", "gdal"), 2) for p in paths]
    for path, own, exact in zip(paths, alone, big["exact"], strict=True):
        assert _close(own, exact), (own, exact)
        assert common_limits([{"uncertainty": path}])["uncertainty"] == pytest.approx(own, rel=1e-12)
    both = common_limits([{"uncertainty": p} for p in paths])["uncertainty"]
    assert _close(both, big["pooled"]), (both, big["pooled"])
    assert both[0] < alone[1][0] and both[1] > alone[0][1]  # between the dates: neither date's own


def _write(path: Path, data: np.ndarray, nodata=None) -> str:
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[1], height=data.shape[0], count=1,
                       dtype=data.dtype, nodata=nodata, crs="EPSG:32631", transform=from_origin(0, 0, 10, 10)) as ds:
        ds.write(data, 1)
    return str(path)


def test_a_small_band_gets_qgis_own_cut(qgis_app, tmp_path):
    """A band of at most EXACT_PX pixels is read whole and cut as QGIS's cumulativeCut (2-98 %, over every pixel)
    cuts it, to the last digit: floats with NaN, integers with a nodata value (rounded out to whole values), bytes,
    an odd size; a constant band gets (value, value + 1e-6), without a GDAL error; a band without a valid value
    (0, 1e-6)."""
    from osgeo import gdal
    from qgis.core import QgsRasterLayer
    from sentinel_densify.plugin.layers import stretch

    rng = np.random.default_rng(3)
    floats = rng.lognormal(0, 1, (300, 700)).astype(np.float32)
    floats[::7] = np.nan
    dn = rng.gamma(2, 500, (64, 64)).astype(np.uint16)
    dn[dn > 3000] = 0
    cases = {"float32_nan": (floats, float("nan")),
             "uint16_nodata": (dn, 0),
             "int16": (rng.normal(0, 300, (64, 64)).astype(np.int16), None),
             "uint8": (rng.integers(3, 200, (64, 64)).astype(np.uint8), None),
             "odd": (rng.normal(0, 1, (10, 9)).astype(np.float32), None)}
    for name, (data, nodata) in cases.items():
        layer = QgsRasterLayer(_write(tmp_path / f"{name}.tif", data, nodata), name, "gdal")
        expected = layer.dataProvider().cumulativeCut(1, 0.02, 0.98)
        assert stretch(layer, 1) == expected, name
    constant = QgsRasterLayer(_write(tmp_path / "constant.tif", np.full((64, 64), 2.5, np.float32)), "c", "gdal")
    empty = QgsRasterLayer(_write(tmp_path / "empty.tif", np.full((64, 64), np.nan, np.float32), float("nan")),
                           "e", "gdal")
    errors = []
    gdal.PushErrorHandler(lambda _level, number, message: errors.append((number, message)))
    try:
        assert stretch(constant, 1) == (2.5, 2.5 + 1e-6)
        lo, hi = stretch(empty, 1)
    finally:
        gdal.PopErrorHandler()
    assert errors == []
    assert lo == 0 and 0 < hi - lo < 1e-5 and math.isfinite(hi)
