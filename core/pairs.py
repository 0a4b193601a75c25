"""Training triplets for single-date cloud removal from S1 + S2 time series (SEN12MS-CR layout).

Two kinds of triplet, both written as `s1/`, `s2_cloudy/`, `s2_cloudfree/` (same file name):

- real: each cloudy S2 acquisition, the nearest clear acquisition within `max_days` as the
  target, and the S1 acquisition nearest to the cloudy date.
- synthetic: a clear acquisition is the target *at its own date*; its cloudy input is the same
  image with the real cloud mask and cloud texture of another (cloudy) date composited over it
  (soft-edged alpha from the blurred mask), and S1 is the one nearest to the clear date. Many
  realistic triplets from a small series, with an exact truth.

A folder `s2_nearest/` holds, per triplet, the clear acquisition nearest to the cloudy date
other than the target: the "nearest clear" baseline of the evaluation, and the earlier optical
image O1 of the multi-temporal model (MTcGAN); `s1_nearest/` holds the S1 nearest to its date, and
`s1_target/` the S1 nearest to the target's (clear) date, MTcGAN's "S1 at t2" (for synthetic
triplets the same as `s1/`). Every S1 lies within `max_s1_days` (5) of the optical date it goes
with, as He & Yokoya ensured ("less than 5 days"); a triplet without such an S1 is not written.
`pairs.csv` lists every triplet with its dates, kind, cloud fraction and days to that baseline.
"""

from __future__ import annotations

import csv
import os
import shutil
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from . import dates
from .atomic import OutputError, atomic_path, ensure_folder
from .errors import InputError
from .grid import Grid
from .progress import Feedback
from .writer import write_array

LAYOUT_FOLDERS = ("s1", "s2_cloudy", "s2_cloudfree", "s2_nearest", "s1_nearest", "s1_target")
CLEAR_MIN = 0.95  # clear acquisitions (targets): >= 95 % clear pixels by their masks; the others are cloudy
CLOUD_MAX = 0.98  # cloud sources for synthetic triplets: some ground must show somewhere
MAX_S1_DAYS = 5.0  # each S1 within this many days of its optical date (He & Yokoya 2018)


@dataclass
class Triplet:
    """One written triplet (a row of pairs.csv)."""

    name: str
    kind: str  # real | synthetic
    cloudy_date: str
    clear_date: str
    s1_date: str
    nearest_date: str
    cloud_fraction: float
    days_to_clear: float
    days_to_s1: float
    days_to_nearest: float
    s1_target_date: str
    row: int
    col: int


@dataclass
class Series:
    """A series on the S2 grid: raw reflectance (clouds kept), clear masks, S1, dates."""

    raw: np.ndarray  # (T2, B, h, w) reflectance, NaN nodata only
    clear: np.ndarray  # (T2, h, w) bool
    s1: np.ndarray  # (T1, 2, h, w) dB on the S2 grid
    s2_days: np.ndarray
    s1_days: np.ndarray
    bands: list[str]
    grid: Grid
    tags: list[dict[str, str]]
    warnings: list[str] = field(default_factory=list)  # the inventory's, for the shells


def load_series(s2: list[str], s1: list[str], masks: list[str] | None = None) -> Series:
    """Read the whole series (small areas) through the project's inventory and reader."""
    from .inventory import build
    from .reader import SeriesReader

    inv = build(s2, s1, masks or [], check_clear=False)
    if not inv.s1:
        raise InputError("make-pairs needs Sentinel-1 images (--s1)")
    with SeriesReader(inv) as r:
        stack = r.read_window(inv.grid)
        masks_kept, inv.masks = inv.masks, {}  # the raw images: clouds kept, only nodata NaN
        try:
            raw = np.stack([r.read_s2(i, inv.grid) for i in inv.s2])
        finally:
            inv.masks = masks_kept
    clear = stack.valid
    return Series(raw, clear, stack.s1, stack.s2_days, stack.s1_days, list(inv.bands), inv.grid,
                  [i.tags for i in inv.s2], list(inv.warnings))


def _nearest(days: np.ndarray, day: float, candidates: np.ndarray) -> int | None:
    idx = np.flatnonzero(candidates)
    if idx.size == 0:
        return None
    return int(idx[np.argmin(np.abs(days[idx] - day))])


def _date(day: float) -> str:
    return f"{dates.from_days(day):%Y-%m-%d}"


