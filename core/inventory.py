"""Discover, classify and check the inputs of a request: S2, S1 and mask rasters.

Every problem found is collected and raised together as one `InputError`, each naming its file.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
from rasterio.errors import RasterioError, RasterioIOError
from rasterio.windows import Window

from . import archives, band_files, dates, s1_files
from .atomic import first_line, same_file
from .errors import InputError, Problem, short_list
from .grid import Grid, canonical_wkt, within_extent
from .stack import S1_BANDS, S2_BANDS, S2_L1C_BANDS, Stack

RASTER_SUFFIXES = {".tif", ".tiff", ".jp2", ".vrt", ".img", ".nc"}
S2_ALIASES = {"B2": "B02", "B3": "B03", "B4": "B04", "B5": "B05", "B6": "B06", "B7": "B07",
              "B8": "B08", "B9": "B09", "B1": "B01", "B8A": "B8A", "B10": "B10"}
SCL_CLEAR = (4, 5, 6)  # vegetation, bare soil, water (EVALUATION.md)
MAX_EXTRAPOLATION_DAYS = 366
SENSOR_NAMES = {"S2": "Sentinel-2", "S1": "Sentinel-1", "MASK": "a cloud mask"}
_GENERIC_BAND = re.compile(r"^(BAND)?[\s_]*\d+$", re.IGNORECASE)  # "Band 1", "1": no name


@dataclass
class RasterInfo:
    """What an input file is: sensor, date, bands, grid, scaling, mask kind."""

    path: str
    sensor: str | None = None  # "S2" | "S1" | "MASK" | None (unknown)
    when: dt.datetime | None = None
    bands: list[str] = field(default_factory=list)
    grid: Grid | None = None
    dtype: str = ""
    nodata: float | None = None
    scale: float = 1e-4  # S2 DN -> reflectance
    scale_from: str = ""  # S2: where `scale` came from: band scale, tags, values (a float file's, untagged)
    offset: float = 0.0  # S2 reflectance offset (BOA_ADD_OFFSET * scale)
    s1_db: bool = True
    mask_kind: str = ""  # scl | binary | probability (%) | probability_0_1 | fmask (MASK_KINDS)
    mask_band: int = 0  # MASK: the band (1-based) that holds the mask (0: band 1). S2: a mask band in the stack
    tags: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    descriptions: list[str] = field(default_factory=list)  # as in the file
    output_kind: str = ""  # synthesized | uncertainty | lai when the file is a Densify output
    band_order_assumed: bool = False  # S2 bands undescribed and read in the standard order
    band_file: str = ""  # the band of a one-band S2 file (ESA's band files; `build` combines them)
    files: list[str] = field(default_factory=list)  # the band (S2) or polarization (S1) files of a combined image
    product: str = ""  # a GDAL SENTINEL2 subdataset's product folder: a run reads its band files
    polarization: str = ""  # VV or VH of a one-polarization S1 file (`build` combines each acquisition's)
    date_source: str = ""  # where `when` came from: given, metadata, file name, product, TIFFTAG_DATETIME
    unused: str = ""  # S2: the bands of a file that holds only bands a run does not use (B01, B09: the 60 m file of
    # an export by resolution): `build` leaves it out, with a warning
    label: str = ""  # an image read from several files (`files`): its name in messages, naming them
    offset_untold: bool = False  # S2 integer DN dated from 2022-01-25 that no tag or GDAL band offset offsets
    # (processing baseline 04.00 adds 1000 DN): `offset_warnings` reads whether it looks offset
    notes: list[str] = field(default_factory=list)  # warnings about a guess made for this file (not naming it;
    # `build` groups the files of one note into one warning)

    def made_of(self, parts: list[RasterInfo]) -> None:
        """An image read from several files (band or polarization files, as one VRT): their paths, the date's
        source of the first (file name, metadata...: not "given") and their notes."""
        self.files = [i.path for i in parts]
        self.date_source = parts[0].date_source
        self.notes += [n for n in dict.fromkeys(n for i in parts for n in i.notes) if n not in self.notes]

    @property
    def name(self) -> str:
        """The file's name; for an image read from several files (an in-memory VRT), its `label`."""
        return self.label or Path(self.path).name


def _problem(info: RasterInfo, message: str) -> Problem:
    """A problem with an input, named as the analyst knows it (an image read from several files: by its parts)."""
    return Problem(None, f"{info.name}: {message}") if info.label else Problem(info.path, message)


def bands_in_name(path: str | Path, count: int) -> list[str]:
    """The Sentinel-2 bands a file's name lists, one per band ("20180603_B2_B3_B4_B8.tif"), in order; [] unless
    it lists exactly `count` distinct bands."""
    found = [_norm_band(t) for t in _BAND_TOKEN.findall(Path(path).stem)]
    return found if len(found) == count == len(set(found)) and set(found) <= set(S2_L1C_BANDS) else []


_BAND_TOKEN = re.compile(r"(?<![A-Za-z0-9])(B(?:8A|\d{1,2}))(?![A-Za-z0-9])", re.IGNORECASE)


def _norm_band(name: str) -> str:
    name = re.sub(r"[_ ][1-6]0M$", "", name.strip().upper())  # B02_10m, B8A_20m: resolution suffix
    name = name.replace("BAND", "B").replace("_", "")
    m = re.search(r"B(\d{1,2}A?)$", name)
    if m:
        key = "B" + m.group(1)
        return S2_ALIASES.get(key, key if len(key) >= 3 else key)
    m = re.fullmatch(r"(?:SIGMA0|GAMMA0|BETA0|INTENSITY)?(VV|VH|HH|HV)(?:DB)?", name)
    if m:  # VV, and SNAP's Sigma0_VV_db, Gamma0_VH, Intensity_VV
        return m.group(1)
    if "SCL" in name:
        return "SCL"
    return name


RADAR_GEOMETRY = ("is in radar geometry (ground control points, no map grid), as a Sentinel-1 GRD product's "
                  "measurement files are: calibrate and terrain-correct it first (SNAP: Calibration, then "
                  "Terrain-Correction, written as GeoTIFF or BEAM-DIMAP; or ASF's RTC products)")
S2_BAND_FILE = "S2 band file"  # a one-band file of one S2 band (ESA's T31UDS_..._B04_10m.jp2): see band_files


def _guess_sensor(path: str, bands: list[str], count: int, dtype: str, tags: dict[str, str]) -> str | None:
    name = Path(path).name.upper()
    if any(b in ("VV", "VH") for b in bands) or re.search(r"(^|_)S1[AB]?_|GRD|SIGMA0", name):
        return "S1"
    if count == 1 and (bands[:1] == ["SCL"] or re.search(r"SCL|CLD|CLOUD|MASK|FMASK|QA", name)):
        return "MASK"
    if count == 1 and (bands[0] in S2_L1C_BANDS or re.search(r"(^|_)B(0[1-9]|1[0-2]|8A)(_|\.)", name)):
        return S2_BAND_FILE
    s2_name = re.search(r"L2A|MSIL|(^|_)S2[AB]?_|T\d{2}[A-Z]{3}_", name)
    if sum(b in S2_BANDS for b in bands) >= 3 or (count >= 4 and s2_name) or set(bands) <= set(S2_L1C_BANDS):
        return "S2"  # (every band named as a Sentinel-2 one: a part of an export by resolution)
    if count == 1 and dtype in ("uint8", "int8", "uint16", "int16"):
        return "MASK"
    if count == 2 and dtype.startswith("float"):
        return "S1"
    if count >= 4 and dtype in ("uint16", "int16", "float32"):
        return "S2"
    return None


def densify_output_kind(tags: dict[str, str], descriptions: list[str]) -> str:
    """'synthesized', 'uncertainty' or 'lai' when a raster is an output of this tool, else ''.

    Recognised by the tags `engine.run` writes (SOFTWARE, or TARGET_DATE + MODE + METHOD) and,
    for `densify lai` files, by their LAI / LAI_std / flags bands with a flags tag."""
    upper = {k.upper(): v for k, v in tags.items()}
    is_lai = descriptions[:3] == ["LAI", "LAI_std", "flags"]
    ours = (upper.get("SOFTWARE", "").startswith("Sentinel Densify")
            or {"TARGET_DATE", "MODE", "METHOD"} <= upper.keys() or (is_lai and "FLAGS" in upper))
    if not ours:
        return ""
    if is_lai or "LAI_METHOD" in upper:
        return "lai"
    if descriptions[-1:] == ["mean_std"] or upper.get("CONTENT", "").startswith("per-band standard deviation"):
        return "uncertainty"
    return "synthesized"


def check_band_order(band_order: list[str] | None) -> list[str]:
    """What is wrong with a user's S2 band order (unknown or repeated names); [] when fine."""
    problems, seen = [], set()
    for raw in band_order or []:
        name = _norm_band(raw) if raw.strip() else ""
        if name not in S2_L1C_BANDS:
            problems.append(f"band order: unknown band {raw.strip() or '(empty name)'} "
                            f"(Sentinel-2 bands: {', '.join(S2_L1C_BANDS)})")
        elif name in seen:
            problems.append(f"band order: {name} listed twice")
        seen.add(name)
    return list(dict.fromkeys(problems))  # a band listed three times is said once


