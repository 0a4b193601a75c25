"""The background QgsTask running `core.engine.run_series`, and the main-thread reporting of its outcome.

The worker thread only sees the DensifyRequests (paths and parameters collected on the main thread);
layers, the project and the message bar are touched in `finished`, which QGIS calls on the main thread.
"""

from __future__ import annotations

import traceback
import uuid
from collections.abc import Callable
from pathlib import Path

from qgis.core import Qgis, QgsApplication, QgsMessageLog, QgsProject, QgsTask
from qgis.PyQt.QtCore import Qt, pyqtSignal

from ..core.errors import Cancelled, DensifyError, failure_message
from ..core.progress import Feedback
from ..core.request import OUTPUT_KINDS, DensifyRequest, DensifyResult
from .layers import add_result_layers, common_limits, method_label, output_tags

LOG_TAG = "Sentinel Densify"

# tasks alive in the task manager: Python must keep a reference until they finish
_RUNNING: set[DensifyTask] = set()


def title(requests: list[DensifyRequest]) -> str:
    """"Densify 2018-07-01", or "Densify 2018-06-01 to 2018-09-01 (10 dates)" for a series."""
    first, last = requests[0].target_date, requests[-1].target_date
    return f"Densify {first:%Y-%m-%d}" + (f" to {last:%Y-%m-%d} ({len(requests)} dates)" if len(requests) > 1 else "")


class DensifyTask(QgsTask):
    """Runs a DensifyRequest, or the requests of a series of dates (engine.series_requests), in a worker
    thread with progress and cancel; no output on cancel. `warned` carries each warning about the inputs (striped
    files, partial S1 coverage...) to the main thread as soon as the core has it, before the run's work."""

    warned = pyqtSignal(str)

    def __init__(self, request: DensifyRequest | list[DensifyRequest],
                 on_finished: Callable[[DensifyTask], None] | None = None):
        self.requests = list(request) if isinstance(request, list) else [request]
        super().__init__(title(self.requests), QgsTask.CanCancel)
        from ..core import engine  # imported here, on the main thread, so a broken core fails early

        self._run = engine.run_series
        self.request = self.requests[0]
        self.on_finished = on_finished
        self.results: list[DensifyResult] = []  # one per date
        self.limits: dict = {}  # a series' common stretch of its layers (layers.common_limits)
        self.error: str | None = None  # message for the user (str(exc) of a core error)
        self.details: str | None = None  # traceback of an unexpected error, for the log only
        self.message = ""
        self.feedback = Feedback(progress=self._progress, is_cancelled=self.isCanceled, warn=self.warned.emit)
        self.done = False  # set once finished() has run (outcome reported)
        self.cancelled = False
        self._out_dir_existed = Path(self.request.out_dir).exists()
        self._existed = {p: p.exists() for p in self.output_paths()}

    @property
    def result(self) -> DensifyResult | None:
        """The result of the first (or only) date."""
        return self.results[0] if self.results else None

    def output_paths(self) -> list[Path]:
        """Every output file of this run's dates."""
        return [r.output_path(k) for r in self.requests for k in OUTPUT_KINDS]

    # worker thread --------------------------------------------------------------------------
    def _progress(self, percent: float, message: str) -> None:
        self.message = message
        self.setProgress(percent)

    def run(self) -> bool:
        try:
            self.results = self._run(self.requests, self.feedback)
            if len(self.results) > 1:  # a series: one stretch for all its dates (read here, off the main thread)
                self.limits = common_limits([r.outputs for r in self.results])
        except Cancelled:
            return False
        except DensifyError as exc:
            self.error = str(exc)
            return False
        except Exception as exc:  # reported in the message bar and log
            self.error = failure_message(exc)
            self.details = traceback.format_exc()
            return False
        return not self.isCanceled()

    # main thread ----------------------------------------------------------------------------
    def discard_outputs(self) -> list[Path]:
        """Remove the outputs this run created (a cancel that came after the last write)."""
        removed = []
        paths = self.output_paths() + [Path(p) for r in self.results for p in r.outputs.values()]
        for path in dict.fromkeys(paths):
            if not self._existed.get(path, False) and path.exists():
                path.unlink()
                removed.append(path)
                aux = Path(str(path) + ".aux.xml")
                if aux.exists():
                    aux.unlink()
        out_dir = Path(self.request.out_dir)
        if not self._out_dir_existed and out_dir.is_dir() and not any(out_dir.iterdir()):
            out_dir.rmdir()
        return removed

    def finished(self, ok: bool) -> None:
        """Called by the task manager on the main thread (the C++ task is deleted soon after)."""
        self.cancelled = self.isCanceled() and self.error is None
        if not ok or self.cancelled:
            try:
                self.discard_outputs()
            except OSError as exc:  # reported, and the outcome still goes to the user
                QgsMessageLog.logMessage(f"could not remove a partial output: {exc}", LOG_TAG, Qgis.Warning)
            self.results = [] if self.cancelled else self.results
        _RUNNING.discard(self)
        try:
            if self.on_finished is not None:
                self.on_finished(self)
        except Exception:  # noqa: BLE001 (never into C++: the log gets it, QGIS goes on)
            QgsMessageLog.logMessage(f"{self.description()}: reporting the outcome failed\n"
                                     f"{traceback.format_exc()}", LOG_TAG, Qgis.Critical)
        finally:
            self.done = True


