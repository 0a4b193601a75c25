"""ESA SNAP LAI v3: SNAP's own test cases, std propagation, flags, file and CLI on real S2 data."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from sentinel_densify.core import lai as L
from sentinel_densify.core.atomic import OutputError
from sentinel_densify.core.errors import InputError

CLEAR = "T31UDS_20180705T105427_L2A_10m.tif"  # clear summer acquisition (SCL: 99 % vegetation/soil)
S2_ORDER = ["B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12"]


@pytest.fixture(scope="module")
def cases(snap_dir) -> np.ndarray:
    """SNAP's test cases: 8 bands, cos(vz), cos(sz), cos(raz), expected LAI."""
    return np.loadtxt(snap_dir / "test_cases_first2000.csv", delimiter=",")


def _estimate_rows(x11: np.ndarray, std8: np.ndarray | None = None) -> L.LaiResult:
    """estimate() on rows of the 11 network inputs, laid out as a (8, 1, n) image."""
    deg = np.degrees(np.arccos(np.clip(x11[:, 8:11], -1, 1)))
    angles = L.Angles(sun_zenith=deg[None, :, 1], sun_azimuth=deg[None, :, 2],
                      view_zenith=deg[None, :, 0], view_azimuth=0.0)
    refl = x11[:, :8].T[:, None, :]
    std = None if std8 is None else std8.T[:, None, :]
    return L.estimate(refl, list(L.LAI_BANDS), angles, std)


def test_reproduces_snap_test_cases(cases):
    res = _estimate_rows(cases[:, :11])
    lai, flags = res.lai[0].astype(np.float64), res.flags[0]
    expected = cases[:, 11]
    finite = np.isfinite(expected)
    err = np.abs(lai[finite] - expected[finite])
    assert np.isfinite(lai[finite]).all()
    assert (err < 2.2e-4).mean() >= 0.99
    assert np.nanmax(err) < 1e-3  # with SNAP's clamping no case is far off
    # 1-based data row 828 (index 827) is the one SNAP expects NaN: output above max + tolerance
    assert np.flatnonzero(~finite).tolist() == [827]
    assert np.isnan(lai[827]) and flags[827] & L.FLAG_OUTPUT_TOO_HIGH
    assert not (flags[finite] & (L.FLAG_OUTPUT_TOO_HIGH | L.FLAG_OUTPUT_TOO_LOW | L.FLAG_INVALID_INPUT)).any()


def test_definition_domain_grid_rule(cases):
    net = L.load_net()
    x = cases[:, :8]
    out = net.outside_domain(x)
    # SNAP's rule: cell = floor(10 (x - min) / (max - min) + 1) per band, must be a populated cell
    cells = np.floor(10 * (x - net.dom_min) / (net.dom_max - net.dom_min) + 1).astype(int)
    table = np.loadtxt(L.DATA_DIR / "definition_domain_grid.csv", delimiter=",").astype(int)
    grid = {tuple(r) for r in table}
    assert out.tolist() == [tuple(c) not in grid for c in cells]
    assert 0 < out.sum() < len(out)
    flags = _estimate_rows(cases[:, :11]).flags[0]
    assert ((flags & L.FLAG_INPUT_OUT_OF_DOMAIN) > 0).tolist() == out.tolist()


def test_flags_outside_domain_and_nan(cases):
    net = L.load_net()
    inside = np.flatnonzero(~net.outside_domain(cases[:, :8]) & np.isfinite(cases[:, 11]))[0]
    rows = np.repeat(cases[inside:inside + 1, :11], 4, axis=0)
    rows[1, 1] = 0.5  # B04 far above the domain maximum (0.30)
    rows[2, 3] = np.nan  # a missing band
    rows[3, 0] = -0.01  # B03 below the domain minimum (0)
    res = _estimate_rows(rows)
    flags, lai = res.flags[0], res.lai[0]
    assert flags[0] == 0 and np.isclose(lai[0], cases[inside, 11], atol=2.2e-4)
    assert flags[1] & L.FLAG_INPUT_OUT_OF_DOMAIN and flags[3] & L.FLAG_INPUT_OUT_OF_DOMAIN
    assert flags[2] == L.FLAG_INVALID_INPUT and np.isnan(lai[2]) and np.isnan(res.lai_std[0, 2])
    assert res.lai.dtype == np.float32 and res.lai_std.dtype == np.float32 and res.flags.dtype == np.uint8
    assert (res.lai_std[0, [0, 1, 3]] == 0).all()  # no std given