def describe(path: str | Path, sensor: str | None = None, when: dt.datetime | None = None,
             band_order: list[str] | None = None) -> RasterInfo:
    """Open a raster and describe it; problems are recorded, not raised.

    A Densify output gets `output_kind` (and no sensor unless one is given): `build` never takes
    it as an observation, while single-image tools (LAI) may still read it."""
    info = RasterInfo(str(path))
    try:
        with rasterio.open(path) as ds:
            info.tags = {k: v for k, v in ds.tags().items()}
            info.dtype = ds.dtypes[0]
            info.nodata = ds.nodata
            band_scaling = (tuple(ds.scales), tuple(ds.offsets))
            info.descriptions = descs = [d or "" for d in ds.descriptions]
            info.output_kind = densify_output_kind(info.tags, descs)
            info.bands = [_norm_band(d) if d and not _GENERIC_BAND.match(d.strip()) else "" for d in descs]
            if not band_order and ds.count > 1 and not any(info.bands) and (listed := bands_in_name(path, ds.count)):
                info.bands = listed
                info.notes.append(f"has no band descriptions: its bands are read as its name lists them "
                                  f"({', '.join(listed)})")
            if ds.crs is None and ds.gcps[0]:
                info.problems.append(RADAR_GEOMETRY)
            elif ds.crs is None:
                info.problems.append("has no CRS (not georeferenced)")
            else:
                info.grid = Grid(canonical_wkt(ds.crs.to_wkt()), ds.transform, ds.width, ds.height)
                if ds.transform.b != 0 or ds.transform.d != 0 or ds.transform.e > 0:
                    info.problems.append("is rotated or not north-up; warp it to a north-up grid first")
            count = ds.count
    except (RasterioIOError, OSError) as exc:
        info.problems.append(f"unreadable ({first_line(exc)[:160]})")
        return info

    info.when, info.date_source = _acquisition_time(info, str(path), when)
    if product := band_files.subdataset_product(str(path)):  # one resolution of a product: `build` reads it all
        info.product, info.sensor = product, (sensor or "S2").upper()
        if info.sensor != "S2":
            info.problems.append(f"is a Sentinel-2 product (GDAL SENTINEL2 subdataset), given as {info.sensor}")
        return info
    if info.output_kind and not sensor:
        return info
    info.sensor = (sensor or "").upper() or _guess_sensor(str(path), info.bands, count, info.dtype, info.tags)
    if info.sensor == S2_BAND_FILE or (info.sensor == "S2" and count == 1):
        info.sensor = None
        info.band_file = band_files.band_of(info.path, info.bands) or "?"
        band = f" ({info.band_file})" if info.band_file != "?" else ""
        info.problems.append(f"holds one Sentinel-2 band{band}: give all the band files of its acquisition to a "
                             "run, which reads them as one image, or stack them into one file (e.g. gdalbuildvrt "
                             "-separate image.vrt B02.tif B03.tif ...)")
    elif info.sensor not in ("S2", "S1", "MASK"):
        info.sensor = None
        info.problems.append("unknown sensor (not recognisable as Sentinel-2, Sentinel-1 or a cloud mask; "
                             "name the bands B02.. / VV, VH or give the sensor explicitly)")
    if info.when is None:
        info.problems.append("no acquisition date in its metadata or file name")

    if info.sensor == "S2":
        _describe_s2(info, count, band_order, band_scaling)
        info.offset_untold = _offset_untold(info, band_scaling[1])
    elif info.sensor == "S1":
        _describe_s1(info, count)
    elif info.sensor == "MASK":
        _describe_mask(info)
    return info


WRITE_TIME_NOTE = ("dated by its TIFFTAG_DATETIME, which is when the file was written, not when it was acquired "
                   "(nothing else in its metadata or name dates it): name the file by its acquisition date "
                   "(YYYYMMDD) or tag it (ACQUISITION_DATETIME) if that differs")


def _acquisition_time(info: RasterInfo, path: str, when: dt.datetime | None) -> tuple[dt.datetime | None, str]:
    """(acquisition time, where it came from): as given, else the metadata's sensing-time tags, else the file
    name, else the product beside it (SNAP's .dim); last the file's write time (TIFFTAG_DATETIME), with a note."""
    if when is not None:
        return when, "given"
    if (found := dates.date_from_metadata(info.tags)) is not None:
        return found, "metadata"
    if (found := dates.date_from_name(path)) is not None:
        return found, "file name"
    if (found := s1_files.product_date(path)) is not None:
        return found, "product"
    if (found := dates.date_written(info.tags)) is not None:
        info.notes.append(WRITE_TIME_NOTE)
        return found, "TIFFTAG_DATETIME"
    return None, ""


def single_s2(path: str, band_order: list[str] | None = None) -> RasterInfo:
    """The one S2 image a single-image tool (LAI) reads: a raster file as it is (no date needed), or the
    one acquisition in a folder, zip archive or .SAFE product (its band files read as one image; also
    given as a GDAL SENTINEL2 subdataset, or as one of its band files).
    InputError naming `path` when it is not that."""
    p = Path(path)
    if p.is_dir() or (p.is_file() and archives.is_zip(p)) or band_files.subdataset_product(path):
        inv = build([path], band_order=band_order, check_clear=False)
        if len(inv.s2) != 1:
            raise InputError(Problem(path, f"holds {len(inv.s2)} Sentinel-2 acquisitions "
                                           f"({short_list([i.name for i in inv.s2])}): give one"))
        return inv.s2[0]
    info = describe(path, sensor="S2", band_order=band_order)  # dated if it can be (the offset check), or not
    info.problems = [p for p in info.problems if not p.startswith("no acquisition date")]
    info.notes = [n for n in info.notes if n != WRITE_TIME_NOTE]
    if info.band_file and not band_order:  # one band file: its acquisition's band files, read as one image
        return _band_file_acquisition(path)
    if info.unused:
        info.problems.append(f"holds only {info.unused}, which are not used: give a file of its acquisition's "
                             "other bands (e.g. its 10 m or 20 m file)")
    if info.problems or info.grid is None:
        raise InputError(Problem(path, "; ".join(info.problems) or "not a georeferenced raster"))
    if not band_order and len(band_files.held_bands(info)) < len(S2_BANDS) and not is_virtual(path):
        return _split_acquisition(path, info)
    return info


def _split_acquisition(path: str, info: RasterInfo) -> RasterInfo:
    """The S2 image of the acquisition whose bands a multi-band file holds only some of, read with the other
    files of that acquisition in its folder (band_files.split_images: a 10 m and a 20 m export); the file as it is
    when there are none. Hidden files (.*) are not read, as in a folder scan (_files_under): a killed run's
    .NAME.ID.partial.tif, macOS's ._NAME files."""
    if info.when is None:
        return info
    others = [describe(f) for f in sorted(Path(path).parent.iterdir())  # read only those dated that day
              if f.suffix.lower() in RASTER_SUFFIXES and not f.name.startswith(".") and f.is_file()
              and not same_file(f, path) and _day_of(f) == info.when.date()]
    parts = band_files.parts_of(info, [info, *others])
    if not parts:
        return info
    images, problems, _warnings = band_files.combine(parts, describe)
    if problems:
        raise InputError(problems)
    return images[0]


def _day_of(path: Path) -> dt.date | None:
    """The day a raster is dated by its header's tags or its name (as `describe` dates it, without reading pixels);
    None when neither says or it cannot be opened."""
    try:
        with rasterio.open(path) as ds:
            when = dates.date_from_metadata(ds.tags()) or dates.date_from_name(path)
    except (RasterioError, OSError):
        return None
    return when.date() if when is not None else None


def _band_file_acquisition(path: str) -> RasterInfo:
    """The S2 image of the acquisition one band file belongs to, from its product (band_files.product_root)."""
    root = band_files.product_root(path)
    for image in build([root], check_clear=False).s2:
        if any(_same_member(path, f) for f in image.files):
            return image
    raise InputError(Problem(path, f"holds one Sentinel-2 band, and {Path(root).name} has no acquisition "
                                   "read from it: give the whole .SAFE product, or a file of all the bands"))


def _same_member(a: str, b: str) -> bool:
    """Whether two paths name one file (links included), also inside a zip archive (/vsizip/ paths)."""
    in_a, in_b = archives.split(a), archives.split(b)
    if in_a is None or in_b is None:
        return in_a is None and in_b is None and same_file(a, b)
    return in_a[1].strip("/") == in_b[1].strip("/") and same_file(in_a[0], in_b[0])


