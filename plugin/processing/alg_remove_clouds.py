"""densify:remove_clouds - single-date cloud removal from S1 + cloudy S2 with a Pix2Pix model."""

from __future__ import annotations

from qgis.core import (
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
)

from ..layers import source_path
from .feedback import checked_layers, core_errors, core_feedback, destination_files

HELP = """Removes clouds from one Sentinel-2 image with a Pix2Pix model (Ledermann 2026): the \
Sentinel-1 VV/VH image (resampled onto the S2 grid) and the cloudy S2 bands go through a U-Net \
trained on S1/S2 triplets, tile by tile with smooth blending.

<b>Model</b>: an ONNX file exported by <i>densify export</i> (its contract gives the bands and \
scaling); left empty, the bundled models/pix2pix.onnx is used when this build ships one.
<b>Cloud mask</b> (optional): pixels it calls clear keep their observed values.
<b>Output</b>: the model's bands (R, G, B by default) as surface reflectance on the S2 grid."""

DEVICES = ["auto", "cpu", "cuda"]


class RemoveCloudsAlgorithm(QgsProcessingAlgorithm):
    S1 = "S1"
    S2 = "S2"
    MASK = "MASK"
    MODEL = "MODEL"
    DEVICE = "DEVICE"
    OUTPUT = "OUTPUT"

    def __init__(self):
        super().__init__()
        self._paths: dict[str, str | None] = {}

    def name(self) -> str:
        return "remove_clouds"

    def displayName(self) -> str:  # noqa: N802 (QGIS API name)
        return "Remove clouds (S1 + S2, Pix2Pix)"

    def group(self) -> str:
        return "Cloud removal"

    def groupId(self) -> str:  # noqa: N802 (QGIS API name)
        return "cloud_removal"

    def tags(self) -> list[str]:
        return ["cloud", "removal", "pix2pix", "gan", "sentinel-1", "sentinel-2", "sar", "fusion"]

    def shortHelpString(self) -> str:  # noqa: N802 (QGIS API name)
        return HELP

    def createInstance(self) -> RemoveCloudsAlgorithm:  # noqa: N802 (QGIS API name)
        return RemoveCloudsAlgorithm()

    def initAlgorithm(self, config=None) -> None:  # noqa: N802 (QGIS API name)
        self.addParameter(QgsProcessingParameterRasterLayer(self.S1, "Sentinel-1 raster (VV, VH)"))
        self.addParameter(QgsProcessingParameterRasterLayer(self.S2, "Cloudy Sentinel-2 raster"))
        self.addParameter(QgsProcessingParameterRasterLayer(self.MASK, "Cloud mask (optional)", optional=True))
        self.addParameter(QgsProcessingParameterFile(self.MODEL, "Pix2Pix model (.onnx; none is bundled yet)",
                                                     extension="onnx", optional=True))
        self.addParameter(QgsProcessingParameterEnum(self.DEVICE, "Device", DEVICES, defaultValue=0))
        self.addParameter(QgsProcessingParameterRasterDestination(self.OUTPUT, "Cloud-free Sentinel-2"))

    def checkParameterValues(self, parameters: dict, context: QgsProcessingContext):  # noqa: N802
        return checked_layers(self, parameters, context, models=[self.MODEL],
                              outputs=lambda: destination_files(self, parameters, context, [self.OUTPUT]))

    def prepareAlgorithm(self, parameters: dict, context: QgsProcessingContext,  # noqa: N802
                         feedback: QgsProcessingFeedback) -> bool:
        paths: dict[str, str | None] = {}
        for key in (self.S1, self.S2, self.MASK):
            layer = self.parameterAsRasterLayer(parameters, key, context)
            if layer is None and key != self.MASK:
                raise QgsProcessingException(f"Bad input: {key} is not a raster layer")
            paths[key] = source_path(layer) if layer is not None else None
        self._paths = paths
        return True

    def processAlgorithm(self, parameters: dict, context: QgsProcessingContext,  # noqa: N802
                         feedback: QgsProcessingFeedback) -> dict:
        out = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        model = self.parameterAsFile(parameters, self.MODEL, context) or None
        device = DEVICES[self.parameterAsEnum(parameters, self.DEVICE, context)]
        with core_errors(feedback):
            from ...core.cloud_removal import remove_clouds

            result = remove_clouds(self._paths[self.S1], self._paths[self.S2], out, model=model,
                                   mask=self._paths[self.MASK], device=device, feedback=core_feedback(feedback))
        feedback.pushInfo(f"model {result.model} ({result.provider}); bands {', '.join(result.bands)}")
        return {self.OUTPUT: result.output}


ALGORITHMS = [RemoveCloudsAlgorithm]
