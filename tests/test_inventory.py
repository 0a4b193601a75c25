"""Discovery, classification and checks of real inputs, and every bad input of the issue."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from helpers import blocks_read, craft, read_array
from sentinel_densify.core import inventory
from sentinel_densify.core.errors import InputError
from sentinel_densify.core.stack import S2_BANDS


@pytest.fixture(scope="module")
def real(uds_dir):
    s2 = sorted((uds_dir / "S2").glob("*_L2A_10m.tif"))
    scl = sorted((uds_dir / "S2").glob("*_SCL_20m.tif"))
    s1 = sorted((uds_dir / "S1").glob("*.tif"))
    return {"s2": s2, "scl": scl, "s1": s1}


def test_real_folder_classified_and_masks_paired(uds_dir, real):
    inv = inventory.build([str(uds_dir / "S2")], [str(uds_dir / "S1")])
    assert len(inv.s2) == len(real["s2"]) == 118
    assert len(inv.s1) == len(real["s1"]) == 159
    assert {Path(i.path).name for i in inv.s2} == {p.name for p in real["s2"]}
    assert len(inv.masks) == 118
    for s2_path, mask in inv.masks.items():
        assert mask.mask_kind == "scl"
        assert Path(mask.path).name.split("_")[1] == Path(s2_path).name.split("_")[1]
    assert inv.bands == S2_BANDS
    assert inv.grid.width == inv.grid.height == 64 and inv.grid.res == pytest.approx(10.0)
    assert all(i.s1_db for i in inv.s1)
    assert np.all(np.diff(inv.s2_days) > 0) and np.all(np.diff(inv.s1_days) > 0)
    assert not any("no cloud mask" in w for w in inv.warnings)


def test_s1_units_detected(real, tmp_path):
    src = real["s1"][0]
    assert inventory.describe(src).s1_db  # UNITS=dB tag
    with rasterio.open(src) as ds:
        db = ds.read()
    untagged_db = craft(src, tmp_path / "S1_IW_GRDH_ASC_20170801T173236_db.tif", drop_tags=("UNITS",))
    info = inventory.describe(untagged_db)
    assert info.sensor == "S1" and info.s1_db and info.tags["DETECTED_UNITS"] == "dB"
    lin = craft(src, tmp_path / "S1_IW_GRDH_ASC_20170801T173236_lin.tif",
                data=np.power(10.0, db / 10.0).astype("float32"), drop_tags=("UNITS",))
    info = inventory.describe(lin)
    assert info.sensor == "S1" and not info.s1_db and info.tags["DETECTED_UNITS"] == "linear"
    # a scene with bright targets (village roofs above 7 dB, over 5 in linear power) is still linear
    bright = next(p for p in real["s1"] if np.nanmax(read_array(p)) > 7.0)
    lin = craft(bright, tmp_path / bright.name.replace("_dB", "_lin"), drop_tags=("UNITS",),
                data=np.power(10.0, read_array(bright) / 10.0).astype("float32"))
    info = inventory.describe(lin)
    assert not info.s1_db and info.tags["DETECTED_UNITS"] == "linear"


def test_s1_bands_named_as_snap_writes_them(real, tmp_path):
    """SNAP's calibrated GeoTIFFs name the bands Sigma0_VH_db, Sigma0_VV_db (VH first): found by name, never
    taken in the VV, VH order."""
    src = real["s1"][0]
    with rasterio.open(src) as ds:
        vv, vh = ds.read(1), ds.read(2)
    swapped = craft(src, tmp_path / "S1B_IW_GRDH_1SDV_20170801T173236_Cal_TC_dB.tif", data=np.stack([vh, vv]),
                    descriptions=["Sigma0_VH_db", "Sigma0_VV_db"])
    info = inventory.describe(swapped)
    assert info.sensor == "S1" and info.bands == ["VH", "VV"] and not info.problems
    inv = inventory.build([str(real["s2"][0])], [str(swapped)], [str(real["scl"][0])], check_clear=False)
    from sentinel_densify.core.reader import SeriesReader

    with SeriesReader(inv) as reader:
        got = reader.read_s1(inv.s1[0], inventory.describe(src).grid)
    np.testing.assert_allclose(got, np.stack([vv, vh]), rtol=1e-5, equal_nan=True)
    for name in ("Gamma0_VV", "Intensity_VH", "VV_dB", "sigma0_vh"):
        assert inventory._norm_band(name) in ("VV", "VH"), name


def _read(path, **kw) -> np.ndarray:
    return inventory.read_s2(path, **kw).refl


def test_band_identification(real, tmp_path):
    src = real["s2"][40]
    ref = _read(src)
    with rasterio.open(src) as ds:
        dn = ds.read()
    # no descriptions, 10 bands: the common 10-band order
    plain = craft(src, tmp_path / "T31UDS_20180301T105000_L2A.tif", descriptions=[""] * 10)
    info = inventory.describe(plain)
    assert info.bands == S2_BANDS
    np.testing.assert_array_equal(_read(plain), ref)
    # bands reversed, no descriptions: a band order puts them back
    rev = craft(src, tmp_path / "T31UDS_20180302T105000_L2A.tif", data=dn[::-1], descriptions=[""] * 10)
    order = S2_BANDS[::-1]
    np.testing.assert_array_equal(_read(rev, band_order=order, bands=S2_BANDS), ref)
    # reversed with descriptions: found by name
    named = craft(src, tmp_path / "T31UDS_20180303T105000_L2A.tif", data=dn[::-1], descriptions=order)
    np.testing.assert_array_equal(_read(named, bands=S2_BANDS), ref)
    # 4 unnamed bands and no band order: a problem naming the count
    four = craft(src, tmp_path / "T31UDS_20180304T105000_L2A.tif", data=dn[:4], descriptions=[""] * 4)
    assert any("4 unnamed bands" in p for p in inventory.describe(four).problems)
    assert inventory.describe(four, band_order=["B02", "B03", "B04", "B08"]).bands == ["B02", "B03", "B04", "B08"]


def test_boa_add_offset_honoured(real, tmp_path):
    src = real["s2"][40]
    with rasterio.open(src) as ds:
        dn = ds.read()
    assert (dn > 0).all()  # no nodata in this image, so DN+1000 is a plain shift
    off = craft(src, tmp_path / "T31UDS_20180301T105000_L2A.tif", data=(dn + 1000).astype("uint16"),
                tags={"BOA_ADD_OFFSET": "-1000"})
    np.testing.assert_allclose(_read(off), _read(src), atol=1e-6)
    assert float(np.nanmean(_read(src))) > 0.01


def test_unknown_sensor_described(real, tmp_path):
    with rasterio.open(real["s2"][0]) as ds:
        dn = ds.read()
    odd = craft(real["s2"][0], tmp_path / "thing_20180101.tif", data=dn[:3].astype("float32"),
                descriptions=[""] * 3)
    assert any("unknown sensor" in p for p in inventory.describe(odd).problems)


@pytest.fixture()
def bad_inputs(real, tmp_path) -> dict[str, Path]:
    s2 = real["s2"]
    with rasterio.open(s2[40]) as ds:
        dn, transform = ds.read(), ds.transform
    bad = {
        "unreadable": tmp_path / "T31UDS_20180201T105000_L2A_10m.tif",
        "no_crs": tmp_path / "T31UDS_20180202T105000_L2A_10m.tif",
        "missing_band": tmp_path / "T31UDS_20180901T105000_L2A_10m.tif",
        "far_away": tmp_path / "T31UDS_20180902T105000_L2A_10m.tif",
        "duplicate": tmp_path / "copy_of_earlier.tif",
    }
    bad["unreadable"].write_text("not a raster")
    craft(s2[40], bad["no_crs"], crs=None, tags={"ACQUISITION_DATETIME": "2018-02-02T10:50:00Z"})
    craft(s2[40], bad["missing_band"], data=dn[:9], descriptions=S2_BANDS[:9],
          tags={"ACQUISITION_DATETIME": "2018-09-01T10:50:00Z"})
    craft(s2[40], bad["far_away"], transform=Affine(10, 0, transform.c + 2e6, 0, -10, transform.f),
          tags={"ACQUISITION_DATETIME": "2018-09-02T10:50:00Z"})
    shutil.copy(s2[41], bad["duplicate"])
    return bad


def test_file_problems_each_named(real, bad_inputs):
    """Unreadable and non-georeferenced files are listed in one error with their names."""
    with pytest.raises(InputError) as err:
        inventory.build([str(real["s2"][41]), str(bad_inputs["unreadable"]), str(bad_inputs["no_crs"])])
    msg = str(err.value)
    assert len(err.value.problems) == 2
    assert f"{bad_inputs['unreadable'].name}: unreadable" in msg
    assert f"{bad_inputs['no_crs'].name}: has no CRS" in msg


def test_grid_problems_each_named(real, bad_inputs):
    """Missing bands, no overlap and a duplicated date: one error naming each file."""
    files = [real["s2"][40], real["s2"][41], bad_inputs["missing_band"], bad_inputs["far_away"],
             bad_inputs["duplicate"]]
    with pytest.raises(InputError) as err:
        inventory.build([str(f) for f in files])
    msg = str(err.value)
    assert len(err.value.problems) == 3, msg
    assert f"{bad_inputs['missing_band'].name}: missing band(s) B12" in msg
    assert f"{bad_inputs['far_away'].name}: does not overlap" in msg
    assert "duplicated date" in msg and real["s2"][41].name in msg and bad_inputs["duplicate"].name in msg


def test_every_problem_in_one_error(real, bad_inputs):
    files = [real["s2"][40], real["s2"][41]] + list(bad_inputs.values())
    with pytest.raises(InputError) as err:
        inventory.build([str(f) for f in files])
    msg = str(err.value)
    for path in bad_inputs.values():
        assert path.name in msg, path.name


def test_missing_path_and_empty_folder_named(real, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError) as err:
        inventory.build([str(real["s2"][40])], [str(tmp_path / "missing_folder"), str(tmp_path / "empty")])
    msg = str(err.value)
    assert "missing_folder: does not exist" in msg and "empty: folder contains no raster files" in msg


def test_a_folder_that_cannot_be_read_is_named(real, tmp_path, monkeypatch):
    """A subfolder that cannot be read would leave its rasters out silently (Path.rglob skips it): it is named, and
    so is an input folder that cannot be read at all (not "contains no raster files"). The permission error is
    mocked: the tests run as root, whom a chmod 000 folder does not stop."""
    import os

    top, sub = tmp_path / "S2", tmp_path / "S2" / "july"
    sub.mkdir(parents=True)
    for path, folder in ((real["s2"][40], top), (real["s2"][41], top), (real["s2"][60], sub)):
        shutil.copy(path, folder / path.name)
    assert len(inventory.find_rasters(str(top))[0]) == 3
    scandir, locked = os.scandir, {str(sub)}

    def guarded(path="."):
        if str(path) in locked:
            raise PermissionError(13, "Permission denied", str(path))
        return scandir(path)

    monkeypatch.setattr(os, "scandir", guarded)
    found, problems = inventory.find_rasters(str(top))
    assert len(found) == 2
    assert [str(p) for p in problems] == ["july: folder cannot be read (Permission denied): its rasters would be "
                                          "left out"]
    locked.add(str(top))
    assert [str(p) for p in inventory.find_rasters(str(top))[1]] == [
        "S2: folder cannot be read (Permission denied): its rasters would be left out"]


def test_s1_no_overlap_named(real, tmp_path):
    s1_far = craft(real["s1"][0], tmp_path / "S1_IW_GRDH_ASC_20180101T173236_VV_VH_dB.tif",
                   transform=Affine(20, 0, 1e5, 0, -20, 1e6))
    with pytest.raises(InputError, match=f"{s1_far.name}: does not overlap"):
        inventory.build([str(real["s2"][40])], [str(s1_far)])


def test_no_clear_observation(real):
    cloudy = [i for i, m in enumerate(real["scl"]) if not np.isin(rasterio.open(m).read(1), (4, 5, 6)).any()][:3]
    assert len(cloudy) >= 2
    s2 = [str(real["s2"][i]) for i in cloudy]
    scl = [str(real["scl"][i]) for i in cloudy]
    with pytest.raises(InputError, match="no clear Sentinel-2 observation") as err:
        inventory.build(s2, [], scl)
    assert Path(s2[0]).name in str(err.value)
    # the same images with one partly clear date added are fine
    inv = inventory.build(s2 + [str(real["s2"][40])], [], scl + [str(real["scl"][40])])
    assert len(inv.s2) == len(cloudy) + 1


def test_target_modes_and_out_of_range(real):
    inv = inventory.build([str(p) for p in real["s2"][30:40]], [], [str(p) for p in real["scl"][30:40]])
    first, last = inv.s2[0].when.date(), inv.s2[-1].when.date()
    assert inventory.check_target(inv, first + dt.timedelta(days=3))[0] == "gap-filling"
    assert inventory.check_target(inv, last + dt.timedelta(days=20))[0] == "forecasting"
    assert inventory.check_target(inv, first - dt.timedelta(days=20))[0] == "backcasting"
    with pytest.raises(InputError, match="out of range"):
        inventory.check_target(inv, last + dt.timedelta(days=400))
    with pytest.raises(InputError, match="out of range"):
        inventory.check_target(inv, dt.date(2010, 1, 1))
    # at most 366 calendar days outside the series, the same at both ends (the images are taken before noon)
    limit = dt.timedelta(days=inventory.MAX_EXTRAPOLATION_DAYS)
    assert inventory.check_target(inv, first - limit)[0] == "backcasting"
    assert inventory.check_target(inv, last + limit)[0] == "forecasting"
    for outside in (first - limit - dt.timedelta(days=1), last + limit + dt.timedelta(days=1)):
        with pytest.raises(InputError, match=f"target date {outside:%Y-%m-%d} out of range"):
            inventory.check_target(inv, outside)


def test_unnamed_13_band_l1c_gets_the_l1c_order(sen12_dir):
    from sentinel_densify.core.stack import S2_L1C_BANDS

    img = inventory.read_s2(sen12_dir / "s2_cloudfree" / "ROIs2017_winter_112_p797.tif", bands=["B04", "B03", "B02"])
    assert img.bands == ["B04", "B03", "B02"] and img.refl.shape[0] == 3
    info = inventory.describe(sen12_dir / "s2_cloudfree" / "ROIs2017_winter_112_p797.tif", sensor="S2")
    assert info.bands == S2_L1C_BANDS


def test_s2_scaling_reads_scale_quantification_and_offset():
    assert inventory.s2_scaling({"REFLECTANCE_SCALE": "0.0001", "BOA_ADD_OFFSET": "-1000"}) == (1e-4, -1000.0)
    assert inventory.s2_scaling({"quantification_value": "10000"}) == (1e-4, 0.0)
    assert inventory.s2_scaling({}) == (None, 0.0)


# --- the audit of `densify run`: each message names the file and says what is wrong --------------------------


@pytest.fixture()
def s2_folder(real, tmp_path) -> Path:
    """A folder of 4 real S2 images and their SCL masks (copies)."""
    folder = tmp_path / "S2"
    folder.mkdir()
    for i in range(40, 44):
        shutil.copy(real["s2"][i], folder)
        shutil.copy(real["scl"][i], folder)
    return folder


def _without(src: Path, dst: Path, band: str) -> Path:
    with rasterio.open(src) as ds:
        descs, dn = list(ds.descriptions), ds.read()
    keep = [k for k, d in enumerate(descs) if d != band]
    return craft(src, dst, data=dn[keep], descriptions=[descs[k] for k in keep])


def test_a_file_lacking_a_band_is_named_even_the_earliest(real, tmp_path):
    """B8A removed from the earliest file only: that file and the band are named (the bands were
    taken from the earliest file, so the rest looked complete and the model failed later)."""
    first = _without(real["s2"][40], tmp_path / real["s2"][40].name, "B8A")
    with pytest.raises(InputError) as err:
        inventory.build([str(first)] + [str(p) for p in real["s2"][41:44]])
    assert [str(p) for p in err.value.problems] == [
        f"{first.name}: missing band(s) B8A (the other S2 images have {', '.join(S2_BANDS)})"]


def test_the_same_file_twice_is_used_once_with_a_warning(s2_folder):
    one = sorted(s2_folder.glob("*_L2A_10m.tif"))[1]
    inv = inventory.build([str(s2_folder), str(one)])
    assert len(inv.s2) == 4 and len(inv.masks) == 4
    assert f"{one.name} is given twice: used once" in inv.warnings


def test_a_folder_of_the_wrong_sensor_is_said_so(s2_folder, real, tmp_path):
    """`--s2 S2 --s1 S2` and `--s1 S1 --mask S1`: files given twice and looking like another sensor,
    not "duplicated date (same as itself)"."""
    inv = inventory.build([str(s2_folder)], [str(s2_folder)])
    assert len(inv.s2) == 4 and inv.s1 == []
    text = " | ".join(inv.warnings)
    assert "8 files are given twice, as Sentinel-2 and as Sentinel-1" in text
    assert "4 files look like Sentinel-2, given as Sentinel-1" in text
    assert "4 files look like a cloud mask, given as Sentinel-1" in text
    s1 = tmp_path / "S1"
    s1.mkdir()
    for p in real["s1"][:2]:
        shutil.copy(p, s1)
    inv = inventory.build([str(s2_folder)], [str(s1)], [str(s1)])
    assert len(inv.s1) == 2 and len(inv.masks) == 4  # the SCL files of the S2 folder
    assert any("2 files look like Sentinel-1, given as a cloud mask" in w for w in inv.warnings)
    # one S1 file given only as a mask: used as what it is, with a warning
    only = inventory.build([str(s2_folder)], [], [str(s1 / real["s1"][0].name)])
    assert len(only.s1) == 1
    assert f"{real['s1'][0].name} looks like Sentinel-1, given as a cloud mask: used as Sentinel-1" in only.warnings


def _as_output(src: Path, dst: Path, kind: str) -> Path:
    """A copy of a real S2 image tagged and described as `engine.run` writes its outputs."""
    tags = {"TARGET_DATE": "2018-03-01", "MODE": "gap-filling", "METHOD": "linear",
            "SOFTWARE": "Sentinel Densify 0", "ACQUISITION_DATETIME": "2018-03-01T12:00:00Z"}
    if kind == "lai":
        with rasterio.open(src) as ds:
            data = ds.read()[:3].astype("float32")
        return craft(src, dst, data=data, tags=tags, descriptions=["LAI", "LAI_std", "flags"])
    return craft(src, dst, tags=tags)


def test_densify_outputs_never_taken_as_observations(s2_folder, real):
    (s2_folder / "out").mkdir()  # `densify run --out S2/out`, then again
    synth = _as_output(real["s2"][45], s2_folder / "out" / "synthesized_20180301.tif", "synthesized")
    lai = _as_output(real["s2"][45], s2_folder / "out" / "lai_20180301.tif", "lai")
    # found in a folder: skipped with a warning naming them
    inv = inventory.build([str(s2_folder)])
    assert len(inv.s2) == 4 and synth.name not in {i.name for i in inv.s2}
    assert any("skipped 2 Densify output(s)" in w and lai.name in w and synth.name in w for w in inv.warnings)
    # given as files: refused, by kind
    with pytest.raises(InputError) as err:
        inventory.build([str(s2_folder), str(lai), str(synth)])
    msg = str(err.value)
    assert f"{lai.name}: is a Densify output (lai), not an acquisition" in msg
    assert f"{synth.name}: is a Densify output (synthesized), not an acquisition" in msg
    assert "unnamed" not in msg and "duplicated date" not in msg
    # a single-image tool may still read one (LAI from a synthesized image)
    assert inventory.read_s2(synth).refl.shape[0] == 10


def test_named_bands_that_are_not_s2_are_named(real, tmp_path):
    with rasterio.open(real["s2"][40]) as ds:
        dn = ds.read()
    odd = craft(real["s2"][40], tmp_path / "T31UDS_20180301T105000_L2A.tif", data=dn[:3],
                descriptions=["NDVI", "red", "nir"])
    problems = inventory.describe(odd, sensor="S2").problems
    assert problems and "named NDVI, red, nir: not Sentinel-2 bands" in problems[0]
    assert not any("unnamed" in p for p in problems)
    s1 = inventory.describe(real["s1"][0], sensor="S2").problems  # an S1 raster where S2 is needed
    assert s1 == ["has 2 band(s) named VV, VH: a Sentinel-1 raster where a Sentinel-2 one (bands B02, B03, ...) "
                  "is needed"], s1


@pytest.mark.parametrize("order, expected", [
    (S2_BANDS[:7] + ["B99"] + S2_BANDS[8:], ["band order: unknown band B99"]),
    (["B02"] + S2_BANDS[1:9] + ["B02"], ["band order: B02 listed twice"]),
])
def test_bad_band_order_named(real, order, expected):
    with pytest.raises(InputError) as err:
        inventory.build([str(p) for p in real["s2"][40:43]], band_order=order)
    assert [str(p).split(" (")[0] for p in err.value.problems] == expected
    assert "needs" not in str(err.value)


def test_one_problem_of_many_files_is_said_once(real):
    """A band order naming 9 bands for 10-band files is the same problem for every file: the message
    says it once with the number of files (the dialog still lists each file)."""
    files = [str(p) for p in real["s2"][40:46]]
    with pytest.raises(InputError) as err:
        inventory.build(files, band_order=S2_BANDS[:9])
    assert len(err.value.problems) == 6 and all(p.path for p in err.value.problems)
    text = str(err.value)
    problem = err.value.problems[0].message
    assert text.count(problem) == 1, text
    names = [Path(f).name for f in files]
    assert f"6 files ({', '.join(names[:3])}, ...): {problem}" in text and names[5] not in text


def test_grid_from_the_earliest_file_is_said_when_grids_differ(real, tmp_path):
    src = real["s2"][41]
    with rasterio.open(src) as ds:
        dn, t = ds.read(), ds.transform
    shifted = craft(src, tmp_path / src.name, data=dn[:, :48, :48], width=48, height=48,
                    transform=Affine(t.a, 0, t.c + 80, 0, t.e, t.f - 80))
    files = [real["s2"][40], shifted, real["s2"][42]]
    inv = inventory.build([str(f) for f in files])
    assert len(inv.warnings) == 2, inv.warnings  # this one and "no cloud masks given"
    grid_warning = inv.warnings[0]
    assert real["s2"][40].name in grid_warning and "1 other S2 image(s)" in grid_warning
    assert "(extent)" in grid_warning and shifted.name in grid_warning
    # all on one grid: nothing said
    assert not any("output grid" in w for w in inventory.build([str(p) for p in real["s2"][40:43]]).warnings)


def test_assumed_band_order_is_said_unless_given(real, tmp_path):
    plain = [craft(p, tmp_path / p.name, descriptions=[""] * 10) for p in real["s2"][40:43]]
    inv = inventory.build([str(p) for p in plain])
    said = [w for w in inv.warnings if "no band descriptions" in w]
    assert len(said) == 1 and "3 S2 file(s)" in said[0] and plain[0].name in said[0]
    assert "B02, B03, B04, B05, B06, B07, B08, B8A, B11, B12" in said[0]
    inv = inventory.build([str(p) for p in plain], band_order=S2_BANDS)
    assert not any("no band descriptions" in w for w in inv.warnings)
    # named files: nothing assumed
    assert not any("no band descriptions" in w for w in inventory.build([str(p) for p in real["s2"][40:43]]).warnings)


# --- the input audit (runs/s29/audit_inputs/FINDINGS.md): float reflectance, masks, S1 fill ------------------


def _as_float_reflectance(src: Path, dst: Path, tags: dict | None = None, edit=None) -> Path:
    """A real L2A image as `gdal_translate -ot Float32 -scale 0 10000 0 1 -a_nodata nan` writes it: reflectance
    0-1, NaN where DN 0, the DN tags (REFLECTANCE_SCALE=0.0001) copied along unless `tags` drops them."""
    dn = read_array(src)
    refl = np.where(dn > 0, dn / 10000.0, np.nan).astype("float32")
    if edit is not None:
        edit(refl)
    drop = () if tags is None else ("REFLECTANCE_SCALE", "BOA_ADD_OFFSET")
    return craft(src, dst, data=refl, tags=tags or {}, drop_tags=drop, nodata=float("nan"))


def test_float_reflectance_keeping_the_dn_scale_tag_is_read_as_reflectance(real, tmp_path):
    """Finding 1: the REFLECTANCE_SCALE=0.0001 tag that gdal_translate copies onto 0-1 floats was applied again
    (outputs 10000 times too dark, no warning). The values win, and the ignored tag is said."""
    files = [_as_float_reflectance(p, tmp_path / p.name) for p in real["s2"][40:43]]
    assert inventory.describe(files[0]).tags["REFLECTANCE_SCALE"] == "0.0001"
    for src, f in zip(real["s2"][40:43], files, strict=True):
        np.testing.assert_allclose(_read(f), _read(src), rtol=1e-6, equal_nan=True)
    inv = inventory.build([str(f) for f in files], check_clear=False)
    assert [i.scale for i in inv.s2] == [1.0] * 3
    assert any(w.startswith("3 files (") and "REFLECTANCE_SCALE=0.0001 tag is ignored: the values are already "
               "reflectance" in w for w in inv.warnings), inv.warnings
    # float DN keeps its tag: read as DN, no warning
    dn = craft(real["s2"][40], tmp_path / "dn" / real["s2"][40].name, data=read_array(real["s2"][40]).astype("float32"))
    np.testing.assert_allclose(_read(dn), _read(real["s2"][40]), rtol=1e-6, equal_nan=True)
    assert not inventory.describe(dn).notes


def test_one_outlier_never_flips_a_float_image_to_dn(real, tmp_path):
    """Finding 4: untagged float reflectance was told from DN by band 1's maximum, so one saturated B02 pixel
    (65535 DN kept as 6.5535) read that whole date as DN, 10000 times too dark."""
    def saturate(refl):
        refl[0, 10, 10] = 6.5535

    src = real["s2"][41]
    spiked = _as_float_reflectance(src, tmp_path / src.name, tags={}, edit=saturate)
    info = inventory.describe(spiked)
    assert info.scale == 1.0 and info.scale_from == "values"
    got, ref = _read(spiked), _read(src)
    ref[0, 10, 10] = 6.5535
    np.testing.assert_allclose(got, ref, rtol=1e-6, equal_nan=True)
    # files whose values disagree are said
    clean = [_as_float_reflectance(p, tmp_path / p.name, tags={}) for p in real["s2"][42:44]]
    dn = craft(real["s2"][44], tmp_path / real["s2"][44].name, data=read_array(real["s2"][44]).astype("float32"),
               drop_tags=("REFLECTANCE_SCALE",))
    inv = inventory.build([str(p) for p in [spiked, *clean, dn]], check_clear=False)
    assert any(w.startswith(f"1 of the 4 float S2 images hold values read as DN (0-10000), the others as "
                            f"reflectance (0-1) ({dn.name})") for w in inv.warnings), inv.warnings


FMASK_OF_SCL = np.full(256, 255, "uint8")  # Fmask 4 / FORCE coding of the real SCL classes
FMASK_OF_SCL[[4, 5]], FMASK_OF_SCL[6], FMASK_OF_SCL[[2, 3]], FMASK_OF_SCL[11] = 0, 1, 2, 3
FMASK_OF_SCL[[1, 7, 8, 9, 10]] = 4


def _clear_read(inv: inventory.Inventory, s2: inventory.RasterInfo, grid=None) -> np.ndarray:
    from sentinel_densify.core.reader import SeriesReader

    with SeriesReader(inv) as reader:
        return np.isfinite(reader.read_s2(s2, grid or inv.grid)).all(axis=0)


def test_masks_are_read_by_the_kind_their_name_says_and_a_guess_is_said(real, tmp_path):
    """Finding 2: the kind was guessed from each file's values, so Fmask codes (4 = cloud) were read as SCL
    (4 = vegetation, clear), inverting the mask, without a word. An Fmask name is read as Fmask (clear: 0 land,
    1 water); an Fmask-named file holding other codes is refused; a kind guessed from values is said."""
    s2, scl = real["s2"][40:44], real["scl"][40:44]
    fmask = [craft(p, tmp_path / "F" / p.name.replace("_SCL_20m", "_Fmask"), data=FMASK_OF_SCL[read_array(p)],
                   nodata=255, descriptions=[""]) for p in scl]
    by_fmask = inventory.build([str(p) for p in s2], masks=[str(p) for p in fmask], check_clear=False)
    by_scl = inventory.build([str(p) for p in s2], masks=[str(p) for p in scl], check_clear=False)
    assert {m.mask_kind for m in by_fmask.masks.values()} == {"fmask"}
    assert not any("kind of cloud mask" in w for w in by_fmask.warnings), by_fmask.warnings
    for a, b in zip(by_fmask.s2, by_scl.s2, strict=True):
        np.testing.assert_array_equal(_clear_read(by_fmask, a), _clear_read(by_scl, b))
    odd = craft(scl[0], tmp_path / "odd" / fmask[0].name, data=read_array(scl[0]) + 5, nodata=None)
    with pytest.raises(InputError, match=rf"{odd.name}: is named as an Fmask cloud mask but holds values Fmask "
                                         r"does not write \(\d+, \d+"):
        inventory.build([str(p) for p in s2], masks=[str(odd)], check_clear=False)
    # no name says: guessed from the values, and said (once for the files of one guess)
    binary = [craft(p, tmp_path / "B" / p.name.replace("_SCL_20m", "_cloudmask"), descriptions=[""], nodata=None,
                    data=(~np.isin(read_array(p), inventory.SCL_CLEAR)).astype("uint8")) for p in scl]
    inv = inventory.build([str(p) for p in s2], masks=[str(p) for p in binary], check_clear=False)
    assert [w for w in inv.warnings if "kind of cloud mask" in w] == [
        f"4 files ({binary[0].name}, {binary[1].name}, {binary[2].name} and 1 more): no name or band description "
        "says what kind of cloud mask it is (SCL, CLDPRB or probability, Fmask): read from its values as binary "
        "(0 = clear); name it so (e.g. ..._SCL.tif, ..._CLDPRB.tif) if it is not"]
    few = craft(scl[1], binary[1], data=np.minimum(read_array(scl[1]), 8).astype("uint8"), nodata=None,
                descriptions=[""])
    inv = inventory.build([str(p) for p in s2], masks=[str(p) for p in binary], check_clear=False)
    assert any(w.startswith("the cloud masks read as different kinds from their values (3 as binary, 1 as Sen2Cor "
                            "SCL)") for w in inv.warnings), inv.warnings
    assert any(w.startswith(f"{few.name}: no name or band description says") and "as Sen2Cor SCL" in w
               for w in inv.warnings), inv.warnings


def test_a_probability_scale_is_the_file_s_never_a_window_s(real, tmp_path):
    """Finding 2: a window of a 0-100 % probability (ESA's MSK_CLDPRB, uint8) whose values were all 0 or 1 was
    multiplied by 100, so a clear date's 1 % pixels became 100 % cloud, and the result hung on the tiling. Integer
    probabilities are %, a float file is 0-1 when no value of it exceeds 1: decided once per file."""
    s2, scl = real["s2"][40:42], real["scl"][40:42]
    rng = np.random.default_rng(0)
    prob = [craft(p, tmp_path / p.name.replace("_SCL", "_CLDPRB"), descriptions=[""], nodata=None,
                  data=rng.integers(0, 2, read_array(p).shape).astype("uint8")) for p in scl]
    inv = inventory.build([str(p) for p in s2], masks=[str(p) for p in prob], check_clear=False)
    assert {m.mask_kind for m in inv.masks.values()} == {"probability"}
    valid = np.isfinite(inventory.read_s2(s2[0]).refl).all(axis=0)
    np.testing.assert_array_equal(_clear_read(inv, inv.s2[0]), valid)  # 0 and 1 %: all clear
    # a float 0-1 probability whose only cloudy pixels lie in the left half: its right half is read alike
    frac = np.where(np.arange(32) < 8, 0.9, 0.005)[None, None, :].repeat(32, axis=1).astype("float32")
    frac_file = craft(scl[0], tmp_path / "F" / prob[0].name, data=frac, descriptions=[""], nodata=None)
    inv = inventory.build([str(s2[0])], masks=[str(frac_file)], check_clear=False)
    assert inv.masks[str(s2[0])].mask_kind == "probability_0_1"
    whole = _clear_read(inv, inv.s2[0])
    assert not whole[:, :16].any() and whole[:, 16:].all()
    g = inv.grid
    right = inventory.Grid(g.crs_wkt, g.window_transform(0, 32), 32, 64)
    np.testing.assert_array_equal(_clear_read(inv, inv.s2[0], right), whole[:, 32:])
    assert inventory.clear_from_mask("probability", np.array([1.0, 0.0])).tolist() == [True, True]  # 1 %: clear


def test_s1_db_with_a_zero_fill_and_no_nodata_is_no_data_there(real, tmp_path):
    """Finding 6: SNAP's dB GeoTIFF export keeps 0 outside the swath without declaring it nodata; 0 dB (a
    sigma0 of 1, brighter than any field) was read as backscatter, silently. Exactly 0 dB is no data there, as
    linear power 0 is, and the partial-coverage warning counts valid pixels, not the file's extent."""
    from sentinel_densify.core.reader import SeriesReader

    def west_filled(src: Path, fill: float, folder: str, **profile) -> Path:
        db = read_array(src)
        db[:, :, :16] = fill
        return craft(src, tmp_path / folder / src.name, data=db, **profile)

    s1 = real["s1"][:2]
    zero = [west_filled(p, 0.0, "zero", nodata=None) for p in s1]
    nan = [west_filled(p, np.nan, "nan") for p in s1]
    inv = inventory.build([str(real["s2"][0])], [str(p) for p in zero], [str(real["scl"][0])], check_clear=False)
    ref = inventory.build([str(real["s2"][0])], [str(p) for p in nan], [str(real["scl"][0])], check_clear=False)
    assert inv.s1[0].s1_db and inv.s1[0].nodata == 0.0
    with SeriesReader(inv) as a, SeriesReader(ref) as b:
        for i, j in zip(inv.s1, ref.s1, strict=True):
            got = a.read_s1(i, inv.grid)
            assert np.isnan(got[:, :, :32]).all()
            np.testing.assert_array_equal(got, b.read_s1(j, ref.grid))
    for warnings in (inv.warnings, ref.warnings):
        assert any(w.startswith("2 S1 image(s) cover only part of the S2 grid") and "50%" in w
                   for w in warnings), warnings


