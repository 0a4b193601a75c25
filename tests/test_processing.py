"""The Processing provider on real QGIS 3.22 (headless) and the real 31UDS series."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest
import rasterio

ALG = "densify:synthesize"
SERIES = "densify:synthesize_series"


@pytest.fixture(scope="module")
def provider(densify_provider):
    """The registered densify provider (the session one, or its re-registration after a plugin unload)."""
    from qgis.core import QgsApplication

    return QgsApplication.processingRegistry().providerById("densify")


@pytest.fixture()
def inputs(uds_subset):
    return {"S2_LAYERS": [str(p) for p in uds_subset["s2"]],
            "S1_LAYERS": [str(p) for p in uds_subset["s1"]],
            "MASK_LAYERS": [str(p) for p in uds_subset["masks"]]}


def _s2_grid(path):
    with rasterio.open(path) as ds:
        return ds.crs, ds.transform, ds.width, ds.height


def test_provider_lists_algorithms_with_the_documented_parameters(provider, inputs):
    from qgis.core import QgsApplication, QgsProcessingContext, QgsProcessingParameterDefinition

    assert provider.name() == "Sentinel Densify"
    ids = {a.id() for a in provider.algorithms()}
    assert {"densify:synthesize", "densify:synthesize_series", "densify:estimate_lai"} <= ids
    alg = QgsApplication.processingRegistry().algorithmById(ALG)
    params = {p.name(): p for p in alg.parameterDefinitions()}
    assert set(params) == {"S2_LAYERS", "S1_LAYERS", "MASK_LAYERS", "EXTENT", "TARGET_DATE", "METHOD", "MODEL",
                           "DEVICE", "OUTPUT_SYNTHESIZED", "OUTPUT_UNCERTAINTY", "OUTPUT_LAI"}
    optional = {n for n, p in params.items() if p.flags() & QgsProcessingParameterDefinition.FlagOptional}
    assert optional == {"S1_LAYERS", "MASK_LAYERS", "EXTENT", "METHOD", "MODEL", "OUTPUT_LAI"}
    assert params["DEVICE"].options() == ["auto", "cpu", "cuda"]
    assert params["METHOD"].options()[0].startswith("Bundled default") and params["METHOD"].defaultValue() == 0
    for method in range(len(params["METHOD"].options())):  # every method can be chosen (toolbox, batch, models)
        ok, why = alg.checkParameterValues({**inputs, "TARGET_DATE": "2018-03-01", "METHOD": method,
                                            "OUTPUT_SYNTHESIZED": "s.tif", "OUTPUT_UNCERTAINTY": "u.tif"},
                                           QgsProcessingContext())
        assert ok, (method, why)
    from sentinel_densify.core.methods import available  # each registered baseline is offered, as in the dialog
    from sentinel_densify.plugin.processing.alg_synthesize import METHODS

    assert {name for name, _ in METHODS} == {"default", *available()} - {"onnx"}
    assert params["METHOD"].options() == [label for _, label in METHODS]
    assert params["S2_LAYERS"].type() == "multilayer" and params["TARGET_DATE"].type() == "datetime"
    assert all(params[k].isDestination() for k in ("OUTPUT_SYNTHESIZED", "OUTPUT_UNCERTAINTY", "OUTPUT_LAI"))
    assert "TARGET_DATE" in alg.shortHelpString() and alg.shortHelpString() != ""


def test_synthesize_on_the_real_series_gives_three_layers_on_the_s2_grid(provider, inputs, tmp_path):
    import processing
    from qgis.core import QgsProcessingFeedback, QgsRasterLayer

    progress = []
    feedback = QgsProcessingFeedback()
    feedback.progressChanged.connect(progress.append)
    out = {k: str(tmp_path / f"{k.lower()}.tif") for k in
           ("OUTPUT_SYNTHESIZED", "OUTPUT_UNCERTAINTY", "OUTPUT_LAI")}
    res = processing.run(ALG, {**inputs, "TARGET_DATE": "2018-03-01", "MODEL": "", "DEVICE": 1, **out},
                         feedback=feedback)
    assert res["MODE"] == "gap-filling"
    assert progress and max(progress) == pytest.approx(100) and progress == sorted(progress)
    crs, transform, width, height = _s2_grid(inputs["S2_LAYERS"][0])
    counts = {}
    for key, path in out.items():
        assert res[key] == path
        layer = QgsRasterLayer(path, key, "gdal")
        assert layer.isValid(), path
        assert (layer.width(), layer.height()) == (width, height)
        with rasterio.open(path) as ds:
            assert ds.crs == crs and ds.transform.almost_equals(transform)
            data = ds.read()
        counts[key] = data.shape[0]
        assert np.isfinite(data).mean() > 0.9, key
    assert counts["OUTPUT_SYNTHESIZED"] == 10 and counts["OUTPUT_LAI"] == 3
    with rasterio.open(out["OUTPUT_SYNTHESIZED"]) as ds:
        assert ds.tags()["METHOD"] == "onnx:default"  # empty MODEL: the bundled model (not a fallback)
        red = ds.read(3)  # DN; bare winter fields and a village: reflectance well inside 0-0.5
    assert 0 < np.nanmedian(red) < 5000
    with rasterio.open(out["OUTPUT_LAI"]) as ds:
        lai = ds.read(1)
    assert np.nanmin(lai) >= 0 and np.nanmax(lai) <= 8


def test_skipped_lai_output_is_not_produced(provider, inputs, tmp_path):
    import processing

    res = processing.run(ALG, {**inputs, "TARGET_DATE": "2018-02-10",
                               "OUTPUT_SYNTHESIZED": str(tmp_path / "s.tif"),
                               "OUTPUT_UNCERTAINTY": str(tmp_path / "u.tif"), "OUTPUT_LAI": None})
    assert "OUTPUT_LAI" not in res or not res["OUTPUT_LAI"]
    assert sorted(p.name for p in tmp_path.glob("*.tif")) == ["s.tif", "u.tif"]


def test_an_extent_in_another_crs_or_from_a_layer_limits_the_outputs(provider, inputs, tmp_path):
    """EXTENT as the toolbox writes it (xmin,xmax,ymin,ymax [CRS]) in degrees, and as a layer (its extent in
    its CRS): the outputs are the S2 pixels it touches; in the series too. Off the S2 grid: an error naming
    the S2 image, nothing written."""
    import processing
    from qgis.core import QgsProcessingException, QgsRasterLayer
    from rasterio.warp import transform_bounds

    crs, t, width, height = _s2_grid(inputs["S2_LAYERS"][0])
    x0, y0 = t.c, t.f
    west, south, east, north = transform_bounds(crs, "EPSG:4326", x0 + 100, y0 - 400, x0 + 300, y0 - 100)
    extent = f"{west:.9f},{east:.9f},{south:.9f},{north:.9f} [EPSG:4326]"
    out = {k: str(tmp_path / f"{k.lower()}.tif") for k in ("OUTPUT_SYNTHESIZED", "OUTPUT_UNCERTAINTY", "OUTPUT_LAI")}
    res = processing.run(ALG, {**inputs, "EXTENT": extent, "TARGET_DATE": "2018-03-01", "METHOD": 1, **out})
    for key in out:
        with rasterio.open(res[key]) as ds:
            assert ds.crs == crs and 20 <= ds.width <= 22 and 30 <= ds.height <= 32, key
            assert x0 + 90 <= ds.transform.c <= x0 + 100 and y0 - 100 <= ds.transform.f <= y0 - 90
    # a layer's extent: a Densify output of 20 x 30 px (its CRS is the S2 grid's)
    layer = QgsRasterLayer(res["OUTPUT_SYNTHESIZED"], "area", "gdal")
    folder = tmp_path / "series"
    series = processing.run(SERIES, {**inputs, "EXTENT": layer, "FIRST_DATE": "2018-03-01", "LAST_DATE": "2018-03-11",
                                     "METHOD": 1, "ESTIMATE_LAI": False, "OUTPUT": str(folder)})
    with rasterio.open(res["OUTPUT_SYNTHESIZED"]) as ref:
        for path in series["SYNTHESIZED"]:
            with rasterio.open(path) as ds:
                assert ds.shape == ref.shape and ds.transform == ref.transform
    off = f"{x0 - 5000},{x0 - 4000},{y0 + 100},{y0 + 900} [{crs.to_string()}]"
    with pytest.raises(QgsProcessingException, match="does not overlap the S2 grid of " +
                       Path(inputs["S2_LAYERS"][0]).name):
        processing.run(ALG, {**inputs, "EXTENT": off, "TARGET_DATE": "2018-03-01", "METHOD": 1,
                             **{k: str(tmp_path / "off" / f"{k}.tif") for k in out}})
    assert not (tmp_path / "off").exists() or not any((tmp_path / "off").iterdir())
    with pytest.raises(QgsProcessingException, match="xmin < xmax"):  # a point is no area: never the whole grid
        processing.run(ALG, {**inputs, "EXTENT": f"{x0 + 5},{x0 + 5},{y0 - 5},{y0 - 5} [{crs.to_string()}]",
                             "TARGET_DATE": "2018-03-01", "METHOD": 1,
                             **{k: str(tmp_path / "off" / f"{k}.tif") for k in out}})


def test_bad_input_raises_processing_exception_with_the_core_message(provider, inputs, tmp_path):
    import processing
    from qgis.core import QgsProcessingException

    # a real S2 image copied without its date tag under a name without a date: undatable
    src = inputs["S2_LAYERS"][0]
    bad = tmp_path / "scene.tif"
    with rasterio.open(src) as ds:
        profile, data, desc = ds.profile, ds.read(), ds.descriptions
    with rasterio.open(bad, "w", **profile) as ds:
        ds.write(data)
        ds.descriptions = desc
    with pytest.raises(QgsProcessingException) as err:
        processing.run(ALG, {**inputs, "S2_LAYERS": inputs["S2_LAYERS"][1:] + [str(bad)],
                             "TARGET_DATE": "2018-03-01", "OUTPUT_SYNTHESIZED": str(tmp_path / "s.tif"),
                             "OUTPUT_UNCERTAINTY": str(tmp_path / "u.tif"), "OUTPUT_LAI": str(tmp_path / "l.tif")})
    message = str(err.value)
    assert "scene.tif" in message and "date" in message and "Traceback" not in message
    assert not list(tmp_path.glob("[sul].tif"))


def test_cancel_from_processing_feedback_writes_nothing(provider, inputs, tmp_path):
    import processing
    from qgis.core import QgsProcessingException, QgsProcessingFeedback

    feedback = QgsProcessingFeedback()
    # cancel as soon as the run reports progress past its input check (the Cancel button)
    feedback.progressChanged.connect(lambda p: feedback.cancel() if p > 0 else None)
    with pytest.raises(QgsProcessingException, match="[Cc]ancel"):
        processing.run(ALG, {**inputs, "TARGET_DATE": "2018-03-01",
                             "OUTPUT_SYNTHESIZED": str(tmp_path / "s.tif"),
                             "OUTPUT_UNCERTAINTY": str(tmp_path / "new" / "u.tif"),
                             "OUTPUT_LAI": str(tmp_path / "new" / "deeper" / "l.tif")}, feedback=feedback)
    assert list(tmp_path.iterdir()) == []  # nor the folders the run made for them


def test_batch_runs_one_instance_per_row_without_leaking_state(provider, inputs, tmp_path):
    """Batch mode runs createInstance() per row with that row's parameters."""
    from qgis.core import QgsApplication, QgsProcessingContext, QgsProcessingFeedback

    alg = QgsApplication.processingRegistry().algorithmById(ALG)
    context, feedback = QgsProcessingContext(), QgsProcessingFeedback()
    outputs = []
    rows = [("2018-02-10", inputs), ("2018-05-01", {**inputs, "S1_LAYERS": []})]
    for day, row in rows:
        params = {**row, "TARGET_DATE": day, "OUTPUT_SYNTHESIZED": str(tmp_path / f"s_{day}.tif"),
                  "OUTPUT_UNCERTAINTY": str(tmp_path / f"u_{day}.tif"), "OUTPUT_LAI": None}
        instance = alg.create()
        ok, msg = instance.checkParameterValues(params, context)
        assert ok, msg
        res, ok = instance.run(params, context, feedback)
        assert ok, res
        outputs.append(res)
    assert [o["MODE"] for o in outputs] == ["gap-filling", "forecasting"]
    with rasterio.open(outputs[0]["OUTPUT_SYNTHESIZED"]) as a, rasterio.open(outputs[1]["OUTPUT_SYNTHESIZED"]) as b:
        assert a.tags()["TARGET_DATE"] == "2018-02-10" and b.tags()["TARGET_DATE"] == "2018-05-01"
        assert b.tags().get("INPUTS_S1", "") == "" and a.tags()["INPUTS_S1"] != ""
        assert not np.allclose(a.read(), b.read(), equal_nan=True)


