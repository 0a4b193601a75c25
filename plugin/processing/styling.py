"""Processing outputs styled like the dialog's result layers when QGIS loads them on completion.

The post-processor runs on the main thread, after the algorithm, when QGIS adds the layer to the
project; `processAlgorithm` only attaches it to the context (no layer is touched in the worker).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from qgis.core import (
    QgsLayerTree,
    QgsLayerTreeLayer,
    QgsMapLayer,
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProcessingLayerPostProcessorInterface,
    QgsProject,
    QgsRasterLayer,
)

from ..layers import set_temporal

# post-processors alive until QGIS has used them: QGIS does not own the Python objects
_KEEP: dict[str, StyleOnLoad] = {}


class StyleOnLoad(QgsProcessingLayerPostProcessorInterface):
    """Applies a style function (plugin/layers.py) and, with a date, the layer's temporal range; with a
    group, moves the layer into that group (made beside the layer when missing) at position `order`
    among the group's layers, shown when it is the first (order 0)."""

    def __init__(self, style: Callable[[QgsRasterLayer], None], date: dt.date | None = None,
                 group: str = "", order: int = 0):
        super().__init__()
        self.style, self.date, self.group, self.order = style, date, group, order

    def postProcessLayer(self, layer: QgsMapLayer, context: QgsProcessingContext,  # noqa: N802
                         feedback: QgsProcessingFeedback) -> None:
        if not isinstance(layer, QgsRasterLayer) or not layer.isValid():
            return
        self.style(layer)
        if self.date is not None:
            set_temporal(layer, self.date)
        if self.group and context.project() is not None:
            into_group(context.project(), layer, self.group, self.order)
        layer.triggerRepaint()


ORDER = "densify/order"


def into_group(project: QgsProject, layer: QgsMapLayer, name: str, order: int) -> None:
    """Move the layer's node into group `name` of its parent (made at the top when missing), before the
    group's layers of a higher order; visible only when order is 0."""
    node = project.layerTreeRoot().findLayer(layer.id())
    parent = node.parent() if node is not None else None
    if parent is None:
        return
    group = next((g for g in parent.children() if QgsLayerTree.isGroup(g) and g.name() == name), None)
    if group is None:
        group = parent.insertGroup(0, name)
    moved = QgsLayerTreeLayer(layer)
    moved.setCustomProperty(ORDER, order)
    moved.setItemVisibilityChecked(order == 0)
    before = [c for c in group.children() if int(c.customProperty(ORDER, 0) or 0) <= order]
    group.insertChildNode(len(before), moved)
    parent.removeChildNode(node)


def style_on_load(context: QgsProcessingContext, path: str, style: Callable[[QgsRasterLayer], None],
                  date: dt.date | None = None) -> None:
    """Style output `path` when QGIS loads it on completion (nothing when it will not be loaded)."""
    if not path or not context.willLoadLayerOnCompletion(path):
        return
    processor = StyleOnLoad(style, date)
    _KEEP[path] = processor
    context.layerToLoadOnCompletionDetails(path).setPostProcessor(processor)


def load_on_completion(context: QgsProcessingContext, path: str, name: str, output: str,
                       style: Callable[[QgsRasterLayer], None], date: dt.date, group: str, order: int) -> None:
    """Load a file the algorithm wrote (not a destination parameter's) on completion, styled, dated and
    put into `group` at `order` (see StyleOnLoad)."""
    if context.project() is None:
        return
    processor = StyleOnLoad(style, date, group, order)
    _KEEP[path] = processor
    details = QgsProcessingContext.LayerDetails(name, context.project(), output)
    details.forceName = True
    details.setPostProcessor(processor)
    context.addLayerToLoadOnCompletion(path, details)


def drop_from_load(context: QgsProcessingContext, path: str) -> None:
    """Do not load `path` on completion (an optional output the run did not produce)."""
    layers = context.layersToLoadOnCompletion()
    if path in layers:
        del layers[path]
        context.setLayersToLoadOnCompletion(layers)
