"""The "Sentinel Densify" Processing provider (id `densify`).

Algorithms live one per module in this package, each listing its QgsProcessingAlgorithm
subclasses in `ALGORITHMS`; `algorithm_classes` gathers them.
"""

from __future__ import annotations

from pathlib import Path

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

ICON = Path(__file__).resolve().parent.parent.parent / "icon.png"


def algorithm_classes() -> list[type]:
    """Every algorithm class of the provider, in toolbox order."""
    from . import alg_curate, alg_estimate_lai, alg_remove_clouds, alg_synthesize, alg_synthesize_series

    return [*alg_synthesize.ALGORITHMS, *alg_synthesize_series.ALGORITHMS, *alg_estimate_lai.ALGORITHMS,
            *alg_curate.ALGORITHMS, *alg_remove_clouds.ALGORITHMS]


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