def test_model_with_synthesize_then_lai_runs(provider, inputs, tmp_path):
    """A QgsProcessingModelAlgorithm built in code (the shipped example model) runs end to end."""
    import processing
    from qgis.core import QgsProcessingModelAlgorithm
    from sentinel_densify.plugin.processing.example_model import MODEL_FILE, build_model

    model = build_model()
    assert isinstance(model, QgsProcessingModelAlgorithm)
    ok, errors = model.validate()
    assert ok, errors
    outs = {"synthesize:Synthesized S2": str(tmp_path / "s.tif"), "synthesize:Uncertainty": str(tmp_path / "u.tif"),
            "estimate_lai:LAI": str(tmp_path / "lai.tif")}
    res = processing.run(model, {"s2_layers": inputs["S2_LAYERS"], "s1_layers": inputs["S1_LAYERS"],
                                 "mask_layers": inputs["MASK_LAYERS"], "target_date": "2018-03-01", **outs})
    for key, path in outs.items():
        assert res[key] == path
    with rasterio.open(outs["estimate_lai:LAI"]) as ds, rasterio.open(outs["synthesize:Synthesized S2"]) as s:
        assert ds.count == 3 and ds.descriptions[0] == "LAI"
        assert (ds.width, ds.height, ds.transform) == (s.width, s.height, s.transform)
        lai, lai_std = ds.read(1), ds.read(2)
        assert np.isfinite(lai).mean() > 0.9
        assert (lai_std[np.isfinite(lai)] > 0).mean() > 0.9  # propagated from the synthesized image's std

    shipped = QgsProcessingModelAlgorithm()
    assert shipped.fromFile(str(MODEL_FILE))
    assert {c.algorithmId() for c in shipped.childAlgorithms().values()} == {ALG, "densify:estimate_lai"}
    assert shipped.validate()[0]
    assert {p.name() for p in shipped.parameterDefinitions()} == {p.name() for p in model.parameterDefinitions()}
    sources = shipped.childAlgorithm("estimate_lai").parameterSources()
    assert [(x.outputChildId(), x.outputName()) for x in sources["UNCERTAINTY"]] == [("synthesize",
                                                                                    "OUTPUT_UNCERTAINTY")]


