"""Write files under a temporary name and rename them into place, so none is ever half-written.

Also the checks the shells run on output paths before any computation.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from glob import escape as glob_escape
from pathlib import Path
from typing import Protocol

from .errors import DensifyError

GEOTIFF_SUFFIXES = (".tif", ".tiff")  # the raster outputs' names (they are written as GeoTIFF)


class OutputError(DensifyError, OSError):
    """An output cannot be (or was not) written; the message names it. Nothing partial is left."""


def first_line(exc: BaseException) -> str:
    """The first line of an error's message (GDAL's can span several)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def ensure_folder(folder: Path, path: Path) -> None:
    """Create `folder` (for output `path`); OutputError naming `path` when it cannot be."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the folder {folder} for {path}: {exc.strerror or exc}") from exc


def partial_name(path: Path, suffix: str | None = None) -> Path:
    """A hidden temporary name beside `path` for its file while it is written (`.NAME.ID.partial.SUFFIX`)."""
    return path.with_name(f".{path.stem}.{uuid.uuid4().hex[:8]}.partial{path.suffix if suffix is None else suffix}")


@contextmanager
def atomic_path(path: str | Path, verify: Callable[[Path], None] | None = None) -> Iterator[Path]:
    """A hidden temporary path beside `path` (same suffix) to write to.

    When the block ends normally, `verify(tmp)` (if given) checks the file and it is renamed onto
    `path`; when the block or the check raises (cancel, crash, disk full) the temporary file is
    removed and `path` is left as it was. A failed check or rename raises OutputError naming `path`.
    """
    path = Path(path)
    ensure_folder(path.parent, path)
    tmp = partial_name(path)
    try:
        yield tmp
        if verify is not None:
            check_written(tmp, path, verify)
        place(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def check_written(tmp: Path, path: Path, verify: Callable[[Path], None]) -> None:
    """OutputError naming `path` when `verify(tmp)` finds the written file incomplete."""
    try:
        verify(tmp)
    except Exception as exc:
        raise OutputError(f"could not write {path}: the file is incomplete "
                          f"(disk full or file size limit?): {first_line(exc)}") from exc


def place(tmp: Path, path: Path) -> None:
    """Rename the finished `tmp` onto `path`; OutputError naming `path` when that fails."""
    try:
        os.replace(tmp, path)
    except OSError as exc:
        raise rename_error(path, exc) from exc


OPEN_HINT = "it may be open in another program (a layer loaded in QGIS?) or read-only"


def rename_error(path: Path, exc: OSError) -> OutputError:
    """OutputError for a failed rename onto (or aside of) `path`; a PermissionError adds OPEN_HINT (on Windows a file
    open in QGIS cannot be replaced or renamed: "Access is denied")."""
    hint = f"; {OPEN_HINT}" if isinstance(exc, PermissionError) else ""
    return OutputError(f"could not write {path}: {exc.strerror or exc}{hint}")


class TemporaryOutput:
    """An output being written under a hidden temporary name (`tmp`) beside `path`, placed by `place_together`."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        ensure_folder(self.path.parent, self.path)
        self.tmp = partial_name(self.path)

    def place(self) -> Path:
        return place_or_discard(self)

    def discard(self) -> None:
        self.tmp.unlink(missing_ok=True)


def write_texts(files: dict[Path, str], written: Sequence[TemporaryOutput] = ()) -> list[Path]:
    """Write text files that belong together (a report's .json and .md), with the outputs already `written` under
    their temporary names (curate's streamed report.csv), as one transaction (`place_together`): all or, after a
    failure or Ctrl-C, none, the earlier files left as they were."""
    outs = list(written)
    try:
        for path, text in files.items():
            outs.append(out := TemporaryOutput(path))
            try:
                out.tmp.write_text(text, encoding="utf-8")
            except OSError as exc:
                raise OutputError(f"could not write {path}: {exc.strerror or exc}") from exc
        return place_together(outs)
    finally:
        for out in outs:
            out.discard()  # the temporaries not placed (none after success)


class Placeable(Protocol):
    """A finished output under a temporary name (writer.AtomicRaster, TemporaryOutput): `place` renames it onto `path`
    (OutputError naming it when that fails), `discard` removes the temporary file."""

    path: Path

    def place(self) -> Path: ...

    def discard(self) -> None: ...


