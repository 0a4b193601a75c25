"""Make this checkout importable as `sentinel_densify` in the venv and install `densify`.

The repository root is the QGIS plugin folder, so it is linked as
.venv/pkgroot/sentinel_densify and that folder is put on the venv's path with a .pth file.
"""

from __future__ import annotations

import os
import site
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = Path(sys.prefix)


def main() -> None:
    pkgroot = VENV / "pkgroot"
    pkgroot.mkdir(exist_ok=True)
    link = pkgroot / "sentinel_densify"
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(ROOT, target_is_directory=True)
    site_dir = Path(site.getsitepackages()[0])
    (site_dir / "sentinel_densify.pth").write_text(f"{pkgroot}\n")
    script = write_script(VENV / "bin" / "densify", VENV / "bin" / "python")
    print(f"linked {link} -> {ROOT}; wrote {script}")


def write_script(script: Path, python: Path) -> Path:
    """Write the `densify` script run by `python` (replacing any earlier one whole).

    The `__main__` guard matters where worker processes are spawned (macOS, Windows): each worker runs the
    main script again as `__mp_main__`, and must not run the command (curate's and train's workers)."""
    partial = script.with_name(f".{script.name}.partial")
    partial.write_text(
        f"#!{python}\n"
        "import sys\n"
        "from sentinel_densify.core.cli import main\n"
        "if __name__ == \"__main__\":\n"
        "    sys.exit(main())\n"
    )
    os.chmod(partial, 0o755)
    os.replace(partial, script)
    return script


if __name__ == "__main__":
    main()