def _describe_s2(info: RasterInfo, count: int, band_order: list[str] | None,
                 band_scaling: tuple[tuple, tuple] = ((), ())) -> None:
    if band_order:
        bad = check_band_order(band_order)
        if bad:
            info.problems += bad
            return
        if len(band_order) != count:
            info.problems.append(f"has {count} bands but the band order names {len(band_order)}")
        info.bands = [_norm_band(b) for b in band_order][:count]
    elif sum(b in S2_BANDS for b in info.bands) < 3:
        foreign = [d for d, b in zip(info.descriptions, info.bands, strict=False) if b and b not in S2_L1C_BANDS]
        named = [d for d, b in zip(info.descriptions, info.bands, strict=False) if b]
        if count in (len(S2_BANDS), len(S2_L1C_BANDS)) and not foreign:
            info.bands = list(S2_BANDS if count == len(S2_BANDS) else S2_L1C_BANDS)
            info.band_order_assumed = True
        elif foreign and {_norm_band(b) for b in foreign} <= {"VV", "VH"}:
            info.problems.append(f"has {count} band(s) named {', '.join(foreign)}: a Sentinel-1 raster where a "
                                 "Sentinel-2 one (bands B02, B03, ...) is needed")
            return
        elif len(named) == count and not set(info.bands) & set(S2_BANDS) and set(info.bands) & set(S2_L1C_BANDS):
            info.unused = ", ".join(named)  # e.g. the 60 m file (B01, B09) of an export by resolution
            return
        elif foreign:
            info.problems.append(f"has {count} band(s) named {', '.join(foreign)}: not Sentinel-2 bands "
                                 "(B02, B03, ...); rename them or give a band order")
            return
        elif len(named) < count:
            which = f"{count - len(named)} of its {count} bands unnamed (the others: {', '.join(named)})" if named \
                else f"{count} unnamed bands"
            info.problems.append(f"has {which}: name them (band descriptions B02...) or give a band order")
            return
        # else: a few named Sentinel-2 bands, a part of an acquisition (band_files.split_images)
    _other_bands(info)
    if info.nodata is None and not info.dtype.startswith("float"):
        info.nodata = 0.0  # DN 0 is Sentinel-2's no-data value (L1C and L2A)
    scales, offsets = band_scaling
    if len(set(scales)) == 1 and len(set(offsets)) == 1 and (scales[0] != 1.0 or offsets[0] != 0.0):
        info.scale, info.offset = float(scales[0]), float(offsets[0])  # GDAL's own (QGIS shows them applied)
        if not info.offset:  # no GDAL offset: a BOA_ADD_OFFSET tag's, in DN (refl = (DN + offset) x scale)
            info.offset = (dn_offset(info.tags) or 0.0) * info.scale
        info.scale_from = "band scale"
        return
    scale, offset = s2_scaling(info.tags)
    info.scale_from = "tags" if scale is not None else ""
    if info.dtype.startswith("float"):  # reflectance (0-1) or DN (0-10000): its values say, whatever its tags
        reflectance = looks_like_reflectance(info.path)
        if scale is None:
            scale, info.scale_from = (1.0 if reflectance else 1e-4), "values"
        elif reflectance and scale < 0.01:  # a DN scale copied along by a conversion to reflectance
            upper = {k.upper(): v for k, v in info.tags.items()}
            key = next(k for k in ("REFLECTANCE_SCALE", "QUANTIFICATION_VALUE") if upper.get(k))
            shift = f", its offset ({offset:g} DN) applied as {offset * scale:g}" if offset else ""
            info.notes.append(f"its {key}={upper[key]} tag is ignored: the values are already reflectance (0-1), "
                              f"not DN{shift}")
            info.scale, info.offset, info.scale_from = 1.0, offset * scale, "values"
            return
    info.scale = scale or 1e-4
    info.offset = offset * info.scale


def _other_bands(info: RasterInfo) -> None:
    """Bands of an S2 stack that are not Sentinel-2 reflectance (an SCL, QA60 or cloud probability exported
    along, an index): not read as bands, and said; the first SCL (else cloud-probability) band is kept as the
    image's cloud mask (`mask_band`, with its `mask_kind`), used when no mask file is paired with it."""
    others = [(k, d) for k, (b, d) in enumerate(zip(info.bands, info.descriptions, strict=False))
              if b and b not in S2_L1C_BANDS]
    if not others:
        return
    for k, d in others:
        kind = "scl" if info.bands[k] == "SCL" else "probability" if PROBABILITY_NAME.search(d.upper()) else ""
        if kind and (not info.mask_band or (kind == "scl" and info.mask_kind != "scl")):
            info.mask_band, info.mask_kind = k + 1, kind
        info.bands[k] = ""
    if info.mask_kind == "probability":
        info.mask_kind = _probability_kind(info, info.mask_band)
    names = ", ".join(d for _k, d in others)
    info.notes.append(f"holds band(s) {names} besides its Sentinel-2 bands, not read as reflectance"
                      f"{_mask_band_use(info)}")


def _mask_band_use(info: RasterInfo) -> str:
    """What `_other_bands`' note says of an S2 image's mask band: used as its cloud mask by a run ('' when none)."""
    mask = info.descriptions[info.mask_band - 1] if info.mask_band else ""
    kind = MASK_KINDS.get(info.mask_kind, "").split(" (")[0]
    return f": {mask} is used as its cloud mask ({kind}) unless a mask file is given for it" if mask else ""


def s2_scaling(tags: dict[str, str]) -> tuple[float | None, float]:
    """(DN -> reflectance scale, offset in DN) from S2 metadata.

    REFLECTANCE_SCALE or QUANTIFICATION_VALUE (10000 means 1e-4); None when untagged.
    BOA_ADD_OFFSET (L2A, processing baseline 04.00: -1000) or RADIO_ADD_OFFSET (L1C), 0 when untagged.
    """
    upper = {k.upper(): v for k, v in tags.items()}
    raw = upper.get("REFLECTANCE_SCALE") or upper.get("QUANTIFICATION_VALUE")
    scale = None
    if raw:
        value = float(raw)
        scale = value if value < 1 else 1.0 / value
    return scale, dn_offset(tags) or 0.0


def dn_offset(tags: dict[str, str]) -> float | None:
    """The DN offset a BOA_ADD_OFFSET (L2A) or RADIO_ADD_OFFSET (L1C) tag says (-1000 from processing baseline 04.00);
    None when untagged."""
    upper = {k.upper(): str(v).strip() for k, v in tags.items()}
    offset = upper.get("BOA_ADD_OFFSET") or upper.get("RADIO_ADD_OFFSET")
    return float(offset) if offset else None


# processing baseline 04.00 (from 2022-01-25) adds 1000 DN (BOA_ADD_OFFSET -1000): its darkest pixels sit near or
# above 1000 DN (just under where Sen2Cor's reflectance is negative, in shadows). Without the offset, every 31UDS
# image with clear land has a 1st percentile of B02-B04 of 563 DN at most (water, shadow, dense vegetation), every one
# at least 10 % clear 897 DN at most (2018-06-13, 38 % clear); 47 of the 118, all under 10 % clear, reach 900 DN (43
# by the 0.1st percentile, 41 by the minimum, which one shadow pixel kept negative would decide: runs/s30/fix_inputs2)
OFFSET_LIKE_DN = 900.0
VISIBLE = ("B02", "B03", "B04")  # where dark targets are darkest


def _offset_untold(info: RasterInfo, gdal_offsets: tuple) -> bool:
    """Whether an S2 image is integer DN with visible bands, dated from 2022-01-25 (processing baseline 04.00
    adds 1000 DN), that neither a GDAL band offset nor an offset tag (BOA_ADD_OFFSET, also 0) read with it offsets."""
    told = any(gdal_offsets) or (dn_offset(info.tags) is not None and info.scale_from != "values")  # the tag used
    return not (info.problems or told or info.dtype.startswith("float")
                or not set(VISIBLE) & set(info.bands) or info.when is None
                or info.when.date() < band_files.OFFSET_SINCE)


def offset_warnings(s2_infos: list[RasterInfo]) -> list[str]:
    """A warning naming the S2 images read as DN without an offset though dated from 2022-01-25 (`offset_untold`),
    when not even the darkest of them has visible pixels under OFFSET_LIKE_DN (`_dark_dn`): processing baseline
    04.00's offset is then likely there, uncorrected (reflectance 0.1 too bright). The first image with darker
    pixels shows the series has no offset (its bright images are cloud): the rest are not read."""
    found = []
    for info in (i for i in s2_infos if i.offset_untold):
        dark = _dark_dn(info)
        if dark is not None and dark < OFFSET_LIKE_DN:
            return []
        if dark is not None:
            found.append((info, dark))
    if not found:
        return []
    names = [i.name for i, _ in found]
    which = names[0] if len(names) == 1 else f"{len(names)} S2 images ({short_list(names)})"
    files = [Path(f).name for i, _ in found for f in (i.files or [i.path])]  # to tag: an image's parts, each
    tag = f"each of their {len(files)} files ({short_list(files)})" if any(i.files for i, _ in found) else "them"
    return [f"{which}: integer DN dated from {band_files.OFFSET_SINCE:%Y-%m-%d} and read without a reflectance "
            "offset (no BOA_ADD_OFFSET tag, no GDAL band offset), yet not even the darkest visible pixels are under "
            f"{OFFSET_LIKE_DN:.0f} DN (1st percentile of {', '.join(VISIBLE)}: {min(d for _, d in found):.0f} DN at "
            "the lowest), as with processing baseline 04.00's offset (DN = 10000 x reflectance + 1000): if the files "
            f"hold it, their reflectance is read 0.1 too bright. Tag {tag} BOA_ADD_OFFSET=-1000 (RADIO_ADD_OFFSET for "
            "Level-1C; e.g. gdal_edit.py -mo BOA_ADD_OFFSET=-1000 FILE), or give the band files or the .SAFE "
            "product, which are read with their offset; if the scenes are all or partly cloudy (no water or shadow "
            "left clear), snow or bright desert, ignore this"]


def _dark_dn(info: RasterInfo) -> float | None:
    """The 1st percentile of an S2 image's valid, non-zero DN in its visible bands, read once at 64 px (cached per
    file version: the dialog builds the inventory on every edit); None when it has none."""
    key = (info.path, file_version(info.path))
    if key not in _DARK_DN:
        if len(_DARK_DN) > 4096:
            _DARK_DN.clear()
        values = sampled_values(info.path, [info.bands.index(b) + 1 for b in VISIBLE if b in info.bands], 64)
        values = values[values != 0]  # 0: Sentinel-2's no data
        _DARK_DN[key] = float(np.percentile(values, 1)) if values.size else None
    return _DARK_DN[key]


_DARK_DN: dict[tuple, float | None] = {}


