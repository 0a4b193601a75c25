"""Curation of S1/S2 training triplets in the SEN12MS-CR layout (Ledermann 2026, section 2.2).

A dataset folder holds `s1/`, `s2_cloudy/` and `s2_cloudfree/` with the same file name in each.
Each triplet is checked in two stages after the basic checks (present, readable, shape,
not all nodata):

1. SAR: rejected when the standard deviation of the backscatter is below 1e-4 or its maximum
   below 1e-3, in either polarisation (VV, VH: checked one by one, so a dead VH beside a live VV
   is caught; the seed does not say whether they are pooled). The seed does not state the units;
   SEN12MS-CR stores dB (about -30..0), where a "max < 1e-3" test would reject every sample, so —
   as in the usual SEN12MS(-CR) loaders — the dB values are clipped to [-25, 0] and scaled to
   [0, 1] before the test. A patch whose max is below 1e-3 then has no backscatter above
   -24.975 dB (dead), one with std below 1e-4 is flat. (On linear sigma0 the same thresholds would mean
   darker than -30 dB throughout: the readings differ only on patches all below -25 dB, e.g. calm water.)
2. Optical: rejected when the mean of the R, G, B standard deviations of the cloud-free target,
   in 8-bit display units, is below a season-aware threshold (10 summer, 3 winter). Display
   units: reflectance stretched linearly from [0, `display_max`=0.3] to [0, 255] and clipped
   (a true-colour stretch; the seed's own scaling is not given). The cloudy input is expected
   to be flat under opaque cloud, so only the target is tested.

Season: from the SEN12MS season in the file name (ROIs2017_winter_...: the dataset's seasons are
calendar quarters, Dec-Feb = winter), else the acquisition date (tags, then file name), as
meteorological seasons flipped in the southern hemisphere (latitude from the raster location).
Spring and autumn use the summer (strict) threshold; an unknown season too. The seed ties the
thresholds to SEN12MS's summer and winter subsets and gives the reason, dormant winter landscapes;
the hemisphere flip (a southern "winter" file is physical summer) follows that reason rather than
the label, which is a departure from the seed's literal rule.

Sources are only read. The output folder receives report.csv, summary.json, summary.md and
kept.txt, and with `link=True` a SEN12MS-CR folder of symbolic links to the kept triplets.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import json
import os
import re
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .atomic import (
    OutputError,
    TemporaryOutput,
    ensure_folder,
    first_line,
    new_dirs_removed_on_error,
    output_dir_problem,
    write_texts,
)
from .dates import date_from_metadata, date_from_name
from .errors import InputError
from .progress import Feedback
from .stack import S2_BANDS, S2_L1C_BANDS

FOLDERS = ("s1", "s2_cloudy", "s2_cloudfree")
RGB = ("B04", "B03", "B02")
RASTER_SUFFIXES = (".tif", ".tiff")
SAR_DB_RANGE = (-25.0, 0.0)
SAR_CHANNELS = ("VV", "VH")  # SEN12MS-CR s1 band order
REASONS = ("missing", "unreadable", "shape", "grid", "nodata", "sar_flat", "sar_dead", "optical_flat")
SEASONS = ("winter", "spring", "summer", "autumn", "unknown")
# SEN12MS(-CR) ROI seasons are calendar quarters (northern-hemisphere names): a month in each
_NAME_SEASON_MONTH = {"winter": 1, "spring": 4, "summer": 7, "fall": 10, "autumn": 10}
_NAME_SEASON = re.compile(r"(?:^|[_\-.])(winter|spring|summer|fall|autumn)(?:[_\-.]|$)", re.IGNORECASE)


@dataclass(frozen=True)
class CurateConfig:
    """Thresholds of the two-stage filter (defaults from the Ledermann seed)."""

    summer_threshold: float = 10.0
    winter_threshold: float = 3.0
    sar_std_min: float = 1e-4
    sar_max_min: float = 1e-3
    display_max: float = 0.3  # reflectance mapped to 255 in the 8-bit display stretch
    size: int | None = None  # required patch size (None: any, but the three files must agree)

    def threshold(self, season: str) -> float:
        return self.winter_threshold if season == "winter" else self.summer_threshold


@dataclass
class Verdict:
    """The decision on one triplet and the statistics behind it."""

    name: str
    kept: bool
    reason: str = ""
    season: str = "unknown"
    hemisphere: str = ""
    sar_std: float = float("nan")
    sar_max: float = float("nan")
    rgb_std: float = float("nan")
    threshold: float = float("nan")
    detail: str = ""


@dataclass
class CurateSummary:
    """Counts of one curation run and where its report is."""

    total: int
    kept: int
    rejected: dict[str, int]
    per_season: dict[str, dict[str, int]]
    out_dir: str
    config: dict = field(default_factory=dict)


# ---------------------------------------------------------------- reading the layout


def s2_band_names(count: int, descriptions: Iterable[str | None] = ()) -> list[str]:
    """Band names of an S2 file: its descriptions when they are band names, else by count."""
    desc = [str(d).upper() if d else "" for d in descriptions]
    if desc and all(re.fullmatch(r"B(\d{1,2}|8A)", d) for d in desc):
        return [d if len(d) == 3 else f"B0{d[1]}" for d in desc]
    if count == len(S2_L1C_BANDS):
        return list(S2_L1C_BANDS)
    if count == len(S2_BANDS):
        return list(S2_BANDS)
    raise ValueError(f"{count} bands without band descriptions (expected 13 L1C or 10 L2A bands)")


def read_s1_db(path: str | Path) -> tuple[np.ndarray, dict]:
    """(2, h, w) float32 backscatter in dB, NaN nodata; and file info (tags, size, crs, bounds)."""
    import rasterio

    with rasterio.Env(), rasterio.open(path) as ds:  # Env: GDAL's messages to logging (the report says why)
        data = ds.read().astype(np.float32)
        if ds.nodata is not None and np.isfinite(ds.nodata):
            data[data == ds.nodata] = np.nan
        info = _info(ds)
    if data.shape[0] != 2:
        raise ValueError(f"S1 has {data.shape[0]} bands (expected 2: VV, VH)")
    return data, info


def read_s2_refl(path: str | Path, bands: Iterable[str] | None = None) -> tuple[np.ndarray, list[str], dict]:
    """(B, h, w) float32 reflectance (DN * 1e-4 + offset when tagged), NaN where DN is nodata (0).

    bands: names to return in that order (default: all, in file order).
    """
    import rasterio

    with rasterio.Env(), rasterio.open(path) as ds:  # Env: GDAL's messages to logging (the report says why)
        names = s2_band_names(ds.count, ds.descriptions)
        want = list(bands) if bands is not None else names
        missing = [b for b in want if b not in names]
        if missing:
            raise ValueError(f"S2 lacks band(s) {', '.join(missing)} (has {', '.join(names)})")
        idx = [names.index(b) + 1 for b in want]
        dn = ds.read(idx).astype(np.float32)
        nodata = ds.nodata if ds.nodata is not None else 0.0
        info = _info(ds)
    from .inventory import s2_scaling

    scale, offset = s2_scaling(info["tags"])
    scale = scale or 1e-4
    bad = (dn == nodata) | ~np.isfinite(dn)
    refl = dn * scale + offset * scale
    refl[bad] = np.nan
    return refl, want, info


def _info(ds) -> dict:
    return {"tags": ds.tags(), "count": ds.count, "shape": (ds.height, ds.width),
            "crs": ds.crs.to_wkt() if ds.crs else None, "bounds": tuple(ds.bounds)}


def sar_unit(db: np.ndarray) -> np.ndarray:
    """dB clipped to SAR_DB_RANGE and scaled to [0, 1] (the scale of the seed's SAR test)."""
    lo, hi = SAR_DB_RANGE
    return np.clip((db - lo) / (hi - lo), 0.0, 1.0)


def display8(refl: np.ndarray, display_max: float = 0.3) -> np.ndarray:
    """Reflectance as 8-bit display values (float): [0, display_max] -> [0, 255], clipped."""
    return np.clip(refl / display_max, 0.0, 1.0) * 255.0


def triplet_names(data: str | Path) -> list[str]:
    """Sorted union of raster file names over the three folders, hidden ones (.*) left out (checks the layout)."""
    data = Path(data)
    if not data.exists():
        raise InputError(f"{data}: does not exist (the dataset folder with {', '.join(FOLDERS)})")
    if not data.is_dir():
        raise InputError(f"{data}: not a folder (the dataset folder with {', '.join(FOLDERS)})")
    missing = [f for f in FOLDERS if not (data / f).is_dir()]
    if missing:
        raise InputError(f"{data}: not a SEN12MS-CR dataset (missing folder(s) {', '.join(missing)}; "
                         f"expected {', '.join(FOLDERS)})")
    names: set[str] = set()
    for f in FOLDERS:  # not names starting with "." (macOS ._NAME AppleDouble files, hidden partial files)
        names.update(p.name for p in (data / f).iterdir()
                     if p.suffix.lower() in RASTER_SUFFIXES and not p.name.startswith("."))
    return sorted(names)


# ---------------------------------------------------------------- season


def _latitude(info: dict) -> float | None:
    if not info.get("crs"):
        return None
    from rasterio.warp import transform

    left, bottom, right, top = info["bounds"]
    try:
        _, ys = transform(info["crs"], "EPSG:4326", [(left + right) / 2], [(bottom + top) / 2])
    except Exception:  # noqa: BLE001 - a CRS GDAL cannot transform: hemisphere unknown
        return None
    return float(ys[0])


def _meteo_season(month: int, southern: bool) -> str:
    north = {12: "winter", 1: "winter", 2: "winter", 3: "spring", 4: "spring", 5: "spring",
             6: "summer", 7: "summer", 8: "summer"}.get(month, "autumn")
    if not southern:
        return north
    return {"winter": "summer", "summer": "winter", "spring": "autumn", "autumn": "spring"}[north]


def season_of(name: str, tags: dict[str, str], latitude: float | None) -> str:
    """Local season of an acquisition: SEN12MS season in the name, else its date; hemisphere-aware."""
    southern = latitude is not None and latitude < 0
    m = _NAME_SEASON.search(Path(name).stem)
    if m:
        return _meteo_season(_NAME_SEASON_MONTH[m.group(1).lower()], southern)
    when: dt.datetime | None = date_from_metadata(tags) or date_from_name(name)
    if when is None:
        return "unknown"
    return _meteo_season(when.month, southern)


# ---------------------------------------------------------------- the checks


def check_triplet(data: str | Path, name: str, cfg: CurateConfig = CurateConfig()) -> Verdict:
    """Keep or reject one triplet (never raises for a bad file: the reason says why)."""
    data = Path(data)
    v = Verdict(name=name, kept=False)
    paths = {f: data / f / name for f in FOLDERS}
    absent = [f for f, p in paths.items() if not p.is_file()]
    if absent:
        v.reason, v.detail = "missing", f"not in {', '.join(absent)}"
        return v
    arrays: dict[str, np.ndarray] = {}
    infos: dict[str, dict] = {}
    for f, p in paths.items():
        try:
            if f == "s1":
                arrays[f], infos[f] = read_s1_db(p)
            else:
                arrays[f], _, infos[f] = read_s2_refl(p, RGB)
        except ValueError as exc:
            v.reason, v.detail = "shape", f"{f}: {exc}"
            return v
        except Exception as exc:  # noqa: BLE001 - GDAL/rasterio errors on corrupt files
            v.reason, v.detail = "unreadable", f"{f}: {first_line(exc)[:200]}"
            return v
    shapes = {f: infos[f]["shape"] for f in FOLDERS}
    if len(set(shapes.values())) > 1:
        sizes = ", ".join(f"{f} {h}x{w}" for f, (h, w) in shapes.items())
        v.reason, v.detail = "shape", f"sizes differ: {sizes}"
        return v
    if infos["s2_cloudy"]["count"] != infos["s2_cloudfree"]["count"]:
        v.reason, v.detail = "shape", "cloudy and cloud-free S2 have different band counts"
        return v
    if off := _off_grid(infos, shapes["s2_cloudfree"]):
        v.reason, v.detail = "grid", f"not co-registered with s2_cloudfree: {off}"
        return v
    if cfg.size is not None and shapes["s1"] != (cfg.size, cfg.size):
        v.reason, v.detail = "shape", f"{shapes['s1'][0]}x{shapes['s1'][1]} (expected {cfg.size}x{cfg.size})"
        return v
    empty = [f for f, a in arrays.items() if not np.isfinite(a).any()]
    s1 = arrays["s1"]
    channels = SAR_CHANNELS if len(s1) == len(SAR_CHANNELS) else tuple(f"band {i + 1}" for i in range(len(s1)))
    if "s1" not in empty:  # one dead polarisation: nodata too, named
        empty += [f"s1 {c}" for c, band in zip(channels, s1, strict=True) if not np.isfinite(band).any()]
    if empty:
        v.reason, v.detail = "nodata", f"all nodata: {', '.join(empty)}"
        return v
    lat = _latitude(infos["s2_cloudfree"])
    v.hemisphere = "" if lat is None else ("S" if lat < 0 else "N")
    v.season = season_of(name, infos["s2_cloudfree"]["tags"], lat)
    v.threshold = cfg.threshold(v.season)
    per_channel = []  # (name, std, max) of each polarisation: a dead VH beside a live VV is caught
    for channel, band in zip(channels, s1, strict=True):
        vals = sar_unit(band[np.isfinite(band)])  # not empty: checked above
        per_channel.append((channel, float(vals.std()), float(vals.max())))
    flat, dead = min(per_channel, key=lambda c: c[1]), min(per_channel, key=lambda c: c[2])
    v.sar_std, v.sar_max = flat[1], dead[2]
    rgb = display8(arrays["s2_cloudfree"], cfg.display_max)
    v.rgb_std = float(np.mean([np.nanstd(b) for b in rgb]))
    if v.sar_std < cfg.sar_std_min:
        v.reason, v.detail = "sar_flat", f"SAR {flat[0]} std {v.sar_std:.2e} < {cfg.sar_std_min:g}"
    elif v.sar_max < cfg.sar_max_min:
        v.reason, v.detail = "sar_dead", f"SAR {dead[0]} max {v.sar_max:.2e} < {cfg.sar_max_min:g}"
    elif not v.rgb_std >= v.threshold:
        v.reason, v.detail = "optical_flat", f"RGB std {v.rgb_std:.2f} < {v.threshold:g} ({v.season})"
    else:
        v.kept = True
    return v


def _off_grid(infos: dict[str, dict], shape: tuple[int, int]) -> str:
    """Which files are not on s2_cloudfree's grid (another CRS, or bounds off by half a pixel or more)."""
    from rasterio.crs import CRS

    ref = infos["s2_cloudfree"]
    b0 = ref["bounds"]
    tol = 0.5 * max((b0[2] - b0[0]) / shape[1], (b0[3] - b0[1]) / shape[0])
    off = []
    for f in FOLDERS:
        info = infos[f]
        if info is ref:
            continue
        if info["crs"] != ref["crs"] and (not info["crs"] or not ref["crs"]  # parsed only when the texts differ
                                          or CRS.from_wkt(info["crs"]) != CRS.from_wkt(ref["crs"])):
            off.append(f"{f} (another CRS)")
        elif max(abs(a - b) for a, b in zip(info["bounds"], b0, strict=True)) >= tol:
            off.append(f"{f} (another extent)")
    return ", ".join(off)


def _check_many(data: str, names: list[str], cfg: CurateConfig) -> list[Verdict]:
    return [check_triplet(data, n, cfg) for n in names]


def iter_verdicts(data: str | Path, names: list[str], cfg: CurateConfig, workers: int = 1,
                  chunk: int = 32, feedback: Feedback | None = None, threads: bool = False) -> Iterator[Verdict]:
    """Verdicts in input order, computed by `workers` processes (threads with `threads`: inside QGIS,
    where a process pool would fork or re-launch QGIS itself) with a bounded queue (streaming)."""
    feedback = feedback or Feedback()
    chunks = [names[i:i + chunk] for i in range(0, len(names), chunk)]
    done = 0
    if workers <= 1 or len(chunks) <= 1:
        for part in chunks:
            feedback.check()
            yield from _check_many(str(data), part, cfg)
            done += len(part)
            feedback.report(100.0 * done / max(1, len(names)), f"{done}/{len(names)} triplets")
        return
    with (ThreadPoolExecutor if threads else ProcessPoolExecutor)(max_workers=workers) as pool:
        pending: list[Future] = []
        it = iter(chunks)
        for part in it:
            pending.append(pool.submit(_check_many, str(data), part, cfg))
            if len(pending) >= 2 * workers:
                break
        while pending:
            if feedback.cancelled():
                for f in pending:
                    f.cancel()
                feedback.check()
            result = pending.pop(0).result()
            nxt = next(it, None)
            if nxt is not None:
                pending.append(pool.submit(_check_many, str(data), nxt, cfg))
            yield from result
            done += len(result)
            feedback.report(100.0 * done / max(1, len(names)), f"{done}/{len(names)} triplets")


# ---------------------------------------------------------------- the run and its report


def _files_not_links(out: Path) -> str | None:
    """The first folder of FOLDERS in `out` holding something other than a symbolic link (hidden files aside:
    macOS's .DS_Store and ._NAME, never a triplet's name)."""
    for f in FOLDERS:
        if (out / f).is_dir() and any(not p.is_symlink() and not p.name.startswith(".") for p in (out / f).iterdir()):
            return f
    return None


def _links_problem(data: Path, out: Path, name: str) -> str | None:
    """Why no symbolic link can be made in `out` (None when one can): tried with a hidden one, removed at once.
    Windows allows them only with Developer Mode or as administrator; FAT and exFAT have none."""
    ensure_folder(out, out / FOLDERS[0])
    probe = out / f".{uuid.uuid4().hex[:8]}.link-probe"
    try:
        os.symlink(data / FOLDERS[0] / name, probe)
    except OSError as exc:
        return exc.strerror or str(exc)
    with contextlib.suppress(OSError):  # a hidden leftover at worst
        probe.unlink()
    return None


def _link_triplet(data: Path, out: Path, name: str) -> None:
    for f in FOLDERS:
        dst = out / f / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        if dst.is_symlink():  # never a real file: curate() refused those up front
            dst.unlink()
        os.symlink((data / f / name).resolve(), dst)


def _remove_links(out: Path) -> None:
    """Empty the link folders of `out` (symbolic links only)."""
    for f in FOLDERS:
        if (out / f).is_dir():
            for p in (out / f).iterdir():
                if p.is_symlink():
                    p.unlink()


def _link_kept(data: Path, out: Path, kept: list[str]) -> None:
    """The link folders of `out` with a link to each kept triplet and nothing else; when a link cannot be made
    (OutputError) or the run is stopped, no link, and the link folders this run made are removed."""
    made = [f for f in FOLDERS if not (out / f).is_dir()]
    _remove_links(out)  # a fresh link folder: stale links from an earlier run would be kept
    try:
        for name in kept:
            try:
                _link_triplet(data, out, name)
            except OSError as exc:
                raise OutputError(f"{out}: cannot link the kept triplet {name} there ({exc.strerror or exc}): "
                                  "no report, list or links written") from exc
    except BaseException:
        _remove_links(out)  # not half-made: a partial link folder would pass for the curated dataset
        for f in made:
            try:
                (out / f).rmdir()
            except OSError:
                pass
        raise


OUTPUTS = ("report.csv", "summary.json", "summary.md", "kept.txt")  # what curate writes in its out folder


def curate(data: str | Path, out: str | Path, cfg: CurateConfig = CurateConfig(), workers: int = 1,
           link: bool = False, feedback: Feedback | None = None, threads: bool = False) -> CurateSummary:
    """Check every triplet of `data`; write the report (and links) to `out`; sources untouched.
    `threads`: run the `workers` as threads, not processes (see iter_verdicts). The links are made
    once every triplet is checked, so a cancelled run leaves an earlier run's links as they were; where
    symbolic links cannot be made (Windows without Developer Mode, FAT/exFAT) OutputError before any work."""
    import rasterio  # noqa: F401 (a Python without it fails here, not as "unreadable" for every triplet)

    problem = output_dir_problem(out, OUTPUTS)
    if problem:
        raise OutputError(f"{out}: {problem}")
    data, out = Path(data).resolve(), Path(out).resolve()
    names = triplet_names(data)
    if not names:
        raise InputError(f"{data}: no .tif triplets in {', '.join(FOLDERS)}")
    if out == data or data in out.parents and out.relative_to(data).parts[0] in FOLDERS:
        raise InputError(f"{out}: the output folder must not be the dataset or one of its folders")
    if link and (held := _files_not_links(out)):
        raise OutputError(f"{out}: {held} holds files that are not links (another dataset?): the links to the "
                          "kept triplets would replace them; choose another output folder")
    with new_dirs_removed_on_error(out):  # an interrupted run leaves no empty folder it made
        if link and (why := _links_problem(data, out, names[0])):  # before any work (report.csv included)
            raise OutputError(f"{out}: symbolic links cannot be made there ({why}), so no folder of links to the "
                              "kept triplets: on Windows turn on Developer Mode (or run as administrator); FAT "
                              "and exFAT drives have none. Choose another output folder, or curate without links "
                              "(kept.txt lists the kept triplets)")
        return _curate(data, out, names, cfg, workers, link, feedback, threads)


def _curate(data: Path, out: Path, names: list[str], cfg: CurateConfig, workers: int, link: bool,
            feedback: Feedback | None, threads: bool) -> CurateSummary:
    """curate's work once its inputs and output folder are checked."""
    report = TemporaryOutput(out / "report.csv")  # placed with kept.txt and the summaries
    try:
        return _report(data, out, names, cfg, workers, link, feedback, threads, report)
    finally:
        report.discard()  # a failure or Ctrl-C leaves no temporary file (after success there is none)


def _report(data: Path, out: Path, names: list[str], cfg: CurateConfig, workers: int, link: bool,
            feedback: Feedback | None, threads: bool, report: TemporaryOutput) -> CurateSummary:
    """Stream the verdicts into `report`, then link the kept triplets and write the list and summaries."""
    fields = list(Verdict.__dataclass_fields__)
    kept: list[str] = []
    reasons: Counter[str] = Counter()
    per_season: dict[str, Counter[str]] = {}
    with open(report.tmp, "w", encoding="utf-8", newline="") as fcsv:
        writer = csv.DictWriter(fcsv, fieldnames=fields)
        writer.writeheader()
        for v in iter_verdicts(data, names, cfg, workers, feedback=feedback, threads=threads):
            row = asdict(v)
            row.update({k: (f"{row[k]:.6g}" if isinstance(row[k], float) else row[k]) for k in row})
            writer.writerow(row)
            season = per_season.setdefault(v.season, Counter())
            if v.kept:
                kept.append(v.name)
                season["kept"] += 1
            else:
                reasons[v.reason] += 1
                season["rejected"] += 1
                season[v.reason] += 1
    if link:  # before report.csv is put in place: a failure leaves the earlier report, list and summaries
        _link_kept(data, out, kept)
    summary = CurateSummary(
        total=len(names), kept=len(kept), rejected={r: reasons[r] for r in REASONS if reasons[r]},
        per_season={s: dict(per_season[s]) for s in SEASONS if s in per_season},
        out_dir=str(out), config={"data": str(data), **asdict(cfg)})
    write_texts({out / "kept.txt": "".join(n + "\n" for n in kept),  # together: the report, the list and the
                 out / "summary.json": json.dumps(asdict(summary), indent=1) + "\n",  # summaries match
                 out / "summary.md": summary_markdown(summary)}, [report])
    return summary


def summary_markdown(s: CurateSummary) -> str:
    """The summary as a short markdown report."""
    c = s.config
    lines = [f"# Curation of {c.get('data', '')}", "",
             f"{s.kept} of {s.total} triplets kept ({s.total - s.kept} rejected).", "",
             f"Thresholds: SAR std >= {c['sar_std_min']:g} and max >= {c['sar_max_min']:g} (dB clipped to "
             f"[-25, 0] scaled to [0, 1]); RGB std (8-bit, 0-{c['display_max']:g} reflectance) >= "
             f"{c['summer_threshold']:g} summer/spring/autumn, >= {c['winter_threshold']:g} winter.", "",
             "| reason | rejected |", "|---|---:|"]
    lines += [f"| {r} | {n} |" for r, n in s.rejected.items()] or ["| - | 0 |"]
    lines += ["", "| season | kept | rejected |", "|---|---:|---:|"]
    lines += [f"| {k} | {v.get('kept', 0)} | {v.get('rejected', 0)} |" for k, v in s.per_season.items()]
    return "\n".join(lines) + "\n"
