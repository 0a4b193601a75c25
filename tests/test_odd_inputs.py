"""What analysts feed `engine.run` besides the tidy series: rasters derived from the real 31UDS files
(band files, GDAL scale / offset, missing nodata, Level-1C tags, partial S1, extra masks)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest
import rasterio
from helpers import craft, read_array
from sentinel_densify.core import engine, inventory
from sentinel_densify.core.errors import InputError
from sentinel_densify.core.request import DensifyRequest


@pytest.fixture(scope="module")
def few(uds_subset) -> dict[str, list[Path]]:
    return {"s2": uds_subset["s2"][:8], "masks": uds_subset["masks"][:8], "s1": uds_subset["s1"][:10]}


def _copy(src: Path, dst: Path, edit=None, **profile) -> Path:
    """A copy of a real raster, its pixels changed by `edit(data)` and its profile by `profile`."""
    return craft(src, dst, None if edit is None else edit(read_array(src)), **profile)


def _run(tmp_path, s2, masks=(), s1=(), date=dt.date(2018, 3, 1), method="linear", name="out"):
    request = DensifyRequest(s2=[str(p) for p in s2], masks=[str(p) for p in masks], s1=[str(p) for p in s1],
                             target_date=date, out_dir=str(tmp_path / name), method=method, lai=False)
    return engine.run(request)


def test_single_band_files_are_refused_not_taken_for_masks(few, tmp_path):
    """ESA ships one file per band (T31UDS_..._B04_10m.jp2): one was taken for a cloud mask, and could
    replace a date's SCL, silently. An acquisition given as all its band files is read (test_band_files);
    one band alone is named."""
    src = few["s2"][3]
    stamp = src.name.split("_")[1]
    band = tmp_path / "S2" / f"T31UDS_{stamp}_B04_10m.tif"
    _copy(src, band, lambda d: d[2:3])
    with pytest.raises(InputError, match=f"{band.name}: the band files of T31UDS_{stamp} .* lack band"):
        _run(tmp_path, few["s2"] + [band], few["masks"])
    red = _copy(src, tmp_path / "S2" / f"T31UDS_{stamp}_red.tif", lambda d: d[2:3])  # no band name in it
    with rasterio.open(red, "r+") as ds:
        ds.set_band_description(1, "B04")
    with pytest.raises(InputError) as err:
        _run(tmp_path, few["s2"] + [red], few["masks"])  # e.g. found in the S2 folder
    assert err.value.problems == [err.value.problems[0]]  # that one problem (its date is in its name)
    assert str(err.value.problems[0]).startswith(f"{red.name}: the band files of T31UDS_{stamp} ({red.name}) "
                                                 "lack band(s) B02, B03, B05")  # B04 from its description


def test_two_masks_for_one_image_warn_and_the_scl_wins(few, tmp_path):
    src_mask = few["masks"][2]
    binary = _copy(src_mask, tmp_path / f"cloudmask_{src_mask.name.split('_')[1]}.tif",
                   lambda d: np.ones_like(d))  # says: all cloudy
    res = _run(tmp_path, few["s2"], few["masks"] + [binary])
    assert any(f"{src_mask.name} and {binary.name} are both cloud masks" in w and f"{src_mask.name} used" in w
               for w in res.warnings), res.warnings
    plain = _run(tmp_path, few["s2"], few["masks"], name="plain")
    np.testing.assert_array_equal(read_array(res.outputs["synthesized"]), read_array(plain.outputs["synthesized"]))


def test_gdal_band_scale_and_offset_are_applied(few, tmp_path):
    """DN + 1000 with band offset -0.1 (reflectance) and scale 1e-4, as QGIS reads them: the same result."""
    folder = tmp_path / "S2"
    shifted = []
    for src in few["s2"]:
        dst = _copy(src, folder / src.name, lambda d: np.where(d > 0, d + 1000, 0).astype(d.dtype))
        with rasterio.open(dst, "r+") as ds:
            ds.scales, ds.offsets = [1e-4] * ds.count, [-0.1] * ds.count
            ds.update_tags(REFLECTANCE_SCALE="")
        shifted.append(dst)
    res = _run(tmp_path, shifted, few["masks"])
    plain = _run(tmp_path, few["s2"], few["masks"], name="plain")
    np.testing.assert_allclose(read_array(res.outputs["synthesized"]), read_array(plain.outputs["synthesized"]),
                               atol=0.05)


def test_zero_dn_is_nodata_when_the_file_does_not_say(few, tmp_path):
    src = few["s2"][4]
    half = lambda d: np.concatenate([d[..., :32], np.zeros_like(d[..., 32:])], axis=-1)  # noqa: E731
    unset = _copy(src, tmp_path / "unset" / src.name, half, nodata=None)
    zero = _copy(src, tmp_path / "zero" / src.name, half, nodata=0)
    rest = [p for p in few["s2"] if p != src]
    a = _run(tmp_path, rest + [unset], few["masks"], name="a")
    b = _run(tmp_path, rest + [zero], few["masks"], name="b")
    np.testing.assert_array_equal(read_array(a.outputs["synthesized"]), read_array(b.outputs["synthesized"]))


def test_level_1c_partial_s1_and_empty_output_are_warned(few, tmp_path):
    l1c = [craft(p, tmp_path / "L1C" / p.name, tags={"PROCESSING_LEVEL": "Level-1C"}) for p in few["s2"]]
    res = _run(tmp_path, l1c, few["masks"], name="l1c")
    assert any(w.startswith(f"{len(l1c)} S2 image(s) are Level-1C") for w in res.warnings), res.warnings

    half_s1 = [_copy(p, tmp_path / "S1" / p.name, lambda d: d[..., :16], width=16) for p in few["s1"][:3]]
    res = _run(tmp_path, few["s2"], few["masks"], few["s1"][3:] + half_s1, method="default", name="s1")
    assert any(w.startswith("3 S1 image(s) cover only part of the S2 grid") and "50%" in w for w in res.warnings)

    def cloudy(d):  # SCL 9 (cloud) everywhere but a 4 x 4 px corner
        out = np.full_like(d, 9)
        out[..., :2, :2] = 4
        return out

    masks = [_copy(p, tmp_path / "M" / p.name, cloudy) for p in few["masks"]]
    res = _run(tmp_path, few["s2"], masks, name="cloudy")
    assert any(w.startswith("100% of the output pixels have no value") or w.startswith("99% of the output")
               for w in res.warnings), res.warnings
    assert any("too few clear observations to calibrate its uncertainty" in w for w in res.warnings)


def test_undated_files_with_one_name_are_told_apart(sen12_dir, tmp_path):
    files = [sen12_dir / f / "ROIs2017_winter_112_p797.tif" for f in ("s1", "s2_cloudy", "s2_cloudfree")]
    with pytest.raises(InputError) as err:
        _run(tmp_path, files[1:], s1=files[:1])
    assert all(str(f) in str(err.value) for f in files)


def test_a_method_dipping_below_zero_writes_no_negative_reflectance(few, tmp_path, monkeypatch):
    """A stand-in method (registered for this test) whose mean dips below 0, as the model's far
    forecasts can: the written reflectance is clipped at 0, NaN stays NaN, the std is kept."""
    from sentinel_densify.core import methods

    class Dipping(methods.Method):
        name = "dipping"

        def predict(self, stack, target_day):
            mean = np.full((len(stack.bands), *stack.shape), 0.05, np.float32)
            mean[:, :10] = -0.02
            mean[:, -5:] = np.nan
            return mean, np.full_like(mean, 0.01)

    monkeypatch.setitem(methods._REGISTRY, "dipping", lambda device="auto": Dipping())
    res = _run(tmp_path, few["s2"], few["masks"], method="dipping")
    synth, unc = read_array(res.outputs["synthesized"]), read_array(res.outputs["uncertainty"])
    assert (synth[:, :10] == 0).all() and np.isnan(synth[:, -5:]).all() and np.allclose(synth[:, 10:-5], 500)
    assert np.allclose(unc[:, :10], 100)


def test_an_scl_band_in_the_s2_stack_is_its_mask_not_a_band(few, tmp_path):
    """Finding 7: GEE / openEO exports carry the SCL along as an 11th band. It was read as an 11th reflectance
    band (interpolated classes in the output, its std in mean_std), and the run warned "no cloud masks given"
    with the SCL in the file: clouds counted as clear. It is the image's mask (a mask file still wins), and said."""
    stacked = []
    for src, scl in zip(few["s2"], few["masks"], strict=True):
        classes = read_array(scl)[0].repeat(2, 0).repeat(2, 1)  # 20 m SCL onto the 10 m grid
        stacked.append(craft(src, tmp_path / "S2" / src.name, np.concatenate([read_array(src), classes[None]]),
                             descriptions=[*inventory_bands(src), "SCL"]))
    res = _run(tmp_path, stacked, name="stacked")
    plain = _run(tmp_path, few["s2"], few["masks"], name="plain")
    with rasterio.open(res.outputs["synthesized"]) as ds:
        assert ds.count == 10 and "SCL" not in ds.descriptions
    np.testing.assert_array_equal(read_array(res.outputs["synthesized"]), read_array(plain.outputs["synthesized"]))
    np.testing.assert_array_equal(read_array(res.outputs["uncertainty"]), read_array(plain.outputs["uncertainty"]))
    assert not any("no cloud masks given" in w for w in res.warnings), res.warnings
    assert any(w.startswith(f"{len(stacked)} files (") and "holds band(s) SCL besides its Sentinel-2 bands, not read "
               "as reflectance: SCL is used as its cloud mask (Sen2Cor SCL)" in w for w in res.warnings), res.warnings
    # a mask file given for an image wins over its band
    cloudy = _copy(few["masks"][2], tmp_path / "M" / few["masks"][2].name, lambda d: np.full_like(d, 9))
    inv = inventory.build([str(p) for p in stacked], masks=[str(cloudy)], check_clear=False)
    assert inv.masks[str(stacked[2])].path == str(cloudy) and inv.masks[str(stacked[0])].mask_band == 11
    assert not any("no cloud mask" in w for w in inv.warnings), inv.warnings