def test_jacobian_matches_finite_differences(cases):
    net = L.load_net()
    x = cases[:50, :11]
    _, grad = net.forward(x)
    eps = 1e-6
    for j in range(8):
        dx = np.zeros(11)
        dx[j] = eps
        fd = (net.forward(x + dx)[0] - net.forward(x - dx)[0]) / (2 * eps)
        np.testing.assert_allclose(grad[:, j], fd, rtol=1e-5, atol=1e-6)


def test_linearised_std_matches_monte_carlo(cases):
    rng = np.random.default_rng(0)
    expected = cases[:, 11]
    picks = np.flatnonzero((expected > 1.0) & (expected < 5.0))[:4]
    n = 20000
    for i in picks:
        x = cases[i, :11]
        band_std = 0.02 * x[:8] + 0.002  # 2 % + 0.002 reflectance
        lin = _estimate_rows(x[None], band_std[None]).lai_std[0, 0]
        samples = np.repeat(x[None], n, axis=0)
        samples[:, :8] += rng.normal(size=(n, 8)) * band_std
        mc = np.nanstd(_estimate_rows(samples).lai[0].astype(np.float64))
        assert lin > 0
        assert abs(lin - mc) / mc < 0.10, (i, lin, mc)


def test_missing_band_is_named():
    refl = np.full((6, 2, 2), 0.1, np.float32)
    with pytest.raises(InputError) as exc:
        L.estimate(refl, ["B02", "B03", "B04", "B05", "B06", "B07"], L.Angles())
    msg = str(exc.value)
    assert "B8A" in msg and "B11" in msg and "B12" in msg and "B03," not in msg
    with pytest.raises(InputError, match="std shape"):
        L.estimate(np.zeros((8, 2, 2)), list(L.LAI_BANDS), L.Angles(), std=np.zeros((8, 2, 3)))


def test_angles_from_tags(uds_dir):
    with rasterio.open(uds_dir / "S2" / CLEAR) as ds:
        tags = ds.tags()
    angles, warnings = L.Angles.from_tags(tags)
    assert warnings == []
    assert angles.sun_zenith == pytest.approx(float(tags["MEAN_SUN_ZENITH_ANGLE"]))
    assert angles.view_azimuth == pytest.approx(float(tags["MEAN_VIEW_AZIMUTH_ANGLE"]))
    angles, warnings = L.Angles.from_tags({"MEAN_SOLAR_ZENITH_ANGLE": "30",
                                           "MEAN_INCIDENCE_ZENITH_ANGLE_B2": "4",
                                           "MEAN_INCIDENCE_ZENITH_ANGLE_B8": "6"})
    assert angles.sun_zenith == 30 and angles.view_zenith == 5
    assert len(warnings) == 1 and "relative azimuth" in warnings[0] and "zenith" not in warnings[0]
    angles, warnings = L.Angles.from_tags({})
    assert (angles.sun_zenith, angles.view_zenith) == (L.DEFAULT_SUN_ZENITH, L.DEFAULT_VIEW_ZENITH)
    assert "sun zenith" in warnings[0] and "view zenith" in warnings[0]


