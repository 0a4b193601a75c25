"""The plugin as QGIS loads it: classFactory, toolbar action, Raster menu, provider, metadata, zip."""

from __future__ import annotations

import configparser
import subprocess
import sys
import types
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


class IfaceStandIn:
    """Stands in for QGIS's desktop application (QgisInterface), which cannot run headless here.

    It offers exactly the calls the plugin makes, backed by real Qt/QGIS widgets: a QMainWindow
    with a plugin toolbar and a Raster menu, and a QgsMessageBar.
    """

    def __init__(self):
        from qgis.gui import QgsMessageBar
        from qgis.PyQt.QtWidgets import QMainWindow

        self.window = QMainWindow()
        self.toolbar = self.window.addToolBar("Plugins")
        self.raster_menu = self.window.menuBar().addMenu("&Raster")
        self.submenus = {}
        self.bar = QgsMessageBar(self.window)

    def mainWindow(self):  # noqa: N802 (QGIS API names)
        return self.window

    def messageBar(self):  # noqa: N802
        return self.bar

    def addToolBarIcon(self, action):  # noqa: N802
        self.toolbar.addAction(action)

    def removeToolBarIcon(self, action):  # noqa: N802
        self.toolbar.removeAction(action)

    def addPluginToRasterMenu(self, name, action):  # noqa: N802
        if name not in self.submenus:
            self.submenus[name] = self.raster_menu.addMenu(name)
        self.submenus[name].addAction(action)

    def removePluginRasterMenu(self, name, action):  # noqa: N802
        menu = self.submenus.get(name)
        if menu is not None:
            menu.removeAction(action)
            if menu.isEmpty():
                self.raster_menu.removeAction(menu.menuAction())
                del self.submenus[name]


@pytest.fixture()
def iface(qgis_app):
    return IfaceStandIn()


def test_class_factory_adds_action_menu_and_provider_and_unload_removes_them(iface):
    import sentinel_densify
    from qgis.core import QgsApplication

    registry = QgsApplication.processingRegistry()
    before = registry.providerById("densify")
    if before is not None:  # another test module registered one: start clean
        registry.removeProvider(before)
    plugin = sentinel_densify.classFactory(iface)
    plugin.initProcessing()  # QGIS calls it first when metadata says hasProcessingProvider=yes
    plugin.initGui()
    try:
        actions = [a for a in iface.toolbar.actions() if a.text() == "Densify"]
        assert len(actions) == 1 and not actions[0].icon().isNull()
        menu_actions = [a.text() for m in iface.submenus.values() for a in m.actions()]
        assert menu_actions == ["Densify"]
        provider = registry.providerById("densify")
        assert provider is not None and provider.name() == "Sentinel Densify"
        assert {"densify:synthesize", "densify:estimate_lai"} <= {a.id() for a in provider.algorithms()}

        actions[0].trigger()  # opens the dialog on the (empty) project
        assert plugin.dialog is not None and plugin.dialog.isVisible()
        assert plugin.dialog.problems[0].startswith("No Sentinel-2 layer selected")
    finally:
        plugin.unload()
    assert [a for a in iface.toolbar.actions() if a.text() == "Densify"] == []
    assert iface.submenus == {}
    assert registry.providerById("densify") is None


def test_an_older_python_gets_a_message_not_a_broken_plugin(iface, monkeypatch):
    """QGIS 3.22 also ships with Python 3.9/3.10 (OSGeo4W, Ubuntu 22.04). The Python version is the
    one thing mocked here (this machine runs 3.11): the plugin must say what it needs, not fail."""
    import sentinel_densify
    from qgis.core import Qgis

    monkeypatch.setattr(sys, "version_info", (3, 9, 5, "final", 0))
    plugin = sentinel_densify.classFactory(iface)
    plugin.initGui()
    items = [(item.text(), item.level()) for item in iface.bar.items()]
    assert len(items) == 1 and items[0][1] == Qgis.Critical
    assert "needs Python 3.11" in items[0][0] and "3.9.5" in items[0][0]
    assert iface.toolbar.actions() == []
    plugin.unload()
    iface.bar.clearWidgets()


class _LacksRasterio(types.ModuleType):
    """A module whose names cannot be imported because a package it needs is missing."""

    def __getattr__(self, name):
        raise ModuleNotFoundError("No module named 'rasterio'", name="rasterio")


