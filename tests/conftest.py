"""Shared fixtures: the real data in ../shared, a headless QGIS when a test needs one."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("DENSIFY_SHARED", ROOT.parent / "shared"))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# never let GDAL write .aux.xml side files (statistics, histograms) next to the shared real data
os.environ["GDAL_PAM_ENABLED"] = "NO"


# Under CI a skipped test is a failure (a package that did not import, a model file that is not there,
# missing data), except for these reasons: the build bundles no Pix2Pix model (models/pix2pix.md), and a
# test of the no-GPU path on a machine that has one.
CI_ALLOWED_SKIPS = ("no models/pix2pix.onnx bundled", "a GPU is present")
IN_CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")
_SKIPPED: list[tuple[str, str]] = []


def _skip_reason(report) -> str:
    longrepr = report.longrepr
    return str(longrepr[2]) if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)


def pytest_collectreport(report) -> None:  # a module-level importorskip / skip
    if report.skipped:
        _SKIPPED.append((report.nodeid, _skip_reason(report)))


def pytest_runtest_logreport(report) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):  # an expected failure is not a skip
        _SKIPPED.append((report.nodeid, _skip_reason(report)))


def pytest_sessionfinish(session, exitstatus) -> None:
    unexpected = [(n, r) for n, r in _SKIPPED if not any(a in r for a in CI_ALLOWED_SKIPS)]
    if IN_CI and unexpected:
        for node, reason in unexpected:
            print(f"\nCI: {node} was skipped ({reason}): CI must run it", file=sys.stderr)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _need(path: Path) -> Path:
    if not path.exists():
        msg = f"real data missing: {path}"
        if IN_CI:
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
def qgis_app(tmp_path_factory):
    """One headless QgsApplication for the whole session, with Processing initialised; its settings (QgsSettings)
    in a temporary folder, never in the user's QGIS profile."""
    from osgeo import gdal
    from qgis.core import QgsApplication
    from qgis.PyQt.QtCore import QSettings

    # QGIS computes histograms when it styles a layer and GDAL would save them as .aux.xml
    # side-car files next to the inputs: never write into the shared (read-only) data
    gdal.SetConfigOption("GDAL_PAM_ENABLED", "NO")
    app = QgsApplication.instance()
    if app is None:
        QgsApplication.setPrefixPath("/usr", True)
        app = QgsApplication([], False)
        app.initQgis()
    settings = str(tmp_path_factory.mktemp("qgis_settings"))
    for kind in (QSettings.NativeFormat, QSettings.IniFormat):
        QSettings.setPath(kind, QSettings.UserScope, settings)
    plugins = os.environ.get("QGIS_PLUGINPATH_SYSTEM", "/usr/share/qgis/python/plugins")
    if plugins not in sys.path:  # Processing ships as a QGIS core plugin, outside site-packages
        sys.path.append(plugins)
    import processing  # noqa: F401  (system plugin path)
    from processing.core.Processing import Processing

    Processing.initialize()
    yield app


_PROVIDERS: list = []  # the densify Processing providers registered for the tests, kept referenced


def _register_densify_provider():
    """The registry's densify provider, added if absent; a Python reference is kept (a provider
    added without one loses its algorithms when the wrapper is collected)."""
    from qgis.core import QgsApplication
    from sentinel_densify.plugin.processing.provider import DensifyProvider

    registry = QgsApplication.processingRegistry()
    provider = registry.providerById("densify")
    if provider is None:
        provider = DensifyProvider()
        assert registry.addProvider(provider)
    _PROVIDERS.append(provider)
    return provider


@pytest.fixture(scope="session")
def densify_provider(qgis_app):
    """The plugin's Processing provider, registered once for the whole session and kept alive.

    A test that unloads the plugin (tests/test_plugin.py) deletes it; it is then registered
    again after that test, so later tests find `densify:*` algorithms in the registry (look the
    provider up with `registry.providerById("densify")` rather than keeping the object)."""
    return _register_densify_provider()


@pytest.fixture(autouse=True)
def _densify_provider_stays_registered():
    """After each test: if the session provider was removed (and so deleted), register it again."""
    yield
    if not _PROVIDERS:
        return
    from qgis.core import QgsApplication
    from qgis.PyQt import sip

    if sip.isdeleted(_PROVIDERS[-1]) or QgsApplication.processingRegistry().providerById("densify") is None:
        _register_densify_provider()


@pytest.fixture(scope="session")
def uds_subset(uds_dir) -> dict[str, list[Path]]:
    """A fast slice of the real 31UDS series: 20 S2 dates (2018-01 to 2018-04) with their SCL masks,
    and the S1 acquisitions from 10 days before to 10 days after (about 30)."""
    s2 = sorted((uds_dir / "S2").glob("*_L2A_10m.tif"))[30:50]
    stamp = [p.name.split("_")[1] for p in s2]
    masks = [p for p in sorted((uds_dir / "S2").glob("*_SCL_20m.tif")) if p.name.split("_")[1] in stamp]
    first, last = stamp[0][:8], stamp[-1][:8]

    def near(p: Path) -> bool:
        day = p.name.split("_")[4][:8]
        return _shift(first, -10) <= day <= _shift(last, 10)

    s1 = [p for p in sorted((uds_dir / "S1").glob("*.tif")) if near(p)]
    return {"s2": s2, "masks": masks, "s1": s1}


def _shift(yyyymmdd: str, days: int) -> str:
    import datetime as dt

    return (dt.datetime.strptime(yyyymmdd, "%Y%m%d") + dt.timedelta(days=days)).strftime("%Y%m%d")


@pytest.fixture(scope="session")
def corrupt_copy():
    """corrupt_copy(src, dst): a copy of a real raster whose header reads but whose pixel blocks do
    not (a damaged or truncated file)."""

    def make(src: Path, dst: Path) -> Path:
        import rasterio

        with rasterio.open(src) as ds:
            profile, data, tags, descriptions = ds.profile, ds.read(), ds.tags(), ds.descriptions
        profile.update(compress="deflate", tiled=True, blockxsize=16, blockysize=16)
        with rasterio.open(dst, "w", **profile) as out:
            out.write(data)
            out.update_tags(**tags)
            out.descriptions = descriptions
        raw = bytearray(dst.read_bytes())
        middle = len(raw) // 2
        raw[middle:middle + 2000] = b"\xab" * 2000
        dst.write_bytes(bytes(raw))
        return dst

    return make


class _DensifyCli:
    """`densify ARGS...` in a subprocess, as a user runs it (the venv's entry point, else the module)."""

    def __init__(self):
        entry = ROOT / ".venv" / "bin" / "densify"
        self.command = [str(entry)] if entry.exists() else [sys.executable, "-m", "sentinel_densify.core.cli"]

    def __call__(self, *args: str, preexec=None, timeout: int = 300):
        import subprocess

        env = dict(os.environ, QT_QPA_PLATFORM="offscreen", GDAL_PAM_ENABLED="NO")
        return subprocess.run(self.command + list(args), capture_output=True, text=True, timeout=timeout,
                              env=env, preexec_fn=preexec)


@pytest.fixture(scope="session")
def densify():
    """densify(*args, preexec=None, timeout=300) -> CompletedProcess; densify.command is the argv prefix."""
    return _DensifyCli()
