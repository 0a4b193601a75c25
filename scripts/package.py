"""Build the plugin zip for QGIS "Install from ZIP": one top folder `sentinel_densify/`.

Usage: python scripts/package.py dist/sentinel_densify.zip

Ships what the plugin needs at run time (metadata, icon, classFactory, plugin/, ui/, core/ with
its data, bundled models, README/LICENSE); leaves out tests, benchmarks, scripts, docs, build
and dev files, caches and virtual environments.
"""

from __future__ import annotations

import argparse
import configparser
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOP = "sentinel_densify"
INCLUDE = ["__init__.py", "metadata.txt", "icon.png", "README.md", "LICENSE",
           "plugin", "ui", "core", "models"]
EXCLUDE_DIRS = {"__pycache__", ".pytest_cache", ".ruff_cache", ".venv", ".git", "tests", "runs"}
EXCLUDE_SUFFIXES = {".pyc", ".pyo", ".pt", ".ckpt", ".pth", ".log", ".orig", ".rej", ".swp"}
MAX_FILE_MB = 100  # plugins.qgis.org rejects larger packages; a model this big belongs in a download


def plugin_files(root: Path = ROOT) -> list[Path]:
    """Files to ship, relative to the repository root, sorted."""
    files = []
    for name in INCLUDE:
        path = root / name
        if path.is_file():
            files.append(path)
        elif path.is_dir():
            for f in path.rglob("*"):
                rel = f.relative_to(root)
                if (f.is_file() and not EXCLUDE_DIRS.intersection(rel.parts)
                        and f.suffix.lower() not in EXCLUDE_SUFFIXES and not f.name.startswith(".")):
                    files.append(f)
    return sorted({f.relative_to(root) for f in files})


def check_metadata(root: Path = ROOT) -> dict[str, str]:
    """The [general] section of metadata.txt; SystemExit when a required key is missing."""
    parser = configparser.ConfigParser()  # with interpolation, as QGIS and the plugin repository read it
    parser.read(root / "metadata.txt", encoding="utf-8")
    try:
        meta = dict(parser["general"]) if parser.has_section("general") else {}
    except configparser.Error as exc:  # e.g. a lone % in the changelog: QGIS shows no changelog, the site refuses it
        raise SystemExit(f"metadata.txt cannot be read as QGIS reads it: {exc}") from None
    required = ["name", "qgisminimumversion", "description", "about", "version", "author", "email",
                "repository", "tracker"]
    missing = [k for k in required if not meta.get(k)]
    if missing:
        raise SystemExit(f"metadata.txt lacks {', '.join(missing)}")
    if meta.get("icon") and not (root / meta["icon"]).is_file():
        raise SystemExit(f"metadata.txt names icon {meta['icon']}, which does not exist")
    return meta


def build(out: Path, root: Path = ROOT) -> Path:
    meta = check_metadata(root)
    files = plugin_files(root)
    big = [f for f in files if (root / f).stat().st_size > MAX_FILE_MB * 2**20]
    if big:
        raise SystemExit(f"files over {MAX_FILE_MB} MB: {', '.join(map(str, big))}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for rel in files:
            zf.write(root / rel, f"{TOP}/{rel.as_posix()}")
    tmp.replace(out)
    print(f"{out}: {meta['name']} {meta['version']}, {len(files)} files, {out.stat().st_size / 1e6:.1f} MB")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", nargs="?", default="dist/sentinel_densify.zip", type=Path)
    build(p.parse_args(argv).out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
