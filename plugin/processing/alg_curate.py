"""densify:curate - keep or reject S1/S2 training triplets (SEN12MS-CR layout)."""

from __future__ import annotations

from qgis.core import (
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProcessingOutputFile,
    QgsProcessingOutputNumber,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterFile,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterNumber,
)

from .feedback import core_errors, core_feedback

HELP = """Checks every triplet of a dataset in the SEN12MS-CR layout (s1/, s2_cloudy/, \
s2_cloudfree/, same file name in each; e.g. made by <i>densify make-pairs</i>) with the two-stage \
filter of Ledermann (2026): SAR rejected when its std < 1e-4 or max < 1e-3 in VV or VH (dB clipped \
to [-25, 0], scaled to [0, 1]); optical rejected when the mean R, G, B std of the cloud-free target \
(8-bit display, reflectance 0-0.3) is below the season's threshold (10 summer, 3 winter; season \
from the file name or date, hemisphere from the location). Unreadable, wrongly shaped, not \
co-registered and all-nodata files are rejected too. Sources are only read. <b>Parallel workers</b> are threads \
inside QGIS.

<b>Output folder</b>: report.csv (one row per triplet), summary.json / summary.md, kept.txt, and \
with <i>links</i> a dataset folder of links to the kept triplets."""


class CurateAlgorithm(QgsProcessingAlgorithm):
    DATA = "DATA"
    SUMMER = "SUMMER_THRESHOLD"
    WINTER = "WINTER_THRESHOLD"
    WORKERS = "WORKERS"
    LINK = "LINK"
    OUTPUT = "OUTPUT"
    REPORT = "REPORT"
    KEPT = "KEPT"
    REJECTED = "REJECTED"
    KEPT_LIST = "KEPT_LIST"
    SUMMARY = "SUMMARY"
    SUMMARY_MD = "SUMMARY_MD"

    def name(self) -> str:
        return "curate"

    def displayName(self) -> str:  # noqa: N802 (QGIS API name)
        return "Curate training triplets (S1/S2)"

    def group(self) -> str:
        return "Cloud removal"

    def groupId(self) -> str:  # noqa: N802 (QGIS API name)
        return "cloud_removal"

    def tags(self) -> list[str]:
        return ["curation", "dataset", "sen12ms", "quality", "training", "cloud"]

    def shortHelpString(self) -> str:  # noqa: N802 (QGIS API name)
        return HELP

    def createInstance(self) -> CurateAlgorithm:  # noqa: N802 (QGIS API name)
        return CurateAlgorithm()

    def initAlgorithm(self, config=None) -> None:  # noqa: N802 (QGIS API name)
        self.addParameter(QgsProcessingParameterFile(self.DATA, "Dataset folder (s1, s2_cloudy, s2_cloudfree)",
                                                     behavior=QgsProcessingParameterFile.Folder))
        self.addParameter(QgsProcessingParameterNumber(self.SUMMER, "Min RGB std outside winter (8-bit)",
                                                       QgsProcessingParameterNumber.Double, 10.0, minValue=0))
        self.addParameter(QgsProcessingParameterNumber(self.WINTER, "Min RGB std in winter (8-bit)",
                                                       QgsProcessingParameterNumber.Double, 3.0, minValue=0))
        self.addParameter(QgsProcessingParameterNumber(self.WORKERS, "Parallel workers (threads)",
                                                       QgsProcessingParameterNumber.Integer, 2, minValue=1))
        self.addParameter(QgsProcessingParameterBoolean(self.LINK, "Write a folder of links to kept triplets",
                                                        defaultValue=False))
        self.addParameter(QgsProcessingParameterFolderDestination(self.OUTPUT, "Output folder"))
        self.addOutput(QgsProcessingOutputFile(self.REPORT, "Report (CSV)"))
        self.addOutput(QgsProcessingOutputFile(self.KEPT_LIST, "Kept triplets (kept.txt)"))
        self.addOutput(QgsProcessingOutputFile(self.SUMMARY, "Summary (JSON)"))
        self.addOutput(QgsProcessingOutputFile(self.SUMMARY_MD, "Summary (Markdown)"))
        self.addOutput(QgsProcessingOutputNumber(self.KEPT, "Triplets kept"))
        self.addOutput(QgsProcessingOutputNumber(self.REJECTED, "Triplets rejected"))

    def processAlgorithm(self, parameters: dict, context: QgsProcessingContext,  # noqa: N802
                         feedback: QgsProcessingFeedback) -> dict:
        data = self.parameterAsFile(parameters, self.DATA, context)
        out = self.parameterAsFileOutput(parameters, self.OUTPUT, context)
        with core_errors(feedback):
            from ...core.curate import CurateConfig, curate

            cfg = CurateConfig(summer_threshold=self.parameterAsDouble(parameters, self.SUMMER, context),
                               winter_threshold=self.parameterAsDouble(parameters, self.WINTER, context))
            s = curate(data, out, cfg, workers=self.parameterAsInt(parameters, self.WORKERS, context),
                       link=self.parameterAsBool(parameters, self.LINK, context), feedback=core_feedback(feedback),
                       threads=True)  # a process pool would fork, or on Windows re-launch, QGIS itself
        feedback.pushInfo(f"kept {s.kept} of {s.total}; rejected: "
                          + (", ".join(f"{k} {v}" for k, v in s.rejected.items()) or "none"))
        return {self.OUTPUT: s.out_dir, self.REPORT: f"{s.out_dir}/report.csv", self.KEPT: s.kept,
                self.REJECTED: s.total - s.kept, self.KEPT_LIST: f"{s.out_dir}/kept.txt",
                self.SUMMARY: f"{s.out_dir}/summary.json", self.SUMMARY_MD: f"{s.out_dir}/summary.md"}


ALGORITHMS = [CurateAlgorithm]
