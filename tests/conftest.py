"""Shared fixtures: the real data in ../shared, a headless QGIS when a test needs one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("DENSIFY_SHARED", ROOT.parent / "shared"))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def _need(path: Path) -> Path:
    if not path.exists():
        msg = f"real data missing: {path}"
        if os.environ.get("CI"):
            pytest.fail(msg)  # CI must not pass by skipping the real-data tests
        pytest.skip(msg)
    return path


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return _need(SHARED)


@pytest.fixture(scope="session")
def uds_dir(shared_dir) -> Path:
    """The real 31UDS series: S2/ (L2A + SCL) and S1/ folders."""
    return _need(shared_dir / "data" / "worldcereal-31UDS-2017")


@pytest.fixture(scope="session")
def sen12_dir(shared_dir) -> Path:
    return _need(shared_dir / "data" / "sen12mscr-sample")


@pytest.fixture(scope="session")
def snap_dir(shared_dir) -> Path:
    return _need(shared_dir / "reference" / "snap_lai_v3")


@pytest.fixture(scope="session")
def points_file(shared_dir) -> Path:
    return _need(shared_dir / "data" / "worldcereal-points-FRA-2023" / "2023_FRA_LPIS_POLY_110.geoparquet")


@pytest.fixture(scope="session")
def qgis_app():
    """One headless QgsApplication for the whole session, with Processing initialised."""
    from qgis.core import QgsApplication

    app = QgsApplication.instance()
    if app is None:
        QgsApplication.setPrefixPath("/usr", True)
        app = QgsApplication([], False)
        app.initQgis()
    import processing  # noqa: F401  (system plugin path)
    from processing.core.Processing import Processing

    Processing.initialize()
    yield app
