"""Errors the core raises for bad input: one message listing every problem."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Problem:
    """One problem with one input (or with the request as a whole when path is None)."""

    path: str | None
    message: str

    def __str__(self) -> str:
        if self.path is None:
            return self.message
        return f"{Path(self.path).name}: {self.message}"


class DensifyError(Exception):
    """Base class of the errors shown to users as a message, never as a traceback."""


GROUP_FROM = 3  # this many files with one problem are named once, as "N files (a, b, c, ...): problem"


def short_list(items: list[str], k: int = 3) -> str:
    """A short list of names for a message: the first k, then how many more."""
    return ", ".join(items[:k]) + (f" and {len(items) - k} more" if len(items) > k else "")


def _grouped(problems: list[Problem]) -> list[str]:
    """The problems as text, in order; one problem shared by GROUP_FROM files or more said once."""
    by_message: dict[str, list[Problem]] = {}
    for p in problems:
        by_message.setdefault(p.message, []).append(p)
    out: list[str] = []
    for message, same in by_message.items():
        files = [Path(p.path).name for p in same if p.path is not None]
        if len(files) >= GROUP_FROM:
            shown = ", ".join(files[:3]) + (", ..." if len(files) > 3 else "")
            out.append(f"{len(files)} files ({shown}): {message}")
            out += [str(p) for p in same if p.path is None]
        else:
            out += [str(p) for p in same]
    return out


class InputError(DensifyError):
    """Bad input: carries every problem found, each naming its file."""

    def __init__(self, problems: list[Problem] | Problem | str):
        if isinstance(problems, str):
            problems = [Problem(None, problems)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems = list(problems)
        super().__init__(self.message)

    @property
    def message(self) -> str:
        if len(self.problems) == 1:
            return f"Bad input: {self.problems[0]}"
        return f"Bad input ({len(self.problems)} problems): {'; '.join(_grouped(self.problems))}"


class Cancelled(DensifyError):
    """The run was cancelled; nothing was written."""

    def __init__(self, message: str = "Cancelled: no output was written."):
        super().__init__(message)


def failure_message(exc: BaseException) -> str:
    """One line for an unexpected error (not a DensifyError), as the shells show it; a missing
    Python package is named with what to do about it."""
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        return missing_package_message(exc.name)
    return f"Densify failed: {type(exc).__name__}: {exc}"


def missing_package_message(module: str) -> str:
    """What to tell a user whose Python lacks `module` (e.g. QGIS's Python without rasterio)."""
    package = module.split(".")[0]
    return (f"Densify needs the Python package '{package}', which the Python running it cannot import: "
            "install it into that Python (for QGIS, the one QGIS runs; see the README, 'QGIS plugin').")
