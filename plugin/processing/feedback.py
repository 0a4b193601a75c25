"""Bridge from a QgsProcessingFeedback to the core's Feedback (progress, messages, cancel)."""

from __future__ import annotations

from qgis.core import QgsProcessingFeedback

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
