"""Sentinel-2 as ESA ships it: one file per band and resolution in a .SAFE folder, made here from the
real 31UDS acquisitions (their 20 m bands are 20 m pixels repeated, so ESA's 20 m files are recovered
exactly) and read back as one image per acquisition."""

from __future__ import annotations

import datetime as dt
import re
import shlex
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import rasterio
from helpers import craft, make_safe, read_array, write_mtd, zip_product
from sentinel_densify.core import engine, inventory
from sentinel_densify.core.errors import InputError
from sentinel_densify.core.request import DensifyRequest

TARGET = dt.date(2018, 3, 1)


@pytest.fixture(scope="module")
def series(uds_subset) -> dict[str, list[Path]]:
    return {"s2": uds_subset["s2"][4:12], "masks": uds_subset["masks"][4:12]}


@pytest.fixture(scope="module")
def safes(series, tmp_path_factory) -> Path:
    """The 8 acquisitions as .SAFE products of processing baseline 04.00 (DN + 1000), in one folder."""
    root = tmp_path_factory.mktemp("safes")
    for s2, scl in zip(series["s2"], series["masks"], strict=True):
        make_safe(s2, scl, root, dn_offset=1000)
    return root


def _run(tmp_path, s2, masks=(), name="out"):
    request = DensifyRequest(s2=[str(p) for p in s2], masks=[str(p) for p in masks], target_date=TARGET,
                             out_dir=str(tmp_path / name), method="linear", lai=False)
    return engine.run(request)


def test_a_safe_product_reads_as_its_stacked_image(series, safes):
    one = next(safes.iterdir())
    inv = inventory.build([str(one)], check_clear=False)
    assert len(inv.s2) == 1 and inv.bands == list(inventory.S2_BANDS)
    image = inv.s2[0]
    stamp = one.name.split("_")[2]
    src = next(p for p in series["s2"] if stamp in p.name)
    assert image.when == inventory.describe(src).when
    # the baseline's offset (from the product name) undoes the + 1000 DN: the same reflectance
    np.testing.assert_allclose(inventory.read_s2(image.path).refl, inventory.read_s2(src).refl, atol=1e-6)
    # the finest of its two SCL files is its mask; AOT, WVP and the QI_DATA masks are not inputs
    assert Path(inv.masks[image.path].path).name == f"T31UDS_{stamp}_SCL_20m.jp2"
    assert any("read as one image each" in w for w in inv.warnings), inv.warnings
    # the granule's MTD_TL.xml gives the angles the stacked file carries (its bands' view angles averaged)
    tags, src_tags = inventory.read_s2(image.path).tags, inventory.describe(src).tags
    for key in ("MEAN_SUN_ZENITH_ANGLE", "MEAN_SUN_AZIMUTH_ANGLE", "MEAN_VIEW_ZENITH_ANGLE", "MEAN_VIEW_AZIMUTH_ANGLE"):
        assert float(tags[key]) == pytest.approx(float(src_tags[key]), abs=1e-3), key
    assert not any("both cloud masks" in w or "AOT" in w for w in inv.warnings), inv.warnings


def test_a_run_from_safe_products_equals_the_run_from_stacked_files(series, safes, tmp_path):
    stacked = _run(tmp_path, series["s2"], series["masks"], name="stacked")
    safe = _run(tmp_path, [safes], name="safe")
    for kind in ("synthesized", "uncertainty"):  # the same up to float32 rounding of (DN + 1000) / 1e4 - 0.1
        np.testing.assert_allclose(read_array(safe.outputs[kind]), read_array(stacked.outputs[kind]), rtol=1e-5)
    with rasterio.open(safe.outputs["synthesized"]) as ds:
        assert "T31UDS_" in ds.tags()["INPUTS_S2"]


def test_an_output_chosen_on_a_band_or_polarization_file_is_refused(series, uds_subset, tmp_path):
    """An output file (e.g. a Processing destination) on one of the band files of an S2 image, or on the VV file
    of an S1 acquisition given per polarization, would replace an input: refused before anything is written."""
    from helpers import make_asf

    safes = [make_safe(s2, scl, tmp_path / "in", driver="GTiff", extras=False)
             for s2, scl in zip(series["s2"][:3], series["masks"][:3], strict=True)]
    asf = [make_asf(s1, tmp_path / "in") for s1 in uds_subset["s1"][:3]]
    band = next(safes[1].rglob("*_B8A_20m.tif"))
    vv = next(asf[0].glob("*_VV.tif"))
    for victim in (band, vv):
        before = victim.read_bytes()
        request = DensifyRequest(s2=[str(p) for p in safes], s1=[str(p) for p in asf], target_date=TARGET,
                                 out_dir=str(tmp_path / "out"), method="linear", lai=False,
                                 output_paths={"synthesized": str(victim)})
        with pytest.raises(InputError, match="the synthesized output would replace this input") as err:
            engine.run(request)
        assert victim.name in str(err.value)
        assert victim.read_bytes() == before and not (tmp_path / "out").exists()


