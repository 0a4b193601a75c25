"""Bridge from a QgsProcessingFeedback to the core's Feedback (progress, messages, cancel)."""

from __future__ import annotations

import traceback
from collections.abc import Iterator
from contextlib import contextmanager

from qgis.core import QgsProcessingException, QgsProcessingFeedback

from ...core.errors import DensifyError, failure_message
from ...core.progress import Feedback


def core_feedback(feedback: QgsProcessingFeedback | None) -> Feedback:
    """A core Feedback reporting into Processing's progress bar and log, cancelled by its button."""
    if feedback is None:
        return Feedback()
    last = [""]

    def progress(percent: float, message: str) -> None:
        feedback.setProgress(percent)
        if message and message != last[0]:
            last[0] = message
            feedback.setProgressText(message)

    return Feedback(progress=progress, is_cancelled=feedback.isCanceled)


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