def file_version(path: str | Path) -> tuple:
    """What changes when a file is rewritten, to key what is cached about it: its (modification time, size, inode);
    a /vsizip/ path's archive's; a VRT's followed by its sources' (its pixels are theirs, also for the in-memory
    VRT of an image read from several files); () when it cannot be stat'ed (another GDAL virtual path)."""
    path = str(path)
    outer = archives.split(path)
    try:
        st = os.stat(outer[0]) if outer is not None else None if is_virtual(path) else os.stat(path)
    except OSError:
        st = None
    version = (st.st_mtime_ns, st.st_size, st.st_ino) if st else ()
    if path.lower().endswith(".vrt"):
        version += tuple(file_version(f) for f in vrt_sources(path))
    return version


def vrt_sources(path: str) -> list[str]:
    """The files a VRT reads (GDAL's file list, without the VRT); [] when it cannot be opened."""
    try:
        with rasterio.open(path) as ds:
            return [f for f in ds.files if f != path]
    except (RasterioError, OSError):
        return []


def looks_like_reflectance(path: str) -> bool:
    """Whether a float raster holds reflectance (0-1) rather than DN (0-10000): the median of its valid,
    non-zero values over all bands, read at 64 px, is at most 2 (True when it has no such value). A median,
    so that outliers (a saturated 65535 DN kept as 6.55, a bright cloud) never flip a whole image."""
    values = sampled_values(path, None, 64)
    values = values[values != 0]  # 0: the fill of a file without nodata
    return bool(values.size == 0 or np.median(values) <= 2.0)


SAMPLED_WINDOWS = (4, 32)  # a large file without overviews: a 4 x 4 grid of 32 x 32 px windows, at full resolution
LARGE_PX = 1024  # wider or higher than this


def sampled_values(path: str, band: int | list[int] | None = None, max_size: int = 64) -> np.ndarray:
    """The valid (not nodata), finite values of a file's `band` (or bands; all bands: None), read decimated to at
    most `max_size` px a side (from its overviews when it has some), or, for a large file without overviews (which
    that read would decode whole: a full tile takes seconds), from SAMPLED_WINDOWS spread over it; as float64; empty
    when its pixels cannot be read (the run's read names the file)."""
    try:
        with rasterio.Env(), rasterio.open(path) as ds:  # Env: GDAL's messages go to logging, not stderr
            count = ds.count if band is None else len(band) if isinstance(band, list) else 0
            if max(ds.width, ds.height) > LARGE_PX and not ds.overviews(1):
                values = np.concatenate([ds.read(band, window=w, masked=True).compressed()
                                         for w in spread_windows(ds.width, ds.height, ds.block_shapes[0])]
                                        ).astype(np.float64)
                return values[np.isfinite(values)]
            shape = (min(ds.height, max_size), min(ds.width, max_size))
            a = ds.read(band, out_shape=(count, *shape) if count else shape, masked=True)
    except (RasterioError, OSError):
        return np.zeros(0)
    values = a.compressed().astype(np.float64)
    return values[np.isfinite(values)]


def spread_windows(width: int, height: int, block: tuple[int, int] = (256, 256)) -> list[Window]:
    """SAMPLED_WINDOWS spread evenly over a width x height raster, each within one of its `block`s (rows,
    columns) when they are as large: a window across a block corner decodes four."""
    n, size = SAMPLED_WINDOWS
    w, h = min(size, width), min(size, height)
    spread = np.arange(n) + 0.5
    cols = [in_one_block(int(k * width / n), w, block[1], width) for k in spread]
    rows = [in_one_block(int(k * height / n), h, block[0], height) for k in spread]
    return [Window(c, r, w, h) for r in rows for c in cols]


def in_one_block(centre: int, size: int, block: int, extent: int) -> int:
    """The start of a window of `size` px near `centre`, within the block holding it when one can be."""
    start = centre - size // 2
    if block >= size:
        first = centre // block * block
        start = min(max(start, first), first + block - size)
    return min(max(0, start), extent - size)


def _describe_s1(info: RasterInfo, count: int) -> None:
    if info.grid is None:  # e.g. a GRD product's measurement file: nothing to read until it is on a map grid
        return
    names, pol = [b for b in info.bands if b], ""
    if count == 1:
        pol = s1_files.polarization_of(info.path, info.bands)
        if pol not in S1_BANDS:
            info.problems.append(f"has 1 band{f' ({pol})' if pol else ''}; Sentinel-1 needs VV and VH")
            return
    elif "VV" in names and "VH" in names:
        pass
    elif {"HH", "HV"} & set(names):
        info.problems.append(f"holds {', '.join(names)}: Sentinel-1 VV and VH (the dual polarization over "
                             "land) are needed")
        return
    else:
        info.bands = list(S1_BANDS) + info.bands[2:]
    units = (info.tags.get("UNITS") or info.tags.get("units") or "").lower()
    if units in ("db", "decibel", "linear", "power", "intensity", "sigma0"):
        info.s1_db = units in ("db", "decibel")
        stats = _s1_values(info.path)  # a tag kept by a tool that converted the values is stale: plain
        said = None  # linear power (none negative, median below 1.5) or plain dB (negative median) wins over it
        if stats is not None and 0 < stats[0] < 1.5 and stats[1] >= 0:
            said = False
        elif stats is not None and stats[0] < 0:
            said = True
        if said is not None and said != info.s1_db:
            raw = info.tags.get("UNITS") or info.tags.get("units")
            info.notes.append(f"its UNITS={raw} tag is contradicted by its values, read as "
                              f"{'dB (negative median)' if said else 'linear power (none negative, median below 1.5)'}")
            info.s1_db = said
    elif (named := s1_files.units_from_name(info.path, info.descriptions)) is not None:
        if named == "amplitude":
            info.problems.append("holds amplitude (the 'a' scale of its ASF RTC name): Densify reads backscatter "
                                 "power or dB; order the product in power or dB scale")
            return
        info.s1_db = named == "dB"
    else:  # detect: dB backscatter of land is negative (median about -7 to -20), linear power below 1
        stats = _s1_values(info.path)
        info.s1_db = bool(stats is None or not 0 < stats[0] < 1.5)
    info.tags["DETECTED_UNITS"] = "dB" if info.s1_db else "linear"
    if info.nodata is None or (np.isnan(info.nodata) and info.s1_db):
        # no power is no data (SNAP and ASF write 0 outside the swath), and so is exactly 0 dB when the file sets
        # no other value (SNAP's dB GeoTIFF export keeps its 0 fill; a sigma0 of 1 is no land's). NaN stays NaN.
        info.nodata = 0.0
    if pol:
        info.polarization = pol
        info.problems.append(f"holds one polarization ({pol}): give the {'VH' if pol == 'VV' else 'VV'} file of its "
                             "acquisition too; a run reads the two as one image")


FMASK_CLASSES = {0: "clear land", 1: "clear water", 2: "cloud shadow", 3: "snow", 4: "cloud", 255: "fill"}
FMASK_CLEAR = (0, 1)
MASK_KINDS = {"scl": "Sen2Cor SCL (clear: 4 vegetation, 5 bare soil, 6 water)", "binary": "binary (0 = clear)",
              "probability": "cloud probability in % (clear below 40)",
              "probability_0_1": "cloud probability from 0 to 1 (clear below 0.4)",
              "fmask": "Fmask (clear: 0 land, 1 water)"}
GUESSED_PREFIX = "no name or band description says what kind of cloud mask it is"
GUESSED_MASK = (GUESSED_PREFIX + " (SCL, CLDPRB or probability, "
                "Fmask): read from its values as {kind}; name it so (e.g. ..._SCL.tif, ..._CLDPRB.tif) if it is not")


def _named_mask_kind(info: RasterInfo) -> str:
    """The kind of cloud mask a file's name or band description says ('' when neither does)."""
    text = " ".join([info.name, *info.descriptions]).upper()
    if "FMASK" in text:
        return "fmask"
    if "SCL" in text or info.bands[:1] == ["SCL"]:
        return "scl"
    if PROBABILITY_NAME.search(text):
        return "probability"
    return ""


PROBABILITY_NAME = re.compile(r"PROB|CLD|CLP")  # in a cloud-probability file's or band's name


def _probability_kind(info: RasterInfo, band: int, values: np.ndarray | None = None) -> str:
    """A cloud probability's scale, decided once for the file: in % ('probability') for integers, from 0 to 1
    ('probability_0_1') for floats none of whose values (`values` when read already) exceeds 1."""
    if not info.dtype.startswith("float"):
        return "probability"
    values = sampled_values(info.path, band, 256) if values is None else values
    return "probability_0_1" if values.size == 0 or values.max() <= 1.0 else "probability"


def _s1_values(path: str) -> tuple[float, float] | None:
    """(median, minimum) of an S1 file's band 1, read at 128 px, without 0 and non-finite values; None if empty."""
    vals = sampled_values(path, 1, 128)
    vals = vals[vals != 0]
    return (float(np.median(vals)), float(vals.min())) if vals.size else None


