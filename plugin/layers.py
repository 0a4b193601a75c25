"""Result layers of a run: a "Densify YYYY-MM-DD method" group of styled, described layers with temporal properties.

Main thread only (touches the project and layers), but `common_limits` and the stretch helpers it shares with
`stretch` (spread_windows, band_sample, cut_limits, band_limits), which read the output files only (rasterio).
"""

from __future__ import annotations

import datetime as dt
import math
import re
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
    QgsLayerTree,
    QgsLayerTreeGroup,
    QgsLayerTreeNode,
    QgsMapLayer,
    QgsMultiBandColorRenderer,
    QgsProject,
    QgsProviderRegistry,
    QgsRasterBandStats,
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
METHOD_KEYS = ("METHOD", "MODEL", "MODEL_VERSION", "MODEL_BUNDLED")  # the tags that say how an image was synthesized

# custom properties of the layer tree's result groups and layers (saved with the project)
GROUP = "densify/group"  # "dialog" (add_result_layers) or "processing" (styling.into_group; True in older projects)
RUN = "densify/run"  # a Processing group: the run (one id per algorithm run) that made or last reused it
IMAGE = "densify/image"  # a Processing group: the synthesized file (image_key) whose run's layers it holds
SERIES = "densify/series"  # the groups of one series' dates (one id per dialog task or synthesize_series run)
DATE = "densify/date"  # a series group's date, YYYY-MM-DD
ORDER = "densify/order"  # a result layer's place in its group: its kind's index in OUTPUT_KINDS
ROLE = "densify/role"  # a result layer's role (LAYERS), to restyle it when another run replaces its file


def group_name(date: dt.date, label: str = "") -> str:
    """"Densify YYYY-MM-DD" and a run's `label` (see run_label): "Densify 2018-03-01 linear (2)"."""
    return f"Densify {date:%Y-%m-%d}{label}"


def layer_name(title: str, date: dt.date, label: str = "") -> str:
    """A result layer's name: its LAYERS title for the date, and the run's label (run_label)."""
    return title.format(date=f"{date:%Y-%m-%d}") + label


def method_label(tags: dict[str, str]) -> str:
    """A method's short name in group and layer names, from a Densify output's tags (METHOD_KEYS): a baseline's name
    ("linear"), "model" for the bundled model (MODEL_BUNDLED=1), any other model by its file name ("crops_v2.onnx",
    "model.onnx": never a baseline's name or "model"); "" for none."""
    method = tags.get("METHOD", "")
    if not method.startswith("onnx:"):
        return method
    if tags.get("MODEL_BUNDLED") == "1":
        return "model"
    return tags.get("MODEL") or f"{method[5:]}.onnx"


def run_label(outputs: dict[str, str], date: dt.date, tags: dict[str, str] | None = None) -> str:
    """What tells a run's group and layers from another run's for the same date: the method that made them (see
    method_label, from the synthesized file's `tags`: " linear") and, when its outputs were numbered
    (synthesized_YYYYMMDD_2.tif: an earlier result was there), that number (" linear (2)"); "" for neither."""
    stem = Path(outputs.get("synthesized", "")).stem
    base = f"synthesized_{date:%Y%m%d}_"
    number = stem[len(base):] if stem.startswith(base) else ""
    short = method_label(tags or {})
    return (f" {short}" if short else "") + (f" ({number})" if number.isdigit() else "")


def image_key(path: str) -> str:
    """What a Processing group is found by (IMAGE): its run's synthesized file, as an absolute path (also the input of
    densify:estimate_lai, whose LAI goes into that image's group)."""
    return path if path.startswith("/vsi") else str(Path(path).absolute())


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


EXACT_PX = 4 * 2**20  # a band of at most this many pixels (2048 x 2048) is read whole: its stretch is QGIS's exact one
SPREAD = (16, 128)  # a larger band: up to 16 x 16 windows of up to 128 px at full resolution, each inside one block
POOL_PX = 4 * EXACT_PX  # pixels read per band over all of a series' dates (common_limits): 4 dates as many as alone
INTEGER_TYPES = ("uint8", "int16", "uint16", "int32", "uint32")  # QGIS rounds their cut out to whole values


