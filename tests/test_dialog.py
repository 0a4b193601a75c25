"""The Densify dialog driven through its widgets (offscreen), the background task and the result layers.

Set DENSIFY_SCREENSHOTS=1 to also write docs/screenshots/dialog.png and results.png.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
from test_processing_layers import frames

ROOT = Path(__file__).resolve().parent.parent
TARGET = dt.date(2018, 3, 1)


@pytest.fixture()
def project(qgis_app):
    """The (cleared) project, and no dialog choices remembered from an earlier test's run."""
    from qgis.core import QgsProject, QgsSettings
    from sentinel_densify.ui.dialog import SETTINGS

    proj = QgsProject.instance()
    proj.clear()
    QgsSettings().remove(SETTINGS.rstrip("/"))
    yield proj
    proj.clear()
    QgsSettings().remove(SETTINGS.rstrip("/"))


@pytest.fixture()
def loaded(project, uds_subset):
    """The subset series as project layers, named like QGIS names dropped files."""
    from qgis.core import QgsRasterLayer

    for path in uds_subset["s2"] + uds_subset["masks"] + uds_subset["s1"]:
        layer = QgsRasterLayer(str(path), path.stem, "gdal")
        assert layer.isValid()
        project.addMapLayer(layer)
    return project


@pytest.fixture()
def bar(qgis_app):
    from qgis.gui import QgsMessageBar

    message_bar = QgsMessageBar()
    yield message_bar
    message_bar.clearWidgets()  # an unparented QgsMessageBar destroyed with items in it segfaults (3.22)


def _dialog(project, bar, tmp_path):
    from qgis.PyQt.QtCore import QDate
    from sentinel_densify.ui.dialog import DensifyDialog

    dlg = DensifyDialog(project=project, message_bar=bar)
    dlg.out_dir.setFilePath(str(tmp_path / "out"))
    dlg.date_edit.setDate(QDate(TARGET.year, TARGET.month, TARGET.day))
    dlg.validate()
    return dlg


def _row(dlg, name_part):
    return next(r for r in range(dlg.table.rowCount()) if name_part in dlg.table.item(r, 1).text())


def _wait(task, limit_s=300):
    """Let the event loop run until the task's outcome is reported (a hang guard, not a timing test)."""
    from qgis.PyQt.QtCore import QCoreApplication

    deadline = time.monotonic() + limit_s
    while not task.done:
        QCoreApplication.processEvents()
        time.sleep(0.02)
        if time.monotonic() > deadline:
            pytest.fail("the task never finished")


def _messages(bar):
    return [(item.title(), item.text(), item.level()) for item in bar.items()]


def test_table_lists_project_rasters_with_sensor_and_date(loaded, bar, tmp_path, uds_subset):
    from qgis.core import QgsDateTimeRange, QgsRasterLayer, QgsRasterLayerTemporalProperties
    from qgis.PyQt.QtCore import QDate, QDateTime, Qt, QTime

    # one layer whose QGIS temporal properties say another day than its file name: they win
    s2 = uds_subset["s2"][3]
    layer = loaded.mapLayersByName(s2.stem)[0]
    props = layer.temporalProperties()
    props.setMode(QgsRasterLayerTemporalProperties.ModeFixedTemporalRange)
    start = QDateTime(QDate(2018, 2, 2), QTime(10, 0), Qt.UTC)
    props.setFixedTemporalRange(QgsDateTimeRange(start, start.addDays(1)))
    props.setIsActive(True)
    # a raster whose sensor and date cannot be detected (one S1 band, no date), and a dateless S1
    with rasterio.open(uds_subset["s1"][0]) as ds:
        profile, data = ds.profile, ds.read()
    odd, dateless = tmp_path / "backscatter.tif", tmp_path / "vv_vh.tif"
    with rasterio.open(odd, "w", **{**profile, "count": 1}) as ds:
        ds.write(data[:1])
    with rasterio.open(dateless, "w", **profile) as ds:
        ds.write(data)
        ds.descriptions = ("VV", "VH")
    loaded.addMapLayer(QgsRasterLayer(str(odd), "backscatter", "gdal"))
    loaded.addMapLayer(QgsRasterLayer(str(dateless), "vv_vh", "gdal"))

    dlg = _dialog(loaded, bar, tmp_path)
    n = len(uds_subset["s2"]) + len(uds_subset["masks"]) + len(uds_subset["s1"]) + 2
    assert dlg.table.rowCount() == n
    sensors = [dlg.table.cellWidget(r, 2).currentData() for r in range(n)]
    assert sensors.count("S2") == len(uds_subset["s2"]) and sensors.count("MASK") == len(uds_subset["masks"])
    assert sensors.count("S1") == len(uds_subset["s1"]) + 1
    assert dlg.table.item(_row(dlg, s2.stem), 3).text() == "2018-02-02 10:00"
    assert "temporal properties" in dlg.table.item(_row(dlg, s2.stem), 3).toolTip()
    stamp = uds_subset["s1"][0].stem.split("_")[4]  # S1_IW_GRDH_ASC_<YYYYMMDDTHHMMSS>_VV_VH_dB
    expected = f"{stamp[:4]}-{stamp[4:6]}-{stamp[6:8]} {stamp[9:11]}:{stamp[11:13]}"
    assert dlg.table.item(_row(dlg, uds_subset["s1"][0].stem), 3).text() == expected

    # the dateless S1 is ticked: its missing date is shown, and typing one fixes it
    vv_row = _row(dlg, "vv_vh")
    assert dlg.problems == ["vv_vh: acquisition date missing (type YYYY-MM-DD)"]
    assert not dlg.run_button.isEnabled() and "vv_vh" in dlg.problems_label.text()
    dlg.set_date(vv_row, "2018-02-18 06:00")
    assert dlg.validate() == [] and dlg.run_button.isEnabled()
    assert "gap-filling" in dlg.mode_label.text() and "nearest clear S2" in dlg.mode_label.text()

    # the undetectable one is left out until the user ticks it and says what it is
    odd_row = _row(dlg, "backscatter")
    assert dlg.table.cellWidget(odd_row, 2).currentData() == ""
    assert dlg.table.item(odd_row, 0).checkState() == Qt.Unchecked
    dlg.set_included(odd_row, True)
    assert any("backscatter: sensor unknown" in p for p in dlg.validate())
    dlg.set_sensor(odd_row, "S1")
    dlg.set_date(odd_row, "2018-02-21")
    problems = dlg.validate()  # now the core's own check names the file and the problem
    assert problems == ["backscatter.tif: has 1 band; Sentinel-1 needs VV and VH"]
    dlg.set_included(odd_row, False)
    assert dlg.validate() == []

    request = dlg.build_request()
    assert str(dateless) in request.s1 and str(odd) not in request.s1
    assert request.dates[str(dateless)] == dt.datetime(2018, 2, 18, 6, 0, tzinfo=dt.UTC)
    assert request.dates[str(s2)].date() == dt.date(2018, 2, 2)
    assert request.sensors[str(s2)] == "S2" and len(request.masks) == len(uds_subset["masks"])


