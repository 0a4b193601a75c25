"""Sentinel-2 band files, as ESA ships them, read as one image per acquisition.

A .SAFE product holds one file per band and resolution (GRANULE/*/IMG_DATA/R10m/T31UDS_<time>_B04_10m.jp2,
R20m/..._B05_20m.jp2, ...). `combine` groups the band files of one tile and acquisition time into a
virtual raster (a GDAL VRT kept in memory, /vsimem/sentinel_densify/...): each band from its finest
file, the 20 m and 60 m ones brought to the finest grid by nearest neighbour (as ESA's own 10 m
products do), with the product's reflectance offset from its MTD_MSIL2A.xml / MTD_MSIL1C.xml.
An acquisition exported as several multi-band files with named bands (a 10 m file of B02, B03, B04, B08 and a
20 m one of B05 ... B12, as SNAP or Earth Engine write them) is combined the same way (`split_images`), read as
its files are (their own tags and scaling).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import os
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape

from . import archives, dates
from .errors import Problem, short_list
from .stack import S2_BANDS

BAND_NAME = re.compile(r"_B(0[1-9]|1[0-2]|8A)(?:_(\d{2})m)?\.[A-Za-z0-9]+$", re.IGNORECASE)
SCL_NAME = re.compile(r"_SCL_(\d{2})m\.[A-Za-z0-9]+$", re.IGNORECASE)
TILE = re.compile(r"(?:^|_)T(\d{2}[A-Z]{3})_")
SAFE_BASELINE = re.compile(r"_MSIL(1C|2A)_\d{8}T\d{6}_N(\d{2})(\d{2})_", re.IGNORECASE)
# a product opened by GDAL's SENTINEL2 driver (QGIS lists these when a .SAFE or its .zip is added)
SUBDATASET = re.compile(r"^SENTINEL2_(?:L1C|L2A):(.+\.xml):(?:\d+m|TCI|PREVIEW):EPSG_\d+$", re.IGNORECASE)
# Not observations: aerosol, water vapour, true-colour preview, and the QI_DATA quality masks
# (MSK_CLDPRB_20m is a cloud probability, but the product's SCL is the mask to use)
NOT_INPUT = re.compile(r"_(AOT|WVP|TCI)_\d{2}m\.|^MSK_|_PVI\.", re.IGNORECASE)
MTD_LEVEL = {"MTD_MSIL2A.xml": "2A", "MTD_MSIL1C.xml": "1C"}  # a product's metadata file: its level
OFFSET_BASELINE = (4, 0)  # processing baseline 04.00 (products since 2022-01-25): DN = 10000 * refl + 1000
OFFSET_SINCE = dt.date(2022, 1, 25)
_VRTS: dict[str, object] = {}  # content hash -> rasterio MemoryFile, kept open for the process


def skipped_in_folder(path: str) -> bool:
    """Whether a raster found in a folder is a .SAFE product's non-reflectance file (AOT, WVP, TCI,
    QI_DATA masks), not an input."""
    p = Path(path)
    return bool(NOT_INPUT.search(p.name)) or "QI_DATA" in p.parts


def subdataset_product(path: str) -> str | None:
    """The product folder behind a GDAL SENTINEL2 subdataset (SENTINEL2_L2A:<.SAFE>/MTD_MSIL2A.xml:10m:
    EPSG_32631): the folder of its MTD file, a /vsizip/ path when the product is in an archive. None for
    any other path."""
    m = SUBDATASET.match(str(path))
    return os.path.dirname(m.group(1)) if m else None


def product_root(band_path: str) -> str:
    """Where the other band files of a band file's acquisition are: its zip archive, its .SAFE folder (or the
    folder of the product's MTD_MSIL2A.xml / MTD_MSIL1C.xml), else the folder above its resolution folder
    (IMG_DATA above R10m) or its own folder."""
    if (parts := archives.split(band_path)) is not None:
        return parts[0]
    folder = Path(band_path).parent
    for parent in [folder, *list(folder.parents)[:4]]:  # R10m, IMG_DATA, the granule, GRANULE, the .SAFE
        if parent.suffix.upper() == ".SAFE" or any((parent / name).is_file() for name in MTD_LEVEL):
            return str(parent)
    return str(folder.parent if re.fullmatch(r"R[126]0m", folder.name, re.IGNORECASE) else folder)


def band_of(path: str, bands: list[str]) -> str:
    """The S2 band a one-band file holds, from its description else its name ('' when unknown)."""
    if bands[:1] and bands[0]:
        return bands[0]
    m = BAND_NAME.search(Path(path).name)
    return f"B{m.group(1).upper()}" if m else ""


def held_bands(info) -> dict[str, int]:
    """The Sentinel-2 bands (S2_BANDS) a part of an acquisition holds, each with its band number in the file: a
    band file's one band, a multi-band image's bands named by their descriptions (or the band order)."""
    if info.band_file:
        return {info.band_file: 1} if info.band_file in S2_BANDS else {}
    held: dict[str, int] = {}
    for k, band in enumerate(info.bands, start=1):
        if band in S2_BANDS:
            held.setdefault(band, k)
    return held


def split_images(infos: list) -> list:
    """The multi-band S2 images that hold only some of the bands (a 10 m file of B02, B03, B04, B08 and a 20 m
    one of the others, as SNAP or Earth Engine export them) when another file of their acquisition (`_groups`)
    holds bands they lack: `combine` reads them together, as it does band files."""
    partial = [i for i in infos if i.sensor == "S2" and not i.problems and not i.product and i.grid is not None
               and i.when is not None and 0 < len(held_bands(i)) < len(S2_BANDS)]
    band = [i for i in infos if i.band_file and i.grid is not None and i.when is not None]
    taken = {id(i) for g in _groups(partial + band) for i in g.files
             if any(set(held_bands(o)) - set(held_bands(i)) for o in g.files if o is not i)}
    return [i for i in partial if id(i) in taken]


def parts_of(info, infos: list) -> list:
    """The files of `info`'s acquisition among `infos` when it is a part of one (`split_images`), else []."""
    return next((g.files for g in _groups(split_images(infos)) if any(i is info for i in g.files)), [])


