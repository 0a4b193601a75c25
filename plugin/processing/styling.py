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
    QgsLayerTreeGroup,
    QgsLayerTreeLayer,
    QgsLayerTreeNode,
    QgsMapLayer,
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProcessingLayerPostProcessorInterface,
    QgsProject,
    QgsRasterLayer,
)

from ..layers import (
    DATE,
    GROUP,
    IMAGE,
    ORDER,
    RUN,
    SERIES,
    drop_if_empty,
    free_name,
    group_name,
    is_processing_group,
    is_result_group,
    new_group,
    restyle,
    set_metadata,
    set_temporal,
    source_path,
)

# post-processors alive until QGIS has used them: QGIS does not own the Python objects
_KEEP: dict[str, StyleOnLoad] = {}


class StyleOnLoad(QgsProcessingLayerPostProcessorInterface):
    """Opens the layer's file anew (see `reopen`), applies a style function (plugin/layers.py) and, with a date, the
    layer's temporal range; with a group, moves the layer into a group (see `into_group`: `run`, `image`, `series`,
    `join`, `show`; `beside`: the id of a project layer whose result group it joins) at position `order`, and gives
    its `name` the group's label (numbered, or the joined group's); with a role (see layers.about), its metadata from
    its file's tags. The project's
    other layers on the file are reopened too, a result layer among them restyled for this run (layers.restyle) and
    moved along when it shared the layer's group."""

    def __init__(self, style: Callable[[QgsRasterLayer], None], date: dt.date | None = None, group: str = "",
                 order: int = 0, role: str = "", *, name: str = "",
                 label: str = "", run: str = "", image: str = "", series: str = "", join: bool = False,
                 beside: str = "", show: bool = False):
        super().__init__()
        self.style, self.date, self.group, self.order = style, date, group, order
        self.role, self.name, self.label = role, name, label
        self.run, self.image, self.series, self.join = run, image, series, join
        self.beside, self.show = beside, show

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
        project, label, group = context.project(), self.label, None
        others = _same_file(project, layer) if project is not None else []
        if self.group and project is not None:
            group = into_group(project, layer, self.group, self.order, self.run, self.image, self.series, self.date,
                               self._target(project), self.join, self.show)
            prefix = group_name(self.date) if self.date else None
            if group is not None and prefix and group.name().startswith(prefix):
                label = group.name()[len(prefix):]  # numbered ("(2)"), or the label of the group it joined
            if self.name and layer.name() == self.name and self.name.endswith(self.label):
                layer.setName(self.name[:len(self.name) - len(self.label)] + label)
        if self.role:
            set_metadata(layer, self.role, self.date, label)
        layer.triggerRepaint()
        for other, along in others:
            reopen(other, context)
            restyle(other, self.date, label)
            node = project.layerTreeRoot().findLayer(other.id())
            if along and group is not None and node is not None:
                into_group(project, other, group.name(), _order(node), target=group)
            other.triggerRepaint()

    def _target(self, project: QgsProject) -> QgsLayerTreeGroup | None:
        """The result group of the project layer `beside` (None when it is in none)."""
        node = project.layerTreeRoot().findLayer(self.beside) if self.beside else None
        parent = node.parent() if node is not None else None
        return parent if is_result_group(parent) else None


def _same_file(project: QgsProject, layer: QgsRasterLayer) -> list[tuple[QgsRasterLayer, bool]]:
    """The project's other layers on `layer`'s file (QGIS reuses one of them for an output written onto it: the others
    still show the file it replaced), each with whether it is in the same result group as `layer`."""
    root, path = project.layerTreeRoot(), source_path(layer)
    node = root.findLayer(layer.id())
    parent = node.parent() if node is not None else None
    out = []
    for other in project.mapLayers().values():
        if other.id() == layer.id() or not isinstance(other, QgsRasterLayer) or source_path(other) != path:
            continue
        where = root.findLayer(other.id())
        out.append((other, where is not None and is_result_group(parent) and where.parent() is parent))
    return out


def reopen(layer: QgsRasterLayer, context: QgsProcessingContext) -> None:
    """A new provider on the layer's file. QGIS loads an output onto the project's layer of that source when
    there is one (a re-run onto the same files), whose provider still reads the file the run replaced and
    keeps its statistics (QgsRasterLayer.reload() renews neither the histograms nor the stretch)."""
    options = QgsDataProvider.ProviderOptions()
    options.transformContext = context.transformContext()
    layer.setDataSource(layer.source(), layer.name(), layer.providerType(), options)


