"""Processing outputs styled like the dialog's result layers when QGIS loads them on completion.

The post-processor runs on the main thread, after the algorithm, when QGIS adds the layer to the
project; `processAlgorithm` only attaches it to the context (no layer is touched in the worker).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from qgis.core import (
    QgsMapLayer,
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProcessingLayerPostProcessorInterface,
    QgsRasterLayer,
)

from ..layers import set_temporal

# post-processors alive until QGIS has used them: QGIS does not own the Python objects
_KEEP: dict[str, StyleOnLoad] = {}


class StyleOnLoad(QgsProcessingLayerPostProcessorInterface):
    """Applies a style function (plugin/layers.py) and, with a date, the layer's temporal range."""

    def __init__(self, style: Callable[[QgsRasterLayer], None], date: dt.date | None = None):
        super().__init__()
        self.style, self.date = style, date

    def postProcessLayer(self, layer: QgsMapLayer, context: QgsProcessingContext,  # noqa: N802
                         feedback: QgsProcessingFeedback) -> None:
        if not isinstance(layer, QgsRasterLayer) or not layer.isValid():
            return
        self.style(layer)
        if self.date is not None:
            set_temporal(layer, self.date)
        layer.triggerRepaint()


def style_on_load(context: QgsProcessingContext, path: str, style: Callable[[QgsRasterLayer], None],
                  date: dt.date | None = None) -> None:
    """Style output `path` when QGIS loads it on completion (nothing when it will not be loaded)."""
    if not path or not context.willLoadLayerOnCompletion(path):
        return
    processor = StyleOnLoad(style, date)
    _KEEP[path] = processor
    context.layerToLoadOnCompletionDetails(path).setPostProcessor(processor)


def drop_from_load(context: QgsProcessingContext, path: str) -> None:
    """Do not load `path` on completion (an optional output the run did not produce)."""
    layers = context.layersToLoadOnCompletion()
    if path in layers:
        del layers[path]
        context.setLayersToLoadOnCompletion(layers)