SPLIT_MINUTES = 10.0  # parts of one acquisition whose times differ by up to this much (tags rounded, re-saved)


@dataclass
class _Group:
    key: tuple[str, dt.datetime]
    files: list = field(default_factory=list)  # RasterInfo of each band file

    @property
    def label(self) -> str:
        tile, when = self.key
        return (f"T{tile}_" if tile else "") + f"{when:%Y%m%dT%H%M%S}"

    @property
    def bands(self) -> set[str]:
        return {b for i in self.files for b in held_bands(i)}


def _key(info) -> tuple[str, dt.datetime]:
    m = TILE.search(Path(info.path).name)
    return (m.group(1) if m else "", info.when.replace(microsecond=0))


def _day_only(info) -> bool:
    """Whether a file is dated by its day alone (a date in its name without a time: midnight)."""
    return info.date_source == "file name" and info.when.time() == dt.time()


def _groups(infos: list) -> list[_Group]:
    """The files of each acquisition: those of one tile and time (`_key`), and the parts of one tile and calendar
    day holding complementary bands whose times differ by up to SPLIT_MINUTES, or one of which is dated by its day
    alone; such parts take the time of the finest part timed to the second."""
    exact: dict[tuple, _Group] = {}
    for info in infos:
        exact.setdefault(_key(info), _Group(_key(info))).files.append(info)
    groups: list[_Group] = []
    for g in exact.values():
        other = next((o for o in groups if _one_acquisition(o, g)), None)
        if other is None:
            groups.append(g)
            continue
        other.files += g.files
        timed = [i for i in other.files if not _day_only(i)] or other.files
        other.key = (other.key[0], min(timed, key=lambda i: i.grid.res).when.replace(microsecond=0))
    return groups