def inventory_bands(path: Path) -> list[str]:
    with rasterio.open(path) as ds:
        return list(ds.descriptions)


def _five_years_on(src: Path, folder: Path, dn_offset: int = 0, tags: dict | None = None) -> Path:
    """A real 31UDS image as if acquired five years later (2022-2023: processing baseline 04.00), `dn_offset` added
    to its valid DN and its offset tag dropped (a stack made with gdal_merge / gdalbuildvrt carries none) unless
    `tags` set one."""
    when = inventory.describe(src).when
    when = when.replace(year=when.year + 5)
    dn = read_array(src)
    return craft(src, folder / f"T31UDS_{when:%Y%m%dT%H%M%S}_L2A_10m.tif",
                 np.where(dn > 0, dn + dn_offset, 0).astype("uint16"), drop_tags=("BOA_ADD_OFFSET",),
                 tags={"ACQUISITION_DATETIME": f"{when:%Y-%m-%dT%H:%M:%SZ}", **(tags or {})})


def test_an_untagged_offset_after_2022_is_warned_not_applied(uds_dir, few, tmp_path):
    """DN of processing baseline 04.00 (from 2022-01-25: 10000 x reflectance + 1000) stacked without their offset tag:
    even the darkest visible pixels of the series at or above 1000 DN say the offset is there; a warning names the
    files and what to do, and the values are read as they are. Not for the whole real series moved to 2022-2023
    without the offset (45 of its 118 images are cloud, brighter than 1000 DN throughout), nor with the offset
    tagged, nor for the same DN dated before 2022-01-25."""
    offset = [_five_years_on(p, tmp_path / "offset", 1000) for p in few["s2"]]
    inv = inventory.build([str(p) for p in offset], check_clear=False)
    said = [w for w in inv.warnings if "BOA_ADD_OFFSET=-1000" in w]
    assert len(said) == 1 and said[0].startswith(f"8 S2 images ({offset[0].name}, ") and "0.1 too bright" in said[0]
    assert inv.s2[0].offset == 0.0
    np.testing.assert_allclose(inventory.read_s2(offset[0]).refl, inventory.read_s2(few["s2"][0]).refl + 0.1,
                               atol=1e-6)
    w: list[str] = []  # one image, in `densify lai`
    from sentinel_densify.core import lai

    lai.lai_file(offset[0], tmp_path / "lai.tif", warnings=w)
    assert any(f"{offset[0].name}: integer DN dated from 2022-01-25" in x for x in w), w

    plain = [_five_years_on(p, tmp_path / "plain") for p in sorted((uds_dir / "S2").glob("*_L2A_10m.tif"))]
    tagged = [_five_years_on(p, tmp_path / "tagged", 1000, {"BOA_ADD_OFFSET": "-1000"}) for p in few["s2"]]
    before = [craft(p, tmp_path / "before" / p.name, np.where(read_array(p) > 0, read_array(p) + 1000, 0)
                    .astype("uint16"), drop_tags=("BOA_ADD_OFFSET",)) for p in few["s2"]]
    for files in (plain, tagged, before):
        inv = inventory.build([str(p) for p in files], check_clear=False)
        assert not any("BOA_ADD_OFFSET=-1000" in w for w in inv.warnings), inv.warnings
    np.testing.assert_allclose(inventory.read_s2(tagged[0]).refl, inventory.read_s2(few["s2"][0]).refl, atol=1e-6)