def place_together(outputs: Sequence[Placeable], left: list[Path] | None = None) -> list[Path]:
    """Put finished outputs (e.g. `AtomicRaster.finish`ed rasters) in place as one transaction; their paths.

    The file already at each path is first kept under a hidden name in the same folder (`.NAME.ID.old`): a hard link,
    so every path holds a whole file at every moment, through a crash too (renamed aside where the file system has no
    hard links, and for a symbolic link). Then each new file replaces its path (os.replace), and the kept copies are
    deleted once all are placed (those that cannot be deleted are added to `left`). On any failure (an OSError, raised
    as OutputError naming the file, or Ctrl-C) the new files are removed and the kept ones put back: every path is
    left as it was; a kept copy that cannot be put back is named in the error, and so is one left over beside the
    earlier file (on Windows a file open in QGIS can be neither replaced nor unlinked). Side files at the paths
    (`.aux.xml`) are left as they are, as `place` leaves them."""
    outputs = list(outputs)
    kept: list[tuple[Path, Path]] = []  # (path, the hidden name of its earlier file): listed before it is made
    tried: list[Placeable] = []  # listed before `place`
    try:
        for out in outputs:
            if out.path.is_symlink() or out.path.is_file():  # a folder is left for `place` to refuse
                old = out.path.with_name(f".{out.path.name}.{uuid.uuid4().hex[:8]}.old")
                kept.append((out.path, old))
                _keep(out.path, old)
        for out in outputs:
            tried.append(out)
            out.place()
    except BaseException as exc:
        had = {path for path, _old in kept}
        _each([out.discard for out in outputs]
              + [partial(out.path.unlink, missing_ok=True) for out in tried if out.path not in had]
              + [partial(_put_back, old, path) for path, old in reversed(kept)])
        if note := _rollback_note(kept):
            raise OutputError(f"{exc if isinstance(exc, OutputError) else 'interrupted'}; {note}") from exc
        raise
    stopped = None
    earlier = [old for out in outputs for old in _stale_copies(out.path)]  # copies left by earlier failed runs
    for old in dict.fromkeys([*(old for _path, old in kept), *earlier]):  # obsolete now: every new file is in place
        try:
            old.unlink(missing_ok=True)
        except OSError:
            if left is not None:
                left.append(old)
        except BaseException as exc:  # Ctrl-C: the other copies are deleted first (every new file is in place)
            stopped = stopped or exc
    if stopped is not None:
        raise stopped
    return [out.path for out in outputs]


def _stale_copies(path: Path) -> list[Path]:
    """The hidden copies (`.NAME.ID.old`) of the file at `path` that earlier runs' place_together left (a file open in
    another program on Windows could not be deleted, or one the user was told to rename back)."""
    try:
        return [p for p in path.parent.glob(f".{glob_escape(path.name)}.*.old")
                if re.fullmatch(rf"\.{re.escape(path.name)}\.[0-9a-f]{{8}}\.old", p.name)]
    except OSError:
        return []


def _keep(path: Path, old: Path) -> None:
    """Keep the file at `path` as `old` until the new one is in place: a hard link, else renamed aside."""
    if not path.is_symlink():
        try:
            os.link(path, old)
            return
        except OSError:
            pass  # no hard links here (FAT, some network shares), or not allowed: renamed aside
    try:
        os.replace(path, old)
    except OSError as exc:
        raise rename_error(path, exc) from exc


def _holds(path: Path, old: Path) -> bool:
    """Whether `path` holds the file named `old` (one file under two names; symbolic links not followed)."""
    try:
        return os.path.samestat(os.lstat(path), os.lstat(old))
    except OSError:
        return False


def _put_back(old: Path, path: Path) -> None:
    """The earlier file back at `path`: the hard link dropped where `path` still holds it, else renamed back."""
    if not os.path.lexists(old):
        return
    if _holds(path, old):
        old.unlink()
    else:
        os.replace(old, path)


def _rollback_note(kept: list[tuple[Path, Path]]) -> str:
    """After a rollback, what the user must do about kept copies still there ("" when none): one whose path does
    not hold the earlier file is to be renamed back; one beside the earlier file (a hard link that could not be
    deleted) is a leftover to delete."""
    there = [(path, old) for path, old in kept if os.path.lexists(old)]
    stranded = [(path, old) for path, old in there if not _holds(path, old)]
    spare = [str(old) for path, old in there if _holds(path, old)]
    notes = [] if stranded or not spare else ["the outputs were left as they were"]
    if stranded:
        notes.append("the earlier " + ", ".join(f"{path} is kept as {old.name}" for path, old in stranded)
                     + ": rename it back")
    if spare:
        one = len(spare) == 1
        notes.append(f"delete the leftover {'copy' if one else 'copies'} {', '.join(spare)} "
                     f"once no program has {'it' if one else 'them'} open")
    return "; ".join(notes)


def _each(steps: Iterable[Callable[[], object]]) -> BaseException | None:
    """Run every step, even after one raised (an OSError, a second Ctrl-C); the first exception raised."""
    first = None
    for step in steps:
        try:
            step()
        except BaseException as exc:
            first = first or exc
    return first


