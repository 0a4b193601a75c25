"""The plugin as QGIS loads it: classFactory, toolbar action, Raster menu, provider, metadata, zip."""

from __future__ import annotations

import configparser
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SEN12_SAMPLE = "ROIs2017_winter_112_p797.tif"


class IfaceStandIn:
    """Stands in for QGIS's desktop application (QgisInterface), which cannot run headless here.

    It offers exactly the calls the plugin makes, backed by real Qt/QGIS widgets: a QMainWindow
    with a plugin toolbar and a Raster menu, a QgsMessageBar and a QgsMapCanvas.
    """

    def __init__(self):
        from qgis.gui import QgsMapCanvas, QgsMessageBar
        from qgis.PyQt.QtWidgets import QMainWindow

        self.window = QMainWindow()
        self.toolbar = self.window.addToolBar("Plugins")
        self.raster_menu = self.window.menuBar().addMenu("&Raster")
        self.submenus = {}
        self.bar = QgsMessageBar(self.window)
        self.canvas = QgsMapCanvas(self.window)

    def mainWindow(self):  # noqa: N802 (QGIS API names)
        return self.window

    def mapCanvas(self):  # noqa: N802
        return self.canvas

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
        assert plugin.dialog.canvas is iface.canvas  # its extent, or one drawn on it, for "Limit to an extent"
    finally:
        plugin.unload()
    assert [a for a in iface.toolbar.actions() if a.text() == "Densify"] == []
    assert iface.submenus == {}
    assert registry.providerById("densify") is None


def test_the_methods_survive_a_plugin_reload_in_qgis(qgis_app, monkeypatch):
    """QGIS reloads a plugin (an upgrade from a ZIP, or the plugin unticked and ticked) by deleting the modules its
    import hook saw and importing the plugin again. The methods' modules must be among them: left loaded, a new
    registry would find them already imported and stay empty (no linear, no bundled model)."""
    import qgis.utils

    assert builtins_import_is_qgis_hook()
    mine = lambda name: name == "sentinel_densify" or name.startswith("sentinel_densify.")  # noqa: E731
    saved = {k: v for k, v in sys.modules.items() if mine(k)}
    monkeypatch.setattr(qgis.utils, "available_plugins", [*qgis.utils.available_plugins, "sentinel_densify"])
    try:
        for name in saved:  # the plugin loaded afresh, its imports watched by QGIS's hook (as in QGIS)
            del sys.modules[name]
        from sentinel_densify.core import methods

        assert {"linear", "nearest", "persistence"} <= set(methods.available())
        qgis.utils._unloadPluginModules("sentinel_densify")  # what qgis.utils.unloadPlugin does to them
        from sentinel_densify.core import methods as reloaded

        assert reloaded is not methods and {"linear", "nearest", "persistence"} <= set(reloaded.available())
    finally:
        qgis.utils._plugin_modules.pop("sentinel_densify", None)
        for name in [k for k in sys.modules if mine(k)]:
            del sys.modules[name]
        sys.modules.update(saved)  # the other tests keep the classes they imported


def builtins_import_is_qgis_hook() -> bool:
    import builtins

    import qgis.utils

    return builtins.__import__ is qgis.utils._import


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


RUNNER = """
import json, os, sys
os.environ["QT_QPA_PLATFORM"] = "offscreen"


MISSING = sys.argv[5]


class Missing:  # this Python lacks the package, as a QGIS without it would
    def find_spec(self, name, path=None, target=None):
        if name == MISSING or name.startswith(MISSING + "."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)


sys.meta_path.insert(0, Missing())
from qgis.core import QgsApplication, QgsProcessingException
app = QgsApplication([], False)
app.initQgis()
sys.path.insert(0, "/usr/share/qgis/python/plugins")
from processing.core.Processing import Processing
Processing.initialize()
import processing
import sentinel_densify
sys.path.insert(0, sys.argv[1])
from test_plugin import IfaceStandIn
iface = IfaceStandIn()
plugin = sentinel_densify.classFactory(iface)
plugin.initProcessing()
plugin.initGui()
plugin.show_dialog()
out = {"bar": [item.text() for item in iface.bar.items()], "dialog": plugin.dialog is not None, "algs": {}}
s2, tmp = sys.argv[2], sys.argv[3]
runs = {"synthesize": {"S2_LAYERS": [s2], "TARGET_DATE": "2018-03-01", "OUTPUT_SYNTHESIZED": tmp + "/s.tif",
                       "OUTPUT_UNCERTAINTY": tmp + "/u.tif"},
        "estimate_lai": {"INPUT": s2, "OUTPUT": tmp + "/lai.tif"},
        "remove_clouds": {"S1": s2, "S2": s2, "OUTPUT": tmp + "/rc.tif"},
        "curate": {"DATA": sys.argv[4], "OUTPUT": tmp + "/cur"}}
from qgis.core import QgsProcessingFeedback


class Log(QgsProcessingFeedback):  # what the algorithm dialog's log shows
    def reportError(self, error, fatalError=False):
        self.errors.append(error)


for alg, params in runs.items():
    log = Log()
    log.errors = []
    try:
        processing.run("densify:" + alg, params, feedback=log)
        out["algs"][alg] = "ran"
    except QgsProcessingException as exc:
        out["algs"][alg] = " | ".join([str(exc)] + log.errors)
plugin.unload()
iface.bar.clearWidgets()
print(json.dumps(out))
"""


