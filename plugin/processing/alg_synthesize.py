"""densify:synthesize - Sentinel-2 at a target date, its uncertainty and LAI, through `core.engine.run`."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path

from qgis.core import (
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingOutputString,
    QgsProcessingParameterDateTime,
    QgsProcessingParameterEnum,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFile,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterRasterDestination,
)

from ...core.request import DensifyRequest
from ..layers import LAYERS, group_name, image_key, layer_name, output_tags, run_label, source_path, temporal_date
from .feedback import checked_layers, core_errors, core_feedback, destination_files, extent_parameter
from .styling import StyleOnLoad, drop_from_load, style_on_load

DEVICES = ["auto", "cpu", "cuda"]
METHODS = [("default", "Bundled default model"), ("linear", "linear (baseline)"),
           ("nearest", "nearest (baseline)"), ("persistence", "persistence (baseline)"),
           ("linear-haze", "linear on the haze-screened series (baseline)")]  # appended: saved models keep their index

HELP = """Synthesizes a Sentinel-2 L2A image at TARGET_DATE from a series of Sentinel-2 rasters \
(with optional SCL cloud masks) and, optionally, Sentinel-1 rasters: gap-filling between clear \
acquisitions, forecasting after the last one, backcasting before the first.

<b>Inputs</b>: acquisition dates come from each layer's temporal properties when set, otherwise \
from the file's metadata or name (e.g. T31UDS_20170804T105328_L2A_10m.tif). Masks are paired \
with the S2 image of the same date. The output grid is the S2 grid (of the earliest S2 \
image); <b>Extent</b> (optional) computes only the S2 pixels it touches, in any CRS.

<b>Method</b>: the bundled default model or a baseline (linear, nearest, persistence). \
<b>Model file</b> (optional): an .onnx model to run instead of the method. <b>Device</b>: auto uses \
a CUDA GPU when ONNX Runtime offers one.

<b>Outputs</b>: the synthesized reflectance (one band per S2 band), the uncertainty (per-band \
standard deviation) and the LAI (LAI, LAI std and quality flags, ESA SNAP network); leave the \
LAI output unset to skip it. MODE tells gap-filling, forecasting or backcasting. Loaded outputs \
go into a group "Densify YYYY-MM-DD method" of their own as the dialog's (numbered when the name is taken: \
"... linear (2)"; a re-run onto the same files reuses it): the synthesized image shown on top, the \
uncertainty and LAI below it, hidden, one click away; styled (true colour, uncertainty and LAI \
ramps), dated (their temporal range is the target date), described (Layer Properties > Metadata: what the layer \
is, how it was made, its units) and named with the date and method (e.g. "Synthesized S2 YYYY-MM-DD linear"; \
"model" for the bundled model, a model file's name otherwise, e.g. "crops_v2.onnx"; a name given to an output, as a \
model's, is kept). Outputs written onto files already loaded in the project replace them: every layer on those \
files shows the new files."""


class SynthesisAlgorithm(QgsProcessingAlgorithm):
    """What the synthesis algorithms share: the input layers (paths and layer dates collected on the
    main thread), the method, model file and device, and the request built from them."""

    S2 = "S2_LAYERS"
    S1 = "S1_LAYERS"
    MASKS = "MASK_LAYERS"
    METHOD = "METHOD"
    MODEL = "MODEL"
    DEVICE = "DEVICE"
    EXTENT = "EXTENT"

    def __init__(self):
        super().__init__()
        self._inputs: dict[str, list[str]] = {}
        self._dates: dict[str, dt.datetime] = {}
        self._extent: tuple[tuple[float, float, float, float] | None, str | None] = (None, None)

    def group(self) -> str:
        return "Synthesis"

    def groupId(self) -> str:  # noqa: N802 (QGIS API name)
        return "synthesis"

    def tags(self) -> list[str]:
        return ["sentinel", "s2", "s1", "gap filling", "cloud", "interpolation", "forecast", "lai"]

    def add_input_parameters(self) -> None:
        raster = QgsProcessing.TypeRaster
        self.addParameter(QgsProcessingParameterMultipleLayers(self.S2, "Sentinel-2 rasters", raster))
        self.addParameter(QgsProcessingParameterMultipleLayers(self.S1, "Sentinel-1 rasters", raster,
                                                               optional=True))
        self.addParameter(QgsProcessingParameterMultipleLayers(
            self.MASKS, "Cloud masks (Sen2Cor SCL)", raster, optional=True))
        self.addParameter(QgsProcessingParameterExtent(
            self.EXTENT, "Extent (default: the whole S2 grid)", optional=True))

    def add_method_parameters(self) -> None:
        # optional with a default, so models saved before METHOD existed still validate
        self.addParameter(QgsProcessingParameterEnum(self.METHOD, "Method", [label for _, label in METHODS],
                                                     defaultValue=0, optional=True))
        self.addParameter(QgsProcessingParameterFile(
            self.MODEL, "Model file (.onnx; optional, replaces the method)",
            QgsProcessingParameterFile.File, optional=True, fileFilter="ONNX models (*.onnx)"))
        self.addParameter(QgsProcessingParameterEnum(self.DEVICE, "Device", DEVICES, defaultValue=0))

    def checkParameterValues(self, parameters: dict, context: QgsProcessingContext):  # noqa: N802
        return checked_layers(self, parameters, context, models=[self.MODEL],
                              outputs=lambda: self.output_files(parameters, context))

    def output_files(self, parameters: dict, context: QgsProcessingContext) -> list[tuple[str, str]]:
        """The files a run would write, as (parameter name, path)."""
        return []

    def prepareAlgorithm(self, parameters: dict, context: QgsProcessingContext,  # noqa: N802
                         feedback: QgsProcessingFeedback) -> bool:
        """Collect paths and layer dates on the main thread; the run itself sees plain values."""
        self._inputs, self._dates = {}, {}
        for key in (self.S2, self.S1, self.MASKS):
            paths = []
            for layer in self.parameterAsLayerList(parameters, key, context) or []:
                path = source_path(layer)
                paths.append(path)
                when = temporal_date(layer)
                if when is not None:
                    self._dates[path] = when
            self._inputs[key] = paths
        self._extent = extent_parameter(self, parameters, self.EXTENT, context)
        return True

    def request(self, parameters: dict, context: QgsProcessingContext, target: dt.date, out_dir: str,
                lai: bool, outputs: dict[str, str] | None = None) -> DensifyRequest:
        """The core's request for these inputs, method and device."""
        model = (self.parameterAsFile(parameters, self.MODEL, context) or "").strip()
        return DensifyRequest(
            s2=self._inputs.get(self.S2, []), s1=self._inputs.get(self.S1, []),
            masks=self._inputs.get(self.MASKS, []), target_date=target, out_dir=out_dir,
            method=model or METHODS[self.parameterAsEnum(parameters, self.METHOD, context)][0],
            device=DEVICES[self.parameterAsEnum(parameters, self.DEVICE, context)],
            lai=lai, dates=dict(self._dates), output_paths=outputs or {}, extent=self._extent[0],
            extent_crs=self._extent[1])

    def date(self, parameters: dict, name: str, context: QgsProcessingContext) -> dt.date:
        when = self.parameterAsDateTime(parameters, name, context)
        if not when.isValid():
            raise QgsProcessingException(f"Bad input: {name} is not a valid date")
        return when.date().toPyDate()