def test_estimate_lai_on_a_real_image(provider, inputs, tmp_path):
    import processing

    src = next(p for p in inputs["S2_LAYERS"] if "20180320" in p)  # a clear March image
    res = processing.run("densify:estimate_lai", {"INPUT": src, "OUTPUT": str(tmp_path / "lai.tif")})
    with rasterio.open(res["OUTPUT"]) as ds, rasterio.open(src) as s2:
        assert ds.descriptions[:2] == ("LAI", "LAI_std") and ds.count == 3
        assert ds.transform == s2.transform and ds.crs == s2.crs
        lai = ds.read(1)
    assert np.isfinite(lai).mean() > 0.9 and 0 <= np.nanmedian(lai) < 3  # early spring, low canopy


def test_estimate_lai_says_when_it_falls_back_to_default_angles(provider, inputs, tmp_path):
    """An image without its sun and view angle tags: the LAI is computed with default angles, and the run's log
    says so as a warning (not only the output's tags)."""
    import processing
    from qgis.core import QgsProcessingFeedback

    class Warnings(QgsProcessingFeedback):
        def __init__(self):
            super().__init__()
            self.seen = []

        def pushWarning(self, warning):  # noqa: N802 (QGIS API name)
            self.seen.append(warning)

    src = next(p for p in inputs["S2_LAYERS"] if "20180320" in p)
    with rasterio.open(src) as ds:
        profile, data, descriptions = ds.profile, ds.read(), ds.descriptions
    bare = tmp_path / Path(src).name
    with rasterio.open(bare, "w", **profile) as ds:
        ds.write(data)
        ds.descriptions = descriptions
    feedback = Warnings()
    processing.run("densify:estimate_lai", {"INPUT": str(bare), "OUTPUT": str(tmp_path / "lai.tif")},
                   feedback=feedback)
    assert [w for w in feedback.seen if w.startswith("LAI: angles missing from the metadata")]


