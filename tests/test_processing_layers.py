"""Processing outputs as layers in a project (real QGIS 3.22 headless, the real 31UDS series): re-runs onto loaded
layers, the group per date, names, visibility and order, the series' common stretch, legend labels."""

from __future__ import annotations

import datetime as dt

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
        assert day_of(layer) == dt.date(2018, 3, 22) and layer.name().endswith(" 2018-03-22")
    synth = layers[out["OUTPUT_SYNTHESIZED"]]
    fresh = QgsRasterLayer(out["OUTPUT_SYNTHESIZED"], "fresh", "gdal")
    red = synth.renderer().redContrastEnhancement()
    lo, hi = fresh.dataProvider().cumulativeCut(synth.renderer().redBand(), 0.02, 0.98)
    assert (red.minimumValue(), red.maximumValue()) == pytest.approx((lo, hi))  # stretched on the new data
    assert tree(project.layerTreeRoot()) == [  # the first run's group went: its layers now hold 2018-03-22
        ("Densify 2018-03-22", ["Synthesized S2 2018-03-22", "Uncertainty (mean std) 2018-03-22", "LAI 2018-03-22"])]
    assert [n.itemVisibilityChecked() for n in project.layerTreeRoot().findLayers()] == [True, False, False]


def test_a_series_rerun_into_the_same_folder_reuses_its_groups_and_shows_the_new_files(inputs, project, tmp_path):
    """densify:synthesize_series twice into one folder (another METHOD): one group per date, not nested, holding
    the same layers in the same order and visibility, each giving the new file's pixels."""
    import processing

    params = {**inputs, "FIRST_DATE": "2018-02-20", "LAST_DATE": "2018-03-02", "ESTIMATE_LAI": False,
              "OUTPUT": str(tmp_path)}
    processing.runAndLoadResults(SERIES, {**params, "METHOD": 1})
    first = tree(project.layerTreeRoot())
    before = {path: on_disk(path) for path in by_source(project)}
    processing.runAndLoadResults(SERIES, {**params, "METHOD": 2})
    root = project.layerTreeRoot()
    assert tree(root) == first == [
        ("Densify 2018-03-02", ["Synthesized S2 2018-03-02", "Uncertainty (mean std) 2018-03-02"]),
        ("Densify 2018-02-20", ["Synthesized S2 2018-02-20", "Uncertainty (mean std) 2018-02-20"])]
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
    assert [c.name() for c in root.children()] == ["Densify 2018-02-10", "Densify 2018-03-01"]
    for day in ("2018-02-10", "2018-03-01"):
        nodes = root.findGroup(f"Densify {day}").findLayers()
        assert [n.layer().name() for n in nodes] == [f"Synthesized S2 {day}", f"Uncertainty (mean std) {day}",
                                                     f"LAI {day}"]
        assert [n.itemVisibilityChecked() for n in nodes] == [True, False, False]
        assert [n.layer().renderer().type() for n in nodes] == ["multibandcolor", "singlebandpseudocolor",
                                                                "singlebandpseudocolor"]
    nodes = root.findGroup("Densify 2018-03-01").findLayers()
    assert [n.layer().source() for n in nodes] == [out[k] for k in out]


def test_the_shipped_model_keeps_its_output_names_and_shows_the_image_on_top(inputs, project, tmp_path):
    """The example model (synthesize -> estimate_lai): its outputs keep the names the model gives them; the
    synthesized image is the shown layer of its date's group, the uncertainty below it hidden."""
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
    nodes = project.layerTreeRoot().findGroup("Densify 2018-03-01").findLayers()
    assert [(n.name(), n.itemVisibilityChecked()) for n in nodes] == [("Synthesized S2", True), ("Uncertainty", False)]
    assert [c.name() for c in project.layerTreeRoot().children()] == ["Densify 2018-03-01", "LAI"]  # image on top


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
        labels[node.name().rsplit(" ", 1)[0]] = legend, items
    legend, items = labels["Uncertainty (mean std)"]
    for label in legend + items:
        number, unit = label.split(" ", 1)
        assert unit == "DN" and number.isdigit(), label
    legend, items = labels["LAI"]
    assert legend == ["0.0 m²/m²", "8.0 m²/m²"] and items[-1] == "8.0 m²/m²"