def test_the_offset_comes_from_the_product_metadata(series, tmp_path):
    """Band files out of a .SAFE-named folder: MTD_MSIL2A.xml gives the offset; without it the date decides,
    with a warning."""
    s2, scl = series["s2"][0], series["masks"][0]
    product = make_safe(s2, scl, tmp_path, dn_offset=1000, name="my_download", extras=False)
    write_mtd(product)
    inv = inventory.build([str(product)], check_clear=False)
    np.testing.assert_allclose(inventory.read_s2(inv.s2[0].path).refl, inventory.read_s2(s2).refl, atol=1e-6)
    assert not any("no product metadata" in w for w in inv.warnings)

    (product / "MTD_MSIL2A.xml").unlink()  # 2018: before baseline 04.00, so no offset is assumed
    inv = inventory.build([str(product)], check_clear=False)
    assert inv.s2[0].offset == 0.0
    assert any("no product metadata" in w and "assumed from the date" in w for w in inv.warnings), inv.warnings


def test_missing_bands_and_mismatched_grids_are_named(series, tmp_path):
    s2, scl = series["s2"][0], series["masks"][0]
    stamp = s2.name.split("_")[1]
    product = make_safe(s2, scl, tmp_path, extras=False)
    r10 = next(product.rglob("R10m"))
    with pytest.raises(InputError) as err:
        _run(tmp_path, [r10], name="r10")  # the 10 m folder only
    text = str(err.value)
    assert f"the band files of T31UDS_{stamp}" in text and "lack band(s) B05, B06, B07, B8A, B11, B12" in text

    b05 = next(product.rglob("*_B05_20m.jp2"))
    with rasterio.open(b05) as ds:
        profile, data = ds.profile, ds.read()
    b05.unlink()
    with rasterio.open(b05.with_suffix(".tif"), "w", **{**profile, "driver": "GTiff",
                       "transform": profile["transform"] * rasterio.Affine.translation(8, 0)}) as ds:
        ds.write(data)  # 160 m east of the others
    for f in product.rglob("*_B05_60m.jp2"):
        f.unlink()
    with pytest.raises(InputError, match=f"the band files of T31UDS_{stamp} do not cover the same area "
                                         r"\(T31UDS_\w+_B05_20m.tif differ"):
        _run(tmp_path, [product], name="shifted")


def test_a_lone_band_file_is_not_taken_for_a_mask(series, tmp_path):
    """One band of an acquisition among stacked images: named, never read as a cloud mask."""
    src = series["s2"][3]
    stamp = src.name.split("_")[1]
    red = tmp_path / f"T31UDS_{stamp}_B04_10m.tif"
    with rasterio.open(src) as ds:
        profile, data = ds.profile, ds.read(3)
    with rasterio.open(red, "w", **{**profile, "count": 1}) as ds:
        ds.write(data, 1)
    with pytest.raises(InputError) as err:
        _run(tmp_path, series["s2"] + [red], series["masks"])
    assert [str(p) for p in err.value.problems] == \
        [f"{red.name}: the band files of T31UDS_{stamp} ({red.name}) lack band(s) B02, B03, B05, B06, B07, B08, "
         "B8A, B11, B12: give every band of the acquisition (e.g. the R10m and R20m folders, or the whole .SAFE "
         "product)"]


def test_zipped_products_are_read_in_place(series, safes, tmp_path):
    """Products as downloaded (.SAFE.zip) are read through GDAL's /vsizip/, the offset from the MTD file
    in the archive; nothing is unzipped."""
    s2, scl = series["s2"][0], series["masks"][0]
    product = make_safe(s2, scl, tmp_path / "p", dn_offset=1000, name="my_download", extras=False)
    write_mtd(product)
    archive = zip_product(product, tmp_path / "my_download.zip")
    shutil.rmtree(product)
    inv = inventory.build([str(archive)], check_clear=False)
    image = inv.s2[0]
    np.testing.assert_allclose(inventory.read_s2(image.path).refl, inventory.read_s2(s2).refl, atol=1e-6)
    assert not any("no product metadata" in w for w in inv.warnings), inv.warnings  # the name has no baseline
    assert inv.masks[image.path].path.startswith(f"/vsizip/{archive.resolve()}/my_download/GRANULE/")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["my_download.zip", "p"]
    assert list((tmp_path / "p").iterdir()) == []

    downloads = tmp_path / "downloads"  # 8 archives, one of them also unzipped beside it
    downloads.mkdir()
    for safe in sorted(safes.iterdir()):
        zip_product(safe, downloads / f"{safe.name}.zip")
    shutil.copytree(safe, downloads / safe.name)
    stacked = _run(tmp_path, series["s2"], series["masks"], name="stacked")
    zipped = _run(tmp_path, [downloads], name="zipped")
    for kind in ("synthesized", "uncertainty"):
        np.testing.assert_allclose(read_array(zipped.outputs[kind]), read_array(stacked.outputs[kind]), rtol=1e-5)
    assert any(f"skipped because their product lies unzipped beside them ({safe.name}.zip)" in w
               for w in zipped.warnings), zipped.warnings