def _one_acquisition(a: _Group, b: _Group) -> bool:
    """Whether two groups of files are parts of one acquisition (`_groups`)."""
    (tile_a, when_a), (tile_b, when_b) = a.key, b.key
    if tile_a != tile_b or when_a.date() != when_b.date() or not a.bands or not b.bands or a.bands & b.bands:
        return False
    minutes = abs(dates.to_days(when_a) - dates.to_days(when_b)) * 1440.0
    return minutes <= SPLIT_MINUTES or all(map(_day_only, a.files)) or all(map(_day_only, b.files))


def combine(band_infos: list, describe) -> tuple[list, list[Problem], list[str]]:
    """The S2 images (RasterInfo of in-memory VRTs, named by their files) that band files and split multi-band
    images (`split_images`) make, one per acquisition (`_groups`); a problem for each acquisition that lacks bands,
    holds one in two multi-band files, or whose files disagree on the grid (or, multi-band, on the scaling);
    warnings."""
    images, problems, assumed, whole, split = [], [], [], [], []
    for g in _groups(band_infos):
        chosen, problem = _group_bands(g)
        if problem is not None:
            problems.append(problem)
            continue
        multi = [i for i in g.files if not i.band_file]  # multi-band images among the parts
        sources = [chosen[b] for b in S2_BANDS]
        bands, scaling = list(S2_BANDS), None
        if multi:
            tags, scaling = _split_tags(multi, g.key[1]), _band_scaling(multi[0])  # as read alike (_read_unlike)
            mask = min((i for i in multi if i.mask_band), key=lambda i: i.grid.res, default=None)
            if mask is not None:  # an SCL (or cloud probability) exported along: the image's mask band, as it was
                sources.append((mask, mask.mask_band))
                bands.append(mask.descriptions[mask.mask_band - 1] or "SCL")
        else:
            tags, how = product_tags(sources[0][0].path, g.key[1])
            tags.update(granule_angles(sources[0][0].path), ACQUISITION_DATETIME=f"{g.key[1]:%Y-%m-%dT%H:%M:%SZ}")
            if how == "assumed":
                assumed.append(g.label)
        parts = list({id(i): i for i, _ in sources[:len(S2_BANDS)]}.values())  # each file once, in band order
        ref = min(parts, key=lambda i: i.grid.res)
        path = write_vrt(f"{g.label}_bands.vrt", [i for i, _ in sources], ref, tags, bands,
                         source_bands=[k for _, k in sources], scaling=scaling)
        image = describe(path, sensor="S2", when=g.key[1])
        image.made_of(parts)
        image.label = " + ".join(i.name for i in parts) if multi else \
            f"{parts[0].name} + {len(parts) - 1} other band files"  # its name in messages and the outputs' tags
        image.tags["BAND_FILES"] = ", ".join(image.files)
        images.append(image)
        (split if multi else whole).append(image.name)
    return images, problems, _combine_warnings(whole, split, assumed)