def place_or_discard(out) -> Path:
    """Rename an output's finished temporary file (`out.tmp`) onto `out.path`; on failure remove it (`out.discard`)
    and raise OutputError naming the path."""
    try:
        place(out.tmp, out.path)
    except OutputError:
        out.discard()
        raise
    return out.path


def write_text(path: str | Path, text: str) -> Path:
    """Write a text file atomically (OutputError naming `path` when it cannot be written)."""
    with atomic_path(path) as tmp:
        try:
            tmp.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise OutputError(f"could not write {path}: {exc.strerror or exc}") from exc
    return Path(path)


def _existing_ancestor(path: Path) -> tuple[Path, Path | None]:
    """(nearest existing ancestor of `path` or `path` itself, the first missing one below it)."""
    missing = None
    while not path.exists() and path.parent != path:
        missing, path = path, path.parent
    return path, missing


def _writable(folder: Path) -> bool:
    return os.access(folder, os.W_OK | os.X_OK)


def output_dir_problem(folder: str | Path, names: Iterable[str] = ()) -> str | None:
    """Why `folder` cannot receive outputs `names` (None when it can): it is a file, lies under a
    file, is not writable, or one of the output names is an existing folder."""
    if not str(folder).strip():
        return "empty path"
    folder = Path(folder).absolute()
    try:
        base, _missing = _existing_ancestor(folder)
    except OSError as exc:  # e.g. a name longer than the file system takes
        return f"cannot be used ({exc.strerror or exc})"
    if not base.is_dir():
        if base == folder:
            return "is an existing file, not a folder"
        return f"is under {base}, which is a file, not a folder"
    if not _writable(base):
        return f"{base} is not writable" if base != folder else "is not writable"
    if base == folder:
        for name in names:
            if (folder / name).is_dir():
                return f"the output {name} is an existing folder"
    return None


def output_file_problem(path: str | Path, suffix: str | tuple[str, ...] | None = None) -> str | None:
    """Why a file cannot be written at `path` (None when it can): an existing folder, not named `*<suffix>` (one of
    them) when asked for (".png"), under a file, in a folder that is not writable."""
    if not str(path).strip():
        return "empty path"
    path = Path(path).absolute()
    suffixes = (suffix,) if isinstance(suffix, str) else suffix or ()
    try:
        if path.is_dir():
            return "is an existing folder, not a file"
        if suffixes and path.suffix.lower() not in {s.lower() for s in suffixes}:
            return f"must be a {' or '.join(suffixes)} file"
        base, _missing = _existing_ancestor(path.parent)
        path.exists()  # the name itself (too long?)
    except OSError as exc:
        return f"cannot be used ({exc.strerror or exc})"
    if not base.is_dir():
        return f"is under {base}, which is a file, not a folder"
    if not _writable(base):
        return f"{base} is not writable"
    return None


def check_output_file(out: str | Path, inputs: dict[str, str | None], suffix: str | tuple[str, ...] | None = None,
                      label: str = "") -> None:
    """OutputError, before any work, when `out` cannot be written (as a `suffix` file) or is one of
    the `inputs` (option -> path; links included). `label` prefixes the name ("--out ")."""
    if problem := output_file_problem(out, suffix=suffix):
        raise OutputError(f"{label}{out}: {problem}")
    for option, path in inputs.items():
        if path and same_file(path, out):
            raise OutputError(f"{label}{out}: is the input {option} {path}; choose another output file")


def under_input_folder(out: str | Path, inputs: Iterable[str | Path | None]) -> str | None:
    """The first of `inputs` that is a folder holding `out` (or is `out`), resolved (links
    followed); None when there is none. Outputs written there would mix into the inputs."""
    try:
        target = Path(out).resolve()
    except (OSError, RuntimeError):  # RuntimeError: a symbolic link loop (Python 3.11)
        return None
    for given in inputs:
        if not given:
            continue
        folder = Path(given)
        try:
            if folder.is_dir() and (target == folder.resolve() or target.is_relative_to(folder.resolve())):
                return str(given)
        except (OSError, RuntimeError):
            continue
    return None


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether `a` and `b` are the same existing file (links included)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


@contextmanager
def new_dirs_removed_on_error(folder: str | Path) -> Iterator[None]:
    """Remove `folder` and the parents the block created, if empty, when the block raises."""
    folder = Path(folder).absolute()
    _base, top = _existing_ancestor(folder)
    created = []
    if top is not None:
        p = folder
        while True:
            created.append(p)
            if p == top:
                break
            p = p.parent
    try:
        yield
    except BaseException:
        for d in created:  # deepest first; stops at the first not empty
            try:
                d.rmdir()
            except OSError:
                break
        raise
