"""densify:estimate_lai - LAI, its std and flags from one Sentinel-2 image (ESA SNAP network)."""

from __future__ import annotations

import datetime as dt
import uuid

from qgis.core import (
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingParameterExtent,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
)
from qgis.PyQt.QtCore import QCoreApplication, QThread

from ...core.request import OUTPUT_KINDS
from ..layers import (
    LAYERS,
    METHOD_KEYS,
    group_name,
    image_key,
    is_result_group,
    layer_name,
    run_label,
    source_path,
    temporal_date,
)
from .feedback import checked_layers, core_errors, core_feedback, destination_files, extent_parameter
from .styling import StyleOnLoad, style_on_load

GROUP = "Densify LAI"  # where a loaded LAI of an image without a date goes

HELP = """Leaf area index from a Sentinel-2 L2A image with ESA SNAP's LAI network (v3, as in SNAP's \
Biophysical Processor): 8 bands (B03 B04 B05 B06 B07 B8A B11 B12, found by band description) and \
the sun/view angles from the image metadata (typical values when absent). A .SAFE product added \
through its MTD_MSIL2A.xml, or one of its band files (e.g. the B04 .jp2), stands for its acquisition: \
all its band files are read as one image, the angles from the granule's MTD_TL.xml.

<b>Uncertainty</b> (optional): the uncertainty raster written with a synthesized image \
(densify:synthesize's OUTPUT_UNCERTAINTY: bands B03_std, ...). Its per-band reflectance std is \
propagated through the network into the LAI std.

<b>Extent</b> (optional): compute only this area, in any CRS: the output holds the input's whole \
pixels it touches, on the input's pixel edges.

<b>Output</b>: a 3-band GeoTIFF on the input grid (the extent's part of it when one is given): \
LAI (m2/m2), LAI std (propagated from the uncertainty when given; 0 otherwise, since a single image \
carries no reflectance std), and quality flags (1 input outside the definition domain, 2/4 output \
below/above the valid range, 8 invalid input). Loaded, it is styled (0-8 green ramp, m²/m²), described \
(Layer Properties > Metadata) and dated with the input's acquisition: a synthesized image's LAI into that image's \
group (the dialog's or Processing's, its run number carried: "LAI YYYY-MM-DD linear (2)"), any other image's into \
a group of its own for its date ("Densify YYYY-MM-DD"), else "Densify LAI"; the LAI of an image loaded in the \
project is the layer its group shows. Written onto a file already loaded in the project, that layer shows the new \
file. A model's intermediate LAI (not one of the model's outputs) is not loaded."""


class EstimateLaiAlgorithm(QgsProcessingAlgorithm):
    INPUT = "INPUT"
    UNCERTAINTY = "UNCERTAINTY"
    EXTENT = "EXTENT"
    OUTPUT = "OUTPUT"

    def __init__(self):
        super().__init__()
        self._path = ""
        self._std_path: str | None = None
        self._date: dt.date | None = None
        self._synthesis: dict[str, str] = {}  # how the input was synthesized (a Densify output's METHOD_KEYS tags)
        self._label = ""  # the LAI's label (run_label): its image's group's, or the image file's
        self._beside = ""  # the input layer's id when it is in a result group (the LAI goes into that group)
        self._show = False  # the input is a project layer: the analyst asked for its LAI, which is shown
        self._extent: tuple[tuple[float, float, float, float] | None, str | None] = (None, None)

    def name(self) -> str:
        return "estimate_lai"

    def displayName(self) -> str:  # noqa: N802 (QGIS API name)
        return "Estimate LAI (SNAP network)"

    def group(self) -> str:
        return "Vegetation"

    def groupId(self) -> str:  # noqa: N802 (QGIS API name)
        return "vegetation"

    def tags(self) -> list[str]:
        return ["lai", "leaf area index", "snap", "biophysical", "sentinel-2", "vegetation"]

    def shortHelpString(self) -> str:  # noqa: N802 (QGIS API name)
        return HELP

    def createInstance(self) -> EstimateLaiAlgorithm:  # noqa: N802 (QGIS API name)
        return EstimateLaiAlgorithm()

    def initAlgorithm(self, config=None) -> None:  # noqa: N802 (QGIS API name)
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, "Sentinel-2 L2A raster"))
        self.addParameter(QgsProcessingParameterRasterLayer(
            self.UNCERTAINTY, "Uncertainty of a synthesized image (per-band std)", optional=True))
        self.addParameter(QgsProcessingParameterExtent(
            self.EXTENT, "Extent (default: the whole image)", optional=True))
        self.addParameter(QgsProcessingParameterRasterDestination(self.OUTPUT, "LAI (LAI, std, flags)"))

    def checkParameterValues(self, parameters: dict, context: QgsProcessingContext):  # noqa: N802
        return checked_layers(self, parameters, context,
                              outputs=lambda: destination_files(self, parameters, context, [self.OUTPUT]))

    def prepareAlgorithm(self, parameters: dict, context: QgsProcessingContext,  # noqa: N802
                         feedback: QgsProcessingFeedback) -> bool:
        layer = self.parameterAsRasterLayer(parameters, self.INPUT, context)
        if layer is None:
            raise QgsProcessingException("Bad input: INPUT is not a raster layer")
        self._path = source_path(layer)
        std_layer = self.parameterAsRasterLayer(parameters, self.UNCERTAINTY, context)
        self._std_path = source_path(std_layer) if std_layer is not None else None
        self._extent = extent_parameter(self, parameters, self.EXTENT, context)
        with core_errors(feedback):
            from ...core.inventory import describe

            info = describe(self._path)
        when = temporal_date(layer) or info.when  # the LAI layer gets the image's date
        self._date = day = when.date() if when is not None else None
        self._synthesis = {k: v for k, v in info.tags.items() if k in METHOD_KEYS} \
            if info.output_kind == "synthesized" else {}
        project = context.project()
        main = QThread.currentThread() == QCoreApplication.instance().thread()  # a model's step runs in its thread
        node = project.layerTreeRoot().findLayer(layer.id()) if project is not None and main else None
        parent = node.parent() if node is not None else None
        self._show = node is not None
        self._beside = layer.id() if is_result_group(parent) else ""
        prefix = group_name(day) if day else None
        if self._beside and prefix and parent.name().startswith(prefix):
            self._label = parent.name()[len(prefix):]  # its group's: " nearest (2)"
        else:
            self._label = run_label({"synthesized": self._path}, day, self._synthesis) if day else ""
        return True

    def processAlgorithm(self, parameters: dict, context: QgsProcessingContext,  # noqa: N802
                         feedback: QgsProcessingFeedback) -> dict:
        out = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        warnings: list[str] = []
        with core_errors(feedback):
            from ...core.lai import lai_file

            path = lai_file(self._path, out, core_feedback(feedback), std_path=self._std_path,
                            extent=self._extent[0], extent_crs=self._extent[1], warnings=warnings)
        for warning in warnings:
            feedback.pushWarning(warning)
        day, label = self._date, self._label
        title, style, role = LAYERS["lai"][0]
        image = image_key(self._path) if self._synthesis else ""  # a synthesized image's group (a model's too)
        style_on_load(context, str(path), StyleOnLoad(
            style, day, group_name(day, label) if day else GROUP, OUTPUT_KINDS.index("lai"), role,
            name=layer_name(title, day, label) if day else "", label=label, run=uuid.uuid4().hex, image=image,
            join=True, beside=self._beside, show=self._show), self.parameterDefinition(self.OUTPUT).description())
        return {self.OUTPUT: str(path)}


ALGORITHMS = [EstimateLaiAlgorithm]