def stack_them(files: list) -> str:
    """What to do with multi-band parts of one acquisition (RasterInfo) that cannot be read together: export all bands
    as one file, or stack them with GDAL 3.6 (no band taken only from a file's first band; the band order known),
    as commands on these files: each coarser one onto the finest one's grid, merged, its bands named."""
    from rasterio.crs import CRS

    fine = min(files, key=lambda i: i.grid.res)
    same_folder = len({str(Path(i.path).parent) for i in files}) == 1
    shown = {id(i): Path(i.path).name if same_folder else i.path for i in files}
    stem = os.path.commonprefix([Path(i.path).stem for i in files]).rstrip("_-. ")
    out = f"{stem if re.search(r'[0-9]', stem) else Path(fine.path).stem}_stacked.tif"
    t, (left, bottom, right, top) = fine.grid.transform, fine.grid.bounds
    epsg = CRS.from_wkt(fine.grid.crs_wkt).to_epsg()
    crs = f"-t_srs EPSG:{epsg} " if epsg and any(i.grid.crs_wkt != fine.grid.crs_wkt for i in files) else ""
    coarse = sorted((i for i in files if i is not fine), key=lambda i: i.grid.res)
    merged, warps = [shown[id(fine)]], []
    for i in coarse:
        warped = f"{Path(shown[id(i)]).with_suffix('')}_warped.tif"
        warps.append(f"gdalwarp -r near {crs}-tr {t.a:.12g} {-t.e:.12g} -te {left:.12g} {bottom:.12g} {right:.12g} "
                     f"{top:.12g} {shown[id(i)]} {warped}")
        merged.append(warped)
    order = [d or i.band_file or "?" for i in [fine, *coarse] for d in i.descriptions or [""]]
    python = ("python3 -c \"from osgeo import gdal; ds = gdal.Open('" + out + "', 1); [ds.GetRasterBand(k + 1)"
              ".SetDescription(d) for k, d in enumerate('" + " ".join(order) + "'.split())]\"")
    return (f"export all bands as one file, with band descriptions (B02, B03, ...); or stack these files yourself"
            f"{' (in their folder)' if same_folder else ''}: {'; '.join(warps)}; then gdal_merge.py -separate -o {out} "
            f"{' '.join(merged)}; then name its bands, {', '.join(order)} in this order: {python}; and give {out} "
            "instead of these files")


def _group_bands(g: _Group) -> tuple[dict[str, tuple], Problem | None]:
    """The S2 bands of an acquisition's files (`_choose`), or the problem that keeps them from making one image:
    a band in two multi-band files, bands missing, files in other CRSs or on other areas, multi-band files
    scaled differently."""
    chosen, twice = _choose(g.files)
    names = short_list(sorted(i.name for i in g.files))
    multi = [i for i in g.files if not i.band_file]
    what = "S2 files" if multi else "band files"
    if twice:
        held = "; ".join(f"{', '.join(bands)} {'is' if len(bands) == 1 else 'are'} in {' and '.join(holders)}"
                         for holders, bands in twice.items())
        return chosen, Problem(None, f"the {what} of {g.label} ({names}) are parts of one acquisition, but {held}: "
                               f"give each band once, or {stack_them(g.files)}")
    if missing := [b for b in S2_BANDS if b not in chosen]:
        how = "e.g. the 10 m and 20 m files" if multi else "e.g. the R10m and R20m folders, or the whole .SAFE product"
        return chosen, Problem(g.files[0].path if len(g.files) == 1 else None,
                               f"the {what} of {g.label} ({names}) lack band(s) {', '.join(missing)}: give every "
                               f"band of the acquisition ({how})")
    parts = list({id(chosen[b][0]): chosen[b][0] for b in S2_BANDS}.values())
    ref = min(parts, key=lambda i: i.grid.res)
    other_crs, off = _misfits(parts, ref)
    stack = f": {stack_them(g.files)}" if multi and (other_crs or off) else ""
    if other_crs:
        return chosen, Problem(None, f"the {what} of {g.label} are in different coordinate systems "
                               f"({', '.join(other_crs)} differ from {ref.name}){stack}")
    if off:
        return chosen, Problem(None, f"the {what} of {g.label} do not cover the same area "
                               f"({', '.join(off)} differ from {ref.name}){stack}")
    if multi and (unlike := _read_unlike(multi)):
        return chosen, Problem(None, f"the {what} of {g.label} are not read alike ({unlike}): export them with one "
                               "data type, nodata value and scaling (gdalwarp -dstnodata VALUE IN OUT gives a file "
                               "another nodata value, its no-data pixels too; give OUT instead of IN), or export all "
                               "bands as one file, with band descriptions")
    return chosen, None


