"""Bridge from a QgsProcessingFeedback to the core's Feedback (progress, messages, cancel)."""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
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
from ..layers import extent_values, source_path

OutputFiles = Callable[[], Iterable[tuple[str, str]]]  # the files a run would write: (parameter name, path)


def open_files_locked() -> bool:
    """Whether a file QGIS has open cannot be replaced: on Windows (GDAL opens files without FILE_SHARE_DELETE).
    Elsewhere a replaced file is shown by the layers on it (styling.reopen)."""
    return os.name == "nt"


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
                   models: Sequence[str] = (), outputs: OutputFiles | None = None) -> tuple[bool, str]:
    """QGIS's own parameter check, its message ("Incorrect parameter value for S2_LAYERS") replaced
    by one naming each layer input QGIS cannot open, and each model file (the parameters `models`) the
    core would refuse, in the core's words (a PyTorch checkpoint: export it first; a folder; a missing file);
    on Windows, each of the `outputs` files that a project layer holds open (see loaded_output_problems)."""
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
    if ok and outputs is not None and open_files_locked():
        bad += loaded_output_problems(outputs(), context)
    return ok and not bad, "; ".join(bad) or message


def destination_files(alg: QgsProcessingAlgorithm, parameters: dict, context: QgsProcessingContext,
                      names: Sequence[str]) -> list[tuple[str, str]]:
    """The files of the destination parameters `names` that are set, as (name, path)."""
    files = [(name, alg.parameterAsFileOutput(parameters, name, context)) for name in names
             if parameters.get(name) not in (None, "")]
    return [(name, path) for name, path in files if path]


def loaded_output_problems(files: Iterable[tuple[str, str]], context: QgsProcessingContext) -> list[str]:
    """Each output file (parameter name, path) that is the source of a layer in the context's project, refused before
    the run: Windows cannot replace a file QGIS holds open, so the run would fail after all its work."""
    from ...core.inventory import file_key  # the core's rasterio imports: not at plugin load

    project = context.project()
    if project is None:
        return []
    loaded = {}  # each layer's file (inventory.file_key: device and inode) -> the layer's name: one stat per file
    for layer in project.mapLayers().values():
        if (path := source_path(layer)) and not path.startswith("/vsi") and (key := file_key(path)):
            loaded.setdefault(key, layer.name())
    problems = []
    for name, out in files:
        if (layer := loaded.get(file_key(out))) is not None:  # a loaded file exists
            problems.append(f'{name}: {out} is the file of the layer "{layer}" in the project, which QGIS keeps '
                            "open, and Windows cannot replace an open file: remove the layer from the project or "
                            "choose another file")
    return problems


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