def test_lai_file_on_real_s2(uds_dir, tmp_path):
    src = uds_dir / "S2" / CLEAR
    out = L.lai_file(src, tmp_path / "lai.tif", block_pixels=64 * 20)  # 4 row blocks
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lai.tif"]  # no temporary left
    with rasterio.open(src) as s, rasterio.open(out) as o:
        assert (o.count, o.width, o.height) == (3, s.width, s.height)
        assert o.transform == s.transform and o.crs == s.crs
        assert o.descriptions == ("LAI", "LAI_std", "flags")
        assert o.tags()["method"] == L.METHOD
        lai, std, flags = o.read()
        dn = s.read().astype(np.float64)
        tags = s.tags()
    red, nir = dn[2], dn[7]
    ndvi = (nir - red) / (nir + red)
    veg, bare = ndvi > 0.6, ndvi < 0.3
    assert veg.sum() > 100 and bare.sum() > 20
    assert np.isfinite(lai[veg]).mean() > 0.99
    assert ((lai[veg] >= 0) & (lai[veg] <= 8)).all()
    assert (lai[veg] > 1).mean() > 0.3
    assert np.nanmedian(lai[veg]) > np.nanmedian(lai[bare]) + 1
    assert (std[np.isfinite(lai)] == 0).all()
    # same numbers as one estimate() over the whole image
    refl = (dn * 1e-4).astype(np.float32)
    ref = L.estimate(refl, S2_ORDER, L.Angles.from_tags(tags)[0])
    np.testing.assert_allclose(lai, ref.lai, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(flags.astype(np.uint8), ref.flags)


def test_cli_lai(uds_dir, tmp_path, capsys):
    from sentinel_densify.core import cli

    out = tmp_path / "cli_lai.tif"
    assert cli.main(["lai", "--s2", str(uds_dir / "S2" / CLEAR), "--out", str(out)]) == 0
    printed = capsys.readouterr()
    assert str(out) in printed.out and out.exists() and "warning" not in printed.err
    # the same image without its angle tags: the defaults it falls back to are said on stderr, as `run` says them
    with rasterio.open(uds_dir / "S2" / CLEAR) as ds:
        profile, data, descriptions = ds.profile, ds.read(), ds.descriptions
    bare = tmp_path / CLEAR
    with rasterio.open(bare, "w", **profile) as ds:
        ds.write(data)
        ds.descriptions = descriptions
    assert cli.main(["lai", "--s2", str(bare), "--out", str(tmp_path / "bare_lai.tif")]) == 0
    assert "densify lai: warning: LAI: angles missing from the metadata, using defaults" in capsys.readouterr().err
    bad = tmp_path / "not_a_raster.tif"
    bad.write_text("nope")
    assert cli.main(["lai", "--s2", str(bad), "--out", str(tmp_path / "x.tif")]) == 1
    assert "not_a_raster.tif" in capsys.readouterr().err
    assert not (tmp_path / "x.tif").exists()


def test_cli_lai_of_float_reflectance_that_kept_its_dn_scale_tag(uds_dir, tmp_path, capsys):
    """`gdal_translate -ot Float32 -scale 0 10000 0 1` keeps the REFLECTANCE_SCALE tag: the values win (the LAI
    of the DN file), and the ignored tag is said on stderr (before, the tag was applied again and the LAI was
    about 0.95 everywhere, silently)."""
    from sentinel_densify.core import cli

    with rasterio.open(uds_dir / "S2" / CLEAR) as ds:
        profile, data, descriptions, tags = ds.profile, ds.read(), ds.descriptions, ds.tags()
    assert tags["REFLECTANCE_SCALE"] == "0.0001"
    refl = tmp_path / CLEAR
    with rasterio.open(refl, "w", **{**profile, "dtype": "float32", "nodata": None}) as ds:
        ds.write(np.where(data == 0, np.nan, data / 10000.0).astype("float32"))
        ds.descriptions = descriptions
        ds.update_tags(**tags)
    assert cli.main(["lai", "--s2", str(uds_dir / "S2" / CLEAR), "--out", str(tmp_path / "dn.tif")]) == 0
    capsys.readouterr()
    assert cli.main(["lai", "--s2", str(refl), "--out", str(tmp_path / "refl.tif")]) == 0
    assert "REFLECTANCE_SCALE=0.0001 tag is ignored" in capsys.readouterr().err
    with rasterio.open(tmp_path / "dn.tif") as a, rasterio.open(tmp_path / "refl.tif") as b:
        np.testing.assert_allclose(b.read(1), a.read(1), atol=1e-4)


def test_lai_over_an_extent_in_degrees(uds_dir, tmp_path, densify):
    """`densify lai --extent ... --extent-crs EPSG:4326`: the image's whole pixels the extent touches, each
    the whole image's LAI; an extent off the image and a CRS without an extent are refused, nothing written."""
    from rasterio.warp import transform_bounds

    src = uds_dir / "S2" / CLEAR
    whole = L.lai_file(src, tmp_path / "whole.tif")
    with rasterio.open(whole) as ds:
        full, t, crs = ds.read(), ds.transform, ds.crs
    x0, y0 = t.c, t.f
    box = transform_bounds(crs, "EPSG:4326", x0 + 105, y0 - 395, x0 + 305, y0 - 105)
    out = tmp_path / "part.tif"
    proc = densify("lai", "--s2", str(src), "--out", str(out), "--extent", *map(str, box), "--extent-crs", "EPSG:4326")
    assert proc.returncode == 0, proc.stderr
    with rasterio.open(out) as ds:
        col, row = (round(v) for v in ~t * (ds.transform.c, ds.transform.f))
        assert 9 <= col <= 10 and 9 <= row <= 10 and 21 <= ds.width <= 23 and 30 <= ds.height <= 32
        assert ds.crs == crs and ds.transform.a == t.a
        np.testing.assert_array_equal(ds.read(), full[:, row:row + ds.height, col:col + ds.width])
    off = tmp_path / "off.tif"
    proc = densify("lai", "--s2", str(src), "--out", str(off), "--extent", "2.0", "40.0", "2.1", "40.1",
                   "--extent-crs", "EPSG:4326")
    assert proc.returncode == 1 and f"{CLEAR}: the extent does not overlap the S2 image" in proc.stderr
    proc = densify("lai", "--s2", str(src), "--out", str(off), "--extent-crs", "EPSG:4326")
    assert proc.returncode == 1 and "--extent XMIN YMIN XMAX YMAX" in proc.stderr
    assert "Traceback" not in proc.stderr and not off.exists()


def test_angles_from_stack_values_default_nan():
    angles, warnings = L.Angles.from_values(35.0, 150.0, float("nan"), 100.0)
    assert (angles.sun_zenith, angles.sun_azimuth, angles.view_azimuth) == (35.0, 150.0, 100.0)
    assert angles.view_zenith == L.DEFAULT_VIEW_ZENITH and "view zenith" in warnings[0]


def test_lai_file_names_an_input_whose_pixels_do_not_read(uds_dir, tmp_path, corrupt_copy):
    bad = corrupt_copy(uds_dir / "S2" / CLEAR, tmp_path / CLEAR)
    with pytest.raises(InputError, match=f"{CLEAR}: cannot read its pixels"):
        L.lai_file(bad, tmp_path / "o" / "lai.tif")
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_lai_of_a_synthesized_image_with_its_uncertainty_is_the_runs_lai(uds_subset, tmp_path, capsys):
    """`densify lai --std` (and Processing's UNCERTAINTY) on a synthesized image and its uncertainty
    file gives the LAI, LAI std and flags the run itself wrote: the same angles (tagged on the
    synthesized file) and the same std propagation. Without the std file LAI_std is 0."""
    import datetime as dt

    from sentinel_densify.core import cli, engine
    from sentinel_densify.core.request import DensifyRequest

    res = engine.run(DensifyRequest(s2=[str(p) for p in uds_subset["s2"]], masks=[str(p) for p in uds_subset["masks"]],
                                    target_date=dt.date(2018, 3, 1), out_dir=str(tmp_path / "run"), method="linear"))
    synth, unc, run_lai = res.outputs["synthesized"], res.outputs["uncertainty"], res.outputs["lai"]
    with rasterio.open(synth) as ds:
        tags = ds.tags()
    assert tags["ANGLES_FROM"] and float(tags["MEAN_SUN_ZENITH_ANGLE"]) > 0
    out = tmp_path / "lai_std.tif"
    assert cli.main(["lai", "--s2", synth, "--std", unc, "--out", str(out)]) == 0
    capsys.readouterr()
    with rasterio.open(run_lai) as a, rasterio.open(out) as b:
        ref, got = a.read(), b.read()
        assert "propagated from the reflectance std" in b.tags()["LAI_std"]
        made = {k: b.tags().get(k) for k in ("TARGET_DATE", "METHOD", "MODE")}  # how its image was made, kept
        assert made == {"TARGET_DATE": "2018-03-01", "METHOD": "linear", "MODE": tags["MODE"]}
    ok = np.isfinite(ref[0])
    assert ok.mean() > 0.9 and (ref[1][ok] > 0).mean() > 0.9
    np.testing.assert_allclose(got[0][ok], ref[0][ok], atol=1e-4)
    np.testing.assert_allclose(got[1][ok], ref[1][ok], rtol=1e-3, atol=1e-5)
    np.testing.assert_array_equal(got[2], ref[2])
    # over an extent (in the image's CRS, from the CLI), with the std: the run's pixels there, the std read
    # at the same offset
    with rasterio.open(synth) as ds:
        x0, y0, res_m = ds.transform.c, ds.transform.f, ds.transform.a
    part = tmp_path / "lai_part.tif"
    assert cli.main(["lai", "--s2", synth, "--std", unc, "--out", str(part), "--extent", str(x0 + 5.5 * res_m),
                     str(y0 - 30.5 * res_m), str(x0 + 40 * res_m), str(y0 - 10 * res_m)]) == 0
    capsys.readouterr()
    with rasterio.open(part) as ds:
        assert (ds.width, ds.height) == (35, 21)
        assert ds.transform.c == x0 + 5 * res_m and ds.transform.f == y0 - 10 * res_m
        np.testing.assert_array_equal(ds.read(), got[:, 10:31, 5:40])
    plain = L.lai_file(synth, tmp_path / "plain.tif")
    with rasterio.open(plain) as ds:
        assert (ds.read(2)[ok] == 0).all()
    # a std file that is not one: an S2 image (no *_std bands), and an uncertainty on another grid
    with pytest.raises(InputError, match=r"no band described B03_std"):
        L.lai_file(synth, tmp_path / "x.tif", std_path=synth)
    other = tmp_path / "other_grid.tif"
    with rasterio.open(unc) as ds:
        prof, data = ds.profile, ds.read()
        descriptions = ds.descriptions
    with rasterio.open(other, "w", **{**prof, "width": 32, "height": 32}) as ds:
        ds.write(data[:, :32, :32])
        ds.descriptions = descriptions
    with pytest.raises(InputError, match=r"other_grid.tif: the uncertainty file is not on the S2 image's grid"):
        L.lai_file(synth, tmp_path / "y.tif", std_path=other)
    # the uncertainty of another run (another date and method, as picked from a list of layers): refused
    elsewhere = tmp_path / "another_run.tif"
    with rasterio.open(elsewhere, "w", **prof) as ds:
        ds.write(data)
        ds.descriptions = descriptions
        ds.update_tags(TARGET_DATE="2018-04-10", METHOD="onnx:default")
    with pytest.raises(InputError, match=r"another_run.tif: is the uncertainty of another run \(TARGET_DATE "
                                         r"2018-04-10, the image's 2018-03-01; METHOD onnx:default, the image's "
                                         r"linear\)"):
        L.lai_file(synth, tmp_path / "z.tif", std_path=elsewhere)
    assert not any((tmp_path / n).exists() for n in ("x.tif", "y.tif", "z.tif"))
    # the same std as int16 DN with a nodata corner, then as untagged float reflectance: nodata is no
    # value (NaN), and reflectance is told from DN by its size
    with rasterio.open(unc) as ds:
        prof, data, descriptions, tags = ds.profile, ds.read(), ds.descriptions, ds.tags()
    dn = np.where(np.isfinite(data), np.round(data), -9999).astype(np.int16)
    dn[:, :8, :8] = -9999
    as_int = tmp_path / "std_int16.tif"
    with rasterio.open(as_int, "w", **{**prof, "dtype": "int16", "nodata": -9999}) as ds:
        ds.write(dn)
        ds.descriptions = descriptions
        ds.update_tags(**tags)
    refl = tmp_path / "std_refl.tif"
    with rasterio.open(refl, "w", **{**prof, "nodata": None}) as ds:
        ds.write((data * 1e-4).astype(np.float32))  # reflectance, no REFLECTANCE_SCALE tag
        ds.descriptions = descriptions
    for std_file, tol in ((as_int, 2e-3), (refl, 1e-5)):
        with rasterio.open(L.lai_file(synth, tmp_path / f"from_{std_file.name}", std_path=std_file)) as ds:
            got_std = ds.read(2)
        inside = ok.copy()
        if std_file == as_int:
            assert np.isnan(got_std[:8, :8][ok[:8, :8]]).all()  # no std there: no LAI std, not a huge one
            inside[:8, :8] = False
        np.testing.assert_allclose(got_std[inside], ref[1][inside], rtol=tol, atol=1e-4)
    with pytest.raises(OutputError, match="is the input uncertainty"):  # never written over its input
        L.lai_file(synth, unc, std_path=unc)
    with rasterio.open(unc) as ds:
        assert ds.count == 11 and ds.descriptions[0] == "B02_std"  # untouched


def test_lai_warns_of_implausible_reflectance(uds_dir, tmp_path):
    """An image whose reflectance is not plausibly reflectance gives a meaningless LAI: warned, naming the file
    and the median found. Too low: 0-1 reflectance given a DN scale as its GDAL band scale (values ~1e-5); too high:
    DN tagged REFLECTANCE_SCALE=1. None of the 118 real 31UDS images (clear, cloudy) is either."""
    from helpers import craft, read_array
    from sentinel_densify.core.inventory import read_s2

    src = uds_dir / "S2" / CLEAR
    low = craft(src, tmp_path / "scaled_twice.tif", (read_array(src) * 1e-4).astype("float32"))
    with rasterio.open(low, "r+") as ds:
        ds.scales = [1e-4] * ds.count
    high = craft(src, tmp_path / "dn_as_reflectance.tif", tags={"REFLECTANCE_SCALE": "1"})
    median = float(np.median(read_s2(src, bands=L.LAI_BANDS).refl))  # about 0.2
    for path, said in ((low, f"low (median {median * 1e-4:.3g} "), (high, f"high (median {median * 1e4:.3g} ")):
        warnings: list[str] = []
        out = L.lai_file(path, tmp_path / f"lai_{path.name}", warnings=warnings)
        found = [w for w in warnings if w.startswith(f"LAI: the reflectance of {path.name} is implausibly {said}")]
        assert len(found) == 1, warnings
        with rasterio.open(out) as ds:
            assert found[0] in ds.tags()["warnings"]
    for path in sorted((uds_dir / "S2").glob("*_L2A_10m.tif")):
        assert L.reflectance_warnings(read_s2(path, bands=L.LAI_BANDS).refl, path.name) == [], path.name
    warnings = []
    L.lai_file(src, tmp_path / "lai.tif", warnings=warnings)
    assert warnings == []


def test_the_reflectance_warning_judges_the_whole_image_not_its_fill_or_first_rows(uds_dir, tmp_path):
    """Audit 2, finding 2: correctly scaled images are not called "scaled twice". (a) Float reflectance with a 0 fill
    outside a round AOI and no nodata (an Earth Engine .divide(10000) export clipped to a polygon): the pixels whose
    bands are all 0 are not judged. (b) Baseline 04.00 DN (tagged) whose first row block is clear deep water (median
    0.00065 over the LAI bands: Sen2Cor's NIR and SWIR near 0) above land: a sample of the whole image is judged, and
    clear water alone is not implausible either (a double scale gives about 2e-5)."""
    from helpers import craft, read_array

    src = uds_dir / "S2" / CLEAR
    dn = read_array(src)
    refl = np.where(dn > 0, dn * 1e-4, 0).astype("float32")
    yy, xx = np.mgrid[:64, :64]
    refl[:, (yy - 32) ** 2 + (xx - 32) ** 2 > 20 ** 2] = 0  # 61 % of the pixels
    aoi = craft(src, tmp_path / "S2_2018-07-05_aoi_float.tif", refl, nodata=None,
                drop_tags=("REFLECTANCE_SCALE", "BOA_ADD_OFFSET"))
    water = {"B02": 350, "B03": 250, "B04": 70, "B05": 40, "B06": 8, "B07": 5, "B08": 4, "B8A": 3, "B11": -5,
             "B12": -10}
    coast = np.where(dn > 0, dn + 1000, 0)
    for k, band in enumerate(S2_ORDER):
        coast[k, :8] = water[band] + 1000
    coast = craft(src, tmp_path / "S2_2023-07-05_coast.tif", coast.astype("uint16"),
                  tags={"ACQUISITION_DATETIME": "2023-07-05T10:54:27Z", "BOA_ADD_OFFSET": "-1000"})
    for path in (aoi, coast):
        warnings: list[str] = []
        out = L.lai_file(path, tmp_path / f"lai_{path.name}", block_pixels=64 * 8, warnings=warnings)
        assert warnings == [], warnings
        with rasterio.open(out) as ds:
            assert "warnings" not in ds.tags()
    sea = np.array([[water[b] * 1e-4] for b in L.LAI_BANDS], dtype="float32")[:, :, None]  # (8, 1, 1)
    assert L.reflectance_warnings(sea, "sea") == []
    assert "implausibly low" in L.reflectance_warnings(sea * 0.03, "scaled twice")[0]  # about 2e-5


def test_the_band_order_help_says_the_file_is_then_read_alone():
    """Audit 2, N3: `densify lai --band-order` reads the file alone (no other file of its date looked for)."""
    import argparse

    from sentinel_densify.core import cmd_lai

    parser = argparse.ArgumentParser()
    cmd_lai.configure(parser)
    said = next(a.help for a in parser._actions if "--band-order" in a.option_strings)
    assert "the file is read alone" in said and "20 m file" in said, said


def test_lai_of_a_large_tiled_image_decodes_each_block_once(uds_dir, tmp_path, monkeypatch):
    """Scale audit, finding 1: lai_file opened and described the image again for every block of rows (23 rows of a
    full tile), so each row of 256 px tiles was decoded about 11 times (21 GB read from a 1.8 GB file): GDAL's block
    cache belongs to the open file. The image is now opened once for all its blocks of rows (GDAL decodes each tile
    once), and the LAI is the same whatever the block size."""
    from helpers import blocks_read, craft

    src, n, tile = uds_dir / "S2" / CLEAR, 2048, 256
    big = craft(src, tmp_path / "T31UDS_20180705T105031_L2A_big.tif", np.tile(rasterio.open(src).read(), (1, 32, 32)),
                width=n, height=n, tiled=True, blockxsize=tile, blockysize=tile)
    opened, plain_open = [], rasterio.open

    def spy_open(path, *args, **kwargs):
        opened.append(str(path))
        return plain_open(path, *args, **kwargs)

    monkeypatch.setattr(rasterio, "open", spy_open)
    read = blocks_read(monkeypatch, big, tile)
    out = L.lai_file(big, tmp_path / "lai.tif")
    monkeypatch.undo()
    assert opened.count(str(big)) <= 4  # described (twice) and opened once, not once per block
    assert set(read) == {(r, c) for r in range(n // tile) for c in range(n // tile)}  # by blocks of rows
    whole = L.lai_file(big, tmp_path / "lai_whole.tif", block_pixels=n * n)
    with rasterio.open(out) as a, rasterio.open(whole) as b:
        np.testing.assert_array_equal(a.read(), b.read())