def _combine_warnings(whole: list[str], split: list[str], assumed: list[str]) -> list[str]:
    """What `combine` did: acquisitions read from band files or from several multi-band files, offsets assumed."""
    warnings = []
    if whole:
        warnings.append(f"{len(whole)} S2 acquisition(s) given as band files are read as one image each "
                        f"({short_list(whole)}): the 20 m and 60 m bands at the finest band's resolution, by "
                        "nearest neighbour")
    if split:
        warnings.append(f"{len(split)} S2 acquisition(s) given as several multi-band files are read as one image "
                        f"each ({short_list(split)}): the bands of the coarser files at the finest file's "
                        "resolution, by nearest neighbour")
    if assumed:
        warnings.append(f"no product metadata (MTD_MSIL2A.xml / MTD_MSIL1C.xml or a .SAFE name) above the band "
                        f"files of {len(assumed)} acquisition(s) ({short_list(assumed)}): their reflectance "
                        f"offset is assumed from the date (-1000 DN from {OFFSET_SINCE:%Y-%m-%d}, processing "
                        "baseline 04.00, else 0); "
                        "keep the files in their .SAFE folder to read it")
    return warnings


def _choose(files: list) -> tuple[dict[str, tuple], dict[tuple[str, ...], list[str]]]:
    """Each S2 band of an acquisition's files as (file, band number), from its finest file (ESA ships the 10 m
    bands at 20 and 60 m too); and the bands that two multi-band files both hold, by the files holding them."""
    chosen: dict[str, tuple] = {}
    holders: dict[str, list[str]] = {}
    for info in files:
        for band, k in held_bands(info).items():
            if not info.band_file:
                holders.setdefault(band, []).append(info.name)
            if band not in chosen or info.grid.res < chosen[band][0].grid.res:
                chosen[band] = (info, k)
    twice: dict[tuple[str, ...], list[str]] = {}
    for band, names in holders.items():
        if len(names) > 1:
            twice.setdefault(tuple(names), []).append(band)
    return chosen, twice


def _misfits(files: list, ref) -> tuple[list[str], list[str]]:
    """The names of the files in another CRS than `ref` (the finest), and of those that do not cover its extent
    to within half a pixel of the coarser of the two (a larger one is read on `ref`'s grid, the rest left out)."""
    crs = [i.name for i in files if i.grid.crs_wkt != ref.grid.crs_wkt]
    off = []
    for i in files:
        tol = max(i.grid.res, ref.grid.res) / 2
        (left, bottom, right, top), (r_left, r_bottom, r_right, r_top) = i.grid.bounds, ref.grid.bounds
        if i.name not in crs and (left > r_left + tol or bottom > r_bottom + tol or right < r_right - tol
                                  or top < r_top - tol):
            off.append(i.name)
    return crs, off


def _read_unlike(files: list) -> str:
    """'' when multi-band files are read alike (data type, nodata, reflectance scale and offset), else how each
    is read."""
    if len({(i.dtype, repr(i.nodata), i.scale, i.offset) for i in files}) == 1:
        return ""
    return "; ".join(f"{i.name}: {i.dtype}, nodata {i.nodata}, reflectance = value x {i.scale:g}"
                     + (f" {'-' if i.offset < 0 else '+'} {abs(i.offset):g}" if i.offset else "") for i in files)


def _split_tags(files: list, when: dt.datetime) -> dict[str, str]:
    """The tags of an acquisition made of multi-band files: theirs, the finest file's first where they differ (of
    those timed to the second)."""
    tags: dict[str, str] = {}
    for info in sorted(files, key=lambda i: (_day_only(i), i.grid.res)):  # a part timed to the second first
        for key, value in info.tags.items():
            tags.setdefault(key, value)
    tags.setdefault("ACQUISITION_DATETIME", f"{when:%Y-%m-%dT%H:%M:%SZ}")
    return tags


def _band_scaling(info) -> tuple[float, float] | None:
    """(scale, offset) of a file scaled by its bands' GDAL scale and offset (carried into the VRT), else None."""
    return (info.scale, info.offset) if info.scale_from == "band scale" else None