def test_a_stale_units_tag_loses_to_plainly_other_values(real, tmp_path):
    """Finding 8: converted dB -> linear power by a tool that keeps the tags, the file still said UNITS=dB and was
    converted again, silently. Plainly linear values (none negative, median below 1.5) win, with a warning; so do
    plainly dB values (a negative median) over UNITS=linear."""
    src = real["s1"][0]
    db = read_array(src)
    lin = craft(src, tmp_path / src.name.replace("_dB", "_lin"), data=np.power(10.0, db / 10.0).astype("float32"))
    assert inventory.describe(lin).tags["UNITS"] == "dB"
    inv = inventory.build([str(real["s2"][0])], [str(lin)], [str(real["scl"][0])], check_clear=False)
    assert not inv.s1[0].s1_db and inv.s1[0].tags["DETECTED_UNITS"] == "linear"
    assert f"{lin.name}: its UNITS=dB tag is contradicted by its values, read as linear power (none negative, " \
           "median below 1.5)" in inv.warnings, inv.warnings
    tagged_linear = craft(src, tmp_path / "dB" / src.name, tags={"UNITS": "linear"})
    info = inventory.describe(tagged_linear)
    assert info.s1_db and info.notes == ["its UNITS=linear tag is contradicted by its values, read as dB (negative "
                                         "median)"]
    assert inventory.describe(src).s1_db and not inventory.describe(src).notes  # the tag agrees: said nothing