def test_problems_are_shown_before_running_not_raised(loaded, bar, tmp_path):
    dlg = _dialog(loaded, bar, tmp_path)
    from qgis.PyQt.QtCore import QDate

    dlg.date_edit.setDate(QDate(2021, 6, 1))  # far after the series
    problems = dlg.validate()
    assert len(problems) == 1 and "out of range" in problems[0] and "out of range" in dlg.problems_label.text()
    assert dlg.run() is None and not (tmp_path / "out").exists()

    dlg.date_edit.setDate(QDate(TARGET.year, TARGET.month, TARGET.day))
    for r in range(dlg.table.rowCount()):
        if dlg.table.cellWidget(r, 2).currentData() == "S2":
            dlg.set_included(r, False)
    assert dlg.validate()[0].startswith("No Sentinel-2 layer selected")
    assert not dlg.run_button.isEnabled() and dlg.run() is None


@pytest.mark.parametrize("zipped", [False, True], ids=["safe", "safe_zip"])
def test_band_file_layers_are_one_s2_acquisition(project, bar, tmp_path, uds_subset, zipped):
    """An acquisition loaded as ESA's band files (one JP2 layer per band and resolution, from a .SAFE made
    of a real 31UDS image; zipped: loaded from the downloaded .SAFE.zip as QGIS does, /vsizip/ layers):
    each band layer is listed as S2 and ticked, and the core reads the ticked files of that date as one
    image, with the product's offset."""
    import shutil

    from helpers import make_safe, zip_product
    from qgis.core import QgsRasterLayer
    from sentinel_densify.core import inventory
    from sentinel_densify.core.engine import build_inventory

    s2, masks = uds_subset["s2"][:8], uds_subset["masks"][:8]
    safe = make_safe(s2[3], masks[3], tmp_path, dn_offset=1000, extras=False)
    band_layers = [str(p) for p in sorted(safe.rglob("*_B*_*m.jp2")) + sorted(safe.rglob("*_SCL_20m.jp2"))]
    if zipped:
        archive = zip_product(safe, tmp_path / f"{safe.name}.zip")
        band_layers = [f"/vsizip/{archive}/{Path(f).relative_to(tmp_path).as_posix()}" for f in band_layers]
        shutil.rmtree(safe)
    for path in [*map(str, s2[:3] + s2[4:] + masks[:3] + masks[4:]), *band_layers]:
        layer = QgsRasterLayer(path, Path(path).stem, "gdal")
        assert layer.isValid(), path
        project.addMapLayer(layer)
    dlg = _dialog(project, bar, tmp_path)
    bands = [r for r in range(dlg.table.rowCount()) if "_B" in dlg.table.item(r, 1).text()]
    assert len(bands) == len(band_layers) - 1 == 24  # 4 bands at 10, 20 and 60 m, 6 at 20 and 60 m
    for r in bands:
        assert dlg.table.cellWidget(r, 2).currentData() == "S2"
        assert dlg.table.item(r, 0).checkState() == 2  # ticked
        assert not dlg.table.item(r, 1).toolTip()  # no problem shown
    assert dlg.validate() == []
    assert "The S2 layers are 8 acquisitions (band files read together)." in dlg.problems_label.text()
    inv = build_inventory(dlg.build_request())
    image = next(i for i in inv.s2 if "BAND_FILES" in i.tags)
    assert image.tags["BAND_FILES"].startswith("/vsizip/" if zipped else str(safe))
    np.testing.assert_allclose(inventory.read_s2(image.path).refl, inventory.read_s2(s2[3]).refl, atol=1e-6)

    for r in bands:  # without its 20 m files the acquisition lacks bands: said before running
        if "_20m" in dlg.table.item(r, 1).text() or "_60m" in dlg.table.item(r, 1).text():
            dlg.set_included(r, False)
    problems = dlg.validate()
    assert len(problems) == 1 and "lack band(s) B05, B06, B07, B8A, B11, B12" in problems[0], problems


def test_polarization_layers_are_one_s1_acquisition(project, bar, tmp_path, uds_subset):
    """Sentinel-1 loaded as one layer per polarization (ASF RTC GeoTIFFs, SNAP's BEAM-DIMAP .img files, made
    from real 31UDS acquisitions): each is listed as S1 and ticked, and each VV, VH pair is one acquisition;
    a VV whose VH is unticked is named before running."""
    from helpers import make_asf, make_beam_dimap
    from qgis.core import QgsRasterLayer
    from sentinel_densify.core.engine import build_inventory

    s2, masks, s1 = uds_subset["s2"][:8], uds_subset["masks"][:8], uds_subset["s1"][:5]
    files = [f for src in s1[:4] for f in sorted(make_asf(src, tmp_path / "asf").glob("*_V[VH].tif"))]
    files += sorted(make_beam_dimap(s1[4], tmp_path / "snap").glob("Sigma0_*.img"))
    for path in [*s2, *masks, *files]:
        layer = QgsRasterLayer(str(path), path.stem, "gdal")
        assert layer.isValid(), path
        project.addMapLayer(layer)
    dlg = _dialog(project, bar, tmp_path)
    rows = [r for r in range(dlg.table.rowCount()) if dlg.table.cellWidget(r, 2).currentData() == "S1"]
    assert len(rows) == len(files) == 10
    for r in rows:
        assert dlg.table.item(r, 0).checkState() == 2  # ticked
        assert not dlg.table.item(r, 1).toolTip(), dlg.table.item(r, 1).text()  # no problem shown
        assert dlg.table.item(r, 3).text()  # dated (the SNAP files by their product's .dim)
    assert dlg.validate() == []
    assert "Ready: 8 S2, 10 S1" in dlg.problems_label.text()
    assert "The S1 layers are 5 acquisitions (VV and VH files read together)." in dlg.problems_label.text()
    assert len(build_inventory(dlg.build_request()).s1) == 5

    vh = next(r for r in rows if dlg.table.item(r, 1).text() == "Sigma0_VH")
    dlg.set_included(vh, False)
    problems = dlg.validate()
    assert len(problems) == 1 and "(Sigma0_VV.img) lack VH" in problems[0], problems