def test_unreadable_and_empty_archives_are_named(series, tmp_path):
    broken = tmp_path / "S2B_MSIL2A_broken.SAFE.zip"
    broken.write_bytes(b"PK not really a zip")
    empty = tmp_path / "notes.zip"
    with zipfile.ZipFile(empty, "w") as z:
        z.writestr("notes/readme.txt", "no rasters here")
    with pytest.raises(InputError) as err:
        _run(tmp_path, [*series["s2"], broken, empty], series["masks"])
    text = str(err.value)
    assert f"{broken.name}: not a readable zip archive (File is not a zip file)" in text
    assert f"{empty.name}: zip archive contains no raster files" in text

    folder = tmp_path / "series"  # found in a searched folder, they are skipped like other non-inputs, said
    folder.mkdir()
    for f in [*series["s2"], *series["masks"], broken, empty]:
        (folder / f.name).symlink_to(f)
    inv = inventory.build([str(folder)], check_clear=False)
    assert len(inv.s2) == len(series["s2"])
    for archive, why in ((broken, "not a readable zip archive"), (empty, "zip archive contains no raster files")):
        assert any(f"{archive.name}: {why}" in w and "(skipped)" in w for w in inv.warnings), inv.warnings


def test_lai_of_a_product_is_the_lai_of_its_stacked_image(series, safes, tmp_path, capsys):
    """`densify lai --s2` takes one acquisition's .SAFE folder or .zip: the same LAI (angles from its
    MTD_TL.xml) as from the stacked file; a folder of several acquisitions is named."""
    from sentinel_densify.core import cli

    safe = sorted(safes.iterdir())[2]
    stamp = safe.name.split("_")[2]
    src = next(p for p in series["s2"] if stamp in p.name)
    archive = zip_product(safe, tmp_path / f"{safe.name}.zip")
    outs = {}
    for label, given in (("stacked", src), ("safe", safe), ("zip", archive)):
        outs[label] = tmp_path / f"lai_{label}.tif"
        assert cli.main(["lai", "--s2", str(given), "--out", str(outs[label])]) == 0, capsys.readouterr().err
    lai = {k: read_array(v) for k, v in outs.items()}
    assert np.isfinite(lai["stacked"][0]).mean() > 0.5
    for label in ("safe", "zip"):
        np.testing.assert_allclose(lai[label], lai["stacked"], rtol=1e-4, atol=1e-5)
        with rasterio.open(outs[label]) as ds:
            assert ds.tags()["source"] == {"safe": safe, "zip": archive}[label].name
            assert "warnings" not in ds.tags()  # no angle defaulted
            assert ds.tags()["ACQUISITION_DATETIME"] == inventory.describe(src).tags["ACQUISITION_DATETIME"]

    assert cli.main(["lai", "--s2", str(safes), "--out", str(tmp_path / "many.tif")]) == 1
    err = capsys.readouterr().err
    assert f"{safes.name}: holds 8 Sentinel-2 acquisitions" in err and "give one" in err, err
    assert not (tmp_path / "many.tif").exists()