def _describe_mask(info: RasterInfo) -> None:
    """The mask's kind: from its name or band description (SCL, Fmask, CLDPRB / probability), else a float
    file is a probability, else its values say (0/1 binary, 0-11 SCL, else a probability in %), with a note.
    A probability's scale (0-1 or 0-100 %) is decided once for the file: integers are %, floats are 0-1 when
    no value exceeds 1."""
    kind = _named_mask_kind(info)
    if kind == "scl":
        info.mask_kind = kind
        return
    values, dtype = sampled_values(info.path, 1, 256), info.dtype
    if kind == "fmask":
        odd = sorted(set(np.unique(values).tolist()) - set(FMASK_CLASSES))
        if odd:
            info.problems.append(f"is named as an Fmask cloud mask but holds values Fmask does not write "
                                 f"({', '.join(f'{v:g}' for v in odd[:5])}; Fmask: 0 clear land, 1 clear water, "
                                 "2 cloud shadow, 3 snow, 4 cloud, 255 fill): give an SCL, a binary mask (0 = clear) "
                                 "or cloud probabilities")
        elif values.size and set(np.unique(values).tolist()) <= {0, 1}:
            info.notes.append("is named as an Fmask cloud mask and holds only 0 and 1: read as Fmask (0 clear "
                              "land, 1 clear water: all clear); if it is a binary mask (1 = cloudy), rename it")
        info.mask_kind = "fmask"
        return
    if kind == "probability" or dtype.startswith("float"):
        info.mask_kind = _probability_kind(info, 1, values)
        return
    found = set(np.unique(values).tolist())
    if found <= {0, 1, 255}:
        info.mask_kind = "binary"
    elif found <= set(range(12)):
        info.mask_kind = "scl"
    else:
        info.mask_kind = "probability"
    info.notes.append(GUESSED_MASK.format(kind=MASK_KINDS[info.mask_kind]))


def _mask_kind_warnings(masks: list[RasterInfo]) -> list[str]:
    """Float probabilities of one series on one scale: 0-100 % for all when any holds a value above 1 (a clear
    date's 0-1 % is not a 0-1 probability), with a warning; a warning when the kinds guessed from values differ."""
    out = []
    floats = [m for m in masks if m.mask_kind.startswith("probability") and m.dtype.startswith("float")]
    fractions = [m for m in floats if m.mask_kind == "probability_0_1"]
    if fractions and len(fractions) < len(floats):
        for m in fractions:
            m.mask_kind = "probability"
        out.append(f"{len(fractions)} of the {len(floats)} float cloud-probability masks hold no value above 1 "
                   f"({short_list([m.name for m in fractions])}): read in % like the others (below 1 %: clear)")
    guessed = Counter(m.mask_kind for m in masks if any(n.startswith(GUESSED_PREFIX) for n in m.notes))
    if len(guessed) > 1:
        out.append("the cloud masks read as different kinds from their values (" +
                   ", ".join(f"{n} as {MASK_KINDS[k].split(' (')[0]}" for k, n in guessed.most_common()) +
                   "): the masks of one series are usually of one kind; name them by kind if these are wrong")
    return out


def clear_from_mask(kind: str, data: np.ndarray, prob_threshold: float = 40.0) -> np.ndarray:
    """True where a mask says the pixel is clear (SCL 4/5/6; Fmask 0/1; binary 0; probability < threshold %,
    `probability_0_1` < threshold / 100: the file's scale, decided by `describe`, never from the values here)."""
    if kind == "scl":
        return np.isin(data, SCL_CLEAR)
    if kind == "fmask":
        return np.isin(data, FMASK_CLEAR)
    if kind == "binary":
        return data == 0
    d = data.astype("float32")
    if kind == "probability_0_1":
        d = d * 100.0
    return np.isfinite(d) & (d < prob_threshold)


def is_virtual(path: str | Path) -> bool:
    """A GDAL virtual file path (/vsizip/..., /vsicurl/...): not on the file system, kept as given."""
    return str(path).startswith("/vsi")


def find_rasters(paths: list[str] | str) -> tuple[list[str], list[Problem]]:
    """Files as given, folders and zip archives searched recursively for rasters."""
    found, problems, _notes = _search(paths)
    return [path for path, _ in found], problems


def _search(paths: list[str] | str) -> tuple[list[tuple[str, bool]], list[Problem], list[str]]:
    """(path, found in a folder or archive) of each raster, files as given, folders and zip archives
    searched recursively; the problems; notes on the archives a folder search skipped (unzipped beside,
    unreadable or without rasters: a problem only when given themselves)."""
    found, problems, beside, products, notes = [], [], [], set(), []
    for p in [paths] if isinstance(paths, str) else paths:
        if (product := band_files.subdataset_product(str(p))) is not None:  # SENTINEL2_L2A:...:10m:EPSG_...
            if product in products:  # its 10, 20 and 60 m subdatasets: one product
                continue
            products.add(product)
            p = product
        if (parts := archives.split(str(p))) and Path(parts[1]).suffix.lower() not in RASTER_SUFFIXES:
            found.extend(_archive_rasters(Path(parts[0]), problems, under=parts[1]))  # a folder in an archive
            continue
        if _is_tar(str(p)):
            problems.append(Problem(str(p), TAR_ARCHIVE))
            continue
        if is_virtual(p):  # as given, read by GDAL
            found.append((str(p), False))
            continue
        path = Path(p)
        if path.is_dir():
            files, unreadable = _files_under(path)
            problems += [Problem(d, f"folder cannot be read ({why}): its rasters would be left out") for d, why in
                         unreadable]
            hits = [(str(f), True) for f in files if f.suffix.lower() in RASTER_SUFFIXES
                    and not _skipped_in_folder(str(f))]
            for z in (f for f in files if archives.is_zip(f)):
                if archives.unzipped_beside(z):
                    beside.append(z.name)
                    continue
                unused: list[Problem] = []  # in a folder, like any other file that is not an input
                hits += _archive_rasters(z, unused)
                notes += [f"{q} (skipped)" for q in unused]
            if not hits and not beside and not unreadable:
                problems.append(Problem(str(path), "folder contains no raster files"))
            found.extend(hits)
        elif path.is_file() and archives.is_zip(path):
            found.extend(_archive_rasters(path, problems))
        elif path.exists():
            found.append((str(path), False))
        else:
            problems.append(Problem(str(path), "does not exist"))
    if beside:
        notes.append(f"{len(beside)} zip archive(s) skipped because their product lies unzipped beside them "
                     f"({short_list(beside)}): the folder is read")
    return found, problems, notes


TAR_ARCHIVE = "is a tar archive, which is not read: extract it, or zip it (zip archives are read as they are)"


def _is_tar(path: str) -> bool:
    """A tar archive (.tar, .tar.gz, .tgz, ...) or a path into one (/vsitar/): not read."""
    return path.startswith(("/vsitar/", "/vsitar{")) or \
        re.search(r"\.(tar(\.\w+)?|tgz|tbz2?|txz)$", path.lower()) is not None


def _files_under(folder: Path) -> tuple[list[Path], list[tuple[str, str]]]:
    """The files in `folder` and its subfolders (neither files nor folders named .*, e.g. a macOS drive's .Trashes;
    links to folders not followed), sorted, and the folders that could not be read with why (Path.rglob skips them
    silently)."""
    files, unreadable = [], []

    def failed(exc: OSError) -> None:
        unreadable.append((exc.filename or str(folder), exc.strerror or str(exc)))

    for root, dirs, names in os.walk(folder, onerror=failed):
        dirs[:] = [d for d in dirs if not d.startswith(".")]  # pruned: os.walk does not go into them
        files += [Path(root) / n for n in names if not n.startswith(".") and (Path(root) / n).is_file()]
    return sorted(files), unreadable


def _skipped_in_folder(path: str) -> bool:
    """A product's file that is not an observation (S2 AOT, WVP, TCI, QI_DATA; S1 geometry and previews)."""
    return band_files.skipped_in_folder(path) or s1_files.skipped_in_folder(path)


def _archive_rasters(archive: Path, problems: list[Problem], under: str = "") -> list[tuple[str, bool]]:
    """The rasters in a zip archive (in its folder `under` if given; not a .SAFE product's AOT, WVP, TCI
    and QI_DATA files), as /vsizip/ paths; a problem when it cannot be read or holds none."""
    folder = f"{archives.PREFIX}{archive.resolve()}/{under.strip('/')}/" if under.strip("/") else ""
    try:
        hits = archives.members(archive, lambda m: Path(m).suffix.lower() in RASTER_SUFFIXES
                                and not _skipped_in_folder(m) and m.startswith(folder))
    except OSError as e:
        problems.append(Problem(str(archive), str(e)))
        return []
    if not hits:
        where = f"its folder {under.strip('/')} holds" if folder else "contains"
        problems.append(Problem(str(archive), f"zip archive {where} no raster files"))
    return [(h, True) for h in hits]


def file_key(path: str) -> tuple:
    """The same for two paths of one file (links, relative paths, a folder and a file in it)."""
    try:
        st = os.stat(path)
        return (st.st_dev, st.st_ino)
    except OSError:
        return (os.path.realpath(path),)


@dataclass
class Inventory:
    """The checked inputs of a run: S2 (with paired masks) and S1, sorted by time, and the grid."""

    s2: list[RasterInfo]
    s1: list[RasterInfo]
    masks: dict[str, RasterInfo]  # S2 path -> its mask
    grid: Grid
    bands: list[str]
    warnings: list[str] = field(default_factory=list)
    s2_grid: Grid | None = None  # with an extent: the S2 grid that `grid` is the part of (context at its edges)

    @property
    def s2_days(self) -> np.ndarray:
        return np.array([dates.to_days(i.when) for i in self.s2], dtype="float64")

    @property
    def s1_days(self) -> np.ndarray:
        return np.array([dates.to_days(i.when) for i in self.s1], dtype="float64")


def _override(mapping: dict, path: str):
    if not mapping:
        return None
    for key in (path, str(Path(path).resolve()), Path(path).name):
        if key in mapping:
            return mapping[key]
    return None