def composite_clouds(clear_img: np.ndarray, cloudy_img: np.ndarray, cloud: np.ndarray,
                     soften: float = 1.5) -> np.ndarray:
    """clear_img with cloudy_img's clouds where `cloud` (h, w) is True, soft-edged (alpha blur)."""
    alpha = cloud.astype(np.float32)
    if soften > 0:
        alpha = np.maximum(ndimage.gaussian_filter(alpha, soften), alpha)  # opaque inside, ramp outside
    src = np.where(np.isfinite(cloudy_img), cloudy_img, clear_img)
    return (alpha * src + (1 - alpha) * clear_img).astype(np.float32)


def _patches(h: int, w: int, patch: int) -> list[tuple[int, int]]:
    if patch > h or patch > w:
        raise InputError(f"patch {patch} is larger than the images ({h}x{w} px)")
    return [(r, c) for r in range(0, h - patch + 1, patch) for c in range(0, w - patch + 1, patch)]


def make_pairs(series: Series, out: str | Path, patch: int = 64, max_days: float = 30.0,
               synthetic_per_clear: int = 8, clear_min: float = CLEAR_MIN, seed: int = 0,
               feedback: Feedback | None = None, max_s1_days: float = MAX_S1_DAYS) -> list[Triplet]:
    """Write real and synthetic triplets of `series` to `out` (SEN12MS-CR layout + pairs.csv).

    They are written to a hidden folder beside `out`, moved into place at the end: when cancelled or
    failing, nothing is left (a dataset in `out` always has its pairs.csv)."""
    if patch < 1:
        raise InputError(f"patch {patch}: must be a positive number of pixels")
    out = Path(out)
    ensure_folder(out.parent, out)
    tmp = out.parent / f".{out.name}.{uuid.uuid4().hex[:8]}.partial"
    try:
        rows = _make_pairs(series, tmp, patch, max_days, synthetic_per_clear, clear_min, seed,
                           feedback or Feedback(), max_s1_days)
        _move_into(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return rows


def _move_into(tmp: Path, out: Path) -> None:
    """Rename the finished dataset `tmp` to `out`; into an existing `out`, file by file, pairs.csv last."""
    try:
        if not out.exists() or (out.is_dir() and not any(out.iterdir())):
            os.replace(tmp, out)
            return
        for folder in sorted(p for p in tmp.iterdir() if p.is_dir()):
            (out / folder.name).mkdir(exist_ok=True)
            for f in folder.iterdir():
                os.replace(f, out / folder.name / f.name)
        os.replace(tmp / "pairs.csv", out / "pairs.csv")
    except OSError as exc:
        raise OutputError(f"could not write the dataset {out}: {exc.strerror or exc}") from exc


def _make_pairs(series: Series, out: Path, patch: int, max_days: float, synthetic_per_clear: int,
                clear_min: float, seed: int, feedback: Feedback, max_s1_days: float) -> list[Triplet]:
    """make_pairs() writing into the (temporary) folder `out`."""
    rng = np.random.default_rng(seed)
    every_s1 = np.ones(len(series.s1_days), bool)

    def s1_near(i: int) -> int | None:
        """The S1 nearest S2 acquisition `i`, if within max_s1_days of it."""
        s = _nearest(series.s1_days, series.s2_days[i], every_s1)
        return s if s is not None and abs(series.s1_days[s] - series.s2_days[i]) <= max_s1_days else None

    frac_clear = series.clear.mean(axis=(1, 2))
    valid = np.isfinite(series.raw).all(axis=1).mean(axis=(1, 2)) > 0.99
    is_clear = (frac_clear >= clear_min) & valid
    is_cloudy = (frac_clear < clear_min) & valid
    if is_clear.sum() < 2:
        raise InputError(f"only {int(is_clear.sum())} clear S2 acquisition(s) (>= {clear_min:.0%} clear): "
                         "need at least 2 (give the cloud masks with --mask)")
    jobs: list[tuple[str, int, int, int, int, float]] = []  # kind, cloudy/source, target, s1, nearest, day
    for t in np.flatnonzero(is_cloudy):
        c = _nearest(series.s2_days, series.s2_days[t], is_clear)
        if c is None or abs(series.s2_days[c] - series.s2_days[t]) > max_days:
            continue
        others = is_clear.copy()
        others[[c, t]] = False
        n = _nearest(series.s2_days, series.s2_days[t], others)
        s = s1_near(t)
        if n is not None and s is not None and s1_near(n) is not None and s1_near(c) is not None:
            jobs.append(("real", int(t), c, s, n, float(series.s2_days[t])))
    sources = np.flatnonzero(is_cloudy & (frac_clear >= 1 - CLOUD_MAX))
    for c in np.flatnonzero(is_clear):
        others = is_clear.copy()
        others[c] = False
        n = _nearest(series.s2_days, series.s2_days[c], others)
        s = s1_near(c)
        k = min(synthetic_per_clear, sources.size)
        chosen = rng.choice(sources, size=k, replace=False) if k else []  # drawn first: the same clouds either way
        if n is None or s is None or s1_near(n) is None:
            continue
        for src in chosen:
            jobs.append(("synthetic", int(src), int(c), s, n, float(series.s2_days[c])))
    if not jobs:
        raise InputError(f"no triplet: no cloudy acquisition has a clear one within {max_days:g} days, "
                         f"each with an S1 acquisition within {max_s1_days:g} days of it")
    h, w = series.raw.shape[-2:]
    boxes = _patches(h, w, patch)
    written: list[Triplet] = []
    scale = 1e4
    for j, (kind, t, c, s, n, day) in enumerate(jobs):
        feedback.check()
        cloud = ~series.clear[t]
        if kind == "real":
            cloudy = series.raw[t]
        else:
            cloudy = composite_clouds(series.raw[c], series.raw[t], cloud)
        s_n, s_t = s1_near(n), s1_near(c)  # S1 at O1's date, at the target's date
        for r0, c0 in boxes:
            win = (slice(None), slice(r0, r0 + patch), slice(c0, c0 + patch))
            stamp = f"{dates.from_days(day):%Y%m%d}"
            name = (f"{kind[:4]}_{stamp}_c{dates.from_days(series.s2_days[c]):%Y%m%d}"
                    f"_s{dates.from_days(series.s2_days[t]):%Y%m%d}_r{r0}c{c0}.tif")
            grid = series.grid.sub(r0, c0, patch, patch)
            when = {"ACQUISITION_DATETIME": f"{dates.from_days(day):%Y-%m-%dT%H:%M:%SZ}"}
            common = dict(nodata=0, descriptions=series.bands)

            def dn(a: np.ndarray) -> np.ndarray:
                return np.where(np.isfinite(a), np.clip(np.round(a * scale), 1, 65535), 0).astype(np.uint16)

            write_array(out / "s2_cloudy" / name, grid, dn(cloudy[win]), tags=dict(when, PAIR_KIND=kind),
                        **common)
            for folder, idx in (("s2_cloudfree", c), ("s2_nearest", n)):
                write_array(out / folder / name, grid, dn(series.raw[idx][win]),
                            tags={"ACQUISITION_DATETIME": series.tags[idx].get("ACQUISITION_DATETIME", "")},
                            **common)
            for folder, idx in (("s1", s), ("s1_nearest", s_n), ("s1_target", s_t)):
                stamp_s1 = f"{dates.from_days(series.s1_days[idx]):%Y-%m-%dT%H:%M:%SZ}"
                write_array(out / folder / name, grid, series.s1[idx][win].astype(np.float32),
                            descriptions=["VV", "VH"], tags={"UNITS": "dB", "ACQUISITION_DATETIME": stamp_s1})
            written.append(Triplet(name, kind, _date(day), _date(series.s2_days[c]), _date(series.s1_days[s]),
                                   _date(series.s2_days[n]), float(cloud[win[1:]].mean()),
                                   abs(float(series.s2_days[c] - day)), abs(float(series.s1_days[s] - day)),
                                   abs(float(series.s2_days[n] - day)), _date(series.s1_days[s_t]), r0, c0))
        feedback.report(100.0 * (j + 1) / len(jobs), f"{j + 1}/{len(jobs)} pairs")
    _write_index(out / "pairs.csv", written)
    return written


def _write_index(path: Path, rows: list[Triplet]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(Triplet.__dataclass_fields__))
        writer.writeheader()
        for t in rows:
            writer.writerow(asdict(t))


def read_index(data: str | Path) -> list[dict[str, str]]:
    """The rows of pairs.csv of a dataset made by make-pairs ([] for other datasets)."""
    path = Path(data) / "pairs.csv"
    if not path.exists():
        return []
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))