def test_a_missing_python_package_is_a_message_in_qgis_not_a_traceback(iface, monkeypatch, tmp_path):
    """A QGIS whose Python lacks rasterio (mocked: the package is installed here) must say what to
    install, from the toolbar button and from Processing, instead of a ModuleNotFoundError traceback."""
    import processing
    import sentinel_densify
    from qgis.core import Qgis, QgsApplication, QgsProcessingException

    registry = QgsApplication.processingRegistry()
    if (before := registry.providerById("densify")) is not None:  # another test module's: start clean
        registry.removeProvider(before)
    plugin = sentinel_densify.classFactory(iface)
    plugin.initGui()
    try:
        monkeypatch.setitem(sys.modules, "sentinel_densify.ui.dialog", _LacksRasterio("dialog"))
        plugin.show_dialog()
        items = [(item.text(), item.level()) for item in iface.bar.items()]
        assert plugin.dialog is None and len(items) == 1 and items[0][1] == Qgis.Critical
        assert "needs the Python package 'rasterio'" in items[0][0] and "README" in items[0][0]
        monkeypatch.setitem(sys.modules, "sentinel_densify.core.engine", _LacksRasterio("engine"))
        with pytest.raises(QgsProcessingException, match="needs the Python package 'rasterio'"):
            processing.run("densify:synthesize", {"S2_LAYERS": [], "TARGET_DATE": "2018-03-01",
                                                  "OUTPUT_SYNTHESIZED": str(tmp_path / "s.tif"),
                                                  "OUTPUT_UNCERTAINTY": str(tmp_path / "u.tif")})
    finally:
        plugin.unload()
        iface.bar.clearWidgets()


def test_one_version_number():
    """metadata.txt (what QGIS shows), the core (tagged in every output) and pyproject agree."""
    import tomllib

    from sentinel_densify.core import __version__

    meta = configparser.ConfigParser(interpolation=None)
    meta.read(ROOT / "metadata.txt", encoding="utf-8")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert meta["general"]["version"] == __version__ == project["version"]


def test_metadata_is_complete_for_the_plugin_repository():
    meta = configparser.ConfigParser(interpolation=None)
    meta.read(ROOT / "metadata.txt", encoding="utf-8")
    general = meta["general"]
    for key in ("name", "description", "about", "version", "author", "email", "tracker", "repository",
                "homepage", "tags", "changelog"):
        assert general.get(key, "").strip(), key
    assert general["qgisMinimumVersion"] == "3.22"
    assert general["category"] == "Raster"
    assert general["hasProcessingProvider"] == "yes"
    assert general["experimental"] in ("True", "False")
    assert general["version"] in general["changelog"]
    from PIL import Image

    with Image.open(ROOT / general["icon"]) as icon:
        assert icon.size == (64, 64) and len(set(icon.convert("RGBA").getdata())) > 10


def test_package_zip_installs_as_one_folder_without_dev_files(qgis_app, tmp_path):
    out = tmp_path / "sentinel_densify.zip"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "package.py"), str(out)], check=True,
                   capture_output=True)
    with zipfile.ZipFile(out) as zf:
        names = zf.namelist()
        zf.extractall(tmp_path / "plugins")
    assert {n.split("/")[0] for n in names} == {"sentinel_densify"}
    for required in ("__init__.py", "metadata.txt", "icon.png", "plugin/main.py", "ui/dialog.py",
                     "plugin/processing/provider.py", "plugin/models/densify_lai_chain.model3",
                     "core/engine.py", "core/data/snap_lai_v3/layer1_weights.csv"):
        assert f"sentinel_densify/{required}" in names, required
    bad = [n for n in names if any(part in n.split("/") for part in
                                   ("tests", "scripts", "bench", ".venv", "__pycache__", "dist"))
           or n.endswith((".pyc", "Makefile", "requirements.txt"))]
    assert bad == []
    # the extracted folder is what QGIS imports: it must load alone (not from this checkout)
    code = ("import sys; sys.path.insert(0, sys.argv[1]); "
            "from qgis.core import QgsApplication; QgsApplication.setPrefixPath('/usr', True); "
            "app = QgsApplication([], False); app.initQgis(); "
            "import sentinel_densify as p; assert p.__file__.startswith(sys.argv[1]), p.__file__; "
            "from sentinel_densify.plugin.processing.provider import DensifyProvider; "
            "prov = DensifyProvider(); QgsApplication.processingRegistry().addProvider(prov); "
            "print(sorted(a.id() for a in prov.algorithms()))")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "plugins")], capture_output=True, text=True,
                          env={"QT_QPA_PLATFORM": "offscreen", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    assert "densify:synthesize" in done.stdout and "densify:estimate_lai" in done.stdout


def test_make_deploy_links_the_checkout_and_never_hides_a_zip_install(tmp_path):
    plugins = tmp_path / "profile" / "python" / "plugins"
    for _ in range(2):  # again: the link is replaced, not nested
        run = subprocess.run(["make", "-s", "-C", str(ROOT), "deploy", f"QGIS_PLUGINS={plugins}"],
                             capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
    link = plugins / "sentinel_densify"
    assert link.is_symlink() and link.resolve() == ROOT.resolve() and sorted(p.name for p in plugins.iterdir()) == [
        "sentinel_densify"]
    link.unlink()
    (link / "core").mkdir(parents=True)  # what "Install from ZIP" leaves
    run = subprocess.run(["make", "-s", "-C", str(ROOT), "deploy", f"QGIS_PLUGINS={plugins}"],
                         capture_output=True, text=True)
    assert run.returncode != 0 and "is a folder (a ZIP install?), not a link: remove it first" in run.stderr
    assert sorted(p.name for p in link.iterdir()) == ["core"]