def test_a_tar_archive_is_named_as_not_read(real, tmp_path):
    """Finding 12: a .tar.gz of the series, or a /vsitar/ path into it, was "unreadable ('...' not recognized as a
    supported file format)": said to be a tar archive, with what to do."""
    import tarfile

    archive = tmp_path / "series.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for p in real["s2"][40:42]:
            tar.add(p, arcname=p.name)
    for given in (str(archive), f"/vsitar/{archive}/{real['s2'][40].name}"):
        with pytest.raises(InputError) as err:
            inventory.build([given, str(real["s2"][43])], check_clear=False)
        problems = [str(p) for p in err.value.problems]
        assert len(problems) == 1 and problems[0].endswith(": is a tar archive, which is not read: extract it, or zip "
                                                           "it (zip archives are read as they are)"), problems


def test_a_large_file_without_overviews_is_sampled_in_windows(real, tmp_path):
    """Audit 2, finding 7: a large tiled GeoTIFF without overviews (a full tile from Earth Engine) is sampled in a few
    full-resolution windows spread over it, not decoded whole by a decimated read; the checks that sample it decide as
    on the small image: the post-2022 offset (untagged DN + 1000 warned, plain DN not) and float reflectance."""
    src = real["s2"][40]
    dn = read_array(src)[:3]  # B02, B03, B04
    when = "2023-03-20T11:04:36Z"
    big: dict[str, Path] = {}
    for kind, add in (("plain", 0), ("offset", 1000)):
        big[kind] = craft(src, tmp_path / f"T31UDS_20230320T110436_{kind}.tif",
                          np.tile(np.where(dn > 0, dn + add, 0), (1, 32, 32)).astype("uint16"), width=2048, height=2048,
                          tiled=True, blockxsize=256, blockysize=256, drop_tags=("BOA_ADD_OFFSET",),
                          tags={"ACQUISITION_DATETIME": when}, descriptions=S2_BANDS[:3])
    n, size = inventory.SAMPLED_WINDOWS
    assert inventory.sampled_values(str(big["plain"]), [1, 2, 3], 64).size == 3 * n * n * size * size
    for kind, warned in (("plain", False), ("offset", True)):
        info = inventory.describe(big[kind])
        assert info.offset_untold and bool(inventory.offset_warnings([info])) == warned, kind
    refl = craft(src, tmp_path / "refl.tif", np.tile(dn[:1] * np.float32(1e-4), (1, 32, 32)), width=2048,
                 height=2048, tiled=True, blockxsize=256, blockysize=256)
    assert inventory.looks_like_reflectance(str(refl))
    assert inventory.sampled_values(str(refl), None, 64).size == n * n * size * size