def test_lai_of_one_band_file_is_the_lai_of_its_acquisition(series, safes, tmp_path, capsys):
    """`densify lai --s2` given one band file (of a .SAFE among others, inside a .zip, or among the loose
    band files of several dates) reads its acquisition's bands: the LAI of its stacked image (loose files
    have no MTD_TL.xml: the default angles, said). A band file whose acquisition lacks bands is named with
    what is missing."""
    from sentinel_densify.core import cli

    safe = sorted(safes.iterdir())[3]
    stamp = safe.name.split("_")[2]
    src = next(p for p in series["s2"] if stamp in p.name)
    archive = zip_product(safe, tmp_path / f"{safe.name}.zip")
    member = next(safe.rglob("*_B11_20m.jp2")).relative_to(safes)
    loose = tmp_path / "loose"  # two acquisitions' 10 and 20 m band files in one folder, no product metadata
    for k in (3, 4):
        product = make_safe(series["s2"][k], series["masks"][k], tmp_path / "plain", driver="GTiff", extras=False)
        for f in [*product.rglob("R10m/*_B*.tif"), *product.rglob("R20m/*_B*.tif")]:
            loose.mkdir(exist_ok=True)
            shutil.copy(f, loose / f.name)
    no_angles = craft(src, tmp_path / "no_angles.tif", drop_tags=[k for k in inventory.describe(src).tags
                                                                  if k.endswith("_ANGLE")])
    given = {"stacked": src, "safe band": safes / member, "zipped band": f"/vsizip/{archive}/{member}",
             "no angles": no_angles, "loose band": next(loose.glob(f"*{stamp}_B03_10m.tif"))}
    outs = {}
    for label, path in given.items():
        outs[label] = tmp_path / f"lai_{label.replace(' ', '_')}.tif"
        assert cli.main(["lai", "--s2", str(path), "--out", str(outs[label])]) == 0, capsys.readouterr().err
    lai = {k: read_array(v) for k, v in outs.items()}
    assert np.isfinite(lai["stacked"][0]).mean() > 0.5
    for label, like in (("safe band", "stacked"), ("zipped band", "stacked"), ("loose band", "no angles")):
        np.testing.assert_allclose(lai[label], lai[like], rtol=1e-4, atol=1e-5, err_msg=label)
    with rasterio.open(outs["safe band"]) as ds:
        assert "warnings" not in ds.tags() and ds.tags()["source"] == member.name
        assert len(ds.tags()["band_files"].split(", ")) == 10
    with rasterio.open(outs["loose band"]) as ds:
        assert "angles missing" in ds.tags()["warnings"]
    assert not np.allclose(lai["no angles"], lai["stacked"], equal_nan=True)  # the angles matter

    for f in loose.glob(f"*{stamp}_B1[12]_20m.tif"):
        f.unlink()
    assert cli.main(["lai", "--s2", str(given["loose band"]), "--out", str(tmp_path / "lacking.tif")]) == 1
    err = capsys.readouterr().err
    assert "lack band(s) B11, B12" in err and not (tmp_path / "lacking.tif").exists(), err


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")  # the product's container
def test_a_product_given_as_gdal_subdatasets_reads_as_one_image(series, tmp_path):
    """QGIS opens a .SAFE's MTD_MSIL2A.xml as GDAL SENTINEL2 subdatasets (10, 20 and 60 m, TCI). Given as
    such, on disk or in its .zip, the product's band files are read as one image (the 10 m subdataset alone
    has 4 bands), once however many of its subdatasets are given."""
    s2, scl = series["s2"][1], series["masks"][1]
    product = make_safe(s2, scl, tmp_path / "p", dn_offset=1000, name="my_download.SAFE", extras=False)
    write_mtd(product)
    archive = zip_product(product, tmp_path / "my_download.zip")
    with rasterio.open(product / "MTD_MSIL2A.xml") as ds:  # as GDAL names them
        on_disk = ds.subdatasets
    with rasterio.open(f"/vsizip/{archive}/my_download.SAFE/MTD_MSIL2A.xml") as ds:
        zipped = ds.subdatasets
    assert [s.rsplit(":", 2)[1] for s in on_disk] == ["10m", "20m", "60m", "TCI"]

    row = inventory.describe(on_disk[0])  # what the dialog lists: an S2 layer, dated, no problem
    assert (row.sensor, row.product, row.problems) == ("S2", str(product), [])
    assert row.when.replace(microsecond=0) == inventory.describe(s2).when

    for given in (on_disk, zipped[:1]):
        inv = inventory.build(list(given), check_clear=False)
        assert len(inv.s2) == 1, inv.s2
        np.testing.assert_allclose(inventory.read_s2(inv.s2[0].path).refl, inventory.read_s2(s2).refl, atol=1e-6)
        assert Path(inv.masks[inv.s2[0].path].path).name.endswith("_SCL_20m.jp2")
        assert not any("twice" in w or "no product metadata" in w for w in inv.warnings), inv.warnings

    as_s1 = inventory.describe(on_disk[0], sensor="S1")
    assert as_s1.problems == ["is a Sentinel-2 product (GDAL SENTINEL2 subdataset), given as S1"]


TEN_M, TWENTY_M = ["B02", "B03", "B04", "B08"], ["B05", "B06", "B07", "B8A", "B11", "B12"]


def _split_export(src: Path, folder: Path, scl: Path | None = None, twenty: list[str] = TWENTY_M, edit20=None,
                  drop_tags=(), **profile20) -> tuple[Path, Path]:
    """A real acquisition as SNAP or Earth Engine export it, in two multi-band files named by its date (band
    descriptions set): S2_<date>_10m.tif, B02 B03 B04 B08 as in the stack, and S2_<date>_20m.tif, `twenty` at 20 m
    (every other pixel: the stack's 20 m bands are 20 m pixels repeated), with the SCL band of `scl` when given,
    its pixels changed by `edit20` and its profile by `profile20`."""
    stamp = src.name.split("_")[1][:8]
    data, t = read_array(src), inventory.describe(src).grid.transform
    coarse = data[[inventory.S2_BANDS.index(b) for b in twenty], ::2, ::2]
    names = list(twenty)
    if scl is not None:
        coarse, names = np.concatenate([coarse, read_array(scl).astype(coarse.dtype)]), [*names, "SCL"]
    fine = craft(src, folder / f"S2_{stamp}_10m.tif", data[[inventory.S2_BANDS.index(b) for b in TEN_M]],
                 descriptions=TEN_M, drop_tags=drop_tags)
    profile = {"width": coarse.shape[2], "height": coarse.shape[1],
               "transform": rasterio.Affine(2 * t.a, 0, t.c, 0, 2 * t.e, t.f), **profile20}
    return fine, craft(src, folder / f"S2_{stamp}_20m.tif", coarse if edit20 is None else edit20(coarse),
                       descriptions=names, drop_tags=drop_tags, **profile)