def test_a_warning_is_in_the_log_before_the_work_once(provider, inputs, tmp_path):
    """The run's warnings about its inputs and method reach Processing's log as soon as the core has them (before
    the tiles), and are not pushed again at the end."""
    import processing
    from qgis.core import QgsProcessingFeedback

    class Log(QgsProcessingFeedback):
        def __init__(self):
            super().__init__()
            self.seen = []

        def pushWarning(self, warning):  # noqa: N802 (QGIS API name)
            self.seen.append(("warning", warning))

        def setProgressText(self, text):  # noqa: N802 (QGIS API name)
            self.seen.append(("progress", text))

    feedback = Log()
    processing.run("densify:synthesize", {**inputs, "TARGET_DATE": "2018-03-01", "METHOD": 1, "DEVICE": 2,
                                          "OUTPUT_SYNTHESIZED": str(tmp_path / "s2.tif"),
                                          "OUTPUT_UNCERTAINTY": str(tmp_path / "std.tif"),
                                          "OUTPUT_LAI": "TEMPORARY_OUTPUT"}, feedback=feedback)
    said = ("warning", "CUDA was asked for but linear ran on numpy (linear is a CPU method)")
    assert feedback.seen.count(said) == 1, feedback.seen
    first_tile = next(i for i, (kind, text) in enumerate(feedback.seen)
                      if kind == "progress" and text.startswith("tile"))
    assert feedback.seen.index(said) < first_tile


def test_estimate_lai_over_an_extent(provider, inputs, tmp_path):
    """EXTENT as the toolbox writes it, in degrees: the input's whole pixels it touches, each the whole
    image's LAI."""
    import processing
    from rasterio.warp import transform_bounds

    src = next(p for p in inputs["S2_LAYERS"] if "20180320" in p)
    whole = processing.run("densify:estimate_lai", {"INPUT": src, "OUTPUT": str(tmp_path / "whole.tif")})["OUTPUT"]
    with rasterio.open(whole) as ds:
        full, t, crs = ds.read(), ds.transform, ds.crs
    west, south, east, north = transform_bounds(crs, "EPSG:4326", t.c + 205, t.f - 495, t.c + 405, t.f - 305)
    res = processing.run("densify:estimate_lai", {"INPUT": src, "EXTENT": f"{west},{east},{south},{north} [EPSG:4326]",
                                                  "OUTPUT": str(tmp_path / "part.tif")})
    with rasterio.open(res["OUTPUT"]) as ds:
        col, row = (round(v) for v in ~t * (ds.transform.c, ds.transform.f))
        assert 19 <= col <= 20 and 29 <= row <= 30 and 21 <= ds.width <= 23 and 19 <= ds.height <= 21
        np.testing.assert_array_equal(ds.read(), full[:, row:row + ds.height, col:col + ds.width])


def test_estimate_lai_on_a_safe_added_as_subdataset(provider, inputs, tmp_path):
    """The 10 m subdataset layer of a .SAFE (as QGIS adds its MTD_MSIL2A.xml), or one of its band files added
    as a layer, gives the LAI of the whole product, its band files read as one image: the same LAI as from
    the stacked image."""
    import processing
    from helpers import make_safe, write_mtd
    from qgis.core import QgsRasterLayer

    src = next(Path(p) for p in inputs["S2_LAYERS"] if "20180320" in p)
    scl = src.with_name(src.name.replace("_L2A_10m", "_SCL_20m"))
    safe = make_safe(src, scl, tmp_path, dn_offset=1000, extras=False)
    write_mtd(safe)
    layer = QgsRasterLayer(f"SENTINEL2_L2A:{safe}/MTD_MSIL2A.xml:10m:EPSG_32631", "10 m bands", "gdal")
    assert layer.isValid() and layer.bandCount() == 4
    band = next(safe.rglob("*_B8A_20m.jp2"))
    band_layer = QgsRasterLayer(str(band), band.stem, "gdal")
    assert band_layer.isValid() and band_layer.bandCount() == 1
    outs = {name: processing.run("densify:estimate_lai", {"INPUT": given, "OUTPUT": str(tmp_path / f"{name}.tif")})
            ["OUTPUT"] for name, given in (("safe", layer), ("band", band_layer), ("stacked", str(src)))}
    for name in ("safe", "band"):
        with rasterio.open(outs[name]) as ds, rasterio.open(outs["stacked"]) as ref:
            assert ds.transform == ref.transform and ds.tags()["source"] == {"safe": safe, "band": band}[name].name
            assert len(ds.tags()["band_files"].split(", ")) == 10
            np.testing.assert_allclose(ds.read(), ref.read(), rtol=1e-4, atol=1e-5)


def test_target_date_outside_the_series_is_reported(provider, inputs, tmp_path):
    import processing
    from qgis.core import QgsProcessingException

    late = (dt.date(2018, 4, 19) + dt.timedelta(days=800)).isoformat()
    with pytest.raises(QgsProcessingException, match="out of range"):
        processing.run(ALG, {**inputs, "TARGET_DATE": late, "OUTPUT_SYNTHESIZED": str(tmp_path / "s.tif"),
                             "OUTPUT_UNCERTAINTY": str(tmp_path / "u.tif")})