def test_a_safe_opened_as_subdatasets_is_one_s2_acquisition(project, bar, tmp_path, uds_subset):
    """A .SAFE added to QGIS through its MTD_MSIL2A.xml gives one layer per GDAL SENTINEL2 subdataset (10, 20
    and 60 m bands, TCI): each is listed as S2, ticked, without a problem, and together they are one
    acquisition, read from the product's band files."""
    from helpers import make_safe, write_mtd
    from qgis.core import QgsCoordinateTransformContext, QgsProviderRegistry, QgsProviderSublayerDetails, QgsRasterLayer

    s2, masks = uds_subset["s2"][:8], uds_subset["masks"][:8]
    safe = make_safe(s2[3], masks[3], tmp_path, dn_offset=1000, extras=False)
    write_mtd(safe)
    for path in s2[:3] + s2[4:] + masks[:3] + masks[4:]:
        project.addMapLayer(QgsRasterLayer(str(path), path.stem, "gdal"))
    options = QgsProviderSublayerDetails.LayerOptions(QgsCoordinateTransformContext())
    subdatasets = QgsProviderRegistry.instance().querySublayers(str(safe / "MTD_MSIL2A.xml"))
    assert len(subdatasets) == 4
    for details in subdatasets:  # as QGIS's "add layer" does
        layer = details.toLayer(options)
        assert layer.isValid() and layer.source().startswith("SENTINEL2_L2A:"), layer.source()
        project.addMapLayer(layer)
    dlg = _dialog(project, bar, tmp_path)
    rows = [r for r in range(dlg.table.rowCount()) if "MTD_MSIL2A.xml" in dlg.table.item(r, 1).text()]
    assert len(rows) == 4, [dlg.table.item(r, 1).text() for r in range(dlg.table.rowCount())]
    for r in rows:
        assert dlg.table.cellWidget(r, 2).currentData() == "S2"
        assert dlg.table.item(r, 0).checkState() == 2
        assert not dlg.table.item(r, 1).toolTip()
    assert dlg.validate() == []
    assert "The S2 layers are 8 acquisitions" in dlg.problems_label.text()


def test_validation_reads_each_file_once(loaded, bar, tmp_path, monkeypatch):
    """Validation runs on every edit: the files are opened, and the core's clear-pixel check and the
    nearest clear dates read, once per file (counting wrappers around the real functions)."""
    from qgis.PyQt.QtCore import QDate
    from sentinel_densify.ui import dialog  # the dialog module imports the core's reader function

    real, reads = dialog.read_clear_fraction, []
    real_describe, opened = dialog.describe, []

    def counting(inv, info, max_size=128):
        reads.append((info.path, max_size))
        return real(inv, info, max_size=max_size)

    def counting_describe(path, **kw):
        opened.append(str(path))
        return real_describe(path, **kw)

    monkeypatch.setattr(dialog, "read_clear_fraction", counting)
    monkeypatch.setattr(dialog, "describe", counting_describe)  # the table's and the dialog's cache
    from sentinel_densify.core import inventory

    monkeypatch.setattr(inventory, "describe", counting_describe)  # the inventory's own, if the cache is bypassed
    dlg = _dialog(loaded, bar, tmp_path)
    assert dlg.validate() == [] and reads and len(reads) == len(set(reads))
    first, described = len(reads), len(opened)
    dlg.validate()
    dlg.date_edit.setDate(QDate(TARGET.year, TARGET.month, TARGET.day + 1))  # an edit: validates again
    assert dlg.validate() == []
    assert len(reads) == first, "a second validation read files again"
    assert len(opened) == described, "a second validation opened files again"


def test_masks_rewritten_while_the_dialog_is_open_are_read_again(project, bar, tmp_path, uds_subset):
    """The dialog's caches follow the files: when the cloud masks of the series are replaced by
    all-cloud ones (real SCL files rewritten on disk), the next validation finds no clear observation."""
    import shutil

    from helpers import craft
    from qgis.core import QgsRasterLayer

    series = tmp_path / "series"
    series.mkdir()
    copies = [Path(shutil.copy(p, series / p.name)) for p in uds_subset["s2"] + uds_subset["masks"]]
    for path in copies:
        layer = QgsRasterLayer(str(path), path.stem, "gdal")
        assert layer.isValid()
        project.addMapLayer(layer)
    dlg = _dialog(project, bar, tmp_path)
    assert dlg.validate() == []
    for path in copies:
        if "_SCL_" in path.name:
            with rasterio.open(path) as ds:
                cloud = np.full((ds.count, ds.height, ds.width), 9, dtype=ds.dtypes[0])  # SCL 9: cloud
            craft(path, tmp_path / "tmp.tif", data=cloud)
            shutil.move(tmp_path / "tmp.tif", path)  # the file replaced, as an editor or a download would
    problems = dlg.validate()
    assert any("no clear Sentinel-2 observation" in p for p in problems), problems


def test_a_raster_with_unreadable_pixels_is_a_problem_not_a_crash(loaded, bar, tmp_path, uds_subset, corrupt_copy):
    from qgis.core import QgsRasterLayer
    from sentinel_densify.ui.dialog import DensifyDialog

    days = [dt.datetime.strptime(f.name.split("_")[1][:8], "%Y%m%d") for f in uds_subset["s2"]]
    middle = days[0] + (days[-1] - days[0]) / 2  # the dialog's first target date
    src = uds_subset["s2"][max(i for i, d in enumerate(days) if d <= middle)]  # the nearest before it: read
    bad = corrupt_copy(src, tmp_path / src.name)
    loaded.removeMapLayer(loaded.mapLayersByName(src.stem)[0])
    loaded.addMapLayer(QgsRasterLayer(str(bad), src.stem, "gdal"))
    dlg = DensifyDialog(project=loaded, message_bar=bar)  # validates while it is built: must not raise
    dlg.out_dir.setFilePath(str(tmp_path / "out"))
    problems = dlg.validate()
    assert any(bad.name in p and "cannot read its pixels" in p for p in problems), problems
    assert not dlg.run_button.isEnabled() and dlg.run() is None