def build(s2: list[str], s1: list[str] | None = None, masks: list[str] | None = None,
          band_order: list[str] | None = None, dates_override: dict | None = None,
          sensors_override: dict | None = None, check_clear: bool = True,
          describer: Callable[..., RasterInfo] | None = None, extent=None, extent_crs: str | None = None
          ) -> Inventory:
    """Discover and check every input; raise one InputError listing all problems.

    `describer`: describe() or a caching stand-in for it (the dialog validates on every edit).
    `extent`: (xmin, ymin, xmax, ymax) in `extent_crs` (default: the S2 grid's): the output grid is the
    part of the S2 grid within it (whole pixels); the inputs must still overlap the S2 grid.

    Sensors are detected (a file given as S2/S1/mask is taken as that only when nothing says
    otherwise); a file given twice is used once; Densify outputs found in folders are skipped.
    Every such decision becomes a warning.
    """
    describe_ = describer or describe
    problems = [Problem(None, p) for p in check_band_order(band_order)]
    if problems:  # every S2 file would repeat it: say it once
        raise InputError(problems)
    infos: list[RasterInfo] = []
    seen: dict[tuple, tuple[RasterInfo, str]] = {}  # file -> its description, the sensor it was given as
    twice: dict[tuple[str, str], list[str]] = {}  # (given as, again as) -> names
    mismatched: dict[tuple[str, str], list[str]] = {}  # (given as, looks like) -> names
    skipped: dict[tuple, str] = {}  # Densify outputs found in folders
    refused: dict[tuple, Problem] = {}  # Densify outputs given as files
    search_notes: list[str] = []  # zip archives skipped in folders
    unused: dict[str, list[str]] = {}  # S2 files holding only bands not used (RasterInfo.unused) -> names
    for group, given in ((s2, "S2"), (s1 or [], "S1"), (masks or [], "MASK")):
        found, missing, notes = _search(group)
        problems += missing
        search_notes += notes
        for f, in_folder in found:
            key, sensor = file_key(f), _override(sensors_override or {}, f)
            if key in seen:  # described, checked and kept the first time
                info, first = seen[key]
                if not info.output_kind:
                    twice.setdefault((first, given), []).append(info.name)
            else:
                when = _override(dates_override or {}, f)
                info = describe_(f, sensor=sensor, when=when, band_order=band_order)
                if info.sensor is None and sensor is None and info.grid is not None and not info.output_kind:
                    # a file given as S2/S1/mask is taken as that sensor when nothing says otherwise
                    info = describe_(f, sensor=given, when=when, band_order=band_order)
                seen[key] = (info, given)
                if info.unused and info.sensor == "S2" and not info.problems:
                    unused.setdefault(info.unused, []).append(info.name)
                elif not info.output_kind:
                    infos.append(info)
            if info.output_kind:
                if in_folder and not sensor:
                    skipped[key] = info.name
                else:
                    refused[key] = Problem(f, f"is a Densify output ({info.output_kind}), not an acquisition: "
                                              "give the images it was made from")
            elif not sensor and info.sensor not in (None, given) and \
                    not (given == "S2" and info.sensor == "MASK" and in_folder):  # SCL files in an S2 folder
                mismatched.setdefault((given, info.sensor), []).append(info.name)
    problems += list(refused.values())
    warnings = _input_warnings(twice, mismatched, [n for k, n in skipped.items() if k not in refused])
    warnings += search_notes
    warnings += [f"{names[0]}: holds only {bands}, not used: left out" if len(names) == 1 else
                 f"{len(names)} files ({short_list(names)}) hold only {bands}, not used: left out"
                 for bands, names in unused.items()]
    infos, s2_parts_problems, more_warnings = _combine_band_files(infos)
    problems += s2_parts_problems
    warnings += more_warnings
    infos, more_problems, more_warnings = _combine_polarizations(infos)
    problems += more_problems
    warnings += more_warnings
    undated = [i for i in infos if i.when is None and i.grid is not None]
    for i in infos:
        rest = [p for p in i.problems if not p.startswith("no acquisition date")]
        if rest:
            problems.append(_problem(i, "; ".join(rest)))
    if undated:
        names = [i.name for i in undated]
        shown = [i.path if names.count(i.name) > 1 else i.name for i in undated]  # same names: whole paths
        problems.append(Problem(None, "no acquisition date found (metadata or file name) for: " + ", ".join(shown)))
    s2_infos = sorted([i for i in infos if i.sensor == "S2" and not i.problems], key=lambda i: i.when)
    s1_infos = sorted([i for i in infos if i.sensor == "S1" and not i.problems], key=lambda i: i.when)
    mask_infos = [i for i in infos if i.sensor == "MASK" and not i.problems]
    if not s2_infos and not any(i.sensor == "S2" for i in infos) and not s2_parts_problems:  # those named them
        problems.append(Problem(None, "no Sentinel-2 image among the inputs"))
    if not s2_infos:  # nothing to check the rest against
        raise InputError(problems)

    # second pass over the readable files, so one error lists every problem
    grid = s2_infos[0].grid
    assert grid is not None
    bands, band_problems, band_warnings = _common_bands(s2_infos)
    problems += band_problems
    warnings += band_warnings
    for info in s2_infos + s1_infos + mask_infos:
        if not overlaps(info.grid, grid):
            problems.append(_problem(info, f"does not overlap the S2 grid of {s2_infos[0].name}"))
    problems += _duplicates(s2_infos) + _duplicates(s1_infos)

    if extent is not None:
        try:
            grid = within_extent(grid, extent, extent_crs, of=f"the S2 grid of {s2_infos[0].name}")
        except ValueError as exc:
            problems.append(Problem(None, str(exc)))

    paired, mask_warnings = _pair_masks(s2_infos, mask_infos)
    for s in s2_infos:  # a mask band in the S2 stack (an SCL exported along) when no mask file is paired
        if s.mask_band and s.path not in paired:
            paired[s.path] = RasterInfo(s.path, sensor="MASK", when=s.when, bands=["SCL"], grid=s.grid,
                                        dtype=s.dtype, nodata=s.nodata, mask_kind=s.mask_kind, mask_band=s.mask_band,
                                        tags=s.tags, descriptions=s.descriptions, date_source=s.date_source,
                                        label=s.label)
    mask_warnings += _mask_kind_warnings(list(paired.values()))
    if problems:
        raise InputError(problems)
    warnings += _grid_warnings(s2_infos) + _assumed_order_warnings(s2_infos) + mask_warnings
    warnings += note_warnings(s2_infos + s1_infos + list(paired.values())) + _scale_warnings(s2_infos)
    warnings += offset_warnings(s2_infos)
    area = "the extent" if extent is not None else "the S2 grid"
    partial = [f"{i.name} {share:.0%}" for i in s1_infos if (share := s1_coverage(i, grid)) < 0.99]
    if partial:
        warnings.append(f"{len(partial)} S1 image(s) cover only part of {area} ({short_list(partial)}): "
                        "where they do not, the synthesis has less radar to go on")
    if gamma0 := [i.name for i in s1_infos if s1_files.is_gamma0(i)]:
        warnings.append(f"{len(gamma0)} S1 image(s) hold gamma0, terrain-flattened backscatter "
                        f"({short_list(gamma0)}): the bundled model learned from sigma0, which is 0.6-1.6 dB "
                        "darker at Sentinel-1's incidence angles (30-46 degrees) over flat land")
    inv = Inventory(s2_infos, s1_infos, paired, grid, bands, warnings,
                    s2_grid=s2_infos[0].grid if extent is not None else None)
    if check_clear:
        check_some_clear(inv)
    return inv


def _combine_band_files(infos: list[RasterInfo]) -> tuple[list[RasterInfo], list[Problem], list[str]]:
    """The inputs with each acquisition's dated band files, and multi-band files holding part of its bands
    (band_files.split_images: a 10 m and a 20 m export), replaced by one S2 image (band_files.combine), and each
    acquisition's finest ESA SCL kept (a .SAFE holds it at 20 and 60 m)."""
    parts = [i for i in infos if i.band_file and i.grid is not None and i.when is not None]
    parts += band_files.split_images(infos)
    if not parts:
        return infos, [], []
    images, problems, warnings = band_files.combine(parts, describe)
    taken = {id(i) for i in parts}
    rest = [i for i in infos if id(i) not in taken]
    coarser = band_files.coarser_scl([i for i in rest if i.sensor == "MASK" and not i.problems])
    return [i for i in rest if id(i) not in coarser] + images, problems, warnings


def _combine_polarizations(infos: list[RasterInfo]) -> tuple[list[RasterInfo], list[Problem], list[str]]:
    """The inputs with each acquisition's one-polarization S1 files replaced by one VV, VH image
    (s1_files.combine)."""
    parts = [i for i in infos if i.polarization and i.grid is not None and i.when is not None
             and len(i.problems) == 1]  # no problem but its polarization alone
    if not parts:
        return infos, [], []
    images, problems, warnings = s1_files.combine(parts, describe)
    taken = {id(i) for i in parts}
    return [i for i in infos if id(i) not in taken] + images, problems, warnings


def _input_warnings(twice: dict[tuple[str, str], list[str]], mismatched: dict[tuple[str, str], list[str]],
                    skipped: list[str]) -> list[str]:
    """Warnings for files given twice, files that look like another sensor and skipped outputs."""
    out = []
    for (first, again), names in twice.items():
        how = "" if first == again else f", as {SENSOR_NAMES[first]} and as {SENSOR_NAMES[again]}"
        if len(names) == 1:
            out.append(f"{names[0]} is given twice{how}: used once")
        else:
            out.append(f"{len(names)} files are given twice{how} ({short_list(names)}): each used once")
    for (given, looks), names in mismatched.items():
        what, used = SENSOR_NAMES[looks], SENSOR_NAMES[given]
        if len(names) == 1:
            out.append(f"{names[0]} looks like {what}, given as {used}: used as {what}")
        else:
            out.append(f"{len(names)} files look like {what}, given as {used} ({short_list(names)}): "
                       f"used as {what}")
    if skipped:
        out.append(f"skipped {len(skipped)} Densify output(s) found in the input folders "
                   f"({short_list(skipped, 6)}): outputs are never used as observations")
    return out


