"""Progress and cancellation callbacks shared by the engine, trainers and shells."""

from __future__ import annotations

from collections.abc import Callable

from .errors import Cancelled

ProgressFn = Callable[[float, str], None]
CancelFn = Callable[[], bool]
WarnFn = Callable[[str], None]


class Feedback:
    """Reports progress (0-100), checks for cancellation and shows warnings as soon as they are known (a long run's
    warnings about its inputs come before its work, not after); shells pass their own callables."""

    def __init__(self, progress: ProgressFn | None = None, is_cancelled: CancelFn | None = None,
                 warn: WarnFn | None = None):
        self._progress = progress
        self._is_cancelled = is_cancelled
        self._warn = warn
        self.shown: list[str] = []  # the warnings `warn` has shown (a result lists them again: see `unshown`)

    def report(self, percent: float, message: str = "") -> None:
        if self._progress is not None:
            self._progress(max(0.0, min(100.0, float(percent))), message)

    def cancelled(self) -> bool:
        return bool(self._is_cancelled and self._is_cancelled())

    def warn(self, message: str) -> None:
        """Show a warning now, once, where the shell has a place for it (else it waits for the result's warnings)."""
        if self._warn is not None and message not in self.shown:
            self.shown.append(message)
            self._warn(message)

    def unshown(self, warnings) -> list[str]:
        """`warnings` without repeats and without those `warn` has shown already."""
        return [w for w in dict.fromkeys(warnings) if w not in self.shown]

    def check(self) -> None:
        """Raise Cancelled when the user asked to stop."""
        if self.cancelled():
            raise Cancelled()

    def sub(self, start: float, end: float) -> Feedback:
        """A feedback mapping 0-100 onto [start, end] of this one."""
        parent = self

        def progress(p: float, m: str) -> None:
            parent.report(start + (end - start) * p / 100.0, m)

        child = Feedback(progress, self._is_cancelled, self._warn)
        child.shown = self.shown  # one record: either one's `unshown` knows what both showed
        return child
