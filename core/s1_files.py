"""Sentinel-1 given as one file per polarization, read as one VV, VH image per acquisition.

ASF's and OPERA's RTC products (S1A_IW_<time>_DVP_RTC20_G_gpuned_<id>_VV.tif and _VH.tif), SNAP's BEAM-DIMAP
products (<product>.data/Sigma0_VV.img and Sigma0_VH.img, dated by the <product>.dim beside them) and
per-band exports hold one polarization per file. `combine` makes the VV and VH files of each acquisition
one two-band image (an in-memory VRT, `band_files.write_vrt`), read as a stacked S1 file is.
"""

from __future__ import annotations

import datetime as dt
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from . import band_files
from .dates import date_from_name
from .errors import Problem, short_list

S1_POLARIZATIONS = ("VV", "VH")  # what a run reads, in this order
_POL = re.compile(r"(?<![A-Z0-9])(VV|VH|HH|HV)(?![A-Z0-9])")
# ASF HyP3 RTC: ..._RTC<spacing>_<software>_<gamma|sigma><power|dB|amplitude><mask><filter><clip><match>_<id>
ASF_RTC = re.compile(r"_RTC\d+_[A-Z]_([GS])([PDA])[UW][NF][EC][DM]_", re.IGNORECASE)
ASF_SCALE = {"P": "linear", "D": "dB", "A": "amplitude"}
# OPERA's RTC-S1 bursts (JPL, gamma0 power): OPERA_L2_RTC-S1_<burst>_<time>Z_<time>Z_S1A_30_v1.0_VV.tif
OPERA_RTC = re.compile(r"^OPERA_L2_RTC-S1_", re.IGNORECASE)
# Not observations: ASF's and OPERA's maps beside the backscatter, SNAP's geometry bands and tie-point grids
NOT_INPUT = re.compile(r"_(ls_map|inc_map|dem|area|rgb)\.tiff?$|^OPERA_L2_RTC-S1_.*_mask\.tiff?$|"
                       r"^(localIncidenceAngle|projectedLocalIncidenceAngle|incidenceAngleFromEllipsoid|elevation|"
                       r"latitude|longitude|layover_?shadow_?mask)\.img$", re.IGNORECASE)
DIM_START = ("PRODUCT_SCENE_RASTER_START_TIME", "first_line_time")  # BEAM-DIMAP .dim acquisition start


def skipped_in_folder(path: str) -> bool:
    """Whether a raster found in a folder is an S1 product's geometry or preview file, not an input."""
    p = Path(path)
    return bool(NOT_INPUT.search(p.name)) or "tie_point_grids" in p.parts


def polarization_of(path: str, bands: list[str]) -> str:
    """The polarization of a one-band S1 file: its band description's, else the last VV, VH, HH or HV
    standing alone in its name ('' when neither says)."""
    if bands[:1] and bands[0] in ("VV", "VH", "HH", "HV"):
        return bands[0]
    found = _POL.findall(Path(path).stem.upper())
    return found[-1] if found else ""


def units_from_name(path: str, descriptions: list[str]) -> str | None:
    """'dB', 'linear' or 'amplitude' when a band description (Sigma0_VV_db) or an ASF RTC name says."""
    named = [d for d in descriptions if d]
    if named and all(d.lower().endswith(("_db", " db")) for d in named):
        return "dB"
    m = ASF_RTC.search(Path(path).name)
    return ASF_SCALE[m.group(2).upper()] if m else None


def is_gamma0(info) -> bool:
    """Whether an S1 image (RasterInfo) holds terrain-flattened gamma0 (SNAP's Gamma0_VV, ASF RTC's 'g',
    OPERA RTC-S1), not sigma0."""
    names = [Path(p).name for p in [info.path, *filter(None, info.tags.get("POLARISATION_FILES", "").split(", "))]]
    asf = [m.group(1).upper() for n in names if (m := ASF_RTC.search(n))]
    return (any("GAMMA0" in d.upper() for d in info.descriptions) or "G" in asf
            or any(OPERA_RTC.match(n) for n in names))


def product_date(path: str) -> dt.datetime | None:
    """The acquisition start of a file in a SNAP BEAM-DIMAP product (<product>.data/Sigma0_VV.img): from the
    <product>.dim beside the folder, else the folder's name; None for other files."""
    folder = Path(path).parent
    if folder.suffix.lower() != ".data":
        return None
    try:
        root = ET.parse(folder.with_suffix(".dim")).getroot()
    except (OSError, ET.ParseError):
        root = None
    for el in root.iter() if root is not None else ():
        if el.tag in DIM_START or el.get("name") in DIM_START:
            when = _dim_time((el.text or "").strip())
            if when is not None:
                return when
    return date_from_name(folder.name)


