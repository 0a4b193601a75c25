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
    script = VENV / "bin" / "densify"
    script.write_text(
        f"#!{VENV / 'bin' / 'python'}\n"
        "import sys\n"
        "from sentinel_densify.core.cli import main\n"
        "sys.exit(main())\n"
    )
    os.chmod(script, 0o755)
    print(f"linked {link} -> {ROOT}; wrote {script}")


if __name__ == "__main__":
    main()