def _common_bands(s2_infos: list[RasterInfo]) -> tuple[list[str], list[Problem], list[str]]:
    """The S2 bands of the series: those at least half the images have (in the order of the earliest image that
    has them all, else as they come); a problem naming each image that lacks some, a warning for bands few images
    have."""
    n = len(s2_infos)
    counts = Counter(b for i in s2_infos for b in dict.fromkeys(i.bands) if b)
    common = {b for b, c in counts.items() if 2 * c >= n}
    ref = next((i.bands for i in s2_infos if common <= set(i.bands)), [b for i in s2_infos for b in i.bands])
    bands = [b for b in dict.fromkeys(ref) if b in common]
    problems = []
    for info in s2_infos:
        lacking = [b for b in bands if b not in info.bands]
        if not lacking:
            continue
        if all(counts[b] == n - 1 for b in lacking):
            others = f"the other S2 images have {', '.join(bands)}"
        elif all(2 * counts[b] > n for b in lacking):
            others = f"most S2 images have {', '.join(bands)}"
        else:  # e.g. the parts of split acquisitions that were not read together: the nearest holders named
            having = sorted((i for i in s2_infos if set(lacking) <= set(i.bands)),
                            key=lambda i: abs(dates.to_days(i.when) - dates.to_days(info.when)))
            half = "half" if all(2 * counts[b] == n for b in lacking) else "at least half"
            others = f"{half} the S2 images have {'them' if len(lacking) > 1 else 'it'}" + \
                (f", e.g. {short_list([i.name for i in having], 2)}" if having else "")
        problems.append(_problem(info, f"missing band(s) {', '.join(lacking)} ({others})"))
    rare = [b for b in counts if b not in common]
    warnings = [f"band(s) {', '.join(rare)} only in {min(counts[b] for b in rare)} of the {n} S2 images: "
                "not used"] if rare else []
    return bands, problems, warnings


def _scale_warnings(s2_infos: list[RasterInfo]) -> list[str]:
    """A warning when the float S2 files told apart by their values (reflectance or DN) are not all alike."""
    guessed = [i for i in s2_infos if i.scale_from == "values"]
    refl = [i.name for i in guessed if i.scale == 1.0]
    dn = [i.name for i in guessed if i.scale != 1.0]
    if not (refl and dn):
        return []
    few, many = sorted(((refl, "reflectance (0-1)"), (dn, "DN (0-10000)")), key=lambda x: len(x[0]))
    return [f"{len(few[0])} of the {len(guessed)} float S2 images hold values read as {few[1]}, the others as "
            f"{many[1]} ({short_list(few[0])}): check that these are what their values say"]


def note_warnings(infos: list[RasterInfo], masks_used: bool = True) -> list[str]:
    """The files' notes (guesses made reading them) as warnings, each note once with the files it is about;
    `masks_used` False (LAI, which reads no cloud mask): without saying that a mask band is used as one."""
    by_note: dict[str, list[str]] = {}
    for i in infos:
        for note in dict.fromkeys(i.notes):
            if not masks_used and (use := _mask_band_use(i)):
                note = note.replace(use, "")
            by_note.setdefault(note, []).append(i.name)
    return [f"{names[0]}: {note}" if len(names) == 1 else f"{len(names)} files ({short_list(names)}): {note}"
            for note, names in by_note.items()]


def _same_grid(a: Grid, b: Grid) -> bool:
    return (a.crs_wkt == b.crs_wkt and (a.width, a.height) == (b.width, b.height)
            and a.transform.almost_equals(b.transform, precision=1e-6 * max(1.0, b.res)))


def _grid_warnings(s2_infos: list[RasterInfo]) -> list[str]:
    """A warning when S2 images are on other grids than the earliest (the output grid)."""
    ref = s2_infos[0].grid
    other = [i for i in s2_infos[1:] if not _same_grid(i.grid, ref)]
    if not other:
        return []
    how = set()
    for g in (i.grid for i in other):
        if g.crs_wkt != ref.crs_wkt:
            how.add("CRS")
            continue
        if not (np.isclose(g.transform.a, ref.transform.a) and np.isclose(g.transform.e, ref.transform.e)):
            how.add("resolution")
        if not np.allclose(g.bounds, ref.bounds, atol=1e-3 * ref.res):
            how.add("extent")
    kinds = ", ".join(k for k in ("CRS", "resolution", "extent") if k in how) or "alignment"
    return [f"the output grid is that of {s2_infos[0].name} (the earliest S2 image); {len(other)} other S2 "
            f"image(s) are on a different grid ({kinds}) and are resampled onto it "
            f"({short_list([i.name for i in other])})"]


def is_level_1c(info: RasterInfo) -> bool:
    """Whether an S2 image is Level-1C (top-of-atmosphere): tagged so, or 13 undescribed bands."""
    return ("1C" in info.tags.get("PROCESSING_LEVEL", "").upper()
            or (info.band_order_assumed and info.bands == list(S2_L1C_BANDS)))


def _assumed_order_warnings(s2_infos: list[RasterInfo]) -> list[str]:
    """A warning naming the S2 files without band descriptions read in the standard order, and one
    naming Level-1C images (top-of-atmosphere, read as if they were surface reflectance)."""
    out = []
    l1c = [i.name for i in s2_infos if is_level_1c(i)]
    if l1c:
        out.append(f"{len(l1c)} S2 image(s) are Level-1C, top-of-atmosphere reflectance ({short_list(l1c)}): "
                   "the outputs and LAI assume Level-2A surface reflectance")
    for order in (S2_BANDS, S2_L1C_BANDS):
        names = [i.name for i in s2_infos if i.band_order_assumed and i.bands == order]
        if names:
            out.append(f"{len(names)} S2 file(s) have no band descriptions and were read in the standard "
                       f"{len(order)}-band order {', '.join(order)} ({short_list(names)}): give a band order "
                       "if theirs differs")
    return out


def s1_coverage(info: RasterInfo, grid: Grid) -> float:
    """The fraction of `grid` an S1 image covers with valid backscatter (not nodata: a 0 or NaN fill outside the
    swath), sampled at points of the grid (`_valid_share`); its extent's share (`coverage`) when no point says (0
    when its extent misses the grid)."""
    share = coverage(info.grid, grid)
    if share <= 0:
        return share
    key = (info.path, file_version(info.path), info.nodata, tuple(info.bands[:2]), grid.crs_wkt,
           tuple(grid.transform)[:6], grid.width, grid.height)
    if key not in _VALID_SHARES:
        if len(_VALID_SHARES) > 4096:
            _VALID_SHARES.clear()
        _VALID_SHARES[key] = _valid_share(info, grid)
    found = _VALID_SHARES[key]
    return share if found is None else found


_VALID_SHARES: dict[tuple, float | None] = {}  # the dialog builds the inventory on every edit: each file read once
SHARE_BLOCKS = 16  # the valid share is read from at most this many of a file's blocks (tiles or strips)