class SynthesizeAlgorithm(SynthesisAlgorithm):
    DATE = "TARGET_DATE"
    OUT = {"synthesized": "OUTPUT_SYNTHESIZED", "uncertainty": "OUTPUT_UNCERTAINTY", "lai": "OUTPUT_LAI"}

    def name(self) -> str:
        return "synthesize"

    def displayName(self) -> str:  # noqa: N802 (QGIS API name)
        return "Synthesize Sentinel-2 at a date"

    def shortHelpString(self) -> str:  # noqa: N802 (QGIS API name)
        return HELP

    def createInstance(self) -> SynthesizeAlgorithm:  # noqa: N802 (QGIS API name)
        return SynthesizeAlgorithm()

    def initAlgorithm(self, config=None) -> None:  # noqa: N802 (QGIS API name)
        self.add_input_parameters()
        self.addParameter(QgsProcessingParameterDateTime(self.DATE, "Target date",
                                                         QgsProcessingParameterDateTime.Date))
        self.add_method_parameters()
        self.addParameter(QgsProcessingParameterRasterDestination(self.OUT["synthesized"],
                                                                  "Synthesized Sentinel-2"))
        self.addParameter(QgsProcessingParameterRasterDestination(self.OUT["uncertainty"],
                                                                  "Uncertainty (per-band std)"))
        self.addParameter(QgsProcessingParameterRasterDestination(
            self.OUT["lai"], "LAI (LAI, std, flags)", optional=True, createByDefault=True))
        self.addOutput(QgsProcessingOutputString("MODE", "Mode (gap-filling, forecasting, backcasting)"))

    def output_files(self, parameters: dict, context: QgsProcessingContext) -> list[tuple[str, str]]:
        return destination_files(self, parameters, context, list(self.OUT.values()))

    def build_request(self, parameters: dict, context: QgsProcessingContext) -> DensifyRequest:
        target = self.date(parameters, self.DATE, context)
        outputs = {kind: self.parameterAsOutputLayer(parameters, key, context)
                   for kind, key in self.OUT.items()}
        outputs = {k: v for k, v in outputs.items() if v}
        return self.request(parameters, context, target, str(Path(outputs["synthesized"]).parent),
                            "lai" in outputs, outputs)

    def processAlgorithm(self, parameters: dict, context: QgsProcessingContext,  # noqa: N802
                         feedback: QgsProcessingFeedback) -> dict:
        request = self.build_request(parameters, context)
        with core_errors(feedback):
            from ...core.engine import run

            result = run(request, shown := core_feedback(feedback))
        for warning in shown.unshown(result.warnings):
            feedback.pushWarning(warning)
        day = request.target_date
        synthesized = result.outputs["synthesized"]
        label = run_label(result.outputs, day, output_tags(synthesized))  # the method, as the dialog's names
        run = uuid.uuid4().hex  # tells this run's group from an earlier run's on the same files (styling.into_group)
        for order, (kind, key) in enumerate(self.OUT.items()):  # LAYERS' order: the image on top
            path = str(request.output_path(kind))
            if kind in result.outputs:
                title, style, role = LAYERS[kind][0]  # one layer per output file
                style_on_load(context, result.outputs[kind], StyleOnLoad(
                    style, day, group_name(day, label), order, role, name=layer_name(title, day, label), label=label,
                    run=run, image=image_key(synthesized)), self.parameterDefinition(key).description())
            elif key in parameters and parameters[key]:  # asked for, not produced (e.g. LAI without its bands)
                drop_from_load(context, path)
        feedback.pushInfo(f"{result.mode}: {result.method} ({result.provider}), {result.seconds:.1f} s")
        out = {key: result.outputs.get(kind) for kind, key in self.OUT.items() if result.outputs.get(kind)}
        out["MODE"] = result.mode
        return out


ALGORITHMS = [SynthesizeAlgorithm]
