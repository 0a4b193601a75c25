"""Bridge from a QgsProcessingFeedback to the core's Feedback (progress, messages, cancel)."""

from __future__ import annotations

import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from qgis.core import (
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterRasterLayer,
    QgsProcessingUtils,
)

from ...core.errors import DensifyError, failure_message
from ...core.progress import Feedback
from ..layers import extent_values


def core_feedback(feedback: QgsProcessingFeedback | None) -> Feedback:
    """A core Feedback reporting into Processing's progress bar and log (warnings as soon as the core has them),
    cancelled by its button."""
    if feedback is None:
        return Feedback()
    last = [""]

    def progress(percent: float, message: str) -> None:
        feedback.setProgress(percent)
        if message and message != last[0]:
            last[0] = message
            feedback.setProgressText(message)

    return Feedback(progress=progress, is_cancelled=feedback.isCanceled, warn=feedback.pushWarning)


def checked_layers(alg: QgsProcessingAlgorithm, parameters: dict, context: QgsProcessingContext,
                   models: Sequence[str] = ()) -> tuple[bool, str]:
    """QGIS's own parameter check, its message ("Incorrect parameter value for S2_LAYERS") replaced
    by one naming each layer input QGIS cannot open, and each model file (the parameters `models`) the
    core would refuse, in the core's words (a PyTorch checkpoint: export it first; a folder; a missing file)."""
    from ...core.methods import model_file_problem

    ok, message = QgsProcessingAlgorithm.checkParameterValues(alg, parameters, context)
    bad = []
    for param in [] if ok else alg.parameterDefinitions():  # QGIS refused something: a layer it cannot open?
        if not isinstance(param, QgsProcessingParameterMultipleLayers | QgsProcessingParameterRasterLayer):
            continue
        values = parameters.get(param.name()) or []
        for value in values if isinstance(values, list | tuple) else [values]:
            if isinstance(value, str) and QgsProcessingUtils.mapLayerFromString(value, context) is None:
                bad.append(f"{param.name()}: {value} is not a raster layer or a raster file QGIS can open")
    for name in models:
        model = (alg.parameterAsFile(parameters, name, context) or "").strip()
        problem = model_file_problem(model) if model else None
        if problem is None and model and Path(model).suffix.lower() != ".onnx":  # QGIS's file filter refused it
            problem = f"{Path(model).name}: not an ONNX model file (.onnx)"
        if problem:
            bad.append(f"{name}: {problem}")
    return ok and not bad, "; ".join(bad) or message


def extent_parameter(alg: QgsProcessingAlgorithm, parameters: dict, name: str, context: QgsProcessingContext
                     ) -> tuple[tuple[float, float, float, float] | None, str | None]:
    """An extent parameter as (xmin, ymin, xmax, ymax) and its CRS (EPSG:n, else WKT; None: the S2 grid's), or
    (None, None) when unset; read on the main thread (an extent may come from a layer)."""
    if parameters.get(name) in (None, ""):
        return None, None
    return extent_values(alg.parameterAsExtent(parameters, name, context),
                         alg.parameterAsExtentCrs(parameters, name, context))


@contextmanager
def core_errors(feedback: QgsProcessingFeedback | None = None) -> Iterator[None]:
    """Errors of the core as QgsProcessingException: the core's message for bad input and cancel;
    anything unexpected named in one line, its traceback in the log's debug output only."""
    try:
        yield
    except QgsProcessingException:
        raise
    except DensifyError as exc:
        raise QgsProcessingException(str(exc)) from exc
    except Exception as exc:  # noqa: BLE001 (shown as a message, not a traceback)
        if feedback is not None:
            feedback.pushDebugInfo(traceback.format_exc())
        raise QgsProcessingException(failure_message(exc)) from exc