def test_the_default_output_folder_follows_the_project(loaded, bar, tmp_path):
    from sentinel_densify.ui.dialog import DensifyDialog, temporary_output_dir

    dlg = DensifyDialog(project=loaded, message_bar=bar)
    assert dlg.out_dir.filePath() == temporary_output_dir()  # an unsaved project
    dlg.validate()
    assert "temporary folder" in dlg.problems_label.text()
    loaded.setFileName(str(tmp_path / "fields.qgz"))  # saved (or switched) after the dialog was built
    dlg.refresh_layers()  # what opening the dialog again does
    assert dlg.out_dir.filePath() == str(tmp_path / "densify_outputs")
    assert "temporary folder" not in dlg.problems_label.text()
    dlg.out_dir.setFilePath(str(tmp_path / "mine"))  # a folder the user chose is kept
    loaded.setFileName(str(tmp_path / "other" / "project.qgz"))
    dlg.refresh_layers()
    assert dlg.out_dir.filePath() == str(tmp_path / "mine")


def test_a_runs_choices_are_offered_again_in_the_next_qgis_session(loaded, bar, tmp_path, uds_subset):
    """Model, device, LAI, series step and a chosen output folder of a run are what a new dialog (a new QGIS
    session) starts with, and what its request carries; a model file or folder since removed is not; a dialog
    closed without running leaves nothing; the project's default folder is not remembered as a choice."""
    import shutil

    from qgis.core import QgsSettings
    from sentinel_densify.ui.dialog import MODEL_FILE, SETTINGS, DensifyDialog, temporary_output_dir

    fresh = DensifyDialog(project=loaded, message_bar=bar)
    defaults = (fresh.model_combo.currentData(), fresh.device_combo.currentData(), fresh.lai_check.isChecked(),
                fresh.every_spin.value(), fresh.out_dir.filePath())
    assert defaults == ("default", "auto", True, 10, temporary_output_dir())
    fresh.model_combo.setCurrentIndex(fresh.model_combo.findData("nearest"))
    fresh.reject()  # closed without running: nothing remembered
    assert not QgsSettings().contains(SETTINGS + "model")

    dlg = _dialog(loaded, bar, tmp_path)  # output folder tmp_path / "out"
    dlg.model_combo.setCurrentIndex(dlg.model_combo.findData("nearest"))
    dlg.device_combo.setCurrentIndex(dlg.device_combo.findData("cpu"))
    dlg.lai_check.setChecked(False)
    dlg.every_spin.setValue(5)
    task = dlg.run()
    _wait(task)
    assert task.error is None
    again = DensifyDialog(project=loaded, message_bar=bar)
    assert (again.model_combo.currentData(), again.device_combo.currentData(), again.lai_check.isChecked(),
            again.every_spin.value(), again.out_dir.filePath()) == ("nearest", "cpu", False, 5, str(tmp_path / "out"))
    again.date_edit.setDate(dlg.date_edit.date())
    request = again.build_request()
    assert (request.method, request.device, request.lai, request.out_dir) == ("nearest", "cpu", False,
                                                                             str(tmp_path / "out"))

    model = tmp_path / "mine.onnx"
    shutil.copy(ROOT / "models" / "default.onnx", model)
    again.model_combo.setCurrentIndex(again.model_combo.findData(MODEL_FILE))
    again.model_file.setFilePath(str(model))
    again.out_dir.setFilePath(temporary_output_dir())  # back to the default folder
    again._remember_choices()  # what run() does once the inputs are valid
    model_file = DensifyDialog(project=loaded, message_bar=bar)
    assert (model_file.model_combo.currentData(), model_file.model_file.filePath(), model_file.method()) == \
        (MODEL_FILE, str(model), str(model))
    assert model_file.out_dir.filePath() == temporary_output_dir()  # the default, not a remembered choice
    model_file.out_dir.setFilePath(str(tmp_path / "gone"))
    (tmp_path / "gone").mkdir()
    model_file._remember_choices()
    model.unlink()
    (tmp_path / "gone").rmdir()
    later = DensifyDialog(project=loaded, message_bar=bar)
    assert later.model_combo.currentData() == "default" and later.out_dir.filePath() == temporary_output_dir()
    assert later.device_combo.currentData() == "cpu"  # the rest still as last run


def test_reopening_keeps_the_users_choices_and_adds_new_layers(loaded, bar, tmp_path, uds_subset):
    """Opening the dialog again (refresh_layers) must not undo the user's date, ticks, sensors, dates."""
    from qgis.core import QgsRasterLayer
    from qgis.PyQt.QtCore import QDate, Qt
    from sentinel_densify.ui.dialog import DensifyDialog

    dlg = DensifyDialog(project=loaded, message_bar=bar)
    first_default = dlg.date_edit.date()
    loaded.removeMapLayer(loaded.mapLayersByName(uds_subset["s2"][-1].stem)[0])
    dlg.refresh_layers()
    assert dlg.date_edit.date() != first_default  # an untouched date follows the series' midpoint
    dlg.date_edit.setDate(QDate(2018, 2, 12))
    s2_row, mask_row = _row(dlg, uds_subset["s2"][2].stem), _row(dlg, uds_subset["masks"][0].stem)
    dlg.set_included(s2_row, False)
    dlg.set_sensor(mask_row, "S1")
    dlg.set_date(mask_row, "2018-01-02")
    added = uds_subset["s2"][-1]
    loaded.addMapLayer(QgsRasterLayer(str(added), added.stem, "gdal"))
    dlg.refresh_layers()
    assert dlg.date_edit.date() == QDate(2018, 2, 12)
    s2_row, mask_row = _row(dlg, uds_subset["s2"][2].stem), _row(dlg, uds_subset["masks"][0].stem)
    assert dlg.table.item(s2_row, 0).checkState() == Qt.Unchecked
    assert dlg.table.cellWidget(mask_row, 2).currentData() == "S1"
    assert dlg.table.item(mask_row, 3).text() == "2018-01-02"
    new_row = _row(dlg, added.stem)  # a layer new to the table gets the detected values
    assert dlg.table.item(new_row, 0).checkState() == Qt.Checked
    assert dlg.table.cellWidget(new_row, 2).currentData() == "S2"


def _settle(ms: int = 400) -> None:
    """Run the event loop for ms milliseconds (the dialog's timers)."""
    from qgis.PyQt.QtCore import QCoreApplication

    deadline = time.monotonic() + ms / 1000
    while time.monotonic() < deadline:
        QCoreApplication.processEvents()
        time.sleep(0.02)