def test_an_acquisition_exported_as_a_10m_and_a_20m_file_reads_as_one_image(series, tmp_path):
    """Finding 11: a date exported as a 10 m file (B02 B03 B04 B08) and a 20 m one (B05 ... B12 and its SCL), among
    stacked dates, is read as one 10-band image: the 10 m bands as they are, the 20 m ones at 10 m by nearest
    neighbour, the SCL band its mask; the run is the run of the stacked files. Dated by name alone, too."""
    k = 3
    src, scl = series["s2"][k], series["masks"][k]
    fine, coarse = _split_export(src, tmp_path / "S2", scl=scl)
    others, masks = [p for p in series["s2"] if p != src], [m for m in series["masks"] if m != scl]
    inv = inventory.build([str(p) for p in [*others, fine, coarse]], masks=[str(m) for m in masks],
                          check_clear=False)
    assert len(inv.s2) == len(series["s2"]) and inv.bands == list(inventory.S2_BANDS)
    image = next(i for i in inv.s2 if i.files)
    assert image.files == [str(fine), str(coarse)] and image.when == inventory.describe(src).when
    refl, stacked = inventory.read_s2(image.path).refl, inventory.read_s2(src).refl
    ten = [inventory.S2_BANDS.index(b) for b in TEN_M]
    np.testing.assert_array_equal(refl[ten], stacked[ten])
    dn = read_array(coarse)[:len(TWENTY_M)]
    nearest = np.where(dn > 0, dn.astype("float32") * np.float32(1e-4), np.nan).repeat(2, axis=1).repeat(2, axis=2)
    np.testing.assert_array_equal(refl[[inventory.S2_BANDS.index(b) for b in TWENTY_M]], nearest)
    np.testing.assert_array_equal(refl, stacked)  # the stack's 20 m bands are 20 m pixels repeated
    mask = inv.masks[image.path]
    assert (mask.path, mask.mask_band, mask.mask_kind) == (image.path, 11, "scl")
    assert any(f"given as several multi-band files are read as one image each ({fine.name} + {coarse.name})" in w
               for w in inv.warnings), inv.warnings

    split = _run(tmp_path, [*others, fine, coarse], masks, name="split")
    whole = _run(tmp_path, series["s2"], series["masks"], name="whole")
    for kind in ("synthesized", "uncertainty"):
        np.testing.assert_array_equal(read_array(split.outputs[kind]), read_array(whole.outputs[kind]))

    named = _split_export(src, tmp_path / "named", drop_tags=("ACQUISITION_DATETIME",))  # dated by their name
    inv = inventory.build([str(p) for p in named], check_clear=False)
    midnight = dt.datetime.combine(inventory.describe(src).when.date(), dt.time(), tzinfo=dt.UTC)
    assert len(inv.s2) == 1 and inv.s2[0].when == midnight
    np.testing.assert_array_equal(inventory.read_s2(inv.s2[0].path).refl, stacked)


def test_split_exports_that_cannot_be_read_together_are_named(series, tmp_path):
    """Two files of one date that cannot make one image (a band in both, another CRS, another area, another
    scaling) are named in one problem, with what to do; not as two images each missing bands."""
    src = series["s2"][2]
    east = inventory.describe(src).grid.transform * rasterio.Affine.translation(640, 0)  # 6.4 km east
    cases = {"B04 is in": {"twenty": ["B04", *TWENTY_M]},
             "are in different coordinate systems": {"crs": "EPSG:32632"},
             "do not cover the same area": {"transform": rasterio.Affine(20, 0, east.c, 0, -20, east.f)},
             "are not read alike": {"edit20": lambda a: (a * 1e-4).astype("float32")}}
    for k, (expected, how) in enumerate(cases.items()):
        fine, coarse = _split_export(src, tmp_path / str(k), **how)
        with pytest.raises(InputError) as err:
            inventory.build([str(fine), str(coarse)], check_clear=False)
        assert len(err.value.problems) == 1, err.value.problems
        text = str(err.value.problems[0])
        assert expected in text and fine.name in text and coarse.name in text, text
        assert "export all bands as one file, with band descriptions" in text, text
        if expected == "are not read alike":  # no stacking recipe: it would read both files alike
            assert "one data type, nodata value and scaling" in text and "gdal_merge" not in text, text
        else:
            crs = "-t_srs EPSG:32631 " if "coordinate systems" in expected else ""
            assert f"gdalwarp -r near {crs}-tr 10 10 -te 501360 5629040 502000 5629680 {coarse.name}" in text and \
                "gdal_merge.py -separate" in text, text


def test_lai_of_one_file_of_a_split_export_is_the_lai_of_its_acquisition(series, tmp_path, capsys):
    """`densify lai --s2` given the 10 m file of a date exported as a 10 m and a 20 m file reads both (the other
    files in its folder), as it reads a band file's acquisition: the LAI of the stacked image."""
    from sentinel_densify.core import cli

    src = series["s2"][5]
    fine, _coarse = _split_export(src, tmp_path / "S2")
    for other in series["s2"][6:]:  # other dates' stacked files beside it
        (tmp_path / "S2" / other.name).symlink_to(other)
    for given, out in ((fine, tmp_path / "split.tif"), (src, tmp_path / "stacked.tif")):
        assert cli.main(["lai", "--s2", str(given), "--out", str(out)]) == 0, capsys.readouterr().err
    np.testing.assert_array_equal(read_array(tmp_path / "split.tif"), read_array(tmp_path / "stacked.tif"))
    with rasterio.open(tmp_path / "split.tif") as ds:
        assert ds.tags()["band_files"] == f"{fine}, {_coarse}"


