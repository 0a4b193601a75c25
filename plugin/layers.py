"""Result layers of a run: a "Densify YYYY-MM-DD" group of styled layers with temporal properties.

Main thread only (touches the project and layers), but `common_limits`, which reads the output files only.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from functools import partial
from pathlib import Path

from qgis.core import (
    QgsBasicNumericFormat,
    QgsColorRampLegendNodeSettings,
    QgsColorRampShader,
    QgsContrastEnhancement,
    QgsCoordinateReferenceSystem,
    QgsDateTimeRange,
    QgsGradientColorRamp,
    QgsGradientStop,
    QgsLayerTreeGroup,
    QgsMapLayer,
    QgsMultiBandColorRenderer,
    QgsProject,
    QgsProviderRegistry,
    QgsRasterLayer,
    QgsRasterLayerTemporalProperties,
    QgsRasterShader,
    QgsRectangle,
    QgsSingleBandPseudoColorRenderer,
)
from qgis.PyQt.QtCore import QDate, QDateTime, Qt, QTime
from qgis.PyQt.QtGui import QColor

from ..core.request import OUTPUT_KINDS

TRUE_COLOUR = ("B04", "B03", "B02")
LAI_RANGE = (0.0, 8.0)
STRETCH = (0.02, 0.98)
LAI_UNIT = " m²/m²"


def group_name(date: dt.date, label: str = "") -> str:
    return f"Densify {date:%Y-%m-%d}{label}"


def run_label(outputs: dict[str, str], date: dt.date) -> str:
    """' (2)' for a run whose outputs were numbered (synthesized_YYYYMMDD_2.tif: an earlier result
    was there), so two runs for one date get distinct groups and layer names; '' otherwise."""
    stem = Path(outputs.get("synthesized", "")).stem
    base = f"synthesized_{date:%Y%m%d}_"
    number = stem[len(base):] if stem.startswith(base) else ""
    return f" ({number})" if number.isdigit() else ""


def extent_values(rect: QgsRectangle, crs: QgsCoordinateReferenceSystem
                  ) -> tuple[tuple[float, float, float, float] | None, str | None]:
    """A QGIS extent for the request (DensifyRequest.extent, extent_crs): (xmin, ymin, xmax, ymax) and its
    CRS as EPSG:n, else WKT (None when invalid: the core takes the S2 grid's); (None, None) for a null
    rectangle (an empty one goes on, for the core to say what is wrong with it)."""
    if rect.isNull():
        return None, None
    text = None
    if crs.isValid():
        text = crs.authid() if crs.authid().upper().startswith("EPSG:") else \
            crs.toWkt(QgsCoordinateReferenceSystem.WKT_PREFERRED_GDAL)
    return (rect.xMinimum(), rect.yMinimum(), rect.xMaximum(), rect.yMaximum()), text


def source_path(layer: QgsMapLayer) -> str:
    """The file behind a layer (its GDAL source without open options; /vsizip/... kept whole)."""
    parts = QgsProviderRegistry.instance().decodeUri(layer.providerType(), layer.source())
    path = parts.get("path")
    if not path:
        return layer.source()
    return f"{parts.get('vsiPrefix') or ''}{path}{parts.get('vsiSuffix') or ''}"


def temporal_date(layer: QgsMapLayer) -> dt.datetime | None:
    """Start of the layer's fixed temporal range (UTC) when its temporal properties are active."""
    props = layer.temporalProperties() if isinstance(layer, QgsRasterLayer) else None
    fixed = QgsRasterLayerTemporalProperties.ModeFixedTemporalRange
    if props is None or not props.isActive() or props.mode() != fixed:
        return None
    begin = props.fixedTemporalRange().begin()
    if not begin.isValid():
        return None
    if begin.timeSpec() != Qt.UTC:  # a date typed in the layer properties: take it as UTC
        begin = QDateTime(begin.date(), begin.time(), Qt.UTC)
    return begin.toPyDateTime().replace(tzinfo=dt.UTC)


def band_names(layer: QgsRasterLayer) -> list[str]:
    """Band descriptions ("B04", "LAI", ...) of a GDAL layer; QGIS names them "Band 01: B04"."""
    names = []
    for i in range(1, layer.bandCount() + 1):
        name = layer.bandName(i)
        names.append(name.split(": ", 1)[1] if ": " in name else name)
    return names


def find_band(layer: QgsRasterLayer, *candidates: str) -> int | None:
    """1-based index of the first band whose description matches a candidate (case-insensitive)."""
    names = [n.upper() for n in band_names(layer)]
    for cand in candidates:
        if cand.upper() in names:
            return names.index(cand.upper()) + 1
    return None


def _ramp(colours: list[str]) -> QgsGradientColorRamp:
    stops = [QgsGradientStop(i / (len(colours) - 1), QColor(c)) for i, c in enumerate(colours[1:-1], 1)]
    return QgsGradientColorRamp(QColor(colours[0]), QColor(colours[-1]), False, stops)


def _pseudo_colour(layer: QgsRasterLayer, band: int, vmin: float, vmax: float, colours: list[str],
                   decimals: int = 0, unit: str = "") -> None:
    """A yellow-red (or other) ramp over vmin-vmax; legend and class labels with `decimals` and `unit`."""
    ramp_shader = QgsColorRampShader(vmin, vmax, _ramp(colours), QgsColorRampShader.Interpolated,
                                     QgsColorRampShader.Continuous)
    ramp_shader.classifyColorRamp(5, band)
    items = ramp_shader.colorRampItemList()
    for item in items:  # classifyColorRamp labels with 6 decimals
        item.label = f"{item.value:.{decimals}f}{unit}"
    ramp_shader.setColorRampItemList(items)
    number = QgsBasicNumericFormat()
    number.setNumberDecimalPlaces(decimals)
    number.setShowTrailingZeros(True)
    legend = QgsColorRampLegendNodeSettings()
    legend.setNumericFormat(number)
    legend.setSuffix(unit)
    ramp_shader.setLegendSettings(legend)
    shader = QgsRasterShader(vmin, vmax)
    shader.setRasterShaderFunction(ramp_shader)
    renderer = QgsSingleBandPseudoColorRenderer(layer.dataProvider(), band, shader)
    renderer.setClassificationMin(vmin)
    renderer.setClassificationMax(vmax)
    layer.setRenderer(renderer)


def stretch(layer: QgsRasterLayer, band: int, cut: tuple[float, float] = STRETCH) -> tuple[float, float]:
    """Cumulative-count cut (2-98 % by default) of a band, computed from the data."""
    lo, hi = layer.dataProvider().cumulativeCut(band, cut[0], cut[1])
    if not hi > lo:
        hi = lo + 1e-6
    return float(lo), float(hi)


def true_colour_bands(layer: QgsRasterLayer) -> list[int]:
    """Bands of B04/B03/B02 (3/2/1 if undescribed)."""
    bands = [find_band(layer, name) for name in TRUE_COLOUR]
    if None in bands:
        bands = [3, 2, 1] if layer.bandCount() >= 3 else [1, 1, 1]
    return bands


def style_true_colour(layer: QgsRasterLayer, limits: list[tuple[float, float]] | None = None) -> None:
    """B04/B03/B02 as red/green/blue with a 2-98 % stretch per band, or the given (min, max) per band (a
    stretch common to a series' dates)."""
    bands = true_colour_bands(layer)
    renderer = QgsMultiBandColorRenderer(layer.dataProvider(), *bands)
    setters = (renderer.setRedContrastEnhancement, renderer.setGreenContrastEnhancement,
               renderer.setBlueContrastEnhancement)
    for i, (band, setter) in enumerate(zip(bands, setters, strict=True)):
        ce = QgsContrastEnhancement(layer.dataProvider().dataType(band))
        lo, hi = limits[i] if limits else stretch(layer, band)
        ce.setMinimumValue(lo, False)
        ce.setMaximumValue(hi, False)
        ce.setContrastEnhancementAlgorithm(QgsContrastEnhancement.StretchToMinimumMaximum)
        setter(ce)
    layer.setRenderer(renderer)


def mean_band(layer: QgsRasterLayer) -> int | None:
    """The band holding the mean of the per-band stds, if the file has one."""
    return next((i for i, n in enumerate(band_names(layer), 1) if "mean" in n.lower()), None)


def style_uncertainty(layer: QgsRasterLayer, limits: tuple[float, float] | None = None) -> None:
    """Mean per-band std (DN) as a single-band pseudo-colour (yellow to red), 2-98 % stretch or the given
    (min, max) (a range common to a series' dates).

    The engine writes the mean as the last band ("mean_std") after the per-band stds.
    """
    band = mean_band(layer) or 1
    lo, hi = limits or stretch(layer, band)
    _pseudo_colour(layer, band, max(lo, 0.0), hi, ["#ffffb2", "#fecc5c", "#fd8d3c", "#f03b20", "#bd0026"],
                   0, " DN")


def style_lai(layer: QgsRasterLayer) -> None:
    """LAI band on a green ramp over 0-8 m2/m2."""
    band = find_band(layer, "LAI") or 1
    _pseudo_colour(layer, band, *LAI_RANGE, ["#f7fcf5", "#c7e9c0", "#74c476", "#238b45", "#00441b"],
                   1, LAI_UNIT)


def style_lai_std(layer: QgsRasterLayer) -> None:
    """LAI std band on a purple ramp, 2-98 % stretch."""
    band = find_band(layer, "LAI_std", "LAI_STD") or 2
    lo, hi = stretch(layer, band)
    _pseudo_colour(layer, band, max(lo, 0.0), hi, ["#f2f0f7", "#cbc9e2", "#9e9ac8", "#756bb1", "#54278f"],
                   2, LAI_UNIT)


def set_temporal(layer: QgsRasterLayer, date: dt.date) -> None:
    """A fixed temporal range covering the whole target day (UTC), for the Temporal Controller."""
    start = QDateTime(QDate(date.year, date.month, date.day), QTime(0, 0, 0), Qt.UTC)
    props = layer.temporalProperties()
    props.setMode(QgsRasterLayerTemporalProperties.ModeFixedTemporalRange)
    props.setFixedTemporalRange(QgsDateTimeRange(start, start.addDays(1), True, False))
    props.setIsActive(True)


# kind -> [(layer title, style function)], in the order they appear in the group (top first, kinds in
# OUTPUT_KINDS order)
LAYERS = {
    "synthesized": [("Synthesized S2 {date}", style_true_colour)],
    "uncertainty": [("Uncertainty (mean std) {date}", style_uncertainty)],
    "lai": [("LAI {date}", style_lai), ("LAI std {date}", style_lai_std)],
}


SAMPLE = 512  # pixels a side read of each file for the common stretch (a decimated read)


def common_limits(outputs: list[dict[str, str]]) -> dict[str, list[tuple[float, float]] | tuple[float, float]]:
    """One 2-98 % stretch over all the dates' files, so that a colour means one value on every date (the Temporal
    Controller compares them): per B04/B03/B02 band of the synthesized images ("synthesized": [(min, max)] * 3),
    and of the uncertainty's mean std ("uncertainty": (min, max)). Reads each file decimated to at most SAMPLE
    pixels a side; a kind whose bands are not found is left out (its layers keep their own stretch)."""
    import numpy as np
    import rasterio

    def pooled(kind: str, wanted) -> list[np.ndarray] | None:
        arrays = []
        for out in outputs:
            if kind not in out:
                continue
            with rasterio.open(out[kind]) as ds:
                names = [(d or "").upper() for d in ds.descriptions]
                bands = wanted(names)
                if not bands:
                    return None
                shape = (len(bands), min(ds.height, SAMPLE), min(ds.width, SAMPLE))
                arrays.append(ds.read(bands, out_shape=shape, masked=True).astype("float64").filled(np.nan))
        return [np.concatenate([a[i].ravel() for a in arrays]) for i in range(len(arrays[0]))] if arrays else None

    def cut(values: np.ndarray) -> tuple[float, float] | None:
        values = values[np.isfinite(values)]
        if not values.size:
            return None
        lo, hi = (float(v) for v in np.percentile(values, [100 * STRETCH[0], 100 * STRETCH[1]]))
        return lo, hi if hi > lo else lo + 1e-6

    limits: dict = {}
    rgb = pooled("synthesized", lambda names: [names.index(b) + 1 for b in TRUE_COLOUR]
                 if all(b in names for b in TRUE_COLOUR) else None)
    cuts = [cut(v) for v in rgb or []]
    if cuts and all(cuts):
        limits["synthesized"] = cuts
    mean = pooled("uncertainty", lambda names: [i for i, n in enumerate(names, 1) if "MEAN" in n][:1])
    if mean and cut(mean[0]):
        limits["uncertainty"] = cut(mean[0])
    return limits


def styles_of(kind: str, limits: dict | None = None) -> list[tuple[str, Callable[[QgsRasterLayer], None]]]:
    """LAYERS[kind], its style given the series' common `limits` for that kind when there are some."""
    if not (limits or {}).get(kind):
        return LAYERS[kind]
    return [(title, partial(style, limits=limits[kind])) for title, style in LAYERS[kind]]


def add_result_layers(outputs: dict[str, str], date: dt.date, project: QgsProject | None = None,
                      limits: dict | None = None) -> tuple[QgsLayerTreeGroup, list[QgsRasterLayer]]:
    """Load the outputs of a run as styled layers into a new group at the top of the layer tree (`limits`: a
    series' common stretch, see common_limits)."""
    project = project or QgsProject.instance()
    label = run_label(outputs, date)
    layers = []
    for kind in OUTPUT_KINDS:  # every layer opened and styled before the project is touched
        path = outputs.get(kind)
        if not path:
            continue
        for title, style in styles_of(kind, limits):
            layer = QgsRasterLayer(str(path), title.format(date=f"{date:%Y-%m-%d}") + label, "gdal")
            if not layer.isValid():
                raise OSError(f"QGIS cannot open the output {path}")
            style(layer)
            set_temporal(layer, date)
            layers.append(layer)
    group = project.layerTreeRoot().insertGroup(0, group_name(date, label))
    for layer in layers:
        project.addMapLayer(layer, False)
        group.addLayer(layer)
    for node in group.findLayers()[1:]:
        node.setItemVisibilityChecked(False)  # show the top layer only; the others one click away
    return group, layers