def _valid_share(info: RasterInfo, grid: Grid, n: int = 128) -> float | None:
    """The share of n x n points spread over `grid` where the file holds valid values in its S1 bands: the share
    of points inside the file, times the valid share of those that lie in at most SHARE_BLOCKS of its blocks,
    spread over it. A tiled file without overviews is decoded block by block, so reading every block a point
    falls in would decode a full-tile file whole (over a second each, minutes for a year of files)."""
    from rasterio.warp import transform

    cols = (np.arange(min(n, grid.width)) + 0.5) * grid.width / min(n, grid.width)
    rows = (np.arange(min(n, grid.height)) + 0.5) * grid.height / min(n, grid.height)
    c, r = np.meshgrid(cols, rows)
    xs, ys = grid.transform * (c.ravel(), r.ravel())
    try:
        if info.grid.crs_wkt != grid.crs_wkt:
            xs, ys = transform(grid.crs_wkt, info.grid.crs_wkt, list(xs), list(ys))
        with rasterio.Env(), rasterio.open(info.path) as ds:  # Env: GDAL's messages go to logging, not stderr
            fc, fr = ~ds.transform * (np.asarray(xs), np.asarray(ys))
            inside = (fc >= 0) & (fc < ds.width) & (fr >= 0) & (fr < ds.height)
            if not inside.any():
                return 0.0
            idx = [info.bands.index(b) + 1 for b in S1_BANDS if b in info.bands] or [1]
            fc, fr = fc[inside].astype(int), fr[inside].astype(int)
            bh, bw = ds.block_shapes[0]
            keep = _in_some_blocks(fr // bh, fc // bw, SHARE_BLOCKS)
            if not keep.any():
                return None
            fc, fr = fc[keep], fr[keep]
            block = (fr // bh) * (ds.width // bw + 1) + fc // bw
            values = np.empty((fc.size, len(idx)))
            for b in np.unique(block):  # one read per block, of the points' bounding box in it
                at = block == b
                c0, r0 = fc[at].min(), fr[at].min()
                a = ds.read(idx, window=Window(c0, r0, fc[at].max() + 1 - c0, fr[at].max() + 1 - r0))
                values[at] = a[:, fr[at] - r0, fc[at] - c0].T
    except Exception:  # noqa: BLE001 - a share that cannot be read is not warned about; the read says why
        return None
    good = np.isfinite(values)
    if info.nodata is not None and not np.isnan(info.nodata):
        good &= values != info.nodata
    return float(inside.mean() * good.all(axis=1).mean())


def _in_some_blocks(block_rows: np.ndarray, block_cols: np.ndarray, most: int) -> np.ndarray:
    """Which points lie in a choice of at most `most` of their blocks, spread as a lattice over the rows and
    columns of blocks that hold points, so that each lies in its own stretch of rows and of columns."""
    rows, cols = np.unique(block_rows), np.unique(block_cols)
    if rows.size * cols.size <= most:
        return np.ones(block_rows.shape, bool)
    j = np.arange(most)
    pick_rows = rows[((j + 0.5) * rows.size / most).astype(int)]
    pick_cols = cols[(((j * LATTICE_STEP) % most + 0.5) * cols.size / most).astype(int)]
    width = int(block_cols.max()) + 1
    return np.isin(block_rows * width + block_cols, pick_rows * width + pick_cols)


LATTICE_STEP = 5  # the 16 blocks (j, 5 j mod 16): one in each 16th of the rows and of the columns, spread in 2-D


def overlaps(a: Grid | None, b: Grid) -> bool:
    """Whether grid a overlaps grid b (in b's CRS)."""
    return coverage(a, b) > 0


def coverage(a: Grid | None, b: Grid) -> float:
    """The fraction of grid b's extent that grid a's extent covers (in b's CRS; 0 when none)."""
    if a is None:
        return 0.0
    from rasterio.warp import transform_bounds

    left, bottom, right, top = a.bounds
    if a.crs_wkt != b.crs_wkt:
        try:
            left, bottom, right, top = transform_bounds(a.crs_wkt, b.crs_wkt, left, bottom, right, top)
        except Exception:  # noqa: BLE001 - an untransformable CRS cannot overlap
            return 0.0
    bl, bb, br, bt = b.bounds
    width, height = min(right, br) - max(left, bl), min(top, bt) - max(bottom, bb)
    if width <= 0 or height <= 0:
        return 0.0
    return float(width * height / ((br - bl) * (bt - bb)))


def _duplicates(infos: list[RasterInfo]) -> list[Problem]:
    problems, seen = [], {}
    for i in infos:
        key = i.when.replace(microsecond=0)
        if key in seen:
            problems.append(_problem(i, f"duplicated date {key:%Y-%m-%d %H:%M:%S} (same as {seen[key].name})"))
        else:
            seen[key] = i
    return problems


def _pair_masks(s2_infos: list[RasterInfo], masks: list[RasterInfo]) -> tuple[dict[str, RasterInfo], list[str]]:
    """Pair each mask with the S2 acquisition of the same date (closest time that day)."""
    paired: dict[str, RasterInfo] = {}
    warnings = []
    for m in masks:
        same_day = [s for s in s2_infos if s.when.date() == m.when.date()]
        if not same_day:
            warnings.append(f"{m.name}: no S2 image on {m.when:%Y-%m-%d}; mask ignored")
            continue
        s = min(same_day, key=lambda s: abs((s.when - m.when).total_seconds()))
        if (other := paired.get(s.path)) is not None:  # two masks for one image: an SCL wins, else the first
            keep = m if m.mask_kind == "scl" and other.mask_kind != "scl" else other
            drop = other if keep is m else m
            warnings.append(f"{other.name} and {m.name} are both cloud masks of {s.name}: {keep.name} used, "
                            f"{drop.name} ignored")
            m = keep
        paired[s.path] = m
    if masks:
        unmasked = [s.name for s in s2_infos if s.path not in paired and not s.mask_band]
        if unmasked:
            warnings.append(f"no cloud mask for {len(unmasked)} S2 image(s) ({', '.join(unmasked[:5])}"
                            f"{'...' if len(unmasked) > 5 else ''}): all their valid pixels count as clear")
    elif unmasked := [s.name for s in s2_infos if not s.mask_band]:
        some = "" if len(unmasked) == len(s2_infos) else f" ({len(unmasked)} S2 image(s) without a mask band)"
        warnings.append(f"no cloud masks given{some}: every valid S2 pixel counts as clear")
    return paired, warnings


def check_some_clear(inv: Inventory, clear_fraction: Callable[[Inventory, RasterInfo, int], float] | None = None,
                     any_clear: Callable[[Inventory, RasterInfo], bool] | None = None) -> None:
    """Raise when no S2 acquisition has a single clear pixel: sampled at 128 px at most (on a grid over LARGE_PX,
    in windows), and where the sample shows none, searched at full resolution (a clear patch smaller than the
    sample's pixels is not missed).

    `clear_fraction(inv, info, max_size)` and `any_clear(inv, info)` read them (default `reader.read_clear_fraction`
    and `reader.any_clear`); the dialog, which checks on every edit, passes cached ones."""
    from . import reader

    clear_fraction = clear_fraction or reader.read_clear_fraction
    if any(clear_fraction(inv, s, 128) > 0 for s in inv.s2):
        return
    if any((any_clear or reader.any_clear)(inv, s) for s in inv.s2):
        return
    where = " in the extent" if inv.s2_grid else " at all"
    raise InputError(Problem(None, f"no clear Sentinel-2 observation{where}: every S2 pixel is cloudy, "
                             "shadowed or nodata according to the masks (" +
                             ", ".join(s.name for s in inv.s2[:5]) + ("...)" if len(inv.s2) > 5 else ")")))


def check_target(inv: Inventory | Stack, target: dt.date) -> tuple[str, list[str]]:
    """The mode for a target date (gap-filling / forecasting / backcasting) in the S2 series of an
    inventory or a loaded stack; InputError if out of range."""
    day = dates.to_days(target)
    s2_days = inv.s2_days
    first, last = s2_days.min(), s2_days.max()
    calendar = target.date() if isinstance(target, dt.datetime) else target  # the limit counts calendar days,
    before = (dates.from_days(first).date() - calendar).days  # the same at both ends whatever the images' hour
    after = (calendar - dates.from_days(last).date()).days
    if max(before, after) > MAX_EXTRAPOLATION_DAYS:
        raise InputError(Problem(None, f"target date {target:%Y-%m-%d} out of range: the S2 series runs "
                                 f"from {dates.from_days(first):%Y-%m-%d} to {dates.from_days(last):%Y-%m-%d}"
                                 f"{_date_sources(inv)} and a target may be at most {MAX_EXTRAPOLATION_DAYS} days "
                                 "outside it"))
    if day < first:
        return "backcasting", [f"target is {first - day:.0f} days before the first S2 image: backcasting"]
    if day > last:
        return "forecasting", [f"target is {day - last:.0f} days after the last S2 image: forecasting"]
    return "gap-filling", []


DATE_SOURCES = {"metadata": "metadata tags", "file name": "file names", "product": "product metadata",
                "given": "dates given per file", "TIFFTAG_DATETIME": "TIFFTAG_DATETIME, the files' write time"}


def _date_sources(inv: Inventory | Stack) -> str:
    """' (dates from ...)': where an inventory's S2 dates came from; '' for a stack (it does not say)."""
    if not isinstance(inv, Inventory):
        return ""
    found = [DATE_SOURCES.get(i.date_source, i.date_source) for i in inv.s2 if i.date_source]
    return f" (dates from {', '.join(dict.fromkeys(found))})" if found else ""


@dataclass
class S2Image:
    """One S2 image (or window of it) as reflectance."""

    refl: np.ndarray  # (B, h, w) float32, NaN nodata
    bands: list[str]
    grid: Grid
    tags: dict[str, str]


class S2Reader(AbstractContextManager):
    """An S2 image described and opened once, read by windows as surface reflectance: the file stays open between
    reads, so GDAL decodes each of its blocks once however many windows cross it."""

    def __init__(self, path: str | Path, band_order: list[str] | None = None):
        self.path = str(path)
        self.info = describe(path, sensor="S2", band_order=band_order, when=dt.datetime(1970, 1, 1))
        if self.info.problems:
            raise InputError(Problem(self.path, "; ".join(self.info.problems)))
        try:
            self._ds = rasterio.open(path)
        except (RasterioError, OSError) as exc:
            raise InputError(Problem(self.path, f"cannot read its pixels ({first_line(exc)})")) from exc

    def read(self, window: Window | None = None, bands: list[str] | None = None) -> S2Image:
        """A window (default the whole image) of some bands (default its S2 bands) as reflectance."""
        info = self.info
        wanted = bands or [b for b in info.bands if b]  # not a band it holds besides the S2 ones (an SCL)
        missing = [b for b in wanted if b not in info.bands]
        if missing:
            raise InputError(Problem(self.path, f"missing band(s) {', '.join(missing)}"))
        idx = [info.bands.index(b) + 1 for b in wanted]
        try:
            raw = self._ds.read(idx, window=window).astype("float32")
        except (RasterioError, OSError) as exc:  # the header read, the pixels do not (truncated, corrupt)
            raise InputError(Problem(self.path, f"cannot read its pixels ({first_line(exc)})")) from exc
        transform = self._ds.window_transform(window) if window is not None else self._ds.transform
        refl = raw * info.scale + info.offset
        if info.nodata is not None and not np.isnan(info.nodata):
            refl[raw == info.nodata] = np.nan
        assert info.grid is not None
        grid = Grid(info.grid.crs_wkt, transform, raw.shape[-1], raw.shape[-2])
        return S2Image(refl, list(wanted), grid, info.tags)

    def close(self) -> None:
        self._ds.close()

    def __exit__(self, *exc) -> None:
        self.close()


def read_s2(path: str | Path, band_order: list[str] | None = None, window: Window | None = None,
            bands: list[str] | None = None) -> S2Image:
    """Read an S2 image (optionally a window, optionally only some bands) as surface reflectance."""
    with S2Reader(path, band_order) as image:
        return image.read(window, bands)
