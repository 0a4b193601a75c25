"""densify:synthesize_series - Sentinel-2 every N days over a date range, through `core.engine.run_series`."""

from __future__ import annotations

import uuid
from pathlib import Path

from qgis.core import (
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingOutputMultipleLayers,
    QgsProcessingOutputString,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterDateTime,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterNumber,
    QgsProcessingUtils,
)

from ...core.dates import every
from ...core.errors import DensifyError
from ...core.request import DensifyRequest
from ..layers import LAYERS, common_limits, group_name, image_key, layer_name, output_tags, run_label, styles_of
from .alg_synthesize import SynthesisAlgorithm
from .feedback import core_errors, core_feedback
from .styling import StyleOnLoad, load_on_completion

HELP = """Synthesizes Sentinel-2 L2A images every EVERY_DAYS days from FIRST_DATE to LAST_DATE (only \
FIRST_DATE when LAST_DATE is unset), from the same inputs and EXTENT as "Synthesize Sentinel-2 at a date": the \
inputs are checked and read once for all the dates, so a series runs faster than one run per date.

<b>Outputs</b>: in the OUTPUT folder, for each date YYYYMMDD, synthesized_YYYYMMDD.tif, \
uncertainty_YYYYMMDD.tif and, with ESTIMATE_LAI, lai_YYYYMMDD.tif (files of those names are replaced). Every \
date is checked before any is computed, and no file is written until all dates are complete: a \
cancel leaves none. With LOAD_OUTPUTS, each date's layers are added to the project in a group \
"Densify YYYY-MM-DD method" (the earliest date on top), styled, described and dated for the Temporal Controller: \
the true colour and the \
uncertainty of all the dates share one stretch (2-98 % of all the dates' values), so that a colour means the same \
value on every date. A re-run into the same folder reuses the groups and its layers show the new files. \
Not in a model whose outputs do not \
include OUTPUT (an intermediate step, like QGIS's own algorithms' outputs), and batch rows can untick it. The \
outputs SYNTHESIZED, UNCERTAINTY and LAI list the files (date order) for a model's next steps; DATES and MODES \
list each date and its mode (gap-filling, forecasting or backcasting), comma-separated."""