def test_loaded_outputs_are_styled_and_dated_like_the_dialogs(provider, inputs, tmp_path, qgis_app):
    """runAndLoadResults, as the toolbox does: QGIS loads the outputs and runs their post-processors."""
    import processing
    from qgis.core import QgsProject

    project = QgsProject.instance()
    project.clear()
    out = {k: str(tmp_path / f"{k.lower()}.tif") for k in ("OUTPUT_SYNTHESIZED", "OUTPUT_UNCERTAINTY", "OUTPUT_LAI")}
    res = processing.runAndLoadResults(ALG, {**inputs, "TARGET_DATE": "2018-03-01", "METHOD": 1, **out})
    with rasterio.open(res["OUTPUT_SYNTHESIZED"]) as ds:
        assert ds.tags()["METHOD"] == "linear"  # the METHOD enum's second entry
    layers = {lyr.source(): lyr for lyr in project.mapLayers().values()}
    assert set(layers) == set(out.values())
    synth, unc, lai = (layers[out[k]] for k in ("OUTPUT_SYNTHESIZED", "OUTPUT_UNCERTAINTY", "OUTPUT_LAI"))
    r = synth.renderer()
    assert r.type() == "multibandcolor"
    assert [synth.bandName(b).split(": ")[1] for b in (r.redBand(), r.greenBand(), r.blueBand())] == \
        ["B04", "B03", "B02"]
    assert unc.renderer().type() == "singlebandpseudocolor" and unc.bandName(unc.renderer().band()).endswith("mean_std")
    assert lai.renderer().type() == "singlebandpseudocolor" and lai.bandName(lai.renderer().band()).endswith("LAI")
    for layer in (synth, unc, lai):
        props = layer.temporalProperties()
        assert props.isActive() and props.fixedTemporalRange().begin().date().toPyDate() == dt.date(2018, 3, 1)
    project.clear()


def test_an_unreadable_input_is_a_processing_error_naming_it(provider, inputs, tmp_path, corrupt_copy):
    import processing
    from qgis.core import QgsProcessingException

    src = inputs["S2_LAYERS"][5]
    bad = corrupt_copy(Path(src), tmp_path / Path(src).name)
    s2 = [p if p != src else str(bad) for p in inputs["S2_LAYERS"]]
    with pytest.raises(QgsProcessingException) as err:
        processing.run(ALG, {**inputs, "S2_LAYERS": s2, "TARGET_DATE": "2018-03-01", "METHOD": 1,
                             "OUTPUT_SYNTHESIZED": str(tmp_path / "s.tif"),
                             "OUTPUT_UNCERTAINTY": str(tmp_path / "u.tif"), "OUTPUT_LAI": None})
    assert bad.name in str(err.value) and "Traceback" not in str(err.value)
    assert not list(tmp_path.glob("[su].tif"))


def test_unexpected_errors_become_one_line_processing_errors(qgis_app):
    from qgis.core import QgsProcessingException, QgsProcessingFeedback
    from sentinel_densify.plugin.processing.feedback import core_errors

    logged = []
    feedback = QgsProcessingFeedback()
    feedback.pushDebugInfo = logged.append  # the traceback goes to the log's debug output only
    with pytest.raises(QgsProcessingException) as err, core_errors(feedback):
        raise MemoryError("cannot allocate 80 GiB")
    assert str(err.value) == "Densify failed: MemoryError: cannot allocate 80 GiB"
    assert logged and "Traceback" in logged[0]


def test_an_output_chosen_on_an_input_raster_is_refused(provider, inputs, tmp_path):
    """Processing lets a user pick any file as a destination: never one of the run's inputs."""
    import shutil

    import processing
    from qgis.core import QgsProcessingException

    s2 = [shutil.copy(p, tmp_path) for p in inputs["S2_LAYERS"]]
    victim = s2[3]
    before = Path(victim).read_bytes()
    with pytest.raises(QgsProcessingException) as err:
        processing.run(ALG, {**inputs, "S2_LAYERS": s2, "TARGET_DATE": "2018-03-01", "METHOD": 1,
                             "OUTPUT_SYNTHESIZED": victim, "OUTPUT_UNCERTAINTY": str(tmp_path / "u.tif"),
                             "OUTPUT_LAI": None})
    assert Path(victim).name in str(err.value) and "would replace this input" in str(err.value)
    assert Path(victim).read_bytes() == before and not (tmp_path / "u.tif").exists()


def test_two_destinations_on_one_file_are_refused(provider, inputs, tmp_path):
    """A batch-mode slip (the same file for two outputs) must not let one output overwrite the other."""
    import processing
    from qgis.core import QgsProcessingException

    same = str(tmp_path / "same.tif")
    with pytest.raises(QgsProcessingException, match="the synthesized and uncertainty outputs are the same file"):
        processing.run(ALG, {**inputs, "TARGET_DATE": "2018-03-01", "METHOD": 1, "OUTPUT_SYNTHESIZED": same,
                             "OUTPUT_UNCERTAINTY": same, "OUTPUT_LAI": None})
    assert not Path(same).exists()


