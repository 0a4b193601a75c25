"""Sentinel-1 as ASF and SNAP deliver it: one file per polarization (ASF HyP3 RTC GeoTIFFs, SNAP BEAM-DIMAP
ENVI images), made here from the real 31UDS acquisitions and read back as one VV, VH image each."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from helpers import make_asf, make_beam_dimap, read_array, s1_stamp
from sentinel_densify.core import engine, inventory
from sentinel_densify.core.errors import InputError
from sentinel_densify.core.reader import SeriesReader
from sentinel_densify.core.request import DensifyRequest

TARGET = dt.date(2018, 3, 1)


@pytest.fixture(scope="module")
def series(uds_subset) -> dict[str, list[Path]]:
    return {"s2": uds_subset["s2"][4:12], "masks": uds_subset["masks"][4:12], "s1": uds_subset["s1"][6:18]}


@pytest.fixture(scope="module")
def asf(series, tmp_path_factory) -> Path:
    """The 12 S1 acquisitions as ASF RTC products (sigma0, power scale), with their maps, in one folder."""
    root = tmp_path_factory.mktemp("asf")
    for src in series["s1"]:
        make_asf(src, root, backscatter="s")
    return root


def _s1_stack(series, s1: list) -> np.ndarray:
    inv = inventory.build([str(p) for p in series["s2"]], [str(p) for p in s1], check_clear=False)
    return SeriesReader(inv).read_window(inv.grid).s1


def _run(tmp_path, series, s1, name):
    request = DensifyRequest(s2=[str(p) for p in series["s2"]], masks=[str(p) for p in series["masks"]],
                             s1=[str(p) for p in s1], target_date=TARGET, out_dir=str(tmp_path / name),
                             method="default", lai=False)
    return engine.run(request)


def test_asf_rtc_products_read_as_the_stacked_files(series, asf):
    inv = inventory.build([str(p) for p in series["s2"]], [str(asf)], check_clear=False)
    assert len(inv.s1) == len(series["s1"]) == 12  # the maps and READMEs beside them are not inputs
    assert [i.when for i in inv.s1] == [inventory.describe(p).when for p in series["s1"]]
    assert all(i.bands == ["VV", "VH"] and not i.s1_db for i in inv.s1)  # power, from the ASF name
    assert any("12 S1 acquisition(s) given as one file per polarization" in w for w in inv.warnings), inv.warnings
    assert not any("gamma0" in w for w in inv.warnings)  # sigma0 ('s' in the name)
    # the same backscatter as the stacked dB files, 0 (ASF's no data) read as no data
    np.testing.assert_allclose(SeriesReader(inv).read_window(inv.grid).s1, _s1_stack(series, series["s1"]),
                               atol=1e-4)


def test_a_run_from_asf_products_equals_the_run_from_stacked_files(series, asf, tmp_path):
    """The bundled model reads S1: the same outputs from the one-polarization files as from the stacked ones."""
    stacked = _run(tmp_path, series, series["s1"], "stacked")
    split = _run(tmp_path, series, [asf], "asf")
    assert split.inputs_used == stacked.inputs_used
    for kind in ("synthesized", "uncertainty"):
        np.testing.assert_allclose(read_array(split.outputs[kind]), read_array(stacked.outputs[kind]),
                                   rtol=1e-4, atol=1e-2)
    with rasterio.open(split.outputs["synthesized"]) as ds:
        assert "_VV_VH.vrt" in ds.tags()["INPUTS_S1"]


def test_snap_beam_dimap_products_read_as_the_stacked_files(series, tmp_path):
    """SNAP's Sigma0_VV.img / Sigma0_VH.img (ENVI, big-endian, linear): found in the .data folder (not its
    tie-point grids), dated by the .dim beside it even when the product was renamed, else by the folder's
    name."""
    srcs = series["s1"][:4]
    make_beam_dimap(srcs[0], tmp_path, name="my_subset")  # a renamed product: only its .dim has the date
    for src in srcs[1:]:
        make_beam_dimap(src, tmp_path)
    inv = inventory.build([str(p) for p in series["s2"]], [str(tmp_path)], check_clear=False)
    assert [i.when for i in inv.s1] == [inventory.describe(p).when for p in srcs]
    assert all(i.descriptions == ["Sigma0_VV", "Sigma0_VH"] for i in inv.s1)
    np.testing.assert_allclose(SeriesReader(inv).read_window(inv.grid).s1, _s1_stack(series, srcs), atol=1e-4)

    (tmp_path / "my_subset.dim").unlink()  # a .data folder without its .dim: its name has no date
    with pytest.raises(InputError, match="no acquisition date found .* for: Sigma0_VH.img, Sigma0_VV.img"):
        inventory.build([str(p) for p in series["s2"]], [str(tmp_path)], check_clear=False)
    dims = sorted(tmp_path.glob("*.dim"))
    for dim in dims:  # the others are named as SNAP names them: the folder's name gives the date
        dim.unlink()
    shutil.rmtree(tmp_path / "my_subset.data")
    inv = inventory.build([str(p) for p in series["s2"]], [str(tmp_path)], check_clear=False)
    assert [i.when for i in inv.s1] == [inventory.describe(p).when for p in srcs[1:]]


def test_units_and_backscatter_follow_the_asf_name(series, tmp_path):
    src = series["s1"][0]
    db = make_asf(src, tmp_path / "db", scale="d", aux=False)  # dB scale
    inv = inventory.build([str(p) for p in series["s2"]], [str(db)], check_clear=False)
    assert inv.s1[0].s1_db
    np.testing.assert_allclose(SeriesReader(inv).read_window(inv.grid).s1, _s1_stack(series, [src]), atol=1e-4)
    assert any("1 S1 image(s) hold gamma0, terrain-flattened backscatter" in w for w in inv.warnings), inv.warnings

    # OPERA's RTC-S1 bursts: gamma0 power, one file per polarization and a layover-shadow mask (not an input)
    opera = make_asf(src, tmp_path / "opera", backscatter="g")
    stamp = s1_stamp(src)
    for f in opera.glob("*.tif"):
        kind = {"VV.tif": "VV", "VH.tif": "VH", "ls_map.tif": "mask"}.get(f.name.rsplit("_", 1)[-1])
        if kind:
            f.rename(opera / f"OPERA_L2_RTC-S1_T037-078580-IW2_{stamp}Z_{stamp}Z_S1A_30_v1.0_{kind}.tif")
        else:
            f.unlink()
    inv = inventory.build([str(p) for p in series["s2"]], [str(opera)], check_clear=False)
    assert len(inv.s1) == 1 and not inv.s1[0].s1_db
    np.testing.assert_allclose(SeriesReader(inv).read_window(inv.grid).s1, _s1_stack(series, [src]), atol=1e-4)
    assert any("1 S1 image(s) hold gamma0" in w for w in inv.warnings), inv.warnings

    amplitude = make_asf(src, tmp_path / "amplitude", scale="a", aux=False)
    with pytest.raises(InputError) as err:
        inventory.build([str(p) for p in series["s2"]], [str(amplitude)], check_clear=False)
    problems = [str(p) for p in err.value.problems]
    assert len(problems) == 2 and all("holds amplitude (the 'a' scale of its ASF RTC name)" in p for p in problems)


def test_incomplete_or_mismatched_polarizations_are_named(series, asf, tmp_path):
    s2 = [str(p) for p in series["s2"]]
    vv = sorted(asf.rglob("*_VV.tif"))
    with pytest.raises(InputError) as err:
        inventory.build(s2, [str(vv[0])], check_clear=False)
    stamp = s1_stamp(series["s1"][0])
    assert [str(p) for p in err.value.problems] == \
        [f"{vv[0].name}: the Sentinel-1 files of {stamp} ({vv[0].name}) lack VH: a run needs both VV and VH; "
         "give the file of each polarization, or leave the Sentinel-1 images out (a run can go without them)"]
    # VV only for every date: said once, not once per date (finding 12)
    with pytest.raises(InputError) as err:
        inventory.build(s2, [str(p) for p in vv], check_clear=False)
    assert len(vv) > 1 and [str(p) for p in err.value.problems] == [
        f"{len(vv)} Sentinel-1 acquisitions given as one file per polarization lack VH ({stamp}, "
        f"{s1_stamp(series['s1'][1])}, {s1_stamp(series['s1'][2])}"
        + (f" and {len(vv) - 3} more" if len(vv) > 3 else "")
        + "): a run needs both VV and VH; give the VH file of each, or leave the Sentinel-1 images out (a run can "
        "go without them)"]

    shifted = make_asf(series["s1"][1], tmp_path, aux=False)
    vh = next(shifted.glob("*_VH.tif"))
    with rasterio.open(vh) as ds:
        profile, data = ds.profile, ds.read()
    east = profile["transform"] * rasterio.Affine.translation(2, 0)  # 40 m east of its VV
    with rasterio.open(vh, "w", **{**profile, "transform": east}) as ds:
        ds.write(data)
    hh = tmp_path / "S1A_IW_20180301T173000_SH_HH.tif"
    with rasterio.open(hh, "w", **profile) as ds:
        ds.write(data)
    with pytest.raises(InputError) as err:
        inventory.build(s2, [str(shifted), str(hh)], check_clear=False)
    text = str(err.value)
    assert f"the Sentinel-1 files of {s1_stamp(series['s1'][1])} do not share one grid ({vh.name} differs" in text
    assert f"{hh.name}: has 1 band (HH); Sentinel-1 needs VV and VH" in text


def test_a_grd_measurement_file_is_named_as_radar_geometry(series, tmp_path):
    """A GRD product's measurement file (DN in radar geometry, located by ground control points only) is
    refused with what to do, not taken for an S1 image without a CRS."""
    from rasterio.control import GroundControlPoint
    from rasterio.crs import CRS

    grd = tmp_path / "S1A_IW_GRDH_1SDV_20180302T055219_20180302T055244_020814_023AB1_9F3C.SAFE" / "measurement"
    grd.mkdir(parents=True)
    path = grd / "s1a-iw-grd-vv-20180302t055219-20180302t055244-020814-023ab1-001.tiff"
    gcps = [GroundControlPoint(r, c, 4.1 + c / 250, 50.9 - r / 250, 0.0) for r in (0, 100) for c in (0, 100)]
    with rasterio.open(path, "w", driver="GTiff", width=100, height=100, count=1, dtype="uint16", gcps=gcps,
                       crs=CRS.from_epsg(4326)) as ds:
        ds.write(np.full((1, 100, 100), 120, "uint16"))
    info = inventory.describe(path)
    assert info.sensor == "S1" and info.when == dt.datetime(2018, 3, 2, 5, 52, 19, tzinfo=dt.UTC)
    with pytest.raises(InputError) as err:
        inventory.build([str(p) for p in series["s2"]], [str(grd.parent)], check_clear=False)
    assert [str(p) for p in err.value.problems] == [f"{path.name}: {inventory.RADAR_GEOMETRY}"]