def product_tags(band_path: str, when: dt.datetime) -> tuple[dict[str, str], str]:
    """The scaling tags of a band file's product (REFLECTANCE_SCALE, BOA_ADD_OFFSET or RADIO_ADD_OFFSET,
    PROCESSING_LEVEL) and where they came from: 'metadata', 'product name' or 'assumed' (by date)."""
    near = _metadata_near(band_path, tuple(MTD_LEVEL))
    if near is not None and (tags := _mtd_tags(near[1], MTD_LEVEL[near[0]])) is not None:
        return tags, "metadata"
    for part in Path(band_path).parts:
        m = SAFE_BASELINE.search(part)
        if m:
            level, baseline = m.group(1).upper(), (int(m.group(2)), int(m.group(3)))
            return _tags(level, -1000.0 if baseline >= OFFSET_BASELINE else 0.0, 10000.0), "product name"
    level = "1C" if "MSIL1C" in band_path.upper() else "2A"
    return _tags(level, -1000.0 if when.date() >= OFFSET_SINCE else 0.0, 10000.0), "assumed"


def _metadata_near(band_path: str, names: tuple[str, ...]) -> tuple[str, bytes] | None:
    """The nearest of `names` in the folders above a band file (up to 7; in its zip archive for a
    /vsizip/ member), as (name, content)."""
    if band_path.startswith(archives.PREFIX):
        return archives.read_near(band_path, names)
    for folder in list(Path(band_path).resolve().parents)[:7]:
        for name in names:
            try:
                return name, (folder / name).read_bytes()
            except OSError:
                continue
    return None


def granule_angles(band_path: str) -> dict[str, str]:
    """The mean sun and view angles of a band file's granule (its MTD_TL.xml: Mean_Sun_Angle, and the
    bands' Mean_Viewing_Incidence_Angle averaged, the azimuth on the circle), as the tags the 31UDS
    images carry (MEAN_SUN_ZENITH_ANGLE, ...); {} when there is no such file."""
    near = _metadata_near(band_path, ("MTD_TL.xml",))
    if near is None:
        return {}
    try:
        root = ET.fromstring(near[1])
    except ET.ParseError:
        return {}
    found: dict[str, list[float]] = {}
    for el in root.iter():
        kind = {"Mean_Sun_Angle": "SUN", "Mean_Viewing_Incidence_Angle": "VIEW"}.get(el.tag.rsplit("}", 1)[-1])
        for child in el if kind else ():
            angle = child.tag.rsplit("}", 1)[-1].removesuffix("_ANGLE")
            try:
                value = float(child.text or "")
            except ValueError:
                continue
            if angle in ("ZENITH", "AZIMUTH") and math.isfinite(value):
                found.setdefault(f"MEAN_{kind}_{angle}_ANGLE", []).append(value)
    tags = {}
    for key, values in found.items():
        if key.endswith("AZIMUTH_ANGLE"):
            rad = [math.radians(v) for v in values]
            mean = math.degrees(math.atan2(sum(map(math.sin, rad)), sum(map(math.cos, rad)))) % 360.0
        else:
            mean = sum(values) / len(values)
        tags[key] = f"{mean:.6g}"
    return tags


def _tags(level: str, offset: float, quantification: float) -> dict[str, str]:
    key = "BOA_ADD_OFFSET" if level == "2A" else "RADIO_ADD_OFFSET"
    return {"PROCESSING_LEVEL": f"Level-{level}", "REFLECTANCE_SCALE": repr(1.0 / quantification),
            key: f"{offset:g}"}


