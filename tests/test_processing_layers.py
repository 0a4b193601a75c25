"""Processing outputs as layers in a project (real QGIS 3.22 headless, the real 31UDS series): re-runs onto loaded
layers, the group per date and method (never the dialog's), names, visibility and order, the series' common stretch,
legend labels, metadata, estimate_lai's group, the styling of a constant band."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest
import rasterio

ALG = "densify:synthesize"
SERIES = "densify:synthesize_series"


@pytest.fixture()
def inputs(uds_subset, densify_provider):
    return {"S2_LAYERS": [str(p) for p in uds_subset["s2"]],
            "S1_LAYERS": [str(p) for p in uds_subset["s1"]],
            "MASK_LAYERS": [str(p) for p in uds_subset["masks"]]}


@pytest.fixture()
def project(qgis_app):
    from qgis.core import QgsProject

    project = QgsProject.instance()
    project.clear()
    yield project
    project.clear()


def shown(layer, band: int = 1) -> np.ndarray:
    """The pixels the project's layer gives (its provider's block at full resolution)."""
    block = layer.dataProvider().block(band, layer.extent(), layer.width(), layer.height())
    return np.frombuffer(bytes(block.data()), dtype=np.float32).reshape(layer.height(), layer.width())


def on_disk(path: str, band: int = 1) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read(band)


def by_source(project) -> dict:
    return {lyr.source(): lyr for lyr in project.mapLayers().values()}


def day_of(layer) -> dt.date:
    return layer.temporalProperties().fixedTemporalRange().begin().date().toPyDate()


def tree(node) -> list:
    """The layer tree as nested (name, children) of groups and layer names."""
    from qgis.core import QgsLayerTree

    return [(c.name(), tree(c)) if QgsLayerTree.isGroup(c) else c.name() for c in node.children()]


def render(layers: list, frame=None) -> bytes:
    """The map QGIS draws of `layers` (top first), 64 x 64 px, in a Temporal Controller `frame` when given."""
    from qgis.core import QgsMapRendererSequentialJob, QgsMapSettings
    from qgis.PyQt.QtCore import QSize

    settings = QgsMapSettings()
    settings.setLayers(layers)
    settings.setExtent(layers[0].extent())
    settings.setOutputSize(QSize(64, 64))
    settings.setDestinationCrs(layers[0].crs())
    if frame is not None:
        settings.setIsTemporal(True)
        settings.setTemporalRange(frame)
    job = QgsMapRendererSequentialJob(settings)
    job.start()
    job.waitForFinished()
    image = job.renderedImage()
    return bytes(image.constBits().asarray(image.sizeInBytes()))


def frames(project, days: int) -> list[tuple[dt.date, dt.date | None, bool]]:
    """The Temporal Controller's frames of `days` days over the project's full range ("set to full range"), as QGIS
    3.22 makes them (QgsTemporalNavigationObject): per frame, its first day, the date of the top dated layer it shows
    (the first in the layer tree that is checked and in the frame's range: the one drawn on top), and whether the map
    drawn for the frame equals the map of the frame's own day's top layer alone."""
    from qgis.core import QgsInterval, QgsTemporalNavigationObject, QgsTemporalUtils, QgsUnitTypes

    shown = [n.layer() for n in project.layerTreeRoot().findLayers()
             if n.isVisible() and n.layer().temporalProperties().isActive()]
    nav = QgsTemporalNavigationObject()
    nav.setTemporalExtents(QgsTemporalUtils.calculateTemporalRangeForProject(project))
    nav.setFrameDuration(QgsInterval(days, QgsUnitTypes.TemporalDays))
    out = []
    for number in range(nav.totalFrameCount()):
        frame = nav.dateTimeRangeForFrameNumber(number)
        first = frame.begin().toUTC().date().toPyDate()
        inside = [lyr for lyr in shown if lyr.temporalProperties().isVisibleInTemporalRange(frame)]
        own = [lyr for lyr in shown if day_of(lyr) == first]
        out.append((first, day_of(inside[0]) if inside else None,
                    bool(own) and render(shown, frame) == render(own[:1])))
    return out


def test_a_rerun_onto_loaded_outputs_shows_the_new_files(inputs, project, tmp_path):
    """densify:synthesize run again with the same destination files (the toolbox remembers them) while the first
    run's layers are in the project: QGIS reuses those layers; they must give the new files' pixels, date, name
    and a stretch of the new data, in one group per date."""
    import processing
    from qgis.core import QgsRasterLayer

    out = {"OUTPUT_SYNTHESIZED": str(tmp_path / "s.tif"), "OUTPUT_UNCERTAINTY": str(tmp_path / "u.tif"),
           "OUTPUT_LAI": str(tmp_path / "lai.tif")}
    processing.runAndLoadResults(ALG, {**inputs, "TARGET_DATE": "2018-02-10", "METHOD": 1, **out})
    first = {path: on_disk(path) for path in out.values()}
    ids = {lyr.id() for lyr in project.mapLayers().values()}
    processing.runAndLoadResults(ALG, {**inputs, "TARGET_DATE": "2018-03-22", "METHOD": 1, **out})
    layers = by_source(project)
    assert set(layers) == set(out.values()) and {lyr.id() for lyr in layers.values()} == ids  # reused layers
    for path, layer in layers.items():
        new = on_disk(path)
        assert not np.allclose(new, first[path], equal_nan=True), path  # the run did replace the file
        np.testing.assert_array_equal(shown(layer), new)
        assert day_of(layer) == dt.date(2018, 3, 22) and layer.name().endswith(" 2018-03-22 linear")
    synth = layers[out["OUTPUT_SYNTHESIZED"]]
    fresh = QgsRasterLayer(out["OUTPUT_SYNTHESIZED"], "fresh", "gdal")
    red = synth.renderer().redContrastEnhancement()
    lo, hi = fresh.dataProvider().cumulativeCut(synth.renderer().redBand(), 0.02, 0.98)
    assert (red.minimumValue(), red.maximumValue()) == pytest.approx((lo, hi))  # stretched on the new data
    assert tree(project.layerTreeRoot()) == [  # the first run's group went: its layers now hold 2018-03-22
        ("Densify 2018-03-22 linear", ["Synthesized S2 2018-03-22 linear", "Uncertainty (mean std) 2018-03-22 linear",
                                       "LAI 2018-03-22 linear"])]
    assert [n.itemVisibilityChecked() for n in project.layerTreeRoot().findLayers()] == [True, False, False]


def test_a_series_rerun_into_the_same_folder_reuses_its_groups_and_shows_the_new_files(inputs, project, tmp_path):
    """densify:synthesize_series twice into one folder (another METHOD): one group per date, not nested, holding
    the same layers in the same order and visibility, each giving the new file's pixels, group and layers named for
    the method that made the new files."""
    import processing

    params = {**inputs, "FIRST_DATE": "2018-02-20", "LAST_DATE": "2018-03-02", "ESTIMATE_LAI": False,
              "OUTPUT": str(tmp_path)}
    processing.runAndLoadResults(SERIES, {**params, "METHOD": 1})
    first = tree(project.layerTreeRoot())
    before = {path: on_disk(path) for path in by_source(project)}
    processing.runAndLoadResults(SERIES, {**params, "METHOD": 2})
    root = project.layerTreeRoot()
    expected = [(f"Densify {day} {{m}}", [f"Synthesized S2 {day} {{m}}", f"Uncertainty (mean std) {day} {{m}}"])
                for day in ("2018-02-20", "2018-03-02")]  # a series' dates: the earliest on top

    def named(method: str) -> list:
        return [(g.format(m=method), [n.format(m=method) for n in names]) for g, names in expected]

    assert first == named("linear") and tree(root) == named("nearest")
    for group in root.children():
        assert [n.isVisible() for n in group.findLayers()] == [True, False]
    layers = by_source(project)
    assert len(layers) == 4
    for path, layer in layers.items():
        with rasterio.open(path) as ds:
            assert ds.tags().get("METHOD", "nearest") == "nearest" or "uncertainty" in path
        new = on_disk(path)
        assert not np.array_equal(new, before[path], equal_nan=True), path
        np.testing.assert_array_equal(shown(layer), new)


def test_synthesize_outputs_load_as_the_dialogs_in_a_group_named_and_dated(inputs, project, tmp_path):
    """The README's names (s.tif, u.tif, lai.tif: QGIS loads them in path order, the uncertainty on top) and
    temporary outputs (named after the parameter, no date): a group "Densify YYYY-MM-DD" with the synthesized
    image on top and shown, the uncertainty and LAI below it unchecked, named with the date."""
    import processing

    out = {"OUTPUT_SYNTHESIZED": str(tmp_path / "s.tif"), "OUTPUT_UNCERTAINTY": str(tmp_path / "u.tif"),
           "OUTPUT_LAI": str(tmp_path / "lai.tif")}
    processing.runAndLoadResults(ALG, {**inputs, "TARGET_DATE": "2018-03-01", "METHOD": 1, **out})
    processing.runAndLoadResults(ALG, {**inputs, "TARGET_DATE": "2018-02-10", "METHOD": 1,
                                       **{k: "TEMPORARY_OUTPUT" for k in out}})
    root = project.layerTreeRoot()
    assert [c.name() for c in root.children()] == ["Densify 2018-02-10 linear", "Densify 2018-03-01 linear"]
    for day in ("2018-02-10", "2018-03-01"):
        nodes = root.findGroup(f"Densify {day} linear").findLayers()
        assert [n.layer().name() for n in nodes] == [f"Synthesized S2 {day} linear",
                                                     f"Uncertainty (mean std) {day} linear", f"LAI {day} linear"]
        assert [n.itemVisibilityChecked() for n in nodes] == [True, False, False]
        assert [n.layer().renderer().type() for n in nodes] == ["multibandcolor", "singlebandpseudocolor",
                                                                "singlebandpseudocolor"]
    nodes = root.findGroup("Densify 2018-03-01 linear").findLayers()
    assert [n.layer().source() for n in nodes] == [out[k] for k in out]


def test_the_shipped_model_keeps_its_output_names_and_shows_the_image_on_top(inputs, project, tmp_path):
    """The example model (synthesize -> estimate_lai): its outputs keep the names the model gives them; the
    synthesized image is the shown layer of its date's group, the uncertainty and the LAI (estimated from that image:
    its date and method) below it hidden, in that group, not at the root of the layer tree."""
    import processing
    from qgis.core import QgsProcessingModelAlgorithm
    from sentinel_densify.plugin.processing.example_model import MODEL_FILE

    model = QgsProcessingModelAlgorithm()
    assert model.fromFile(str(MODEL_FILE))
    processing.runAndLoadResults(model, {"s2_layers": inputs["S2_LAYERS"], "s1_layers": inputs["S1_LAYERS"],
                                         "mask_layers": inputs["MASK_LAYERS"], "target_date": "2018-03-01",
                                         "synthesize:Synthesized S2": str(tmp_path / "s.tif"),
                                         "synthesize:Uncertainty": str(tmp_path / "u.tif"),
                                         "estimate_lai:LAI": str(tmp_path / "lai.tif")})
    assert sorted(lyr.name() for lyr in project.mapLayers().values()) == ["LAI", "Synthesized S2", "Uncertainty"]
    assert tree(project.layerTreeRoot()) == [("Densify 2018-03-01 model", ["Synthesized S2", "Uncertainty", "LAI"])]
    nodes = project.layerTreeRoot().findGroup("Densify 2018-03-01 model").findLayers()
    assert [n.itemVisibilityChecked() for n in nodes] == [True, False, False]  # the image on top, shown


def test_a_series_shares_one_stretch_over_its_dates(inputs, project, tmp_path):
    """Every date's uncertainty on one range and every date's true colour on one stretch (2-98 % of all the
    dates' values), though each date alone would get another; a single run keeps its own stretch."""
    import processing
    from qgis.core import QgsRasterLayer

    res = processing.runAndLoadResults(SERIES, {**inputs, "FIRST_DATE": "2018-02-10", "LAST_DATE": "2018-04-10",
                                                "EVERY_DAYS": 30, "METHOD": 1, "ESTIMATE_LAI": False,
                                                "OUTPUT": str(tmp_path)})
    layers = by_source(project)
    unc = [layers[p] for p in res["UNCERTAINTY"]]
    alone = [QgsRasterLayer(p, "alone", "gdal") for p in res["UNCERTAINTY"]]
    own = [lyr.dataProvider().cumulativeCut(11, 0.02, 0.98) for lyr in alone]
    assert max(hi for _, hi in own) - min(hi for _, hi in own) > 10  # the dates do differ in spread
    ranges = {(lyr.renderer().classificationMin(), lyr.renderer().classificationMax()) for lyr in unc}
    assert len(ranges) == 1
    pooled = np.concatenate([on_disk(p, 11).ravel() for p in res["UNCERTAINTY"]])
    expected = np.nanpercentile(pooled, [2, 98])
    np.testing.assert_allclose(ranges.pop(), (max(expected[0], 0), expected[1]), rtol=0.02)
    stretches = set()
    for path in res["SYNTHESIZED"]:
        r = layers[path].renderer()
        stretches.add(tuple((ce.minimumValue(), ce.maximumValue()) for ce in
                            (r.redContrastEnhancement(), r.greenContrastEnhancement(), r.blueContrastEnhancement())))
    assert len(stretches) == 1
    red = np.concatenate([on_disk(p, 3).ravel() for p in res["SYNTHESIZED"]])  # B04
    np.testing.assert_allclose(stretches.pop()[0], np.nanpercentile(red, [2, 98]), rtol=0.02)
    project.clear()
    one = processing.runAndLoadResults(ALG, {**inputs, "TARGET_DATE": "2018-02-10", "METHOD": 1,
                                             "OUTPUT_SYNTHESIZED": str(tmp_path / "s.tif"),
                                             "OUTPUT_UNCERTAINTY": str(tmp_path / "u.tif"), "OUTPUT_LAI": None})
    layer = by_source(project)[one["OUTPUT_UNCERTAINTY"]]
    lo, hi = layer.dataProvider().cumulativeCut(11, 0.02, 0.98)
    assert (layer.renderer().classificationMin(), layer.renderer().classificationMax()) == pytest.approx((lo, hi))


def test_legend_labels_are_rounded_with_units(inputs, project, tmp_path):
    """The ramps' legend (QgsColorRampLegendNode: minimum and maximum) and class labels: the uncertainty in whole
    DN ("342 DN"), the LAI in m²/m² with one decimal; not 6 decimals and no unit."""
    import processing
    from qgis.core import QgsColorRampLegendNode, QgsLayerTreeModel, QgsNumericFormatContext

    temporary = {k: "TEMPORARY_OUTPUT" for k in ("OUTPUT_SYNTHESIZED", "OUTPUT_UNCERTAINTY", "OUTPUT_LAI")}
    processing.runAndLoadResults(ALG, {**inputs, "TARGET_DATE": "2018-03-01", "METHOD": 1, **temporary})
    model = QgsLayerTreeModel(project.layerTreeRoot())
    labels = {}
    for node in project.layerTreeRoot().findLayers():
        ramps = [n for n in model.layerLegendNodes(node) if isinstance(n, QgsColorRampLegendNode)]
        if not ramps:
            continue
        settings, shader = ramps[0].settings(), node.layer().renderer()
        ends = (shader.classificationMin(), shader.classificationMax())
        legend = [settings.prefix() + settings.numericFormat().formatDouble(v, QgsNumericFormatContext()) +
                  settings.suffix() for v in ends]  # what the node draws (no minimum/maximum label set)
        items = [i.label for i in shader.shader().rasterShaderFunction().colorRampItemList()]
        labels[node.name().rsplit(" ", 2)[0]] = legend, items  # without " 2018-03-01 linear"
    legend, items = labels["Uncertainty (mean std)"]
    for label in legend + items:
        number, unit = label.split(" ", 1)
        assert unit == "DN" and number.isdigit(), label
    legend, items = labels["LAI"]
    assert legend == ["0.0 m²/m²", "8.0 m²/m²"] and items[-1] == "8.0 m²/m²"


def test_runs_that_differ_only_by_method_are_named_for_it(inputs, project, tmp_path):
    """The same date with linear, nearest, the bundled model and a copy of it named model.onnx (other files, as
    toolbox runs): groups and layers an analyst tells apart by the method in their names: "model" for the bundled
    model only, any other model file by its file name (never "model" nor a baseline's name)."""
    import shutil

    import processing
    from sentinel_densify.core.methods import default_model
    from sentinel_densify.plugin.layers import method_label, run_label

    copy = tmp_path / "mine" / "model.onnx"
    copy.parent.mkdir()
    shutil.copy(default_model(), copy)
    for name, method in (("linear", {"METHOD": 1}), ("nearest", {"METHOD": 2}), ("bundled", {"METHOD": 0}),
                         ("copy", {"MODEL": str(copy)})):
        processing.runAndLoadResults(ALG, {**inputs, "TARGET_DATE": "2018-03-01", **method, "OUTPUT_LAI": None,
                                           "OUTPUT_SYNTHESIZED": str(tmp_path / f"s_{name}.tif"),
                                           "OUTPUT_UNCERTAINTY": str(tmp_path / f"u_{name}.tif")})
    assert tree(project.layerTreeRoot()) == [
        (f"Densify 2018-03-01 {m}", [f"Synthesized S2 2018-03-01 {m}", f"Uncertainty (mean std) 2018-03-01 {m}"])
        for m in ("model.onnx", "model", "nearest", "linear")]
    tagged = [{"METHOD": "linear"}, {"METHOD": "onnx:default", "MODEL": "default.onnx", "MODEL_BUNDLED": "1"},
              {"METHOD": "onnx:default", "MODEL": "default.onnx", "MODEL_BUNDLED": "0"},
              {"METHOD": "onnx:linear", "MODEL": "linear.onnx", "MODEL_BUNDLED": "0"}, {"METHOD": "onnx:crops_v2"}, {}]
    assert [method_label(t) for t in tagged] == ["linear", "model", "default.onnx", "linear.onnx", "crops_v2.onnx", ""]
    day = dt.date(2018, 3, 1)
    assert run_label({"synthesized": "out/synthesized_20180301_2.tif"}, day, tagged[1]) == " model (2)"
    assert run_label({"synthesized": "out/synthesized_20180301.tif"}, day) == ""


def test_runs_of_one_date_and_method_into_other_files_get_groups_of_their_own(inputs, project, tmp_path):
    """Two runs for one date and method into other files (batch rows over two extents, or toolbox runs): two groups,
    the second numbered as the dialog's ("Densify 2018-03-01 linear (2)", its layers' names and titles too), each
    image shown in its group; a re-run onto the first run's files reuses that run's group, as it is."""
    import processing

    params = {**inputs, "TARGET_DATE": "2018-03-01", "METHOD": 1, "OUTPUT_LAI": None}
    with rasterio.open(inputs["S2_LAYERS"][0]) as ds:  # the grid's west and east halves
        (west, south, east, north), middle, crs = ds.bounds, (ds.bounds.left + ds.bounds.right) / 2, ds.crs
    extents = [f"{a},{b},{south},{north} [{crs}]" for a, b in ((west, middle), (middle, east))]
    for run in (0, 1, 0):
        processing.runAndLoadResults(ALG, {**params, "EXTENT": extents[run],
                                           "OUTPUT_SYNTHESIZED": str(tmp_path / f"s_field{run}.tif"),
                                           "OUTPUT_UNCERTAINTY": str(tmp_path / f"u_field{run}.tif")})
    root = project.layerTreeRoot()
    names = ["Synthesized S2 2018-03-01 linear{}", "Uncertainty (mean std) 2018-03-01 linear{}"]
    assert tree(root) == [("Densify 2018-03-01 linear (2)", [n.format(" (2)") for n in names]),
                          ("Densify 2018-03-01 linear", [n.format("") for n in names])]
    for group, field in zip(root.children(), (1, 0), strict=True):
        nodes = group.findLayers()
        assert [n.layer().source() for n in nodes] == [str(tmp_path / f"{k}_field{field}.tif") for k in "su"]
        assert [n.itemVisibilityChecked() for n in nodes] == [True, False]
    assert root.children()[0].findLayers()[0].layer().metadata().title() == \
        "Synthesized Sentinel-2 L2A (2018-03-01, linear (2))"


def test_loaded_layers_say_what_they_are_in_their_metadata_and_tooltip(inputs, project, tmp_path):
    """Layer Properties > Metadata and the Layers panel's tooltip say what each loaded layer is (date, method), how it
    was made and its units: densify:synthesize's outputs, and densify:estimate_lai's LAI of an observed image."""
    import processing
    from qgis.core import QgsLayerTreeModel
    from qgis.PyQt.QtCore import Qt

    out = {"OUTPUT_SYNTHESIZED": str(tmp_path / "s.tif"), "OUTPUT_UNCERTAINTY": str(tmp_path / "u.tif"),
           "OUTPUT_LAI": str(tmp_path / "lai.tif")}
    processing.runAndLoadResults(ALG, {**inputs, "TARGET_DATE": "2018-03-01", "METHOD": 1, **out})
    src = next(p for p in inputs["S2_LAYERS"] if "20180320" in p)
    observed = str(tmp_path / "lai_20180320.tif")
    processing.runAndLoadResults("densify:estimate_lai", {"INPUT": src, "OUTPUT": observed})
    metadata = {path: layer.metadata() for path, layer in by_source(project).items()}
    synth, unc, lai = (metadata[out[k]] for k in ("OUTPUT_SYNTHESIZED", "OUTPUT_UNCERTAINTY", "OUTPUT_LAI"))
    assert synth.title() == "Synthesized Sentinel-2 L2A (2018-03-01, linear)"
    assert synth.abstract().startswith("Sentinel-2 L2A surface reflectance synthesized for 2018-03-01 (gap-filling) "
                                       "by the linear baseline from 20 Sentinel-2 acquisitions (20 cloud masks); in DN")
    assert unc.title() == "Uncertainty of synthesized Sentinel-2 (2018-03-01, linear)"
    assert unc.abstract().startswith("1-sigma standard deviation of the Sentinel-2 reflectance synthesized for "
                                     "2018-03-01 by the linear baseline")
    for md in (synth, unc):
        assert "in DN (reflectance = DN × 0.0001)" in md.abstract()
        assert {"Sentinel-2", "gap-filling", "linear"} <= set(md.keywords()["Sentinel Densify"])
    assert lai.title() == "LAI (2018-03-01, linear)"
    assert lai.abstract().startswith("Leaf area index (m²/m²) of the Sentinel-2 image synthesized for 2018-03-01 by "
                                     "the linear baseline, estimated with the ESA SNAP LAI v3 network")
    assert metadata[observed].title() == "LAI (2018-03-20)"
    assert metadata[observed].abstract().startswith(
        f"Leaf area index (m²/m²) of {Path(src).name} (2018-03-20), estimated with the ESA SNAP LAI v3 network. "
        "Bands: LAI, LAI_std (1-sigma, m²/m²; 0: no reflectance std given (single image))")
    model = QgsLayerTreeModel(project.layerTreeRoot())
    for node in project.layerTreeRoot().findLayers():  # the tooltip shows the layer's abstract
        layer = node.layer()
        assert layer.abstract() == layer.metadata().abstract()
        assert layer.abstract() in model.data(model.node2index(node), Qt.ToolTipRole)


def test_processing_never_puts_its_layers_into_the_dialogs_group(inputs, project, tmp_path):
    """A dialog's group "Densify 2018-03-01 linear" (add_result_layers) and a toolbox run for that date and method:
    the run's layers go into a group of their own, numbered beside it, and the dialog's group keeps its layers; a
    re-run of the algorithm onto its files reuses its own group."""
    import processing
    from sentinel_densify.plugin.layers import add_result_layers

    params = {**inputs, "TARGET_DATE": "2018-03-01", "METHOD": 1}
    files = {k: str(tmp_path / "dialog" / f"{k}_20180301.tif") for k in ("synthesized", "uncertainty", "lai")}
    processing.run(ALG, {**params, **{f"OUTPUT_{k.upper()}": path for k, path in files.items()}})
    dialog_group, dialog_layers = add_result_layers(files, dt.date(2018, 3, 1), project)
    out = {"OUTPUT_SYNTHESIZED": str(tmp_path / "s.tif"), "OUTPUT_UNCERTAINTY": str(tmp_path / "u.tif"),
           "OUTPUT_LAI": str(tmp_path / "lai.tif")}
    for _ in range(2):
        processing.runAndLoadResults(ALG, {**params, **out})
    root = project.layerTreeRoot()
    names = ["Synthesized S2 2018-03-01 linear", "Uncertainty (mean std) 2018-03-01 linear", "LAI 2018-03-01 linear"]
    assert tree(root) == [("Densify 2018-03-01 linear (2)", [f"{n} (2)" for n in names]),
                          ("Densify 2018-03-01 linear", names + ["LAI std 2018-03-01 linear"])]
    assert root.children()[1] is dialog_group
    assert [n.layer() for n in dialog_group.findLayers()] == dialog_layers
    assert [n.layer().source() for n in root.children()[0].findLayers()] == list(out.values())


def test_a_rerun_onto_a_dialogs_files_takes_its_layers_beside_not_inside_its_group(inputs, project, tmp_path):
    """densify:synthesize with nearest onto the three files of a dialog's linear result: no group inside the
    dialog's group; every layer on those files, the dialog's "LAI std" too (QGIS reuses one layer per file), shows
    the new file, restyled, named and described for nearest, in one group where the dialog's was, which goes."""
    import processing
    from qgis.core import QgsRasterLayer
    from sentinel_densify.plugin.layers import add_result_layers

    day = dt.date(2018, 3, 1)
    files = {k: str(tmp_path / f"{k}_20180301.tif") for k in ("synthesized", "uncertainty", "lai")}
    outputs = {f"OUTPUT_{k.upper()}": path for k, path in files.items()}
    processing.run(ALG, {**inputs, "TARGET_DATE": "2018-03-01", "METHOD": 1, **outputs})
    add_result_layers(files, day, project)
    lai_std = project.mapLayersByName("LAI std 2018-03-01 linear")[0]
    processing.runAndLoadResults(ALG, {**inputs, "TARGET_DATE": "2018-03-01", "METHOD": 2, **outputs})
    names = ["Synthesized S2", "Uncertainty (mean std)", "LAI", "LAI std"]
    assert tree(project.layerTreeRoot()) == [("Densify 2018-03-01 nearest", [f"{n} 2018-03-01 nearest"
                                                                             for n in names])]
    assert len(project.mapLayers()) == 4 and project.mapLayer(lai_std.id()) is lai_std
    np.testing.assert_array_equal(shown(lai_std, 2), on_disk(files["lai"], 2))  # the new file's LAI std
    assert lai_std.metadata().title() == "LAI std (2018-03-01, nearest)"
    assert "by the nearest baseline" in lai_std.abstract()
    fresh = QgsRasterLayer(files["lai"], "fresh", "gdal")
    lo, hi = fresh.dataProvider().cumulativeCut(2, 0.02, 0.98)
    assert (lai_std.renderer().classificationMin(), lai_std.renderer().classificationMax()) == \
        pytest.approx((max(lo, 0), hi))
    nodes = project.layerTreeRoot().findLayers()
    assert [n.itemVisibilityChecked() for n in nodes] == [True, False, False, False]


def test_estimate_lai_on_a_dialogs_image_goes_into_that_images_group(inputs, project, tmp_path):
    """Two dialog results for one date and method ("... nearest" and "... nearest (2)"); densify:estimate_lai on the
    "(2)" image and its uncertainty: its LAI goes into that image's group (not a new one of the same name, not the
    other run's), named and titled with the run's number, and is the group's layer shown (the analyst asked for it)."""
    import shutil

    import processing
    from sentinel_densify.plugin.layers import add_result_layers

    day = dt.date(2018, 3, 10)
    first = {k: str(tmp_path / f"{k}_20180310.tif") for k in ("synthesized", "uncertainty")}
    processing.run(ALG, {**inputs, "TARGET_DATE": "2018-03-10", "METHOD": 2, "OUTPUT_LAI": None,
                         **{f"OUTPUT_{k.upper()}": path for k, path in first.items()}})
    second = {k: shutil.copy(path, tmp_path / f"{k}_20180310_2.tif") for k, path in first.items()}
    add_result_layers(first, day, project)
    group, (synth, unc) = add_result_layers(second, day, project)
    processing.runAndLoadResults("densify:estimate_lai", {"INPUT": synth.id(), "UNCERTAINTY": unc.id(),
                                                          "OUTPUT": str(tmp_path / "lai.tif")})
    root = project.layerTreeRoot()
    assert [g.name() for g in root.findGroups()] == ["Densify 2018-03-10 nearest (2)", "Densify 2018-03-10 nearest"]
    assert [n.name() for n in group.findLayers()] == ["Synthesized S2 2018-03-10 nearest (2)",
                                                      "Uncertainty (mean std) 2018-03-10 nearest (2)",
                                                      "LAI 2018-03-10 nearest (2)"]
    assert [n.itemVisibilityChecked() for n in group.findLayers()] == [False, False, True]
    lai = group.findLayers()[2].layer()
    assert lai.metadata().title() == "LAI (2018-03-10, nearest (2))"
    assert "synthesized by the nearest baseline" in lai.abstract()


def test_estimate_lai_loads_into_the_group_of_its_images_date(inputs, project, tmp_path):
    """densify:estimate_lai with a temporary output (as in a model, or the toolbox's default), loaded: into the group of
    its image's date, named as densify:synthesize's LAI ("LAI YYYY-MM-DD"), with the method of a synthesized image (the
    group of that image); an image without a date into "Densify LAI"; never at the root of the layer tree."""
    import processing
    from helpers import craft

    src = next(p for p in inputs["S2_LAYERS"] if "20180320" in p)
    processing.runAndLoadResults("densify:estimate_lai", {"INPUT": src, "OUTPUT": "TEMPORARY_OUTPUT"})
    undated = craft(Path(src), tmp_path / "image.tif", drop_tags=("ACQUISITION_DATETIME",))
    processing.runAndLoadResults("densify:estimate_lai", {"INPUT": str(undated), "OUTPUT": "TEMPORARY_OUTPUT"})
    synth = processing.runAndLoadResults(ALG, {**inputs, "TARGET_DATE": "2018-03-01", "METHOD": 2, "OUTPUT_LAI": None,
                                               "OUTPUT_SYNTHESIZED": str(tmp_path / "s.tif"),
                                               "OUTPUT_UNCERTAINTY": str(tmp_path / "u.tif")})
    processing.runAndLoadResults("densify:estimate_lai", {"INPUT": synth["OUTPUT_SYNTHESIZED"],
                                                          "UNCERTAINTY": synth["OUTPUT_UNCERTAINTY"],
                                                          "OUTPUT": "TEMPORARY_OUTPUT"})
    root = project.layerTreeRoot()
    assert tree(root) == [
        ("Densify 2018-03-01 nearest", ["Synthesized S2 2018-03-01 nearest",
                                        "Uncertainty (mean std) 2018-03-01 nearest", "LAI 2018-03-01 nearest"]),
        ("Densify LAI", ["LAI (LAI, std, flags)"]), ("Densify 2018-03-20", ["LAI 2018-03-20"])]
    # the LAI of a loaded image: shown (the analyst asked for it), the group's other layers hidden
    assert [n.itemVisibilityChecked() for n in root.children()[0].findLayers()] == [False, False, True]
    assert {n.layer().renderer().type() for n in root.findLayers()[2:]} == {"singlebandpseudocolor"}
    assert day_of(root.findGroup("Densify 2018-03-20").findLayers()[0].layer()) == dt.date(2018, 3, 20)


def test_an_intermediate_estimate_lai_in_a_model_loads_nothing(inputs, project, tmp_path):
    """A model: synthesize -> estimate_lai -> gdal:buildvirtualraster, whose outputs are the synthesized image and the
    VRT: the LAI, an intermediate step's output, is not loaded (QGIS gives it a temporary file it does not load), nor
    any group for it; the synthesized image loads into its dated group."""
    import processing
    from qgis.core import (
        QgsProcessing,
        QgsProcessingModelAlgorithm,
        QgsProcessingModelChildAlgorithm,
        QgsProcessingModelOutput,
        QgsProcessingModelParameter,
        QgsProcessingParameterMultipleLayers,
    )
    from qgis.core import QgsProcessingModelChildParameterSource as Source

    def output(child: QgsProcessingModelChildAlgorithm, name: str, of: str) -> None:
        out = QgsProcessingModelOutput(name)
        out.setChildId(child.childId())
        out.setChildOutputName(of)
        child.setModelOutputs({name: out})

    model = QgsProcessingModelAlgorithm("lai_vrt", "test")
    model.addModelParameter(QgsProcessingParameterMultipleLayers("s2", "S2", QgsProcessing.TypeRaster),
                            QgsProcessingModelParameter("s2"))
    synth = QgsProcessingModelChildAlgorithm(ALG)
    synth.setChildId("synthesize")
    synth.addParameterSources("S2_LAYERS", [Source.fromModelParameter("s2")])
    for key, value in {"TARGET_DATE": "2018-03-01", "METHOD": 1, "OUTPUT_LAI": None}.items():
        synth.addParameterSources(key, [Source.fromStaticValue(value)])
    output(synth, "synthesized", "OUTPUT_SYNTHESIZED")
    lai = QgsProcessingModelChildAlgorithm("densify:estimate_lai")
    lai.setChildId("lai")
    lai.addParameterSources("INPUT", [Source.fromChildOutput("synthesize", "OUTPUT_SYNTHESIZED")])
    lai.addParameterSources("UNCERTAINTY", [Source.fromChildOutput("synthesize", "OUTPUT_UNCERTAINTY")])
    vrt = QgsProcessingModelChildAlgorithm("gdal:buildvirtualraster")
    vrt.setChildId("vrt")
    vrt.addParameterSources("INPUT", [Source.fromChildOutput("lai", "OUTPUT")])
    output(vrt, "vrt", "OUTPUT")
    for child in (synth, lai, vrt):
        model.addChildAlgorithm(child)
    model.updateDestinationParameters()
    res = processing.runAndLoadResults(model, {"s2": inputs["S2_LAYERS"], "vrt:vrt": str(tmp_path / "lai.vrt"),
                                               "synthesize:synthesized": str(tmp_path / "s.tif")})
    assert res["vrt:vrt"] == str(tmp_path / "lai.vrt")
    assert sorted(lyr.source() for lyr in project.mapLayers().values()) == [str(tmp_path / "lai.vrt"),
                                                                           str(tmp_path / "s.tif")]
    assert [g.name() for g in project.layerTreeRoot().findGroups()] == ["Densify 2018-03-01 linear"]


def test_a_constant_lai_std_is_styled_without_a_gdal_error(inputs, qgis_app, tmp_path):
    """An LAI without uncertainty (densify:estimate_lai with no UNCERTAINTY) has an LAI_std of 0 everywhere: its ramp
    (style_lai_std) comes from the band's statistics, not from a histogram, on which GDAL logs "ERROR 5: ... dfMax
    should be strictly greater than dfMin"."""
    import processing
    from osgeo import gdal
    from qgis.core import QgsRasterLayer
    from sentinel_densify.plugin.layers import style_lai_std

    src = next(p for p in inputs["S2_LAYERS"] if "20180320" in p)
    path = processing.run("densify:estimate_lai", {"INPUT": src, "OUTPUT": str(tmp_path / "lai.tif")})["OUTPUT"]
    std = on_disk(path, 2)
    assert np.nanmax(std) == np.nanmin(std) == 0
    layer = QgsRasterLayer(path, "LAI std", "gdal")  # opening it, QGIS's own default stretch: not the plugin's
    errors = []
    gdal.PushErrorHandler(lambda _level, number, message: errors.append((number, message)))
    try:
        style_lai_std(layer)
    finally:
        gdal.PopErrorHandler()
    assert errors == []
    renderer = layer.renderer()
    assert renderer.type() == "singlebandpseudocolor" and renderer.classificationMin() == 0
    assert renderer.classificationMax() == pytest.approx(0, abs=1e-5)


def test_a_series_lies_earliest_on_top_so_each_frame_shows_its_own_date(inputs, project, tmp_path):
    """densify:synthesize_series every 10 days, played in the Temporal Controller with frames of 10 days over its
    full range: each frame shows its own date (QGIS < 3.42 also counts the next date's layer in a frame, so the
    series' groups lie earliest on top); a single run made after it still goes on top."""
    import processing

    days = [dt.date(2018, 2, 1) + dt.timedelta(days=10 * k) for k in range(4)]
    processing.runAndLoadResults(SERIES, {**inputs, "FIRST_DATE": "2018-02-01", "LAST_DATE": "2018-03-03",
                                          "EVERY_DAYS": 10, "METHOD": 1, "ESTIMATE_LAI": False,
                                          "OUTPUT": str(tmp_path / "series")})
    groups = [f"Densify {day} linear" for day in days]
    assert [g.name() for g in project.layerTreeRoot().children()] == groups
    assert frames(project, 10) == [(day, day, True) for day in days]
    processing.runAndLoadResults(ALG, {**inputs, "TARGET_DATE": "2018-02-15", "METHOD": 1, "OUTPUT_LAI": None,
                                       "OUTPUT_SYNTHESIZED": str(tmp_path / "s.tif"),
                                       "OUTPUT_UNCERTAINTY": str(tmp_path / "u.tif")})
    assert [g.name() for g in project.layerTreeRoot().children()] == ["Densify 2018-02-15 linear", *groups]


def test_level_1c_inputs_and_baselines_are_described_as_they_are(inputs, project, tmp_path):
    """A run on Level-1C images is described as Level-1C (top-of-atmosphere) reflectance, not L2A surface reflectance,
    its LAI as estimated from it; a baseline's image claims no Sentinel-1 input, even from a file that lists them
    (INPUTS_S1, as 0.3.0 wrote for every method); the bundled model's does."""
    import processing
    from helpers import craft
    from sentinel_densify.plugin.layers import about, add_result_layers

    l1c = [str(craft(Path(p), tmp_path / "l1c" / Path(p).name, tags={"PROCESSING_LEVEL": "Level-1C"}))
           for p in inputs["S2_LAYERS"]]
    files = {k: str(tmp_path / f"{k}_20180301.tif") for k in ("synthesized", "uncertainty", "lai")}
    processing.run(ALG, {**inputs, "S2_LAYERS": l1c, "TARGET_DATE": "2018-03-01", "METHOD": 1,
                         **{f"OUTPUT_{k.upper()}": path for k, path in files.items()}})
    _, (synth, _, lai, lai_std) = add_result_layers(files, dt.date(2018, 3, 1), project)
    assert synth.metadata().title() == "Synthesized Sentinel-2 Level-1C (2018-03-01, linear)"
    assert synth.abstract().startswith("Sentinel-2 Level-1C (top-of-atmosphere) reflectance synthesized for ")
    keywords = synth.metadata().keywords()["Sentinel Densify"]
    assert "top-of-atmosphere reflectance" in keywords and "surface reflectance" not in keywords
    for layer in (lai, lai_std):
        assert "Level-1C (top-of-atmosphere) reflectance" in layer.abstract()
    day, listed = dt.date(2018, 3, 1), {"INPUTS_S2": "a;b", "INPUTS_S1": "c;d;e"}
    assert "Sentinel-1" not in about("synthesized", day, {"METHOD": "linear", **listed})[1]
    model = {"METHOD": "onnx:default", "MODEL": "default.onnx", "MODEL_BUNDLED": "1", **listed}
    assert "from 2 Sentinel-2 acquisitions and 3 Sentinel-1 acquisitions" in about("synthesized", day, model)[1]
    fell = {"METHOD": "linear", "FALLBACK": "the bundled model needs onnxruntime, which is not installed: the linear "
            "baseline ran instead"}  # a fallback (tested in test_default_model) is said in the abstract
    assert " The bundled model needs onnxruntime, which is not installed: the" in about("synthesized", day, fell)[1]
    # the LAI of an acquisition given as one of its band files (a .SAFE's B04 layer) is that acquisition's, not B04's
    safe = {"source": "T31UDS_20180401T105529_B04_10m.jp2", "band_files": ", ".join(f"b{i}.jp2" for i in range(10))}
    assert ("Leaf area index (m²/m²) of the acquisition of T31UDS_20180401T105529_B04_10m.jp2, its 10 band files "
            "read as one image (2018-04-01)") in about("lai", dt.date(2018, 4, 1), safe)[1]


def test_an_acquisition_date_s_image_is_described_as_that_acquisition_where_clear(inputs, project, tmp_path):
    """A target date with an acquisition: its clear pixels are that acquisition's own values (core/same_day.py), so
    the file names it (OBSERVED) and the layer's abstract says so; another date's image is synthesized throughout."""
    import processing
    from sentinel_densify.core import inventory
    from sentinel_densify.plugin.layers import about, add_result_layers, output_tags

    acquired = inventory.describe(inputs["S2_LAYERS"][2])
    day, observed_name = acquired.when.date(), acquired.name
    for target, observed in ((day, acquired.name), (day + dt.timedelta(days=1), None)):
        files = {k: str(tmp_path / f"{k}_{target:%Y%m%d}.tif") for k in ("synthesized", "uncertainty")}
        processing.run(ALG, {**inputs, "TARGET_DATE": f"{target}", "METHOD": 1, "OUTPUT_LAI": None,
                             **{f"OUTPUT_{k.upper()}": path for k, path in files.items()}})
        assert output_tags(files["synthesized"]).get("OBSERVED") == observed
        _, (synth, _) = add_result_layers(files, target, project)
        expected = (f"surface reflectance for {target}: where {observed}, acquired that day, is clear, its own values;"
                    " elsewhere synthesized (gap-filling) by " if observed else
                    f"surface reflectance synthesized for {target} (gap-filling) by ")
        assert expected in synth.abstract(), synth.abstract()
    hazy = about("synthesized", day, {"METHOD": "linear-haze", "OBSERVED": observed_name})[1]
    assert f"where {observed_name}, acquired that day, is clear and not hazy, its own values" in hazy


def test_output_tags_of_an_unreadable_file_with_gdal_exceptions_on(qgis_app, tmp_path):
    """layers.output_tags gives {} for a file GDAL cannot open, also once gdal.UseExceptions() was called (by any
    Python code in QGIS): not a RuntimeError."""
    from osgeo import gdal
    from sentinel_densify.plugin.layers import output_tags

    (tmp_path / "broken.tif").write_bytes(b"not a raster")
    was = gdal.GetUseExceptions()
    gdal.UseExceptions()
    try:
        assert output_tags(str(tmp_path / "broken.tif")) == {} and output_tags(str(tmp_path / "none.tif")) == {}
    finally:
        if not was:
            gdal.DontUseExceptions()