def _follow(text: str, folder: Path, monkeypatch) -> Path:
    """Run the commands a problem gives to stack split files (gdalwarp, gdal_merge.py -separate, the bands named by
    GDAL's Python) in `folder`, through GDAL 3.6's Python API as the command-line tools run them; the stacked file."""
    from osgeo import gdal
    from osgeo_utils import gdal_merge

    monkeypatch.chdir(folder)
    for command in re.findall(r"gdalwarp ([^;]+)", text):
        *options, src, dst = shlex.split(command)
        ds = gdal.Warp(dst, src, options=options)
        del ds  # written
    merge = shlex.split(re.search(r"gdal_merge\.py ([^;]+)", text).group(1))
    gdal_merge.main(["gdal_merge.py", "-q", *merge])
    namespace: dict = {}
    exec(re.search(r'python3 -c "([^"]+)"', text).group(1), namespace)  # noqa: S102 - the message's own command
    namespace.clear()  # closes the dataset: its band descriptions written
    return folder / merge[merge.index("-o") + 1]


def test_the_way_to_stack_split_files_gives_the_stacked_image(series, tmp_path, monkeypatch):
    """Audit 2, finding 5: the commands a "cannot be read together" problem gives (GDAL 3.6: gdalbuildvrt -separate
    took only each file's first band, at an averaged resolution) make the stacked image: the coarse file on the fine
    one's grid (-tr, -te), merged, its bands named in that order (the SCL band read as the mask)."""
    src, scl = series["s2"][2], series["masks"][2]
    fine, coarse = _split_export(src, tmp_path / "S2", scl=scl, twenty=["B04", *TWENTY_M])  # B04 in both
    with pytest.raises(InputError) as err:
        inventory.build([str(fine), str(coarse)], check_clear=False)
    stacked = _follow(str(err.value.problems[0]), tmp_path / "S2", monkeypatch)
    info = inventory.describe(stacked)
    assert info.bands[:4] == TEN_M and (info.mask_band, info.mask_kind) == (12, "scl"), info.bands
    np.testing.assert_array_equal(inventory.read_s2(stacked, bands=inventory.S2_BANDS).refl,
                                  inventory.read_s2(src).refl)


SIXTY_M = ["B1", "B9"]  # as Earth Engine names them


def _sixty(src: Path, folder: Path, dtype: str = "uint16") -> Path:
    """The 60 m file of an export by resolution (B1, B9; the stack has neither: every 6th pixel of B02 and B8A stands
    in), named like `_split_export`'s."""
    data = read_array(src)[[inventory.S2_BANDS.index("B02"), inventory.S2_BANDS.index("B8A")], ::6, ::6]
    t = inventory.describe(src).grid.transform
    values = data if dtype == "uint16" else np.where(data > 0, data * 1e-4, np.nan)
    return craft(src, folder / f"S2_{src.name.split('_')[1][:8]}_60m.tif", values.astype(dtype),
                 descriptions=SIXTY_M, width=data.shape[2], height=data.shape[1],
                 transform=rasterio.Affine(6 * t.a, 0, t.c, 0, 6 * t.e, t.f),
                 **({"nodata": float("nan")} if dtype != "uint16" else {}))


def test_the_60m_file_of_an_export_by_resolution_is_left_out(series, tmp_path, capsys):
    """Audit 2, finding 3: a date exported by resolution as a 10 m, a 20 m and a 60 m file (B1, B9, which the project
    does not use; also as float reflectance, once taken for Sentinel-1): the 60 m file is left out with one warning
    naming it, never called "unnamed"; the 10 m and 20 m files make the image. `densify lai` given the 10 m file reads
    it the same way; given the 60 m file, it says why not."""
    from sentinel_densify.core import cli

    folder = tmp_path / "S2"
    parts = [p for k in (1, 2) for p in _split_export(series["s2"][k], folder)]
    sixty = [_sixty(series["s2"][1], folder), _sixty(series["s2"][2], folder, "float32")]
    inv = inventory.build([str(folder)], check_clear=False)
    assert [i.files for i in inv.s2] == [[str(p) for p in parts[:2]], [str(p) for p in parts[2:]]]
    said = [w for w in inv.warnings if "60m" in w]
    assert said == [f"2 files ({sixty[0].name}, {sixty[1].name}) hold only B1, B9, not used: left out"], inv.warnings
    assert inventory.describe(sixty[1]).sensor == "S2"

    out = tmp_path / "lai.tif"
    assert cli.main(["lai", "--s2", str(parts[0]), "--out", str(out)]) == 0, capsys.readouterr().err
    with rasterio.open(out) as ds:
        assert ds.tags()["band_files"] == f"{parts[0]}, {parts[1]}"
    assert cli.main(["lai", "--s2", str(sixty[0]), "--out", str(tmp_path / "no.tif")]) == 1
    err = capsys.readouterr().err
    assert f"{sixty[0].name}: holds only B1, B9, which are not used" in err and "unnamed" not in err, err