def test_an_output_loaded_in_the_project_is_refused_up_front_on_windows(provider, inputs, tmp_path, qgis_app,
                                                                        monkeypatch):
    """Windows cannot replace a file QGIS holds open: an output that is a project layer's file is refused before the
    run, in each algorithm writing rasters; elsewhere the run replaces it (the layer shows the new file)."""
    import shutil

    import processing
    from qgis.core import QgsApplication, QgsProcessingContext, QgsProcessingException, QgsProject, QgsRasterLayer
    from sentinel_densify.plugin.processing import feedback

    project = QgsProject.instance()
    project.clear()
    folder = tmp_path / "series"
    folder.mkdir()
    loaded, in_series = tmp_path / "Loaded.tif", folder / "uncertainty_20180301.tif"
    for path in (loaded, in_series):
        shutil.copy(inputs["S2_LAYERS"][0], path)
        project.addMapLayer(QgsRasterLayer(str(path), f"old {path.stem}", "gdal"))
    before = loaded.read_bytes()
    said = "the layer \"old {}\" in the project, which QGIS keeps open, and Windows cannot replace an open file: " \
           "remove the layer from the project or choose another file"
    base = {**inputs, "TARGET_DATE": "2018-03-01", "METHOD": 1, "OUTPUT_SYNTHESIZED": str(tmp_path / "s.tif"),
            "OUTPUT_LAI": None}
    monkeypatch.setattr(feedback, "open_files_locked", lambda: True)
    with pytest.raises(QgsProcessingException) as err:
        processing.run(ALG, {**base, "OUTPUT_UNCERTAINTY": str(loaded)})
    assert f"OUTPUT_UNCERTAINTY: {loaded} is the file of {said.format('Loaded')}" in str(err.value)
    assert loaded.read_bytes() == before and not (tmp_path / "s.tif").exists()
    with pytest.raises(QgsProcessingException, match="OUTPUT: .* is the file of the layer \"old Loaded\""):
        processing.run("densify:estimate_lai", {"INPUT": inputs["S2_LAYERS"][1], "OUTPUT": f"{tmp_path}/./Loaded.tif"})
    with pytest.raises(QgsProcessingException) as err:
        processing.run(SERIES, {**inputs, "FIRST_DATE": "2018-03-01", "METHOD": 1, "OUTPUT": str(folder)})
    assert f"OUTPUT: {in_series} is the file of {said.format('uncertainty_20180301')}" in str(err.value)
    assert sorted(p.name for p in folder.iterdir()) == [in_series.name]
    context = QgsProcessingContext()
    context.setProject(project)
    clouds = QgsApplication.processingRegistry().algorithmById("densify:remove_clouds")
    params = {"S1": inputs["S1_LAYERS"][0], "S2": inputs["S2_LAYERS"][0], "OUTPUT": str(loaded)}
    assert clouds.checkParameterValues(params, context) == (False, f"OUTPUT: {loaded} is the file of "
                                                                   f"{said.format('Loaded')}")
    monkeypatch.undo()  # Linux and macOS: the run replaces the file, and the layer on it shows the new one
    assert clouds.checkParameterValues(params, context)[0]
    res = processing.run(ALG, {**base, "OUTPUT_UNCERTAINTY": str(loaded)})
    assert res["OUTPUT_UNCERTAINTY"] == str(loaded) and loaded.read_bytes() != before
    project.clear()


def test_layers_read_from_a_zip_archive(provider, inputs, tmp_path):
    """QGIS opens rasters inside a .zip as /vsizip/ sources: synthesize and LAI read them in place."""
    import zipfile

    import processing
    from qgis.core import QgsRasterLayer
    from sentinel_densify.plugin.layers import source_path

    archive = tmp_path / "s2 series.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in inputs["S2_LAYERS"]:
            zf.write(p, Path(p).name)
    zipped = [f"/vsizip/{archive}/{Path(p).name}" for p in inputs["S2_LAYERS"]]
    layers = [QgsRasterLayer(z, Path(z).stem, "gdal") for z in zipped]
    assert all(lyr.isValid() for lyr in layers)
    assert [source_path(lyr) for lyr in layers] == zipped
    res = processing.run(ALG, {**inputs, "S2_LAYERS": layers, "TARGET_DATE": "2018-03-01", "METHOD": 1,
                               "OUTPUT_SYNTHESIZED": str(tmp_path / "s.tif"),
                               "OUTPUT_UNCERTAINTY": str(tmp_path / "u.tif"), "OUTPUT_LAI": None})
    plain = processing.run(ALG, {**inputs, "TARGET_DATE": "2018-03-01", "METHOD": 1,
                                 "OUTPUT_SYNTHESIZED": str(tmp_path / "s2.tif"),
                                 "OUTPUT_UNCERTAINTY": str(tmp_path / "u2.tif"), "OUTPUT_LAI": None})
    with rasterio.open(res["OUTPUT_SYNTHESIZED"]) as a, rasterio.open(plain["OUTPUT_SYNTHESIZED"]) as b:
        assert np.array_equal(a.read(), b.read(), equal_nan=True)  # the same images, read from the archive
    lai = processing.run("densify:estimate_lai", {"INPUT": layers[0], "OUTPUT": str(tmp_path / "lai.tif")})
    with rasterio.open(lai["OUTPUT"]) as ds:
        assert ds.descriptions[0] == "LAI" and np.isfinite(ds.read(1)).any()


def test_a_file_qgis_cannot_open_is_named(provider, inputs, tmp_path):
    """QGIS's own check says only "Incorrect parameter value for S2_LAYERS": the file must be named."""
    import processing
    from qgis.core import QgsProcessingException

    text = tmp_path / "notes.tif"
    text.write_text("not a raster")
    with pytest.raises(QgsProcessingException,
                       match=f"S2_LAYERS: {text} is not a raster layer or a raster file QGIS can open"):
        processing.run(ALG, {**inputs, "S2_LAYERS": inputs["S2_LAYERS"][:3] + [str(text)],
                             "TARGET_DATE": "2018-03-01", "OUTPUT_SYNTHESIZED": str(tmp_path / "s.tif"),
                             "OUTPUT_UNCERTAINTY": str(tmp_path / "u.tif")})
    with pytest.raises(QgsProcessingException, match=f"INPUT: {text} is not a raster layer or a raster file QGIS"):
        processing.run("densify:estimate_lai", {"INPUT": str(text), "OUTPUT": str(tmp_path / "lai.tif")})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.tif"]