def _order(node: QgsLayerTreeNode) -> int:
    return int(node.customProperty(ORDER, 0) or 0)


def into_group(project: QgsProject, layer: QgsMapLayer, name: str, order: int, run: str = "", image: str = "",
               series: str = "", date: dt.date | None = None, target: QgsLayerTreeGroup | None = None,
               join: bool = False, show: bool = False) -> QgsLayerTreeGroup | None:
    """Move the layer's node into a group and return it: `target` when given; else the Processing group of the
    synthesized file `image` (IMAGE): as it is when this `run` made it or when `join` (densify:estimate_lai: that
    image's group), else taken over; else the Processing group the layer is in (a re-run onto the same files), taken
    over; else a new group, marked GROUP "processing": beside the result group the layer is in (a Processing re-run onto
    a dialog's files: never nested in it), else where QGIS put the layer, at the top or, for a date of a `series`, in
    date order among its groups (layers.new_group). A group taken over or made here is named `name` (numbered when
    taken: layers.free_name) and marked with `run`, `image`, `series` and `date`. The layer goes before the group's
    layers of a higher order, shown when `show` or when it is the group's top layer (the group's other layers then
    hidden). A result group this leaves empty goes."""
    root = project.layerTreeRoot()
    node = root.findLayer(layer.id())
    parent = node.parent() if node is not None else None
    if parent is None:
        return None
    group, made = target, target is not None
    if group is None and image:
        group = next((g for g in root.findGroups(True) if is_processing_group(g) and g.customProperty(IMAGE) == image),
                     None)
        made = group is not None and (join or group.customProperty(RUN) == run)
    if group is None and is_processing_group(parent):
        group = parent
    if group is None:
        inside = is_result_group(parent) and parent.parent() is not None
        home = parent.parent() if inside else parent
        index = next(i for i, c in enumerate(home.children()) if c is parent) if inside else 0
        group = new_group(home, free_name(home, name, parent if inside else None), series, date, index)
        group.setCustomProperty(GROUP, "processing")
    elif not made:  # taken over from an earlier run
        group.setName(free_name(group.parent(), name, group))
    if not made:
        group.setCustomProperty(RUN, run)
        group.setCustomProperty(IMAGE, image)
        if series and date is not None:
            group.setCustomProperty(SERIES, series)
            group.setCustomProperty(DATE, f"{date:%Y-%m-%d}")
    children = group.children()
    others = [c for c in children if not (QgsLayerTree.isLayer(c) and c.layerId() == layer.id())]
    above = [c for c in others if _order(c) <= order]
    index = children.index(above[-1]) + 1 if above else 0
    moved = QgsLayerTreeLayer(layer)
    moved.setCustomProperty(ORDER, order)
    visible = show or not above
    moved.setItemVisibilityChecked(visible)
    if visible:
        for other in others:
            other.setItemVisibilityChecked(False)
    group.insertChildNode(index, moved)
    parent.removeChildNode(node)
    if parent is not group:
        drop_if_empty(parent)
    return group


def style_on_load(context: QgsProcessingContext, path: str, processor: StyleOnLoad, default: str = "") -> None:
    """Style output `path` with `processor` when QGIS loads it on completion (nothing when it will not be loaded); the
    processor's `name` given instead of QGIS's default name for the output (`default`: its parameter's description);
    a name a model or the user chose stays."""
    if not path or not context.willLoadLayerOnCompletion(path):
        return
    _KEEP[path] = processor
    details = context.layerToLoadOnCompletionDetails(path)
    if processor.name and details.name == default:
        details.name = processor.name
        details.forceName = True
    else:
        processor.name = ""  # not ours: never renamed
    details.setPostProcessor(processor)


def load_on_completion(context: QgsProcessingContext, path: str, output: str, processor: StyleOnLoad) -> None:
    """Load a file the algorithm wrote (not a destination parameter's) on completion as `processor.name`, styled,
    dated, described and grouped by `processor` (see StyleOnLoad); `output`: the output it is listed in."""
    if context.project() is None:
        return
    _KEEP[path] = processor
    details = QgsProcessingContext.LayerDetails(processor.name, context.project(), output)
    details.forceName = True
    details.setPostProcessor(processor)
    context.addLayerToLoadOnCompletion(path, details)


def drop_from_load(context: QgsProcessingContext, path: str) -> None:
    """Do not load `path` on completion (an optional output the run did not produce)."""
    layers = context.layersToLoadOnCompletion()
    if path in layers:
        del layers[path]
        context.setLayersToLoadOnCompletion(layers)