class SynthesizeSeriesAlgorithm(SynthesisAlgorithm):
    FIRST = "FIRST_DATE"
    LAST = "LAST_DATE"
    EVERY = "EVERY_DAYS"
    LAI = "ESTIMATE_LAI"
    LOAD = "LOAD_OUTPUTS"
    OUTPUT = "OUTPUT"
    LISTS = {"synthesized": ("SYNTHESIZED", "Synthesized Sentinel-2 files"),
             "uncertainty": ("UNCERTAINTY", "Uncertainty files"), "lai": ("LAI", "LAI files")}

    def name(self) -> str:
        return "synthesize_series"

    def displayName(self) -> str:  # noqa: N802 (QGIS API name)
        return "Synthesize Sentinel-2 every N days"

    def shortHelpString(self) -> str:  # noqa: N802 (QGIS API name)
        return HELP

    def createInstance(self) -> SynthesizeSeriesAlgorithm:  # noqa: N802 (QGIS API name)
        return SynthesizeSeriesAlgorithm()

    def initAlgorithm(self, config=None) -> None:  # noqa: N802 (QGIS API name)
        date = QgsProcessingParameterDateTime.Date
        self.add_input_parameters()
        self.addParameter(QgsProcessingParameterDateTime(self.FIRST, "First date", date))
        self.addParameter(QgsProcessingParameterDateTime(self.LAST, "Last date (unset: the first date only)",
                                                         date, optional=True))
        self.addParameter(QgsProcessingParameterNumber(self.EVERY, "Every (days)",
                                                       QgsProcessingParameterNumber.Integer, 10, False, 1))
        self.add_method_parameters()
        self.addParameter(QgsProcessingParameterBoolean(self.LAI, "Estimate LAI", True))
        self.addParameter(QgsProcessingParameterBoolean(
            self.LOAD, "Open the outputs in the project (a group per date)", True))
        self.addParameter(QgsProcessingParameterFolderDestination(self.OUTPUT, "Output folder"))
        for key, label in self.LISTS.values():
            self.addOutput(QgsProcessingOutputMultipleLayers(key, label))
        self.addOutput(QgsProcessingOutputString("DATES", "Dates (YYYY-MM-DD, comma-separated)"))
        self.addOutput(QgsProcessingOutputString("MODES", "Mode of each date (comma-separated)"))

    def target_dates(self, parameters: dict, context: QgsProcessingContext) -> list:
        """FIRST_DATE, then every EVERY_DAYS days up to LAST_DATE (when set)."""
        first = self.date(parameters, self.FIRST, context)
        if parameters.get(self.LAST) in (None, ""):
            return [first]
        last = self.date(parameters, self.LAST, context)
        if last < first:
            raise QgsProcessingException(f"Bad input: {self.LAST} {last} is before {self.FIRST} {first}")
        return every(first, last, self.parameterAsInt(parameters, self.EVERY, context))

    def output_files(self, parameters: dict, context: QgsProcessingContext) -> list[tuple[str, str]]:
        """Each date's files in the OUTPUT folder (none when the dates are wrong: the run says why)."""
        try:
            requests = self.build_requests(parameters, context)
        except (QgsProcessingException, DensifyError):
            return []
        return [(self.OUTPUT, str(r.output_path(kind))) for r in requests for kind in r.kinds()]

    def build_requests(self, parameters: dict, context: QgsProcessingContext) -> list[DensifyRequest]:
        folder = self.parameterAsFileOutput(parameters, self.OUTPUT, context)
        lai = self.parameterAsBoolean(parameters, self.LAI, context)
        return [self.request(parameters, context, day, folder, lai)
                for day in self.target_dates(parameters, context)]

    def processAlgorithm(self, parameters: dict, context: QgsProcessingContext,  # noqa: N802
                         feedback: QgsProcessingFeedback) -> dict:
        requests = self.build_requests(parameters, context)
        with core_errors(feedback):
            from ...core.engine import run_series

            results = run_series(requests, shown := core_feedback(feedback))
        for warning in shown.unshown(w for result in results for w in result.warnings):
            feedback.pushWarning(warning)
        load = self.parameterAsBoolean(parameters, self.LOAD, context)
        load = load and not _intermediate(parameters.get(self.OUTPUT))  # a model's intermediate step: not loaded
        limits = common_limits([r.outputs for r in results]) if load else {}
        series = uuid.uuid4().hex  # this run's id: its dates' groups are kept in date order (layers.new_group)
        for result in results:
            feedback.pushInfo(f"{result.target_date}: {result.mode}")
            if load:
                self.load(context, result.outputs, result.target_date, limits, series)
        feedback.pushInfo(f"{len(results)} date(s) with {results[0].method} ({results[0].provider}), "
                          f"{results[0].seconds:.1f} s")  # never empty: the first date is always one
        out = {key: [r.outputs[kind] for r in results if kind in r.outputs] for kind, (key, _) in self.LISTS.items()}
        out[self.OUTPUT] = requests[0].out_dir
        out["DATES"] = ",".join(f"{r.target_date:%Y-%m-%d}" for r in results)
        out["MODES"] = ",".join(r.mode for r in results)
        return out

    def load(self, context: QgsProcessingContext, outputs: dict[str, str], day, limits: dict | None = None,
             series: str = "") -> None:
        """Each output of a date loaded on completion into the date's group, in the dialog's order, named with the date
        and method (see run_label); the true colour and uncertainty on the series' common `limits` (see
        common_limits); the group among the other groups of the `series` in date order (see layers.new_group)."""
        label = run_label(outputs, day, output_tags(outputs["synthesized"]))
        for order, kind in enumerate(k for k in LAYERS if k in outputs):
            title, style, role = styles_of(kind, limits)[0]  # one layer per output file, as in densify:synthesize
            load_on_completion(context, outputs[kind], self.LISTS[kind][0], StyleOnLoad(
                style, day, group_name(day, label), order, role, name=layer_name(title, day, label), label=label,
                run=series, image=image_key(outputs["synthesized"]), series=series))


def _intermediate(value) -> bool:
    """Whether a destination's value is a temporary one QGIS made up for it: what a model gives a step whose output
    is not one of the model's (a path in Processing's temporary folder; a temporary output the user chose is
    TEMPORARY_OUTPUT until the algorithm resolves it)."""
    return isinstance(value, str) and Path(QgsProcessingUtils.tempFolder()) in Path(value).parents


ALGORITHMS = [SynthesizeSeriesAlgorithm]