def test_the_open_dialog_follows_the_projects_layers(loaded, bar, tmp_path, uds_subset):
    """The dialog is not modal: a layer removed from the project while it is open leaves the table and the run;
    a hidden dialog never uses one either; a project cleared (another one opened) leaves nothing to run, and
    the next project's layers are listed."""
    from qgis.core import QgsRasterLayer

    dlg = _dialog(loaded, bar, tmp_path)
    dlg.show()
    rows = dlg.table.rowCount()
    gone = uds_subset["s2"][2]
    loaded.removeMapLayer(loaded.mapLayersByName(gone.stem)[0])
    _settle()
    assert dlg.table.rowCount() == rows - 1 and str(gone) not in dlg.build_request().s2
    assert dlg.validate() == []
    dlg.hide()  # hidden: the table is refreshed when the dialog is shown again, and the removed layer not used
    gone = uds_subset["s2"][3]
    loaded.removeMapLayer(loaded.mapLayersByName(gone.stem)[0])
    _settle()
    assert dlg.table.rowCount() == rows - 1 and str(gone) not in dlg.build_request().s2
    dlg.show()
    loaded.clear()
    _settle()
    assert dlg.table.rowCount() == 0 and not dlg.run_button.isEnabled()
    assert dlg.validate()[0].startswith("No Sentinel-2 layer selected")
    for path in uds_subset["s2"][:3]:
        loaded.addMapLayer(QgsRasterLayer(str(path), path.stem, "gdal"))
    _settle()
    assert dlg.table.rowCount() == 3 and dlg.build_request().s2 == [str(p) for p in uds_subset["s2"][:3]]
    dlg.detach()
    dlg.close()


def test_the_output_folder_is_a_full_path(loaded, bar, tmp_path, monkeypatch):
    """~ is the home folder (not a folder named ~ in QGIS's working folder); a relative path is a problem."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    dlg = _dialog(loaded, bar, tmp_path)
    dlg.out_dir.setFilePath("~/densify_results")
    assert dlg.validate() == []
    assert dlg.build_request().out_dir == str(tmp_path / "home" / "densify_results")
    dlg.out_dir.setFilePath("densify_results")
    assert dlg.validate() == [f"Output folder densify_results: give a full path (a relative one would be taken "
                              f"from QGIS's working folder, {os.getcwd()})."]


def test_the_dialog_fits_a_small_screen_with_its_run_button_visible(loaded, bar, tmp_path, monkeypatch):
    """A 1366 x 768 laptop (728 px above the taskbar), or a smaller screen: the dialog with its title bar fits the
    screen's available area, its main area scrolls and Run stays visible; a large screen keeps 900 x 720."""
    from qgis.PyQt.QtCore import QCoreApplication, QPoint, QRect, QSize
    from sentinel_densify.ui import dialog

    title_bar = 30  # drawn by the window manager (none offscreen)
    for width, height in ((1366, 728), (1280, 560), (2560, 1400)):
        monkeypatch.setattr(dialog, "available_geometry", lambda _w, r=QRect(0, 0, width, height): r, raising=False)
        dlg = _dialog(loaded, bar, tmp_path)
        dlg.show()
        QCoreApplication.processEvents()
        frame = dlg.frameGeometry()
        assert frame.width() <= width and frame.height() + title_bar <= height, (width, height, frame)
        run = dlg.run_button
        assert run.isVisible() and dlg.rect().contains(QRect(run.mapTo(dlg, QPoint(0, 0)), run.size()))
        assert (dlg.scroll.verticalScrollBar().maximum() > 0) == (height == 560)  # the contents need about 650 px
        assert height < 1400 or dlg.size() == QSize(900, 720)
        if height == 1400:  # second audit: the table had shrunk to its minimum (4 rows) at 900 x 720
            rows = (dlg.table.height() - dlg.table.horizontalHeader().height()) / dlg.table.verticalHeader(
                ).defaultSectionSize()
            assert rows > 5, rows
        dlg.close()


def test_the_dialog_fits_the_screen_it_is_shown_on(loaded, bar, tmp_path, monkeypatch):
    """Second audit: shown again, the dialog fitted QGIS's window's screen, not its own (where the user moved it)."""
    from qgis.PyQt.QtCore import QCoreApplication, QRect
    from qgis.PyQt.QtWidgets import QWidget
    from sentinel_densify.ui import dialog

    asked = []

    def geometry(widget):
        asked.append(widget)
        return QRect(0, 0, 2560, 1400)

    monkeypatch.setattr(dialog, "available_geometry", geometry)
    window = QWidget()  # QGIS's main window, the dialog's parent
    dlg = dialog.DensifyDialog(window, project=loaded, message_bar=bar)
    assert asked[-1] is window  # built: QGIS's window's screen (the dialog has none yet)
    dlg.show()
    QCoreApplication.processEvents()
    assert asked[-1] is dlg
    dlg.close()


def test_a_model_file_that_cannot_run_is_said_in_the_core_s_words(loaded, bar, tmp_path):
    """Second audit: the dialog called a folder a missing file; it says what the command line and Processing say
    (methods.model_file_problem): a folder, a missing file, a checkpoint to export first."""
    from sentinel_densify.ui.dialog import MODEL_FILE

    dlg = _dialog(loaded, bar, tmp_path)
    dlg.model_combo.setCurrentIndex(dlg.model_combo.findData(MODEL_FILE))
    folder = tmp_path / "models.onnx"
    folder.mkdir()
    checkpoint = tmp_path / "best.pt"
    checkpoint.write_bytes(b"not a model")
    for path, said in ((folder, "models.onnx: is a folder, not a model file (.onnx)."),
                       (tmp_path / "gone.onnx", "gone.onnx: model file does not exist."),
                       (checkpoint, "best.pt: a PyTorch checkpoint, not a model to run: export it first")):
        dlg.model_file.setFilePath(str(path))
        assert any(p.startswith(f"Model file {said}") for p in dlg.validate()), (path, dlg.problems)


def test_a_date_typed_compactly_and_a_layer_added_twice(loaded, bar, tmp_path, uds_subset):
    """A date typed as YYYYMMDDHHMM is that time (not milliseconds since 1970); a layer added twice is said to
    repeat a file, not to be band files."""
    from qgis.core import QgsRasterLayer

    s1 = uds_subset["s1"][0]
    twice = uds_subset["s2"][1]
    loaded.addMapLayer(QgsRasterLayer(str(twice), twice.stem, "gdal"))
    dlg = _dialog(loaded, bar, tmp_path)
    dlg.set_date(_row(dlg, s1.stem), "201802181030")
    assert dlg.validate() == []
    assert dlg.build_request().dates[str(s1)] == dt.datetime(2018, 2, 18, 10, 30, tzinfo=dt.UTC)
    text = dlg.problems_label.text()
    assert "1 S2 layers repeat another's file (read once)." in text and "band files" not in text


def test_an_existing_file_as_output_folder_is_a_problem_before_running(loaded, bar, tmp_path):
    dlg = _dialog(loaded, bar, tmp_path)
    assert dlg.validate() == []
    afile = tmp_path / "notafolder.tif"
    afile.write_bytes(b"x")
    dlg.out_dir.setFilePath(str(afile))
    assert dlg.validate() == [f"Output folder {afile}: is an existing file, not a folder."]
    assert not dlg.run_button.isEnabled() and dlg.run() is None


