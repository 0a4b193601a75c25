"""Zip archives as inputs: a downloaded Sentinel-2 product (S2B_MSIL2A_....SAFE.zip) is read in place,
each raster in it through GDAL's /vsizip/ path, without unzipping."""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath

PREFIX = "/vsizip/"


def is_zip(path: str | Path) -> bool:
    return str(path).lower().endswith(".zip")


def split(path: str) -> tuple[str, str] | None:
    """(archive, member) of a /vsizip/ path; None for any other path."""
    if not path.startswith(PREFIX):
        return None
    inner = path[len(PREFIX):]
    cut = inner.lower().find(".zip/")
    if cut < 0:
        return (inner, "") if is_zip(inner) else None
    return inner[:cut + 4], inner[cut + 5:]


def members(archive: str | Path, keep: Callable[[str], bool]) -> list[str]:
    """The /vsizip/ paths of the files in `archive` that `keep` (given that path) accepts, sorted.

    Raises OSError naming the problem when the archive cannot be read."""
    try:
        with zipfile.ZipFile(archive) as z:
            names = [i.filename for i in z.infolist() if not i.is_dir()]
    except (zipfile.BadZipFile, OSError) as e:
        raise OSError(f"not a readable zip archive ({e})") from e
    root = Path(archive).resolve()
    paths = [f"{PREFIX}{root}/{n}" for n in names
             if not any(part.startswith((".", "__MACOSX")) for part in PurePosixPath(n).parts)]
    return sorted(p for p in paths if keep(p))


def read_near(path: str, names: tuple[str, ...], levels: int = 7) -> tuple[str, bytes] | None:
    """The first of `names` found in the folders above a /vsizip/ member (nearest first, up to `levels`
    folders), as (name, content); None when there is none or `path` is not in an archive."""
    parts = split(path)
    if parts is None:
        return None
    archive, member = parts
    try:
        with zipfile.ZipFile(archive) as z:
            present = set(z.namelist())
            for folder in list(PurePosixPath(member).parents)[:levels]:
                for name in names:
                    inner = name if str(folder) == "." else f"{folder}/{name}"
                    if inner in present:
                        return name, z.read(inner)
    except (zipfile.BadZipFile, OSError):
        return None
    return None


def unzipped_beside(archive: Path) -> bool:
    """Whether the product in `archive` also lies unzipped next to it (X.SAFE.zip or X.zip beside X.SAFE):
    a folder search then reads the folder only."""
    stem = archive.name[:-4]
    return any((archive.parent / n).is_dir() for n in {stem, stem.removesuffix(".SAFE") + ".SAFE"})