def test_a_checkpoint_or_a_folder_as_model_gets_the_clis_explanation(provider, inputs, tmp_path):
    """QGIS's own check says only "Incorrect parameter value for MODEL" (its .onnx file filter): a .pt gets the
    CLI's "export it first", a folder is said to be one; in synthesize, its series and remove_clouds."""
    import re

    import processing
    from qgis.core import QgsApplication, QgsProcessingContext, QgsProcessingException
    from sentinel_densify.core.errors import InputError
    from sentinel_densify.core.methods import create

    checkpoint = tmp_path / "best.pt"
    checkpoint.write_bytes(b"PK\x03\x04 a torch checkpoint")
    with pytest.raises(InputError) as cli_says:
        create(str(checkpoint))
    assert "export it first with `densify export" in str(cli_says.value)
    out = {"OUTPUT_SYNTHESIZED": str(tmp_path / "s.tif"), "OUTPUT_UNCERTAINTY": str(tmp_path / "u.tif")}
    s2, s1 = inputs["S2_LAYERS"], inputs["S1_LAYERS"]
    for alg, params in ((ALG, {**inputs, "TARGET_DATE": "2018-03-01", **out}),
                        (SERIES, {**inputs, "FIRST_DATE": "2018-03-01", "LAST_DATE": "2018-03-02", "EVERY_DAYS": 1,
                                  "OUTPUT": str(tmp_path / "series")}),
                        ("densify:remove_clouds", {"S1": s1[0], "S2": s2[0], "OUTPUT": str(tmp_path / "c.tif")})):
        ok, why = QgsApplication.processingRegistry().algorithmById(alg).checkParameterValues(
            params, QgsProcessingContext())
        assert ok, (alg, why)  # only MODEL is wrong
        with pytest.raises(QgsProcessingException) as says:
            processing.run(alg, {**params, "MODEL": str(checkpoint)})
        assert f"MODEL: {cli_says.value.problems[0]}" in str(says.value), alg
        assert "Incorrect parameter value" not in str(says.value)
        with pytest.raises(QgsProcessingException, match=re.escape(f"MODEL: {tmp_path.name}: is a folder, not a "
                                                                   "model file (.onnx)")):
            processing.run(alg, {**params, "MODEL": str(tmp_path)})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt"]


def test_series_writes_each_date_as_a_run_for_that_date_alone(provider, inputs, tmp_path):
    """densify:synthesize_series: every EVERY_DAYS days from FIRST_DATE to LAST_DATE, one set of files per
    date in OUTPUT, each equal to densify:synthesize for that date."""
    import processing

    folder = tmp_path / "series"
    res = processing.run(SERIES, {**inputs, "FIRST_DATE": "2018-02-10", "LAST_DATE": "2018-05-01",
                                  "EVERY_DAYS": 40, "OUTPUT": str(folder)})
    assert res["DATES"] == "2018-02-10,2018-03-22,2018-05-01"
    assert res["MODES"] == "gap-filling,gap-filling,forecasting"
    assert res["OUTPUT"] == str(folder)
    days = ["20180210", "20180322", "20180501"]
    for key, kind in (("SYNTHESIZED", "synthesized"), ("UNCERTAINTY", "uncertainty"), ("LAI", "lai")):
        assert res[key] == [str(folder / f"{kind}_{d}.tif") for d in days]
    assert len(list(folder.iterdir())) == 9
    alone = {k: str(tmp_path / f"{k}.tif") for k in ("s", "u", "l")}
    processing.run(ALG, {**inputs, "TARGET_DATE": "2018-03-22", "OUTPUT_SYNTHESIZED": alone["s"],
                         "OUTPUT_UNCERTAINTY": alone["u"], "OUTPUT_LAI": alone["l"]})
    for key, single in zip(("SYNTHESIZED", "UNCERTAINTY", "LAI"), alone.values(), strict=True):
        with rasterio.open(res[key][1]) as a, rasterio.open(single) as b:
            assert a.tags()["METHOD"] == "onnx:default" or key == "LAI"
            np.testing.assert_array_equal(a.read(), b.read())


def test_series_of_one_date_without_lai_in_a_temporary_folder(provider, inputs):
    """LAST_DATE unset: FIRST_DATE only; ESTIMATE_LAI off: no LAI file; OUTPUT unset: a temporary folder."""
    import processing

    res = processing.run(SERIES, {**inputs, "FIRST_DATE": "2018-03-01", "METHOD": 1, "ESTIMATE_LAI": False,
                                  "OUTPUT": "TEMPORARY_OUTPUT"})
    folder = Path(res["OUTPUT"])
    assert res["DATES"] == "2018-03-01" and res["LAI"] == []
    assert sorted(p.name for p in folder.iterdir()) == ["synthesized_20180301.tif", "uncertainty_20180301.tif"]
    with rasterio.open(res["SYNTHESIZED"][0]) as ds:
        assert ds.tags()["METHOD"] == "linear" and ds.tags()["TARGET_DATE"] == "2018-03-01"


def test_series_problems_are_named_and_nothing_is_written(provider, inputs, tmp_path):
    """A last date before the first, a date out of range among the series, a cancel: a Processing error,
    no file."""
    import processing
    from qgis.core import QgsProcessingException, QgsProcessingFeedback

    folder = tmp_path / "series"
    base = {**inputs, "OUTPUT": str(folder)}
    with pytest.raises(QgsProcessingException, match="LAST_DATE 2018-01-01 is before FIRST_DATE 2018-03-01"):
        processing.run(SERIES, {**base, "FIRST_DATE": "2018-03-01", "LAST_DATE": "2018-01-01"})
    with pytest.raises(QgsProcessingException, match="out of range"):  # the last dates lie years after the series
        processing.run(SERIES, {**base, "FIRST_DATE": "2018-03-01", "LAST_DATE": "2021-03-01", "EVERY_DAYS": 200})
    feedback = QgsProcessingFeedback()
    feedback.progressChanged.connect(lambda p: feedback.cancel() if p > 50 else None)  # during the last dates
    with pytest.raises(QgsProcessingException, match="[Cc]ancel"):
        processing.run(SERIES, {**base, "FIRST_DATE": "2018-02-01", "LAST_DATE": "2018-04-01", "EVERY_DAYS": 15},
                       feedback=feedback)
    assert not folder.exists() or list(folder.iterdir()) == []