def test_run_adds_the_styled_group_with_temporal_properties(loaded, bar, tmp_path):
    from qgis.core import Qgis, QgsRasterLayerTemporalProperties
    from qgis.PyQt.QtCore import QDate, Qt

    dlg = _dialog(loaded, bar, tmp_path)
    dlg.show()
    if os.environ.get("DENSIFY_SCREENSHOTS"):
        from qgis.PyQt.QtCore import QCoreApplication

        dlg.resize(900, 720)  # its size on a large screen (the offscreen one is 800 x 600)
        for _ in range(20):  # the layout settles (the collapsed extent box gives its room back)
            QCoreApplication.processEvents()
            time.sleep(0.02)
        _save(dlg.grab().toImage(), "dialog.png")
    assert dlg.problems == []
    earlier = tmp_path / "out" / "synthesized_20180301.tif"  # a result of an earlier run, maybe loaded
    earlier.parent.mkdir()
    earlier.write_bytes(b"an earlier result")
    dlg.run_button.click()
    task = dlg.task
    assert task is not None and not dlg.isVisible()  # the dialog closes; the task runs on
    _wait(task)
    assert task.error is None, task.error
    assert earlier.read_bytes() == b"an earlier result"  # never replaced: the new run is numbered
    assert sorted(Path(p).name for p in task.result.outputs.values()) == \
        ["lai_20180301_2.tif", "synthesized_20180301_2.tif", "uncertainty_20180301_2.tif"]

    # named for the method (the bundled model) and the numbered run
    assert [g.name() for g in loaded.layerTreeRoot().findGroups()] == ["Densify 2018-03-01 model (2)"]
    group = loaded.layerTreeRoot().findGroup("Densify 2018-03-01 model (2)")
    layers = [node.layer() for node in group.findLayers()]
    assert [lyr.name() for lyr in layers] == ["Synthesized S2 2018-03-01 model (2)",
                                              "Uncertainty (mean std) 2018-03-01 model (2)",
                                              "LAI 2018-03-01 model (2)", "LAI std 2018-03-01 model (2)"]
    synth, unc, lai, lai_std = layers
    # Layer Properties > Metadata and the Layers panel's tooltip (the layer's abstract): what it is, how made, units;
    # the titles with the run's number, as the names
    assert [lyr.metadata().title() for lyr in layers] == [
        "Synthesized Sentinel-2 L2A (2018-03-01, model (2))",
        "Uncertainty of synthesized Sentinel-2 (2018-03-01, model (2))", "LAI (2018-03-01, model (2))",
        "LAI std (2018-03-01, model (2))"]
    assert synth.metadata().abstract().startswith("Sentinel-2 L2A surface reflectance synthesized for 2018-03-01 "
                                                  "(gap-filling) by the model default.onnx (version ")
    assert f"and {len(task.request.s1)} Sentinel-1 acquisitions;" in synth.abstract()  # the model reads S1
    for layer in (synth, unc):
        assert "in DN (reflectance = DN × 0.0001)" in layer.metadata().abstract()
    assert lai.metadata().abstract().startswith("Leaf area index (m²/m²) of the Sentinel-2 image synthesized for "
                                                "2018-03-01 by the model default.onnx")
    assert lai_std.metadata().abstract().startswith("1-sigma standard deviation (m²/m²) of the leaf area index")
    assert all(lyr.abstract() == lyr.metadata().abstract() for lyr in layers)
    assert all("model" in lyr.metadata().keywords()["Sentinel Densify"] for lyr in layers)
    r = synth.renderer()
    assert r.type() == "multibandcolor"
    assert [synth.bandName(b).split(": ")[1] for b in (r.redBand(), r.greenBand(), r.blueBand())] == \
        ["B04", "B03", "B02"]
    ce = r.redContrastEnhancement()
    with rasterio.open(synth.source()) as ds:
        red = ds.read(r.redBand())
    # a 2-98 % cut computed from the data: inside the data range, not the full min-max
    assert np.nanmin(red) < ce.minimumValue() < ce.maximumValue() < np.nanmax(red)
    assert unc.renderer().type() == "singlebandpseudocolor"
    assert unc.bandName(unc.renderer().band()).endswith("mean_std")
    with rasterio.open(task.result.outputs["uncertainty"]) as ds:  # per-band stds stay in the file
        assert ds.count >= 10 and ds.descriptions[0] == "B02_std"
    with rasterio.open(synth.source()) as ds:  # the dialog's first choice: the bundled model (in git)
        assert dlg.model_combo.currentData() == "default" and ds.tags()["METHOD"] == "onnx:default"
    assert (lai.renderer().classificationMin(), lai.renderer().classificationMax()) == (0, 8)
    assert lai.bandName(lai.renderer().band()).endswith("LAI")
    assert lai_std.bandName(lai_std.renderer().band()).endswith("LAI_std")
    for layer in layers:
        props = layer.temporalProperties()
        assert props.isActive() and props.mode() == QgsRasterLayerTemporalProperties.ModeFixedTemporalRange
        assert props.fixedTemporalRange().begin().date() == QDate(2018, 3, 1)
        assert props.isVisibleInTemporalRange(props.fixedTemporalRange())
    levels = [level for _title, _text, level in _messages(bar)]
    assert Qgis.Success in levels and Qgis.Critical not in levels
    success = next(text for _title, text, level in _messages(bar) if level == Qgis.Success)
    assert success.startswith("gap-filling, model (")  # the method as the layers name it, not "onnx:default"

    # opened again, the dialog lists the results among the project's rasters, but never ticks them
    from sentinel_densify.ui.dialog import DensifyDialog

    again = DensifyDialog(project=loaded, message_bar=bar)
    for layer in layers:
        r = _row(again, layer.name())
        assert again.table.item(r, 0).checkState() == Qt.Unchecked
        assert "Densify output" in again.table.item(r, 1).toolTip()
    assert all(str(p) not in again.build_request().s2 for p in task.result.outputs.values())

    image = _render(layers)
    assert len(set(image.pixel(x, y) for x in range(0, image.width(), 4) for y in range(0, image.height(), 4))) > 50
    if os.environ.get("DENSIFY_SCREENSHOTS"):
        _save(image, "results.png")