def _mtd_tags(mtd: bytes, level: str) -> dict[str, str] | None:
    """Scaling tags from a product's MTD file content; None when it cannot be parsed or its offsets differ
    by band."""
    try:
        root = ET.fromstring(mtd)
    except ET.ParseError:
        return None
    offsets, quant = set(), None
    for el in root.iter():
        tag = el.tag.rsplit("}", 1)[-1]
        if tag in ("BOA_ADD_OFFSET", "RADIO_ADD_OFFSET") and (el.text or "").strip():
            offsets.add(float(el.text))
        elif tag in ("BOA_QUANTIFICATION_VALUE", "QUANTIFICATION_VALUE") and (el.text or "").strip():
            quant = float(el.text)
    if len(offsets) > 1:
        return None
    return _tags(level, offsets.pop() if offsets else 0.0, quant or 10000.0)


def write_vrt(name: str, files: list, ref, tags: dict[str, str], bands: list[str],
              source_bands: list[int] | None = None, scaling: tuple[float, float] | None = None) -> str:
    """An in-memory VRT stacking bands of files (RasterInfo; band source_bands[n] of files[n], default 1) on
    `ref`'s grid, band n named bands[n], with the GDAL band scale and offset `scaling` when given; its /vsimem
    path."""
    from rasterio.dtypes import dtype_rev, typename_fwd
    from rasterio.io import MemoryFile

    g = ref.grid
    t = g.transform
    meta = "".join(f'<MDI key="{escape(k)}">{escape(v)}</MDI>' for k, v in tags.items())
    scale = f"<Offset>{scaling[1]!r}</Offset><Scale>{scaling[0]!r}</Scale>" if scaling else ""
    vrt_bands = []
    for n, (band, info, source) in enumerate(zip(bands, files, source_bands or [1] * len(files), strict=True),
                                             start=1):
        s = info.grid
        x_off, y_off = (s.transform.c - t.c) / t.a, (s.transform.f - t.f) / t.e
        x_size, y_size = s.width * s.transform.a / t.a, s.height * s.transform.e / t.e
        nodata = f"<NoDataValue>{info.nodata:g}</NoDataValue>" if info.nodata is not None else ""
        gdal_type = typename_fwd[dtype_rev[info.dtype]]
        vrt_bands.append(
            f'<VRTRasterBand dataType="{gdal_type}" band="{n}"><Description>{escape(band)}</Description>{nodata}'
            f'{scale}<SimpleSource resampling="nearest"><SourceFilename relativeToVRT="0">{escape(info.path)}'
            f'</SourceFilename><SourceBand>{source}</SourceBand>'
            f'<SrcRect xOff="0" yOff="0" xSize="{s.width}" ySize="{s.height}"/>'
            f'<DstRect xOff="{x_off:.6f}" yOff="{y_off:.6f}" xSize="{x_size:.6f}" ySize="{y_size:.6f}"/>'
            "</SimpleSource></VRTRasterBand>")
    xml = (f'<VRTDataset rasterXSize="{g.width}" rasterYSize="{g.height}"><SRS>{escape(g.crs_wkt)}</SRS>'
           f"<GeoTransform>{t.c!r}, {t.a!r}, {t.b!r}, {t.f!r}, {t.d!r}, {t.e!r}</GeoTransform>"
           f"<Metadata>{meta}</Metadata>{''.join(vrt_bands)}</VRTDataset>")
    key = hashlib.sha1(xml.encode()).hexdigest()[:16]  # one folder per VRT: closing a MemoryFile removes its folder
    if key not in _VRTS:  # never closed: a few kB each, read by any thread of this process
        _VRTS[key] = MemoryFile(xml.encode(), dirname=f"sentinel_densify/{key}", filename=name)
    return _VRTS[key].name


def coarser_scl(masks: list) -> set[int]:
    """ids of the ESA SCL files (T.._<time>_SCL_20m / _60m) that a finer SCL of the same tile and time
    makes redundant."""
    scl = [m for m in masks if SCL_NAME.search(Path(m.path).name) and m.grid is not None and m.when is not None]
    finest: dict[tuple, object] = {}
    for m in scl:
        k = _key(m)
        if k not in finest or m.grid.res < finest[k].grid.res:
            finest[k] = m
    kept = {id(m) for m in finest.values()}
    return {id(m) for m in scl if id(m) not in kept}