def test_series_outputs_load_into_one_styled_dated_group_per_date(provider, inputs, tmp_path, qgis_app):
    """runAndLoadResults, as the toolbox does: a group "Densify YYYY-MM-DD" per date holding its layers in
    the dialog's order (the synthesized image shown, the others one click away), styled and dated."""
    import processing
    from qgis.core import QgsProject

    project = QgsProject.instance()
    project.clear()
    res = processing.runAndLoadResults(SERIES, {**inputs, "FIRST_DATE": "2018-02-20", "LAST_DATE": "2018-03-02",
                                                "METHOD": 1, "OUTPUT": str(tmp_path)})
    assert res["DATES"] == "2018-02-20,2018-03-02"
    assert len(project.mapLayers()) == 6  # moved into their groups, still in the project
    root = project.layerTreeRoot()
    assert sorted(g.name() for g in root.findGroups()) == ["Densify 2018-02-20 linear", "Densify 2018-03-02 linear"]
    for day in (dt.date(2018, 2, 20), dt.date(2018, 3, 2)):
        nodes = root.findGroup(f"Densify {day} linear").findLayers()
        assert [n.layer().name() for n in nodes] == [f"Synthesized S2 {day} linear",
                                                     f"Uncertainty (mean std) {day} linear", f"LAI {day} linear"]
        assert [n.layer().metadata().title() for n in nodes] == [  # described as densify:synthesize's outputs
            f"Synthesized Sentinel-2 L2A ({day}, linear)", f"Uncertainty of synthesized Sentinel-2 ({day}, linear)",
            f"LAI ({day}, linear)"]
        assert [n.layer().source() for n in nodes] == [str(tmp_path / f"{k}_{day:%Y%m%d}.tif")
                                                       for k in ("synthesized", "uncertainty", "lai")]
        assert [n.isVisible() for n in nodes] == [True, False, False]
        assert [n.layer().renderer().type() for n in nodes] == ["multibandcolor", "singlebandpseudocolor",
                                                                "singlebandpseudocolor"]
        for node in nodes:
            props = node.layer().temporalProperties()
            assert props.isActive() and props.fixedTemporalRange().begin().date().toPyDate() == day
    project.clear()
    res = processing.runAndLoadResults(SERIES, {**inputs, "FIRST_DATE": "2018-02-20", "METHOD": 1,
                                                "LOAD_OUTPUTS": False, "OUTPUT": str(tmp_path / "quiet")})
    assert res["DATES"] == "2018-02-20" and project.mapLayers() == {}


def test_a_series_inside_a_model_loads_only_as_the_models_output(provider, inputs, tmp_path, qgis_app):
    """A model: synthesize_series -> gdal:buildvirtualraster. Its files are loaded when the series' OUTPUT is one of
    the model's outputs; not when the step is intermediate (QGIS gives it a temporary folder, and loads no
    intermediate output of its own algorithms): only the model's output, the VRT, is loaded."""
    import processing
    from qgis.core import (
        QgsProcessing,
        QgsProcessingModelAlgorithm,
        QgsProcessingModelChildAlgorithm,
        QgsProcessingModelOutput,
        QgsProcessingModelParameter,
        QgsProcessingParameterMultipleLayers,
        QgsProject,
    )
    from qgis.core import QgsProcessingModelChildParameterSource as Source

    def model(series_is_output: bool) -> QgsProcessingModelAlgorithm:
        m = QgsProcessingModelAlgorithm("series_vrt", "test")
        m.addModelParameter(QgsProcessingParameterMultipleLayers("s2", "S2", QgsProcessing.TypeRaster),
                            QgsProcessingModelParameter("s2"))
        series = QgsProcessingModelChildAlgorithm(SERIES)
        series.setChildId("series")
        for key, value in {"FIRST_DATE": "2018-02-20", "LAST_DATE": "2018-03-02", "EVERY_DAYS": 10, "METHOD": 1,
                           "ESTIMATE_LAI": False, "LOAD_OUTPUTS": True}.items():
            series.addParameterSources(key, [Source.fromStaticValue(value)])
        series.addParameterSources("S2_LAYERS", [Source.fromModelParameter("s2")])
        if series_is_output:
            out = QgsProcessingModelOutput("folder")
            out.setChildId("series")
            out.setChildOutputName("OUTPUT")
            series.setModelOutputs({"folder": out})
        m.addChildAlgorithm(series)
        vrt = QgsProcessingModelChildAlgorithm("gdal:buildvirtualraster")
        vrt.setChildId("vrt")
        vrt.addParameterSources("INPUT", [Source.fromChildOutput("series", "SYNTHESIZED")])
        vrt.addParameterSources("SEPARATE", [Source.fromStaticValue(True)])
        out = QgsProcessingModelOutput("vrt")
        out.setChildId("vrt")
        out.setChildOutputName("OUTPUT")
        vrt.setModelOutputs({"vrt": out})
        m.addChildAlgorithm(vrt)
        m.updateDestinationParameters()
        return m

    project = QgsProject.instance()
    project.clear()
    processing.runAndLoadResults(model(False), {"s2": inputs["S2_LAYERS"], "vrt:vrt": str(tmp_path / "a.vrt")})
    assert [lyr.source() for lyr in project.mapLayers().values()] == [str(tmp_path / "a.vrt")]
    assert project.layerTreeRoot().findGroups() == []
    project.clear()
    processing.runAndLoadResults(model(True), {"s2": inputs["S2_LAYERS"], "vrt:vrt": str(tmp_path / "b.vrt"),
                                               "series:folder": str(tmp_path / "kept")})
    assert sorted(g.name() for g in project.layerTreeRoot().findGroups()) == ["Densify 2018-02-20 linear",
                                                                              "Densify 2018-03-02 linear"]
    assert len(project.mapLayers()) == 5  # a synthesized and an uncertainty layer per date, and the VRT
    project.clear()