def test_a_series_of_dates_in_one_run(loaded, bar, tmp_path):
    """"series to" a last date every N days: the mode line names the dates, one task runs them (inputs read
    once) and each date gets its own dated, styled group, all on one stretch (as densify:synthesize_series'
    layers: a colour means one value on every date); a last date before the first is said."""
    from qgis.PyQt.QtCore import QDate

    dlg = _dialog(loaded, bar, tmp_path)
    dlg.series_check.setChecked(True)
    dlg.until_edit.setDate(QDate(TARGET.year, TARGET.month, TARGET.day).addDays(-1))
    assert "The last date of the series is before the target date." in dlg.validate()
    dlg.until_edit.setDate(QDate(TARGET.year, TARGET.month, TARGET.day).addDays(25))
    dlg.every_spin.setValue(12)
    dlg.lai_check.setChecked(False)
    assert dlg.validate() == []
    days = [TARGET + dt.timedelta(days=k) for k in (0, 12, 24)]
    assert dlg.target_dates() == days
    assert f"3 dates</b>, {days[0]:%Y-%m-%d} to {days[-1]:%Y-%m-%d} (gap-filling)" in dlg.mode_label.text()
    task = dlg.run()
    assert task.description() == f"Densify {days[0]:%Y-%m-%d} to {days[-1]:%Y-%m-%d} (3 dates)"
    _wait(task)
    assert task.error is None and [r.target_date for r in task.results] == days
    stretches, ranges, own = set(), set(), set()
    for day in days:
        group = loaded.layerTreeRoot().findGroup(f"Densify {day:%Y-%m-%d} model")
        assert group is not None, day
        layers = [node.layer() for node in group.findLayers()]
        assert [lyr.name() for lyr in layers] == [f"Synthesized S2 {day:%Y-%m-%d} model",
                                                  f"Uncertainty (mean std) {day:%Y-%m-%d} model"]
        for layer in layers:
            assert layer.temporalProperties().fixedTemporalRange().begin().date() == QDate(day.year, day.month,
                                                                                           day.day)
        r = layers[0].renderer()
        stretches.add(tuple((ce.minimumValue(), ce.maximumValue()) for ce in
                            (r.redContrastEnhancement(), r.greenContrastEnhancement(), r.blueContrastEnhancement())))
        ranges.add((layers[1].renderer().classificationMin(), layers[1].renderer().classificationMax()))
        own.add(layers[1].dataProvider().cumulativeCut(11, 0.02, 0.98))
    assert len(own) == 3 and len(stretches) == 1 and len(ranges) == 1  # the dates alone would differ
    # the dates' groups earliest on top: each Temporal Controller frame of the series' step shows its own date
    # (QGIS < 3.42 counts the next date's layer in a frame too)
    assert [g.name() for g in loaded.layerTreeRoot().findGroups()] == [f"Densify {d:%Y-%m-%d} model" for d in days]
    assert frames(loaded, 12) == [(day, day, True) for day in days]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == \
        sorted(f"{k}_{d:%Y%m%d}.tif" for d in days for k in ("synthesized", "uncertainty"))


def test_an_extent_from_the_map_canvas_limits_the_run(loaded, bar, tmp_path, uds_subset):
    """"Limit to an extent": the map canvas's extent (here in degrees) gives the S2 pixels it touches; the
    size is said before running, and the task writes that part only. The S2 grid is offered as the original
    extent; an extent off the S2 grid is a problem shown before running."""
    from qgis.core import QgsCoordinateReferenceSystem, QgsRectangle
    from qgis.gui import QgsMapCanvas
    from rasterio.warp import transform_bounds
    from sentinel_densify.ui.dialog import DensifyDialog

    with rasterio.open(uds_subset["s2"][0]) as ds:
        crs, t = ds.crs, ds.transform
    west, south, east, north = transform_bounds(crs, "EPSG:4326", t.c + 100, t.f - 400, t.c + 300, t.f - 100)
    canvas = QgsMapCanvas()
    canvas.setDestinationCrs(QgsCoordinateReferenceSystem("EPSG:4326"))
    canvas.resize(400, 600)
    canvas.setExtent(QgsRectangle(west, south, east, north))
    canvas.setExtent(canvas.extent().scaled(1 / 1.02))  # QGIS pads to the canvas's aspect: back inside
    dlg = DensifyDialog(project=loaded, message_bar=bar, canvas=canvas)
    dlg.out_dir.setFilePath(str(tmp_path / "out"))
    dlg.date_edit.setDate(dlg.date_edit.date().fromString(f"{TARGET:%Y-%m-%d}", "yyyy-MM-dd"))
    assert dlg.validate() == [] and dlg.build_request().extent is None  # unticked: the whole grid
    assert "The extent is" not in dlg.problems_label.text()
    dlg.extent_box.setOutputCrs(QgsCoordinateReferenceSystem("EPSG:3857"))  # another CRS than the canvas's
    dlg.extent_box.setChecked(True)
    dlg.extent_box.setOutputExtentFromOriginal()  # the S2 grid, offered by the last check
    assert dlg.validate() == [] and "The extent is 64 x 64 px of the 64 x 64 px S2 grid" in dlg.problems_label.text()
    dlg.extent_box.setOutputExtentFromCurrent()  # the map canvas's extent
    request = dlg.build_request()
    assert request.extent is not None and request.extent_crs == "EPSG:3857"
    assert dlg.validate() == []
    said = dlg.problems_label.text()
    assert "The extent is " in said and "px of the 64 x 64 px S2 grid" in said
    task = dlg.run()
    _wait(task)
    assert task.error is None, task.error
    shown = canvas.extent()  # padded by QGIS to the canvas's shape
    left, bottom, right, top = transform_bounds("EPSG:4326", crs, shown.xMinimum(), shown.yMinimum(),
                                                shown.xMaximum(), shown.yMaximum())
    with rasterio.open(task.result.outputs["synthesized"]) as ds:
        assert ds.crs == crs and ds.width < 64 and ds.height < 64
        assert f"The extent is {ds.width} x {ds.height} px" in said
        # the S2 pixels the canvas shows (a few more: its box went through EPSG:3857)
        assert ds.bounds.left <= left and ds.bounds.top >= top and ds.bounds.right >= right
        assert abs(ds.bounds.left - left) <= 30 and abs(ds.bounds.top - top) <= 30
        assert abs(ds.width - (right - left) / 10) <= 4 and abs(ds.height - (top - bottom) / 10) <= 4

    again = DensifyDialog(project=loaded, message_bar=bar, canvas=canvas)
    again.out_dir.setFilePath(str(tmp_path / "out2"))
    again.extent_box.setChecked(True)
    again.extent_box.setOutputExtentFromUser(QgsRectangle(west - 1, south - 1, west - 0.5, south - 0.5),
                                             QgsCoordinateReferenceSystem("EPSG:4326"))
    problems = again.validate()
    assert any("does not overlap the S2 grid of" in p for p in problems) and not again.run_button.isEnabled()
    canvas.deleteLater()