def _dim_time(text: str) -> dt.datetime | None:
    """SNAP's UTC format, 30-JUL-2018 05:52:19.335463."""
    try:
        return dt.datetime.strptime(text.split(".")[0], "%d-%b-%Y %H:%M:%S").replace(tzinfo=dt.UTC)
    except ValueError:
        return None


@dataclass
class _Acquisition:
    key: tuple[dt.datetime, str]
    files: dict[str, list] = field(default_factory=dict)  # polarization -> RasterInfo

    @property
    def label(self) -> str:
        return f"{self.key[0]:%Y%m%dT%H%M%S}"


def _key(info) -> tuple[dt.datetime, str]:
    """One acquisition: its time and its files' names without the polarization (..._VV.tif, ..._VH.tif)."""
    stem = _POL.sub("", Path(info.path).stem.upper())
    return info.when.replace(microsecond=0), stem


def combine(pol_infos: list, describe) -> tuple[list, list[Problem], list[str]]:
    """The S1 images (RasterInfo of in-memory VRTs, bands VV, VH) the one-polarization files make, one per
    acquisition; a problem for each acquisition without its VV or VH file or whose files disagree on
    the grid or units; warnings."""
    groups: dict[tuple, _Acquisition] = {}
    for info in pol_infos:
        key = _key(info)
        groups.setdefault(key, _Acquisition(key)).files.setdefault(info.polarization, []).append(info)
    images, problems = [], []
    lacking: dict[str, list[tuple[_Acquisition, str]]] = {}  # the polarization(s) missing -> the acquisitions
    for g in groups.values():
        names = short_list(sorted(i.name for files in g.files.values() for i in files))
        missing = [p for p in S1_POLARIZATIONS if p not in g.files]
        if missing:
            lacking.setdefault(" and ".join(missing), []).append((g, names))
            continue
        twice = [p for p in S1_POLARIZATIONS if len(g.files[p]) > 1]
        if twice:
            problems.append(Problem(None, f"the Sentinel-1 files of {g.label} hold {' and '.join(twice)} more than "
                                    f"once ({names}): give one file per polarization"))
            continue
        files = [g.files[p][0] for p in S1_POLARIZATIONS]
        vv, vh = files
        if vv.grid.crs_wkt != vh.grid.crs_wkt or vv.grid.transform != vh.grid.transform or \
                (vv.grid.width, vv.grid.height) != (vh.grid.width, vh.grid.height):
            problems.append(Problem(None, f"the Sentinel-1 files of {g.label} do not share one grid "
                                    f"({vh.name} differs from {vv.name})"))
            continue
        if vv.s1_db != vh.s1_db:
            problems.append(Problem(None, f"the Sentinel-1 files of {g.label} hold different units "
                                    f"({vv.name}: {_units(vv)}, {vh.name}: {_units(vh)})"))
            continue
        tags = {"UNITS": _units(vv), "ACQUISITION_DATETIME": f"{g.key[0]:%Y-%m-%dT%H:%M:%SZ}",
                "POLARISATIONS": "VV VH"}
        path = band_files.write_vrt(f"S1_{g.label}_VV_VH.vrt", files, vv, tags, list(S1_POLARIZATIONS))
        image = describe(path, sensor="S1", when=g.key[0])
        image.made_of(files)
        image.descriptions = [*vv.descriptions, *vh.descriptions]  # as in the files (Gamma0_VV, ...)
        image.tags["POLARISATION_FILES"] = ", ".join(image.files)
        images.append(image)
    problems = _lacking_problems(lacking) + problems
    warnings = []
    if images:
        warnings.append(f"{len(images)} S1 acquisition(s) given as one file per polarization are read as one "
                        f"VV, VH image each ({short_list([i.name for i in images])})")
    return images, problems, warnings


WITHOUT_S1 = "or leave the Sentinel-1 images out (a run can go without them)"


def _lacking_problems(lacking: dict[str, list]) -> list[Problem]:
    """A problem per acquisition lacking a polarization; one for all those lacking the same one when several do
    (a folder of VV-only files: one sentence, not one per date)."""
    out = []
    for missing, groups in lacking.items():
        if len(groups) > 1:
            out.append(Problem(None, f"{len(groups)} Sentinel-1 acquisitions given as one file per polarization lack "
                                     f"{missing} ({short_list([g.label for g, _names in groups])}): a run needs both "
                                     f"VV and VH; give the {missing} file of each, {WITHOUT_S1}"))
            continue
        g, names = groups[0]
        given = [i for files in g.files.values() for i in files]
        out.append(Problem(given[0].path if len(given) == 1 else None,
                           f"the Sentinel-1 files of {g.label} ({names}) lack {missing}: a run needs both VV and VH; "
                           f"give the file of each polarization, {WITHOUT_S1}"))
    return out


def _units(info) -> str:
    return "dB" if info.s1_db else "linear"