def test_an_offset_tag_beside_a_gdal_band_scale_is_applied(few, tmp_path):
    """Audit 2, finding 1: DN + 1000 with a GDAL band scale of 1e-4 and no band offset, tagged BOA_ADD_OFFSET=-1000
    as the offset warning says to: the tag's offset is applied (refl = (DN - 1000) x 1e-4), the original reflectance;
    untagged, the warning names the files (whatever their clouds, partly cloudy ones too)."""
    scaled = []
    for src in few["s2"]:
        dst = _five_years_on(src, tmp_path, 1000)
        with rasterio.open(dst, "r+") as ds:
            ds.scales = [1e-4] * ds.count
            ds.update_tags(REFLECTANCE_SCALE="")
        scaled.append(dst)
    inv = inventory.build([str(p) for p in scaled], check_clear=False)
    said = [w for w in inv.warnings if "BOA_ADD_OFFSET=-1000" in w]
    assert len(said) == 1 and said[0].startswith("8 S2 images (") and "all or partly cloudy" in said[0], said
    for dst in scaled:
        with rasterio.open(dst, "r+") as ds:
            ds.update_tags(BOA_ADD_OFFSET="-1000")  # gdal_edit.py -mo BOA_ADD_OFFSET=-1000 FILE
    inv = inventory.build([str(p) for p in scaled], check_clear=False)
    assert not any("BOA_ADD_OFFSET" in w for w in inv.warnings), inv.warnings
    info = inventory.describe(scaled[0])
    assert (info.scale, info.offset, info.scale_from) == (1e-4, pytest.approx(-0.1), "band scale")
    np.testing.assert_allclose(inventory.read_s2(scaled[0]).refl, inventory.read_s2(few["s2"][0]).refl, atol=1e-6)


def test_an_s1_whose_pixels_do_not_read_gets_one_clear_message_no_gdal_lines(few, tmp_path, corrupt_copy, densify):
    """The S1 units check and valid-share probes swallow the read error on purpose (the run's read names the file):
    GDAL's own "ERROR 1: TIFFReadEncodedTile..." lines must not reach stderr before that message."""
    pytest.importorskip("onnxruntime")
    bad = corrupt_copy(few["s1"][3], tmp_path / few["s1"][3].name)
    s1 = [str(bad if p == few["s1"][3] else p) for p in few["s1"]]
    res = densify("run", "--s2", *map(str, few["s2"]), "--mask", *map(str, few["masks"]), "--s1", *s1,
                  "--date", "2018-02-12", "--out", str(tmp_path / "out"), "--no-lai")
    assert res.returncode == 1
    assert [ln for ln in res.stderr.splitlines() if ln.startswith("ERROR ")] == [], res.stderr
    assert f"densify run: Bad input: {bad.name}: cannot read its pixels" in res.stderr
    assert "Traceback" not in res.stderr and not (tmp_path / "out").exists()