def test_cancel_leaves_no_layer_and_no_file(loaded, bar, tmp_path):
    from qgis.PyQt.QtCore import Qt

    dlg = _dialog(loaded, bar, tmp_path)
    layers_before = set(loaded.mapLayers())

    def cancel_midway(task):
        # the Cancel of the task bar, pressed once the outputs are being written (after the first tile)
        task.progressChanged.connect(lambda p: task.cancel() if p > 50 else None, type=Qt.DirectConnection)

    dlg.task_created.connect(cancel_midway)
    task = dlg.run()
    _wait(task)
    assert task.cancelled and task.result is None
    assert set(loaded.mapLayers()) == layers_before
    assert loaded.layerTreeRoot().findGroups() == []
    out = tmp_path / "out"
    assert not out.exists() or [p for p in out.rglob("*")] == []
    assert any("Cancelled" in text for _title, text, _level in _messages(bar))


def test_a_bad_input_at_run_time_shows_the_message_not_a_traceback(loaded, bar, tmp_path, uds_subset):
    from qgis.core import Qgis
    from sentinel_densify.plugin.task import start

    dlg = _dialog(loaded, bar, tmp_path)
    request = dlg.build_request()
    request.s2 = request.s2 + [str(tmp_path / "T31UDS_20180301T105000_L2A_10m.tif")]  # vanished file
    task = start(request, loaded, bar)
    _wait(task)
    critical = [text for _title, text, level in _messages(bar) if level == Qgis.Critical]
    assert len(critical) == 1
    assert "T31UDS_20180301T105000_L2A_10m.tif" in critical[0] and "Traceback" not in critical[0]
    assert loaded.layerTreeRoot().findGroups() == []
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").rglob("*")) == []


def test_a_warning_reaches_the_message_bar_during_the_run_once(loaded, bar, tmp_path, monkeypatch):
    """A warning about the inputs or the method is shown while the task still runs (sent from the worker thread,
    shown on the main thread: the message bar is a widget), and not again with the outcome."""
    from qgis.core import Qgis
    from qgis.PyQt.QtCore import QCoreApplication, QThread
    from sentinel_densify.plugin import task as task_module

    shown = []
    push = task_module._push

    def spy(heading, message_bar, text, level):
        shown.append((text, QThread.currentThread() is QCoreApplication.instance().thread(), started.done))
        push(heading, message_bar, text, level)

    monkeypatch.setattr(task_module, "_push", spy)
    dlg = _dialog(loaded, bar, tmp_path)
    request = dlg.build_request()
    request.method, request.device = "linear", "cuda"
    started = task_module.start(request, loaded, bar)
    _wait(started)
    said = "CUDA was asked for but linear ran on numpy (linear is a CPU method)"
    assert [s for s in shown if s[0] == said] == [(said, True, False)]  # once, on the main thread, before the end
    assert [text for _title, text, level in _messages(bar) if level == Qgis.Warning].count(said) == 1


def test_a_project_closed_during_the_run_gets_no_layers_and_the_folder_is_named(loaded, bar, tmp_path):
    """The results belong to the project they were asked for: clearing it (closing it, opening another)
    while the task runs leaves the new project untouched, and the message names the folder."""
    from qgis.core import Qgis
    from sentinel_densify.plugin.task import start

    dlg = _dialog(loaded, bar, tmp_path)
    task = start(dlg.build_request(), loaded, bar)
    loaded.clear()  # the user opens another project (QgsProject emits cleared) before the run ends
    _wait(task)
    assert task.error is None and task.result is not None
    assert loaded.mapLayers() == {} and loaded.layerTreeRoot().children() == []
    assert all(Path(p).is_file() for p in task.result.outputs.values())  # written all the same
    warnings = [text for _title, text, level in _messages(bar) if level == Qgis.Warning]
    assert any(text.startswith("The project was closed or replaced while Densify ran") and str(tmp_path / "out")
               in text for text in warnings), warnings


def test_an_error_while_reporting_is_logged_not_raised_into_qgis(loaded, bar, tmp_path):
    """An exception in the outcome's callbacks (here on_done) must not escape finished() into C++."""
    from qgis.core import Qgis, QgsApplication
    from sentinel_densify.plugin.task import LOG_TAG, start

    logged = []

    def collect(message, tag, level):
        if tag == LOG_TAG and level == Qgis.Critical:
            logged.append(message)

    log = QgsApplication.messageLog()
    log.messageReceived[str, str, Qgis.MessageLevel].connect(collect)
    try:
        dlg = _dialog(loaded, bar, tmp_path)
        task = start(dlg.build_request(), loaded, bar, on_done=lambda *_: 1 / 0)
        _wait(task)
    finally:
        log.messageReceived[str, str, Qgis.MessageLevel].disconnect(collect)
    assert task.done and task.error is None
    assert any("reporting the outcome failed" in m and "ZeroDivisionError" in m for m in logged), logged
    assert loaded.layerTreeRoot().findGroup("Densify 2018-03-01 model") is not None  # reported before on_done


def _render(layers, size=256):
    """The four result layers rendered by QGIS's map renderer, side by side with their names."""
    from qgis.core import QgsMapRendererParallelJob, QgsMapSettings
    from qgis.PyQt.QtCore import QRectF, QSize, Qt
    from qgis.PyQt.QtGui import QColor, QFont, QImage, QPainter

    label_h = 36
    sheet = QImage(size * len(layers), size + label_h, QImage.Format_ARGB32)
    sheet.fill(QColor("white"))
    painter = QPainter(sheet)
    painter.setFont(QFont("DejaVu Sans", 9))
    for i, layer in enumerate(layers):
        settings = QgsMapSettings()
        settings.setLayers([layer])
        settings.setDestinationCrs(layer.crs())
        settings.setExtent(layer.extent())
        settings.setOutputSize(QSize(size, size))
        settings.setBackgroundColor(QColor("white"))
        job = QgsMapRendererParallelJob(settings)
        job.start()
        job.waitForFinished()
        painter.drawImage(i * size, label_h, job.renderedImage())
        painter.drawText(QRectF(i * size + 2, 0, size - 4, label_h), Qt.AlignCenter | Qt.TextWordWrap, layer.name())
    painter.end()
    return sheet


def _save(image, name):
    folder = ROOT / "docs" / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    assert image.save(str(folder / name))