def test_parts_of_one_acquisition_timed_apart_are_read_together(series, tmp_path):
    """Audit 2, finding 4: the parts of one date (one tile, one calendar day, complementary bands) whose times differ
    by seconds, or one of which is dated by its day alone (its time tag lost: midnight from its name), are one
    acquisition, timed by the finest part timed to the second. Eleven minutes apart they are not: each part is named
    as lacking bands with the nearest files that have them, never with "most" when exactly half have them."""
    src, later = series["s2"][4], series["s2"][5]
    when = inventory.describe(src).when
    stacked = inventory.read_s2(src).refl
    for case, edit in (("seconds", {"ACQUISITION_DATETIME": f"{when + dt.timedelta(seconds=3):%Y-%m-%dT%H:%M:%SZ}"}),
                       ("day only", None)):
        fine, coarse = _split_export(src, tmp_path / case.replace(" ", "_"))
        if edit is None:
            craft(coarse, coarse, drop_tags=("ACQUISITION_DATETIME",))
            assert inventory.describe(coarse).date_source == "file name"
        else:
            with rasterio.open(coarse, "r+") as ds:
                ds.update_tags(**edit)
        inv = inventory.build([str(coarse), str(fine)], check_clear=False)
        assert len(inv.s2) == 1 and inv.s2[0].when == when and inv.s2[0].files == [str(fine), str(coarse)], case
        np.testing.assert_array_equal(inventory.read_s2(inv.s2[0].path).refl, stacked)

    apart = []
    for image in (src, later):
        fine, coarse = _split_export(image, tmp_path / "apart")
        with rasterio.open(coarse, "r+") as ds:
            moved = inventory.describe(image).when + dt.timedelta(minutes=11)
            ds.update_tags(ACQUISITION_DATETIME=f"{moved:%Y-%m-%dT%H:%M:%SZ}")
        apart += [fine, coarse]
    with pytest.raises(InputError) as err:
        inventory.build([str(tmp_path / "apart")], check_clear=False)
    text = [str(p) for p in err.value.problems]
    assert len(text) == 4 and not any("most S2 images" in t for t in text), text
    assert f"{apart[0].name}: missing band(s) {', '.join(TWENTY_M)} (half the S2 images have them, e.g. " \
           f"{apart[1].name}, {apart[3].name})" in text, text


def test_an_image_read_from_several_files_is_named_by_them(series, safes, tmp_path, capsys):
    """Audit 2, finding 6: an image made of split files is named by them (never by its in-memory VRT) in the outputs'
    tags (INPUTS_S2, INPUTS_MASKS, ANGLES_FROM), the warnings and the problems; the offset warning lists the files to
    tag; `densify lai` does not say that an SCL band is used as its cloud mask (LAI reads none). An image made of ESA
    band files is named by its first band file."""
    from sentinel_densify.core import cli

    k = 3
    src, scl = series["s2"][k], series["masks"][k]
    fine, coarse = _split_export(src, tmp_path / "S2", scl=scl)
    name = f"{fine.name} + {coarse.name}"
    others = [p for p in series["s2"] if p != src]
    when = inventory.describe(src).when
    request = DensifyRequest(s2=[str(p) for p in [*others, fine, coarse]], target_date=when.date(),
                             out_dir=str(tmp_path / "out"), method="linear", lai=False)
    res = engine.run(request)
    with rasterio.open(res.outputs["synthesized"]) as ds:
        tags = ds.tags()
    assert name in tags["INPUTS_S2"].split(";") and tags["INPUTS_MASKS"] == name and tags["ANGLES_FROM"] == name
    assert not any("_bands.vrt" in text for text in [*tags.values(), *res.warnings]), (tags, res.warnings)
    assert any(w.startswith(f"{name}: holds band(s) SCL") for w in res.warnings), res.warnings
    with pytest.raises(InputError) as err:
        inventory.build([str(src), str(fine), str(coarse)], check_clear=False)
    assert [str(p) for p in err.value.problems] == \
        [f"{name}: duplicated date {when:%Y-%m-%d %H:%M:%S} (same as {src.name})"]

    out = tmp_path / "lai.tif"
    assert cli.main(["lai", "--s2", str(fine), "--out", str(out)]) == 0, capsys.readouterr().err
    with rasterio.open(out) as ds:
        said = ds.tags()["warnings"]
    assert "holds band(s) SCL besides its Sentinel-2 bands" in said and "cloud mask" not in said, said

    later = when.replace(year=when.year + 5)  # baseline 04.00's + 1000 DN, untagged: the two files to tag are named
    moved = craft(src, tmp_path / "2023" / f"T31UDS_{later:%Y%m%dT%H%M%S}_L2A_10m.tif",
                  np.where(read_array(src) > 0, read_array(src) + 1000, 0).astype("uint16"),
                  drop_tags=("BOA_ADD_OFFSET",), tags={"ACQUISITION_DATETIME": f"{later:%Y-%m-%dT%H:%M:%SZ}"})
    parts = _split_export(moved, tmp_path / "2023" / "split", drop_tags=("BOA_ADD_OFFSET",))
    inv = inventory.build([str(p) for p in parts], check_clear=False)
    said = [w for w in inv.warnings if "BOA_ADD_OFFSET=-1000" in w]
    assert len(said) == 1 and said[0].startswith(f"{parts[0].name} + {parts[1].name}: integer DN") and \
        f"Tag each of their 2 files ({parts[0].name}, {parts[1].name}) BOA_ADD_OFFSET=-1000" in said[0], said

    safe = sorted(safes.iterdir())[0]
    stamp = safe.name.split("_")[2]
    assert inventory.build([str(safe)], check_clear=False).s2[0].name == \
        f"T31UDS_{stamp}_B02_10m.jp2 + 9 other band files"


