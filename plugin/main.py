"""The QGIS plugin object: a "Densify" toolbar action and Raster menu entry, and the Processing provider."""

from __future__ import annotations

from pathlib import Path

from qgis.core import QgsApplication
from qgis.PyQt.QtGui import QIcon
from qgis.PyQt.QtWidgets import QAction

PLUGIN_DIR = Path(__file__).resolve().parent.parent
ICON = PLUGIN_DIR / "icon.png"
MENU = "Sentinel &Densify"


class DensifyPlugin:
    """Created by `classFactory(iface)`; QGIS calls initProcessing, initGui and unload."""

    def __init__(self, iface):
        self.iface = iface
        self.action: QAction | None = None
        self.provider = None
        self.dialog = None

    def initProcessing(self) -> None:  # noqa: N802 (QGIS API name)
        """Register the "Sentinel Densify" Processing provider (once)."""
        if self.provider is not None:
            return
        from .processing.provider import DensifyProvider

        self.provider = DensifyProvider()
        QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self) -> None:  # noqa: N802 (QGIS API name)
        self.initProcessing()
        self.action = QAction(QIcon(str(ICON)), "Densify", self.iface.mainWindow())
        self.action.setObjectName("sentinelDensifyAction")
        self.action.setToolTip("Densify: synthesize Sentinel-2 at a date from the project's S1/S2 layers")
        self.action.triggered.connect(self.show_dialog)
        self.iface.addToolBarIcon(self.action)
        self.iface.addPluginToRasterMenu(MENU, self.action)

    def unload(self) -> None:
        if self.action is not None:
            self.iface.removeToolBarIcon(self.action)
            self.iface.removePluginRasterMenu(MENU, self.action)
            self.action.deleteLater()
            self.action = None
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
        if self.dialog is not None:
            self.dialog.detach()
            self.dialog.close()
            self.dialog.deleteLater()
            self.dialog = None

    def show_dialog(self) -> None:
        """Open (or raise) the Densify dialog, refreshed with the project's current raster layers;
        a Python package the core needs but QGIS's Python lacks is a message, not a traceback."""
        try:
            from ..ui.dialog import DensifyDialog  # imports the core: where a missing package shows
        except ImportError as exc:  # a missing package, or a broken build of one (rasterio, GDAL)
            from qgis.core import Qgis

            from ..core.errors import failure_message

            self.iface.messageBar().pushMessage("Densify", failure_message(exc), Qgis.Critical, 0)
            return
        if self.dialog is None:
            self.dialog = DensifyDialog(self.iface.mainWindow(), message_bar=self.iface.messageBar(),
                                        canvas=self.iface.mapCanvas())
        else:
            self.dialog.refresh_layers()
        self.dialog.show()
        self.dialog.raise_()
        self.dialog.activateWindow()
