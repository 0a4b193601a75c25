"""Progress and cancellation callbacks shared by the engine, trainers and shells."""

from __future__ import annotations

from collections.abc import Callable

from .errors import Cancelled

ProgressFn = Callable[[float, str], None]
CancelFn = Callable[[], bool]


class Feedback:
    """Reports progress (0-100) and checks for cancellation; shells pass their own callables."""

    def __init__(self, progress: ProgressFn | None = None, is_cancelled: CancelFn | None = None):
        self._progress = progress
        self._is_cancelled = is_cancelled

    def report(self, percent: float, message: str = "") -> None:
        if self._progress is not None:
            self._progress(max(0.0, min(100.0, float(percent))), message)

    def cancelled(self) -> bool:
        return bool(self._is_cancelled and self._is_cancelled())

    def check(self) -> None:
        """Raise Cancelled when the user asked to stop."""
        if self.cancelled():
            raise Cancelled()

    def sub(self, start: float, end: float) -> Feedback:
        """A feedback mapping 0-100 onto [start, end] of this one."""
        parent = self

        def progress(p: float, m: str) -> None:
            parent.report(start + (end - start) * p / 100.0, m)

        return Feedback(progress, self._is_cancelled)
