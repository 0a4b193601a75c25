"""Sentinel Densify QGIS plugin: Sentinel-2 at any date, with uncertainty and LAI."""

import sys

MIN_PYTHON = (3, 11)


class UnsupportedPython:
    """Loaded instead of the plugin when QGIS runs an older Python: says so, does nothing else."""

    def __init__(self, iface):
        self.iface = iface
        needed, running = ".".join(map(str, MIN_PYTHON)), ".".join(map(str, sys.version_info[:3]))
        self.message = (f"Sentinel Densify needs Python {needed} or newer; this QGIS "
                        f"runs Python {running}. Use a QGIS build with Python {needed}+ "
                        "(e.g. QGIS 3.22 on Debian 12, or QGIS >= 3.34 from OSGeo4W).")

    def initGui(self):  # noqa: N802 (QGIS API name)
        from qgis.core import Qgis, QgsMessageLog

        QgsMessageLog.logMessage(self.message, "Sentinel Densify", Qgis.Critical)
        self.iface.messageBar().pushMessage("Sentinel Densify", self.message, Qgis.Critical, 0)

    def unload(self):
        pass


def classFactory(iface):  # noqa: N802 (QGIS API name)
    """QGIS entry point; imports the plugin lazily so QGIS starts fast."""
    if sys.version_info < MIN_PYTHON:  # the core uses 3.11 (datetime.UTC, zip(strict=...), ...)
        return UnsupportedPython(iface)
    from .plugin.main import DensifyPlugin

    return DensifyPlugin(iface)