def test_lai_of_a_split_file_describes_only_the_files_of_its_day(series, tmp_path, monkeypatch):
    """Audit 2, finding 7: `densify lai` given one file of a split export looks for its other files among the rasters
    dated that day (by their header or name): the others in the folder (other dates, which may be large) are not
    described, as describing reads pixels (a float file's values)."""
    src = series["s2"][5]
    fine, coarse = _split_export(src, tmp_path / "S2")
    for other in series["s2"][6:]:
        (tmp_path / "S2" / other.name).symlink_to(other)
    described = []
    describe = inventory.describe

    def counting(path, *args, **kwargs):
        described.append(Path(path).name)
        return describe(path, *args, **kwargs)

    monkeypatch.setattr(inventory, "describe", counting)
    image = inventory.single_s2(str(fine))
    assert image.files == [str(fine), str(coarse)]
    assert not set(described) & {p.name for p in series["s2"][6:]}, described


def test_split_files_read_unlike_say_how_each_is_read(series, tmp_path):
    """Audit 2, N1: parts that are not read alike are named with how each is read, their nodata value too (the only
    difference here), and what to do about it; a negative offset is written as one ("- 0.1", not "+ -0.1")."""
    src = series["s2"][2]
    fine, coarse = _split_export(src, tmp_path / "nodata", nodata=65535)
    with pytest.raises(InputError) as err:
        inventory.build([str(fine), str(coarse)], check_clear=False)
    text = str(err.value.problems[0])
    assert f"{coarse.name}: uint16, nodata 65535.0, reflectance = value x 0.0001)" in text, text
    assert "one data type, nodata value and scaling (gdalwarp -dstnodata VALUE IN OUT" in text, text
    fine, coarse = _split_export(src, tmp_path / "offset", edit20=lambda a: np.where(a > 0, a + 1000, 0))
    with rasterio.open(coarse, "r+") as ds:
        ds.scales, ds.offsets = [1e-4] * ds.count, [-0.1] * ds.count
    with pytest.raises(InputError) as err:
        inventory.build([str(fine), str(coarse)], check_clear=False)
    text = str(err.value.problems[0])
    assert f"{coarse.name}: uint16, nodata 0.0, reflectance = value x 0.0001 - 0.1)" in text and "+ -" not in text, text


def test_split_files_without_descriptions_are_read_by_the_bands_their_names_list(series, tmp_path):
    """Audit 2, N2: an export by resolution without band descriptions, named by its bands (S2_<date>_B2_B3_B4_B8.tif
    and S2_<date>_B5_B6_B7_B8A_B11_B12.tif), failed as "4 unnamed bands", and one --band-order cannot name both files.
    The bands are now read as the names list them (with a note), and the pair is the stacked image; a name that lists
    another number of bands than the file holds names none."""
    src = series["s2"][1]
    fine, coarse = _split_export(src, tmp_path / "described")
    stamp = src.name.split("_")[1][:8]
    named = []
    for part, bands in ((fine, TEN_M), (coarse, TWENTY_M)):
        name = f"S2_{stamp}_{'_'.join(b.replace('B0', 'B') for b in bands)}.tif"
        named.append(craft(part, tmp_path / "named" / name, descriptions=[""] * len(bands)))
    assert inventory.describe(named[0]).bands == TEN_M and "B2_B3_B4_B8" in named[0].name
    inv = inventory.build([str(p) for p in named], check_clear=False)
    assert len(inv.s2) == 1 and inv.s2[0].files == [str(p) for p in named]
    np.testing.assert_array_equal(inventory.read_s2(inv.s2[0].path).refl, inventory.read_s2(src).refl)
    assert any("its bands are read as its name lists them (B05, B06, B07, B8A, B11, B12)" in w for w in inv.warnings)
    short = craft(fine, tmp_path / "short" / f"S2_{stamp}_B2_B3_B4.tif", descriptions=[""] * 4)
    assert "4 unnamed bands" in " ".join(inventory.describe(short).problems)
    order = ["B08", "B04", "B03", "B02"]  # second audit: a band order given wins, and no note claims the name's
    given = inventory.describe(named[0], band_order=order)
    assert given.bands == order and not any("name lists" in n for n in given.notes)


def test_hidden_files_beside_a_split_export_are_not_read(series, tmp_path):
    """Portability finding 5: the 10 m file of a split export is read with the other files of its day in its folder,
    not with hidden ones: a killed run's .NAME.ID.partial.tif (here a whole copy of the 20 m file, which gave "give
    each band once") and macOS's ._NAME AppleDouble files (exFAT, FAT, SMB drives)."""
    fine, coarse = _split_export(series["s2"][5], tmp_path / "S2")
    shutil.copy(coarse, coarse.with_name(f".{coarse.stem}.1a2b3c4d.partial.tif"))
    for f in (fine, coarse):
        f.with_name(f"._{f.name}").write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        " + bytes(4050))
    assert inventory.single_s2(str(fine)).files == [str(fine), str(coarse)]
