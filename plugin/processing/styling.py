"""Processing outputs styled like the dialog's result layers when QGIS loads them on completion.

The post-processor runs on the main thread, after the algorithm, when QGIS adds the layer to the
project; `processAlgorithm` only attaches it to the context (no layer is touched in the worker).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from qgis.core import (
    QgsDataProvider,
    QgsLayerTree,
    QgsLayerTreeLayer,
    QgsLayerTreeNode,
    QgsMapLayer,
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProcessingLayerPostProcessorInterface,
    QgsProject,
    QgsRasterLayer,
)

from ..layers import set_metadata, set_temporal

# post-processors alive until QGIS has used them: QGIS does not own the Python objects
_KEEP: dict[str, StyleOnLoad] = {}


class StyleOnLoad(QgsProcessingLayerPostProcessorInterface):
    """Opens the layer's file anew (see `reopen`), applies a style function (plugin/layers.py) and, with a
    date, the layer's temporal range; with a role (see layers.about), its metadata from its file's tags (`method`:
    the synthesis method when they do not say it); with a group, moves the layer into that group (see `into_group`)
    at position `order` among the group's layers."""

    def __init__(self, style: Callable[[QgsRasterLayer], None], date: dt.date | None = None,
                 group: str = "", order: int = 0, role: str = "", method: str = ""):
        super().__init__()
        self.style, self.date, self.group, self.order = style, date, group, order
        self.role, self.method = role, method

    def postProcessLayer(self, layer: QgsMapLayer, context: QgsProcessingContext,  # noqa: N802
                         feedback: QgsProcessingFeedback) -> None:
        if not isinstance(layer, QgsRasterLayer) or not layer.isValid():
            return
        reopen(layer, context)
        if not layer.isValid():
            return
        self.style(layer)
        if self.date is not None:
            set_temporal(layer, self.date)
        if self.role:
            set_metadata(layer, self.role, self.date, self.method)
        if self.group and context.project() is not None:
            into_group(context.project(), layer, self.group, self.order)
        layer.triggerRepaint()


def reopen(layer: QgsRasterLayer, context: QgsProcessingContext) -> None:
    """A new provider on the layer's file. QGIS loads an output onto the project's layer of that source when
    there is one (a re-run onto the same files), whose provider still reads the file the run replaced and
    keeps its statistics (QgsRasterLayer.reload() renews neither the histograms nor the stretch)."""
    options = QgsDataProvider.ProviderOptions()
    options.transformContext = context.transformContext()
    layer.setDataSource(layer.source(), layer.name(), layer.providerType(), options)


ORDER = "densify/order"
GROUP = "densify/group"  # a group made by into_group: the only groups it puts layers into (never the dialog's)


def _order(node: QgsLayerTreeNode) -> int:
    return int(node.customProperty(ORDER, 0) or 0)


def into_group(project: QgsProject, layer: QgsMapLayer, name: str, order: int) -> None:
    """Move the layer's node into group `name`: the group it is in already (a re-run onto the same files), else
    the group of that name made here (marked GROUP: a dialog's group of that name is left alone) beside it, or beside
    the group made here that it is in (a re-run for another date or method), made at the top when missing; placed
    before the group's layers of a higher order, and shown only when it is the group's top layer (the layers below it
    then hidden). A group made here that this leaves empty goes."""
    node = project.layerTreeRoot().findLayer(layer.id())
    parent = node.parent() if node is not None else None
    if parent is None:
        return
    if QgsLayerTree.isGroup(parent) and parent.name() == name:
        group = parent
    else:
        home = parent.parent() if parent.customProperty(GROUP, False) and parent.parent() is not None else parent
        group = next((g for g in home.children() if QgsLayerTree.isGroup(g) and g.name() == name
                      and g.customProperty(GROUP, False)), None)
        if group is None:
            group = home.insertGroup(0, name)
            group.setCustomProperty(GROUP, True)
    children = group.children()
    others = [c for c in children if not (QgsLayerTree.isLayer(c) and c.layerId() == layer.id())]
    above = [c for c in others if _order(c) <= order]
    index = children.index(above[-1]) + 1 if above else 0
    moved = QgsLayerTreeLayer(layer)
    moved.setCustomProperty(ORDER, order)
    moved.setItemVisibilityChecked(not above)
    if not above:
        for other in others:
            other.setItemVisibilityChecked(False)
    group.insertChildNode(index, moved)
    parent.removeChildNode(node)
    if parent is not group and parent.customProperty(GROUP, False) and not parent.children():
        parent.parent().removeChildNode(parent)


def style_on_load(context: QgsProcessingContext, path: str, style: Callable[[QgsRasterLayer], None],
                  date: dt.date | None = None, group: str = "", order: int = 0,
                  names: tuple[str, str] = ("", ""), role: str = "", method: str = "") -> None:
    """Style output `path` when QGIS loads it on completion (nothing when it will not be loaded); with a
    group, into that group at `order`; with a role, its metadata (see StyleOnLoad). `names`: (QGIS's default name for
    the output, i.e. its parameter's description; the name to give instead); a name a model or the user chose
    stays."""
    if not path or not context.willLoadLayerOnCompletion(path):
        return
    processor = StyleOnLoad(style, date, group, order, role, method)
    _KEEP[path] = processor
    details = context.layerToLoadOnCompletionDetails(path)
    default, name = names
    if name and details.name == default:
        details.name = name
        details.forceName = True
    details.setPostProcessor(processor)


def load_on_completion(context: QgsProcessingContext, path: str, name: str, output: str,
                       style: Callable[[QgsRasterLayer], None], date: dt.date, group: str, order: int,
                       role: str = "") -> None:
    """Load a file the algorithm wrote (not a destination parameter's) on completion, styled, dated, described
    (`role`) and put into `group` at `order` (see StyleOnLoad)."""
    if context.project() is None:
        return
    processor = StyleOnLoad(style, date, group, order, role)
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