def test_named_bands_are_never_called_unnamed(real, tmp_path):
    """Audit 2, finding 3: a file with some bands named says how many are not; one whose few bands are all named
    Sentinel-2 bands is a part of an acquisition (e.g. a SWIR file of B11, B12), not a problem; one holding only bands
    the project does not use (B01, B09) is marked to be left out."""
    src = real["s2"][40]
    dn = read_array(src)
    some = craft(src, tmp_path / "T31UDS_20180301T105000_L2A.tif", data=dn[:3], descriptions=["B02", "", ""])
    assert inventory.describe(some, sensor="S2").problems == [
        "has 2 of its 3 bands unnamed (the others: B02): name them (band descriptions B02...) or give a band order"]
    swir = craft(src, tmp_path / "T31UDS_20180302T105000_swir.tif", data=dn[8:], descriptions=["B11", "B12"])
    info = inventory.describe(swir)
    assert (info.sensor, info.problems, info.bands) == ("S2", [], ["B11", "B12"])
    sixty = craft(src, tmp_path / "T31UDS_20180303T105000_60m.tif", data=dn[:2], descriptions=["B01", "B09"])
    info = inventory.describe(sixty)
    assert (info.sensor, info.problems, info.unused) == ("S2", [], "B01, B09")


def test_s1_coverage_of_a_large_tiled_file_reads_few_of_its_blocks(real, tmp_path, monkeypatch):
    """A full-tile S1 file, tiled and without overviews, was decoded whole by the partial-coverage check (every
    block held a sample point): over a second a file, minutes for a year of files in the dialog. The share now
    comes from at most SHARE_BLOCKS blocks spread over the file, and stays within 3 points of the truth. The
    sampled windows that describe reads each lie in one block (they lay on block corners: four each)."""
    n, tile = 4096, 256
    yy, xx = np.mgrid[0:n, 0:n]
    db = np.broadcast_to(np.where(yy % 7 < 3, -12.0, -17.0).astype("float32"), (2, n, n)).copy()
    db[:, xx > 0.55 * n + 0.35 * yy] = np.nan  # a swath edge across the file
    truth = float(np.isfinite(db[0]).mean())
    src = real["s1"][0]
    big = craft(src, tmp_path / src.name, data=db, width=n, height=n, nodata=np.nan, tiled=True,
                blockxsize=tile, blockysize=tile, compress="deflate")
    read = blocks_read(monkeypatch, big, tile)
    info = inventory.describe(big, "S1")  # its sampled values: one block per window, not four
    assert 0 < len(set(read)) <= inventory.SAMPLED_WINDOWS[0] ** 2
    read.clear()
    share = inventory.s1_coverage(info, info.grid)
    assert 0 < len(set(read)) <= inventory.SHARE_BLOCKS
    assert abs(share - truth) < 0.03, (share, truth)
    half = inventory.Grid(info.grid.crs_wkt, info.grid.window_transform(0, 0), n // 2, n)  # the west half: all valid
    assert inventory.s1_coverage(info, half) == 1.0


def test_a_vrt_s_cached_checks_follow_its_sources(real, tmp_path):
    """Audit 2, N4: what is cached about a file (the offset check's dark DN, the S1 coverage, the dialog's
    descriptions) was keyed by the file's own modification time, so a user's VRT kept the result of sources since
    rewritten. A VRT's version now includes its sources'; a zip member's is its archive's."""
    from osgeo import gdal

    src = craft(real["s2"][40], tmp_path / "T31UDS_20180611T105031_L2A.tif", drop_tags=("BOA_ADD_OFFSET",))
    vrt = tmp_path / "stack.vrt"
    gdal.BuildVRT(str(vrt), [str(src)]).FlushCache()
    before, own = inventory.file_version(vrt), inventory.file_version(src)
    assert before[3:] == (own,) and len(before) == 4  # its own, then its source's
    dark = inventory._dark_dn(inventory.describe(vrt))
    dn = read_array(src)
    craft(src, src, data=np.where(dn > 0, dn + 1000, 0).astype(dn.dtype))  # rewritten in place, the VRT untouched
    assert inventory.file_version(vrt) != before
    assert inventory._dark_dn(inventory.describe(vrt)) == pytest.approx(dark + 1000, abs=1)


def test_a_clear_patch_smaller_than_the_sample_s_pixels_is_not_refused(real, tmp_path):
    """Second audit: on a grid of at most 1024 px, "no clear observation" was decided from a 128 px read alone, so a
    1000 px grid whose one clear patch is 6 x 6 px was refused (at 1100 px the full-resolution search found it). That
    search now runs whenever the sample finds nothing, at any size."""
    from sentinel_densify.core.reader import read_clear_fraction

    src, n = real["s2"][40], 1000
    data = np.tile(read_array(src), (1, 16, 16))[:, :n, :n]
    big = craft(src, tmp_path / "S2" / src.name, data=data, width=n, height=n)
    clear = np.zeros((n, n), bool)
    clear[501:507, 301:307] = True  # between the coarse read's pixel centres
    scl = craft(real["scl"][40], tmp_path / "S2" / Path(real["scl"][40]).name, width=n, height=n,
                transform=inventory.describe(big).grid.transform, data=np.where(clear, 4, 9).astype("uint8")[None])
    inv = inventory.build([str(big)], masks=[str(scl)], check_clear=False)
    assert read_clear_fraction(inv, inv.s2[0]) == 0
    inventory.check_some_clear(inv)  # no error


def test_hidden_folders_in_an_input_folder_are_not_searched(real, tmp_path):
    """Portability audit: a macOS drive's .Trashes (or any folder named .*) under an input folder held rasters that
    were read as inputs; hidden files were already skipped, hidden folders are now too."""
    folder = tmp_path / "S2"
    (folder / ".Trashes" / "501").mkdir(parents=True)
    for p in real["s2"][40:42]:
        shutil.copy(p, folder / p.name)
    shutil.copy(real["s2"][43], folder / ".Trashes" / "501" / real["s2"][43].name)
    found, problems = inventory.find_rasters([str(folder)])
    assert problems == [] and sorted(Path(f).name for f in found) == [p.name for p in real["s2"][40:42]]
