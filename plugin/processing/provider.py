"""The "Sentinel Densify" Processing provider (id `densify`).

Algorithms live one per module in this package; to add one, put its module name in
ALGORITHM_MODULES. Each module lists its QgsProcessingAlgorithm subclasses in `ALGORITHMS`.
A listed module that is not present in this build is skipped; one that fails to import is
logged and skipped, so one broken algorithm never hides the others.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

from qgis.core import Qgis, QgsMessageLog, QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

ICON = Path(__file__).resolve().parent.parent.parent / "icon.png"
ALGORITHM_MODULES = ["alg_synthesize", "alg_estimate_lai", "alg_curate", "alg_remove_clouds"]


def algorithm_classes() -> list[type]:
    """The algorithm classes of every present module of ALGORITHM_MODULES, in order."""
    classes: list[type] = []
    for name in ALGORITHM_MODULES:
        full = f"{__package__}.{name}"
        if importlib.util.find_spec(full) is None:
            continue
        try:
            module = importlib.import_module(full)
        except Exception as exc:  # logged: a broken module must not take the provider down
            QgsMessageLog.logMessage(f"{name}: {type(exc).__name__}: {exc}", "Sentinel Densify",
                                     Qgis.Critical)
            continue
        classes.extend(getattr(module, "ALGORITHMS", []))
    return classes


class DensifyProvider(QgsProcessingProvider):
    def id(self) -> str:
        return "densify"

    def name(self) -> str:
        return "Sentinel Densify"

    def longName(self) -> str:  # noqa: N802 (QGIS API name)
        return "Sentinel Densify: Sentinel-2 at any date from Sentinel-1/2 series"

    def icon(self) -> QIcon:
        return QIcon(str(ICON))

    def loadAlgorithms(self) -> None:  # noqa: N802 (QGIS API name)
        for cls in algorithm_classes():
            self.addAlgorithm(cls())

    def supportedOutputRasterLayerExtensions(self) -> list[str]:  # noqa: N802 (QGIS API name)
        return ["tif"]  # the core writes GeoTIFF only

    def defaultRasterFileExtension(self) -> str:  # noqa: N802 (QGIS API name)
        return "tif"