@pytest.mark.parametrize("package, failing", [("rasterio", ["synthesize", "estimate_lai", "remove_clouds", "curate"]),
                                              ("scipy", ["synthesize"])])
def test_a_missing_python_package_is_a_message_in_qgis_not_a_traceback(package, failing, uds_subset, sen12_dir,
                                                                         tmp_path):
    """A QGIS whose Python lacks rasterio (or scipy): the toolbar button (before the dialog opens: scipy is imported
    lazily, but no method runs without it) and the algorithms that need it say what to install instead of a
    ModuleNotFoundError traceback. Both are installed here, so their absence is made in a separate Python (an
    import hook refusing it), which loads the real plugin in a real QGIS."""
    runner = tmp_path / "runner.py"
    runner.write_text(RUNNER)
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", GDAL_PAM_ENABLED="NO")
    run = subprocess.run([sys.executable, str(runner), str(ROOT / "tests"), str(uds_subset["s2"][0]), str(tmp_path),
                          str(sen12_dir), package], capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    needs = f"needs the Python package '{package}', which the Python running it cannot import"
    assert not out["dialog"] and len(out["bar"]) == 1 and needs in out["bar"][0] and "README" in out["bar"][0]
    for alg in failing:
        assert needs in out["algs"][alg], (alg, out["algs"][alg])
    assert "Traceback" not in run.stderr


def test_one_version_number():
    """metadata.txt (what QGIS shows), the core (tagged in every output) and pyproject agree."""
    import tomllib

    from sentinel_densify.core import __version__

    meta = configparser.ConfigParser(interpolation=None)
    meta.read(ROOT / "metadata.txt", encoding="utf-8")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert meta["general"]["version"] == __version__ == project["version"]


def test_metadata_is_complete_for_the_plugin_repository():
    """Read as QGIS (qgis.utils.pluginMetadata) and the plugin repository's validator read it: with configparser's
    interpolation, where a lone % in the changelog is an error (QGIS then shows no changelog)."""
    meta = configparser.ConfigParser()
    meta.read(ROOT / "metadata.txt", encoding="utf-8")
    general = dict(meta["general"])  # every value interpolated
    for key in ("name", "description", "about", "version", "author", "email", "tracker", "repository",
                "homepage", "tags", "changelog"):
        assert general.get(key, "").strip(), key
    assert general["qgisminimumversion"] == "3.22"
    assert general["category"] == "Raster"
    assert general["hasprocessingprovider"] == "yes"
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


def test_densify_script_runs_curate_workers_under_spawn(sen12_dir, tmp_path):
    """macOS and Windows start worker processes with "spawn", which runs the main script again in each worker:
    the `densify` script link_package.py writes must not run the command there (unguarded, `densify curate` with
    its default workers died with BrokenProcessPool)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("link_package", ROOT / "scripts" / "link_package.py")
    link_package = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(link_package)
    (tmp_path / "bin").mkdir()
    script = link_package.write_script(tmp_path / "bin" / "densify", Path(sys.executable))
    data = tmp_path / "data"
    for folder in ("s1", "s2_cloudy", "s2_cloudfree"):  # 40 triplets: more than one chunk of 32, so a pool
        (data / folder).mkdir(parents=True)
        for i in range(40):
            (data / folder / f"ROIs2017_winter_112_p{i}.tif").symlink_to(sen12_dir / folder / SEN12_SAMPLE)
    out = tmp_path / "out"
    code = ("import multiprocessing, runpy, sys; multiprocessing.set_start_method('spawn'); "
            "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')")
    done = subprocess.run([sys.executable, "-c", code, str(script), "curate", "--data", str(data), "--out", str(out),
                           "--workers", "2"], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, QT_QPA_PLATFORM="offscreen", GDAL_PAM_ENABLED="NO"))
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert len((out / "kept.txt").read_text().split()) == 40


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