def report(task: DensifyTask, project: QgsProject | None = None, message_bar=None,
           project_changed: bool = False) -> list:
    """Add the styled result group (success) or show the error / cancel; returns the layers added.
    `project_changed`: the project was closed or replaced during the run, so the results are only
    named (they belong to the project they were asked for, not to whatever is open now)."""
    heading = title(task.requests)

    def push(text: str, level: Qgis.MessageLevel) -> None:
        _push(heading, message_bar, text, level)

    if task.results and not task.cancelled:
        result = task.result
        folder = Path(next(iter(result.outputs.values()))).parent
        layers = []
        if project_changed:
            push(f"The project was closed or replaced while Densify ran: the results were written to {folder} "
                 "and not added to the project now open.", Qgis.Warning)
        else:
            series = uuid.uuid4().hex  # its dates' groups in date order, the earliest on top (layers.new_group)
            try:
                for res in task.results:  # one group per date
                    layers += add_result_layers(res.outputs, res.target_date, project, task.limits, series)[1]
            except Exception as exc:  # noqa: BLE001 (a message, never a traceback)
                QgsMessageLog.logMessage(traceback.format_exc(), LOG_TAG, Qgis.Critical)
                push(f"The results were written but could not be added to the project: {exc}", Qgis.Critical)
                return layers
            modes = ", ".join(dict.fromkeys(res.mode for res in task.results))
            method = method_label(output_tags(result.outputs["synthesized"])) or result.method  # as the layers say
            push(f"{modes}, {method} ({result.provider}), {result.seconds:.1f} s; written to {folder}", Qgis.Success)
        for warning in task.feedback.unshown(w for res in task.results for w in res.warnings):  # the others: `warned`
            push(warning, Qgis.Warning)
        return layers
    if task.error is not None:
        if task.details:
            QgsMessageLog.logMessage(task.details, LOG_TAG, Qgis.Critical)
        push(task.error, Qgis.Critical)
    else:
        push("Cancelled: no output was written.", Qgis.Info)
    return []


def _push(heading: str, message_bar, text: str, level: Qgis.MessageLevel) -> None:
    """A message in the log and, where there is one, the message bar (an error stays until closed)."""
    QgsMessageLog.logMessage(text, LOG_TAG, level)
    if message_bar is not None:
        message_bar.pushMessage(heading, text, level, 0 if level == Qgis.Critical else 8)


def create(request: DensifyRequest | list[DensifyRequest], project: QgsProject | None = None, message_bar=None,
           on_done: Callable[[DensifyTask, list], None] | None = None) -> DensifyTask:
    """A task whose outcome goes to the project (result group) and the message bar; if that project
    is cleared (closed, or another one opened) before the run ends, the outcome is only reported."""
    target = project or QgsProject.instance()
    changed = [False]

    def on_cleared() -> None:
        changed[0] = True

    def finished(task: DensifyTask) -> None:
        try:
            target.cleared.disconnect(on_cleared)
        except (TypeError, RuntimeError):  # already gone with its project
            pass
        layers = report(task, project, message_bar, project_changed=changed[0])
        if on_done is not None:
            on_done(task, layers)

    task = DensifyTask(request, finished)
    heading = task.description()
    # queued: emitted in the worker thread, shown on the main thread (the message bar is a widget)
    task.warned.connect(lambda text: _push(heading, message_bar, text, Qgis.Warning), Qt.QueuedConnection)
    target.cleared.connect(on_cleared)  # once the task exists: its finished() disconnects it
    return task


def queued_outputs() -> set[str]:
    """Output paths of the runs queued or running now."""
    return {str(p) for t in _RUNNING for p in t.output_paths()}


def launch(task: DensifyTask) -> DensifyTask:
    """Queue a task in QGIS's task manager (progress and cancel in the task bar)."""
    _RUNNING.add(task)
    QgsApplication.taskManager().addTask(task)
    return task


def start(request: DensifyRequest, project: QgsProject | None = None, message_bar=None,
          on_done: Callable[[DensifyTask, list], None] | None = None) -> DensifyTask:
    """Create and queue a run."""
    return launch(create(request, project, message_bar, on_done))