def spread_windows(width: int, height: int, block: tuple[int, int], n: int = SPREAD[0],
                   size: int = SPREAD[1]) -> list:
    """Up to n x n windows of up to `size` px spread evenly over a width x height band, each within one of its
    `block`s (rows, columns; a file's blocks of under 16 px, a striped file's rows, are not kept to) and in a block of
    its own, so no two overlap: fewer along a side shorter than n blocks. As core/inventory.py:spread_windows, which
    has its count and size fixed (SAMPLED_WINDOWS)."""
    from rasterio.windows import Window

    from ..core.inventory import in_one_block

    def starts(extent: int, blk: int) -> tuple[int, list[int]]:
        blk = blk if blk >= 16 else 0
        w = min(size, extent, blk or size)
        k = max(1, min(n, extent // max(w, blk)))
        return w, [in_one_block(int((i + 0.5) * extent / k), w, blk or w, extent) for i in range(k)]

    w, cols = starts(width, block[1])
    h, rows = starts(height, block[0])
    return [Window(c, r, w, h) for r in rows for c in cols]


def band_sample(path: str, band: int, max_px: int = EXACT_PX):
    """What a band's stretch is computed from, read with rasterio from the file at `path` (layers.source_path; never
    through a QGIS layer, so that common_limits can run in a task's worker thread): (its valid values, float64: not
    nodata, finite; the number of pixels read, valid or not, as many as QGIS's histogram has bins; its data type).
    A band of at most `max_px` pixels is read whole (exact); a larger one from spread_windows at full resolution: as
    many n x n windows of SPREAD[1] px as `max_px` holds (at most SPREAD[0] a side, at least 4), each decoding one
    block of the file (an output's blocks are at most 256 px). Never from the overviews (as a decimated read or a
    QGIS sampleSize would): their averages narrow the tails. Raises RasterioError / OSError when unreadable."""
    import math

    import numpy as np
    import rasterio

    with rasterio.open(path) as ds:
        dtype, nodata = ds.dtypes[band - 1], ds.nodatavals[band - 1]
        scale, offset = ds.scales[band - 1], ds.offsets[band - 1]
        if ds.width * ds.height <= max_px:
            windows = [None]
        else:
            n = max(4, min(SPREAD[0], math.isqrt(max_px // SPREAD[1] ** 2)))
            windows = spread_windows(ds.width, ds.height, ds.block_shapes[band - 1], n)
        parts, pixels = [], 0
        for window in windows:
            a = ds.read(band, window=window).ravel()
            pixels += a.size
            parts.append(a if nodata is None or math.isnan(nodata) else a[a != nodata])
    values = np.concatenate(parts).astype(np.float64)
    if scale != 1 or offset != 0:  # QGIS shows (and stretches) the scaled values, as floats
        values, dtype = values * scale + offset, "float64"
    return values[np.isfinite(values)], pixels, dtype


def cut_limits(values, pixels: int, dtype: str, cut: tuple[float, float] = STRETCH) -> tuple[float, float] | None:
    """The cumulative-count cut (2-98 % by default) of a band's `values` (band_sample: read from `pixels` pixels of
    type `dtype`), as QGIS 3.22 computes it (QgsRasterInterface::cumulativeCut over the GDAL provider's histogram, so
    that a band read whole gets the very limits QGIS gives): a histogram of the values between their minimum and
    maximum (widened by half a bin) with one bin per pixel read (for integers, at most one per whole value), the
    limits at the start of the bin where the count passes round(2 %) and of the one where it reaches round(98 %) of the
    valid values, rounded out to whole values for integers. None without a valid value. A constant band gets (value,
    value + 1e-6), and so does a cut that would be empty (hi <= lo): a renderer needs max > min (a histogram of a
    constant band is where GDAL logs "ERROR 5: dfMax should be strictly greater than dfMin": none is computed here)."""
    import math

    import numpy as np

    if not values.size:
        return None
    vmin, vmax = float(values.min()), float(values.max())
    if not vmax > vmin:
        return vmin, vmin + 1e-6
    whole = math.ceil(vmax - vmin + 1)
    bins = whole if dtype == "uint8" else min(pixels, whole) if dtype in INTEGER_TYPES else pixels
    half = (vmax - vmin) / (2 * bins)
    first = vmin - half
    index = np.floor((values - first) * (bins / (vmax + half - first)))  # GDALGetRasterHistogramEx's buckets
    index = index[(index >= 0) & (index < bins)]
    if not index.size:
        return None
    total = index.size
    low, high = math.floor(cut[0] * total + 0.5), math.floor(cut[1] * total + 0.5)  # qRound
    at = sorted({min(low, total - 1), max(high - 1, 0)})
    ranked = np.partition(index, at)  # the bin where the count first exceeds `low` holds the (low+1)-th value
    step = (vmax - vmin) / bins
    lo = vmin + float(ranked[min(low, total - 1)]) * step
    hi = vmin + float(ranked[max(high - 1, 0)]) * step
    if dtype in INTEGER_TYPES:
        lo, hi = math.floor(lo), math.ceil(hi)
    return float(lo), (float(hi) if hi > lo else float(lo) + 1e-6)


def band_limits(path: str, band: int, cut: tuple[float, float] = STRETCH,
                max_px: int = EXACT_PX) -> tuple[float, float] | None:
    """The stretch of one band of a file (cut_limits of band_sample); None when it has no valid value."""
    return cut_limits(*band_sample(path, band, max_px), cut)


def stretch(layer: QgsRasterLayer, band: int, cut: tuple[float, float] = STRETCH) -> tuple[float, float]:
    """Cumulative-count cut (2-98 % by default) of a band (band_limits of its file, source_path): exact, as QGIS's own,
    for a band of at most EXACT_PX pixels; from windows spread over a larger band at full resolution, a fraction of a
    second on the main thread where QGIS's exact statistics of a full tile took seconds per band. A constant band gets
    (value, value + 1e-6), a band without a valid value (0, 1e-6). A layer whose file rasterio cannot read gets QGIS's
    exact statistics (_provider_stretch)."""
    from rasterio.errors import RasterioError

    if layer.providerType() == "gdal":
        try:
            return band_limits(source_path(layer), band, cut) or (0.0, 1e-6)
        except (RasterioError, OSError):
            pass
    return _provider_stretch(layer, band, cut)


def _provider_stretch(layer: QgsRasterLayer, band: int, cut: tuple[float, float] = STRETCH) -> tuple[float, float]:
    """The cut from the layer's provider: QGIS's exact statistics over every pixel (slow on large bands). A constant
    band gets (value, value + 1e-6) from its statistics, without the histogram on which GDAL would log "ERROR 5"."""
    provider = layer.dataProvider()
    stats = provider.bandStatistics(band, QgsRasterBandStats.Min | QgsRasterBandStats.Max)
    if not stats.maximumValue > stats.minimumValue:
        lo = float(stats.minimumValue) if math.isfinite(stats.minimumValue) else 0.0
        return lo, lo + 1e-6
    lo, hi = provider.cumulativeCut(band, cut[0], cut[1])
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


# kind -> [(layer title, style function, role for layer_metadata)], in the order they appear in the group (top first,
# kinds in OUTPUT_KINDS order)
LAYERS = {
    "synthesized": [("Synthesized S2 {date}", style_true_colour, "synthesized")],
    "uncertainty": [("Uncertainty (mean std) {date}", style_uncertainty, "uncertainty")],
    "lai": [("LAI {date}", style_lai, "lai"), ("LAI std {date}", style_lai_std, "lai_std")],
}


def output_tags(path: str) -> dict[str, str]:
    """The tags (GDAL metadata, default domain) of an output file: what made it (core/engine.py, core/lai.py); {} when
    it cannot be read. A header read, with the GDAL that QGIS's layers use."""
    from osgeo import gdal

    gdal.PushErrorHandler("CPLQuietErrorHandler")
    try:
        ds = gdal.OpenEx(str(path), gdal.OF_RASTER)
        return dict(ds.GetMetadata() or {}) if ds is not None else {}
    except RuntimeError:  # gdal.UseExceptions() called anywhere in QGIS's Python
        return {}
    finally:
        gdal.PopErrorHandler()


def _method_text(method: str, tags: dict[str, str]) -> str:
    """How a synthesis was made: "the linear baseline", "the model default.onnx (version 6)"; "" for none."""
    if not method.startswith("onnx:"):
        return f"the {method} baseline" if method else ""
    version = tags.get("MODEL_VERSION")
    return f"the model {tags.get('MODEL') or method[5:] + '.onnx'}" + (f" (version {version})" if version else "")


def _count(tags: dict[str, str], key: str) -> int:
    return len([name for name in tags.get(key, "").split(";") if name])


def about(role: str, date: dt.date | None, tags: dict[str, str], label: str = "") -> tuple[str, str, list[str]]:
    """Title, abstract and keywords of a result layer: `role` synthesized | uncertainty | lai | lai_std (LAYERS),
    from its file's `tags` (output_tags; an LAI file keeps its synthesized image's METHOD_KEYS, core/lai.py); `label`:
    the run's label in the layer's name (run_label: " linear (2)"), for the title."""
    method = tags.get("METHOD", "")
    short, how = method_label(tags), _method_text(method, tags)
    by = f" by {how}" if how else ""
    day = f"{date:%Y-%m-%d}" if date else tags.get("TARGET_DATE") or tags.get("ACQUISITION_DATETIME", "")[:10]
    number = re.search(r" \(\d+\)$", label)  # the run's number in its names: " linear (2)"
    head = ", ".join(x for x in (day, short) if x) + (number[0] if number else "")
    l1c = "1C" in tags.get("PROCESSING_LEVEL", "").upper()
    toa = " Its inputs are Level-1C (top-of-atmosphere) reflectance; the LAI network expects surface reflectance." \
        if l1c else ""
    mode = tags.get("MODE", "")
    scale = tags.get("REFLECTANCE_SCALE")
    dn = f"DN (reflectance = DN × {scale})" if scale else "DN"
    software = f" {tags['SOFTWARE']}." if tags.get("SOFTWARE") else ""
    lai_method = tags.get("LAI_METHOD") or tags.get("method") or "ESA SNAP LAI"
    if role == "synthesized":
        s2, s1, masks = (_count(tags, key) for key in ("INPUTS_S2", "INPUTS_S1", "INPUTS_MASKS"))
        s1 = s1 if method.startswith("onnx:") else 0  # a baseline reads no S1 (files of 0.3.0 listed them)
        inputs = (f" from {s2} Sentinel-2 acquisitions" + (f" ({masks} cloud masks)" if masks else "")
                  + (f" and {s1} Sentinel-1 acquisitions" if s1 else "")) if s2 else ""
        level, kind = ("Level-1C", "top-of-atmosphere") if l1c else ("L2A", "surface")
        observed = [n for n in tags.get("OBSERVED", "").split(";") if n]  # acquired on the date (core/same_day.py)
        screened = method.startswith("onnx:") or method == "linear-haze"  # their haze screen drops hazy "clear" pixels
        what = (f" for {day}: where {' or '.join(observed)}, acquired that day, "
                f"{'is' if len(observed) == 1 else 'are'} clear{' and not hazy' if screened else ''}, its own values; "
                "elsewhere synthesized" if observed else f" synthesized for {day}")
        fallback = f" {tags['FALLBACK'][:1].upper()}{tags['FALLBACK'][1:]}." if tags.get("FALLBACK") else ""
        return (f"Synthesized Sentinel-2 {level} ({head})",
                f"Sentinel-2 {level} " + ("(top-of-atmosphere) reflectance" if l1c else "surface reflectance")
                + what + (f" ({mode})" if mode else "") + f"{by}{inputs}; in {dn}.{fallback}{software}",
                ["Sentinel-2", f"{kind} reflectance", "Level-1C" if l1c else "", "synthesized", mode, short])
    if role == "uncertainty":
        return (f"Uncertainty of synthesized Sentinel-2 ({head})",
                f"1-sigma standard deviation of the Sentinel-2 reflectance synthesized for {day}{by}, per band "
                f"(B02_std, ...) and their mean (mean_std, the band shown); in {dn}.{software}",
                ["Sentinel-2", "uncertainty", "standard deviation", mode, short])
    if role == "lai_std":
        return (f"LAI std ({head})",
                f"1-sigma standard deviation (m²/m²) of the leaf area index for {day} (band LAI_std), propagated "
                f"through the {lai_method} network from the uncertainty of the "
                + (f"reflectance synthesized{by}" if by else "synthesized reflectance") + f".{toa}{software}",
                ["LAI", "leaf area index", "uncertainty", short])
    source = tags.get("source")  # an LAI of one image (densify:estimate_lai, densify lai): the image's file name
    if source:
        parts = len([f for f in tags.get("band_files", "").split(", ") if f])  # a .SAFE's, or one of its band files
        image = ((f"the acquisition of {source}, its {parts} band files read as one image" if parts else source)
                 + (f" ({day})" if day else "") + (f", synthesized{by}" if by else ""))
    elif day or by:
        image = "the Sentinel-2 image synthesized" + (f" for {day}" if day else "") + by
    else:
        image = "a Sentinel-2 image"
    std = tags.get("LAI_std") or "propagated from the reflectance uncertainty"
    flags = tags.get("FLAGS") or tags.get("flags")
    return (f"LAI ({head})" if head else "LAI",
            f"Leaf area index (m²/m²) of {image}, estimated with the {lai_method} network. Bands: LAI, LAI_std "
            f"(1-sigma, m²/m²; {std})" + (f", flags ({flags})" if flags else "") + f".{toa}{software}",
            ["LAI", "leaf area index", "SNAP", short])


def set_metadata(layer: QgsRasterLayer, role: str, date: dt.date | None = None, label: str = "") -> None:
    """Title, abstract and keywords of a result layer (see `about`) in its metadata (Layer Properties > Metadata) and
    its abstract (the layer's tooltip in the Layers panel), from its file's tags; its role kept (ROLE)."""
    title, abstract, keywords = about(role, date, output_tags(source_path(layer)), label)
    layer.setCustomProperty(ROLE, role)
    metadata = layer.metadata()
    metadata.setTitle(title)
    metadata.setAbstract(abstract)
    metadata.setType("dataset")
    metadata.addKeywords("Sentinel Densify", [k for k in dict.fromkeys(keywords) if k])
    layer.setMetadata(metadata)
    layer.setAbstract(abstract)


def common_limits(outputs: list[dict[str, str]]) -> dict[str, list[tuple[float, float]] | tuple[float, float]]:
    """One 2-98 % stretch over all the dates' files, so that a colour means one value on every date (the Temporal
    Controller compares them): per B04/B03/B02 band of the synthesized images ("synthesized": [(min, max)] * 3),
    and of the uncertainty's mean std ("uncertainty": (min, max)). The stretch of a single date (band_limits: the
    same full-resolution reads and cut) over the values of every date pooled, each date read within POOL_PX / dates
    pixels (so up to 4 dates as a date alone; a one-date series gets that date's own stretch). Reads the files only
    (rasterio): safe in a task's worker thread. A kind whose bands are not found, or that has no valid value, is left
    out (its layers keep their own stretch)."""
    import numpy as np
    import rasterio

    def pooled(kind: str, wanted) -> list[tuple[float, float] | None] | None:
        paths = [out[kind] for out in outputs if kind in out]
        bands = []
        for path in paths:
            with rasterio.open(path) as ds:
                found = wanted([(d or "").upper() for d in ds.descriptions])
            if not found:
                return None
            bands.append(found)
        if not paths:
            return None
        budget = min(EXACT_PX, POOL_PX // len(paths))
        cuts = []
        for i in range(len(bands[0])):  # one band of every date at a time: its samples only in memory
            samples = [band_sample(path, b[i], budget) for path, b in zip(paths, bands, strict=True)]
            types = {dtype for _, _, dtype in samples}
            cuts.append(cut_limits(np.concatenate([v for v, _, _ in samples]), sum(n for _, n, _ in samples),
                                   types.pop() if len(types) == 1 else "float64"))
        return cuts

    limits: dict = {}
    rgb = pooled("synthesized", lambda names: [names.index(b) + 1 for b in TRUE_COLOUR]
                 if all(b in names for b in TRUE_COLOUR) else None)
    if rgb and all(rgb):
        limits["synthesized"] = rgb
    mean = pooled("uncertainty", lambda names: [i for i, n in enumerate(names, 1) if "MEAN" in n][:1])
    if mean and mean[0]:
        limits["uncertainty"] = mean[0]
    return limits


def styles_of(kind: str, limits: dict | None = None) -> list[tuple[str, Callable[[QgsRasterLayer], None], str]]:
    """LAYERS[kind], its style given the series' common `limits` for that kind when there are some."""
    if not (limits or {}).get(kind):
        return LAYERS[kind]
    return [(title, partial(style, limits=limits[kind]), role) for title, style, role in LAYERS[kind]]


def is_result_group(node: QgsLayerTreeNode | None) -> bool:
    """Whether a layer tree node is a group of Densify results: marked (GROUP), or named so ("Densify YYYY-MM-DD ...",
    "Densify LAI": a dialog's group in a project saved before the mark)."""
    return (node is not None and QgsLayerTree.isGroup(node)
            and (bool(node.customProperty(GROUP, "")) or re.match(r"Densify (\d{4}-\d\d-\d\d|LAI)( |$)", node.name())
                 is not None))


def is_processing_group(node: QgsLayerTreeNode | None) -> bool:
    """Whether a node is a group that Processing's loads made (styling.into_group): the only groups they reuse."""
    value = node.customProperty(GROUP, "") if node is not None and QgsLayerTree.isGroup(node) else ""
    return value is True or str(value).lower() in ("true", "processing")


def free_name(home: QgsLayerTreeGroup, name: str, ignore: QgsLayerTreeNode | None = None) -> str:
    """`name`, numbered when `home` has a group of that name already (other than `ignore`): "Densify 2018-03-01
    linear (2)", then (3), ...; a name numbered already goes on from its number."""
    taken = {c.name() for c in home.children() if QgsLayerTree.isGroup(c) and c is not ignore}
    if name not in taken:
        return name
    numbered = re.fullmatch(r"(.*) \((\d+)\)", name)
    base, number = (numbered[1], int(numbered[2]) + 1) if numbered else (name, 2)
    while f"{base} ({number})" in taken:
        number += 1
    return f"{base} ({number})"


def new_group(home: QgsLayerTreeGroup, name: str, series: str = "", date: dt.date | None = None,
              index: int = 0) -> QgsLayerTreeGroup:
    """A new group `name` in `home`, at `index` (0: the top, where a new run goes), except for a date of a `series`
    whose other dates' groups are in `home`: among them in date order, the earliest on top. In QGIS < 3.42 a frame of
    the Temporal Controller shows a layer of the next date too (QgsRange::overlaps ignores the frame's excluded end:
    qgis/QGIS#53079), so each date's group must lie above the next date's for a frame to show its own date."""
    day = f"{date:%Y-%m-%d}" if date else ""
    if series and day:
        kin = [(c.customProperty(DATE, ""), i) for i, c in enumerate(home.children())
               if QgsLayerTree.isGroup(c) and c.customProperty(SERIES, "") == series]
        later = [i for d, i in kin if d > day]
        earlier = [i for d, i in kin if d <= day]
        index = min(later) if later else max(earlier) + 1 if earlier else index
    group = home.insertGroup(index, name)
    if series:
        group.setCustomProperty(SERIES, series)
        group.setCustomProperty(DATE, day)
    return group


def drop_if_empty(group: QgsLayerTreeNode | None) -> None:
    """Remove a result group (is_result_group) that has no layer left."""
    if is_result_group(group) and not group.children() and group.parent() is not None:
        group.parent().removeChildNode(group)


ROLES = {role: (title, style) for kind in LAYERS for title, style, role in LAYERS[kind]}


def restyle(layer: QgsRasterLayer, date: dt.date | None, label: str) -> bool:
    """A result layer whose file another run replaced (its provider reopened), for that run: styled for its role (ROLE),
    dated, described and named with `label` (run_label); False for a layer without a role (not a result layer)."""
    role = layer.customProperty(ROLE, "")
    if role not in ROLES:
        return False
    title, style = ROLES[role]
    style(layer)
    if date is not None:
        set_temporal(layer, date)
        layer.setName(layer_name(title, date, label))
    set_metadata(layer, role, date, label)
    return True


def add_result_layers(outputs: dict[str, str], date: dt.date, project: QgsProject | None = None,
                      limits: dict | None = None, series: str = "") -> tuple[QgsLayerTreeGroup, list[QgsRasterLayer]]:
    """Load the outputs of a run as styled layers, described (set_metadata), into a new group (marked GROUP "dialog")
    at the top of the layer tree or, for a date of a `series` (an id shared by its dates), among that series' groups,
    earliest on top (see new_group); named with the date and run_label (the method, from the files' tags); `limits`:
    a series' common stretch, see common_limits."""
    project = project or QgsProject.instance()
    label = run_label(outputs, date, output_tags(outputs["synthesized"]) if outputs.get("synthesized") else {})
    layers = []
    for order, kind in enumerate(OUTPUT_KINDS):  # every layer opened and styled before the project is touched
        path = outputs.get(kind)
        if not path:
            continue
        for title, style, role in styles_of(kind, limits):
            layer = QgsRasterLayer(str(path), layer_name(title, date, label), "gdal")
            if not layer.isValid():
                raise OSError(f"QGIS cannot open the output {path}")
            style(layer)
            set_temporal(layer, date)
            set_metadata(layer, role, date, label=label)
            layers.append((layer, order))
    group = new_group(project.layerTreeRoot(), group_name(date, label), series, date)
    group.setCustomProperty(GROUP, "dialog")
    for layer, order in layers:
        project.addMapLayer(layer, False)
        group.addLayer(layer).setCustomProperty(ORDER, order)
    for node in group.findLayers()[1:]:
        node.setItemVisibilityChecked(False)  # show the top layer only; the others one click away
    return group, [layer for layer, _ in layers]
