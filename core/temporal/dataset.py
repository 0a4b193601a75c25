"""Inputs of the temporal model from a Stack (numpy only), and the training sampler.

`model_inputs` is shared by training and inference (the ONNX method), so both see the same
K-nearest selection, linear baseline and time offsets.
"""

from __future__ import annotations

import datetime as dt
import glob
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..dates import SAME_DAY, from_days
from ..errors import InputError
from ..haze import haze_mask, parameters, screen_haze
from ..methods.baselines import bracket, interpolate
from ..stack import S2_BANDS, Stack, all_finite, zero_invalid

GAP_SCALE = 100.0  # days: scale of the distances fed in base_info
MIN_USABLE = 0.02  # an S2 date joins the K nearest only if this fraction of the window is clear
S1_SIGMA = 6.0  # days: S1 read at a date = Gaussian-weighted mean of the acquisitions around it (speckle)
S1_REACH = 3.0  # ... over the acquisitions within this many S1_SIGMA of the date
GUIDE_BANDS = ("B04", "B08", "B11")  # s1_guided: the optical bands that tell one field from the next
GUIDE_SIGMA = 0.04  # ... and how far apart (reflectance) two pixels' clear values may lie to pool their S1


def load_series(data_dir: str | Path) -> Stack:
    """The whole S1/S2 series of a folder with S2/ (L2A + SCL) and S1/ subfolders."""
    from ..reader import load_stack

    d = Path(data_dir)
    if not d.is_dir():
        raise InputError(f"{d}: " + ("is a file, not a series folder" if d.exists() else "does not exist"))
    s2 = sorted(glob.glob(str(d / "S2" / "*_L2A_10m.tif")))
    scl = sorted(glob.glob(str(d / "S2" / "*_SCL_20m.tif")))
    s1 = sorted(glob.glob(str(d / "S1" / "*.tif")))
    if not s2:
        raise InputError(f"{d}: no S2/*_L2A_10m.tif files (expected S2/ and S1/ subfolders)")
    return load_stack(s2, s1, scl)


def doy(day: float) -> float:
    """Day of year (0-based, fractional) of a day since the epoch."""
    t = from_days(float(day))
    return float((t - dt.datetime(t.year, 1, 1, tzinfo=t.tzinfo)).total_seconds() / 86400.0)


def linear_baseline(s2: np.ndarray, days: np.ndarray, target: float
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-pixel linear interpolation between the clear observations around `target`.

    Returns base (B, h, w) (NaN where no clear observation at all), and the days to the
    previous / next clear observation (h, w) (inf where none). With only one side, the
    nearest clear value is used (as the `linear` baseline of EVALUATION.md).
    """
    base, _, dprev, dnext = baselines(s2, days, target)
    return base, dprev, dnext


def baselines(s2: np.ndarray, days: np.ndarray, target: float, valid: np.ndarray | None = None
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """As `linear_baseline`, plus `near` (2B, h, w): the previous and the next clear values
    (NaN where none), returned as (base, near, dprev, dnext). `valid`: s2's clear pixels, when known."""
    b = bracket(s2, days, target, valid)
    near = np.concatenate([b["before"], b["after"]]).astype(np.float32)
    dprev = np.where(np.isfinite(b["before_day"]), target - b["before_day"], np.inf).astype(np.float32)
    dnext = np.where(np.isfinite(b["after_day"]), b["after_day"] - target, np.inf).astype(np.float32)
    return interpolate(b, target), near, dprev, dnext


def s1_at(stack: Stack, day: float, where: np.ndarray | None = None) -> np.ndarray:
    """(2, h, w) S1 (dB) at `day`: Gaussian-weighted (S1_SIGMA) mean of the valid acquisitions
    within S1_REACH sigmas; NaN where there is none. With a (h, w) bool `where`: (2, n) for
    those pixels only."""
    near = np.flatnonzero(np.abs(stack.s1_days - day) <= S1_REACH * S1_SIGMA)
    shape = stack.shape if where is None else (int(where.sum()),)
    if not near.size:
        return np.full((2, *shape), np.nan, np.float32)
    x = stack.s1[near] if where is None else stack.s1[near][:, :, where]
    ok = all_finite(x)
    wt = np.exp(-0.5 * ((stack.s1_days[near] - day) / S1_SIGMA) ** 2).reshape(-1, *([1] * len(shape))) * ok
    tot = wt.sum(axis=0)
    mean = (np.where(ok[:, None], x, 0.0) * wt[:, None]).sum(axis=0) / np.where(tot > 0, tot, 1.0)
    return np.where(tot > 0, mean, np.nan).astype(np.float32)


def s1_change(stack: Stack, target: float, dprev: np.ndarray, dnext: np.ndarray,
              span: bool = False) -> np.ndarray:
    """(3, h, w): S1 at the target minus S1 interpolated in time between the per-pixel dates of the
    previous and next clear S2 observations (the dates the linear baseline interpolates between;
    with one side only, minus S1 at that date), VV and VH in dB, and 1 where known (0 and 0 where
    not: no S1 near the target or near those dates). What SAR saw change since the optical
    observations, as in He & Yokoya's S1(t1), S1(t2) -> optical(t2).

    `span`: (6, h, w), three more channels: S1 at the next clear date minus S1 at the previous one
    (VV, VH in dB) and 1 where both are known (0 and 0 where not), so a model can tell which of the two
    clear observations the target's radar resembles."""
    h, w = stack.shape
    ends = []
    for dist, sign in ((dprev, -1.0), (dnext, 1.0)):
        at = np.full((2, h, w), np.nan, np.float32)
        for d in np.unique(dist[np.isfinite(dist)]):
            m = dist == d
            at[:, m] = s1_at(stack, target + sign * float(d), m)
        ends.append(at)
    days = {side: np.where(np.isfinite(dist), target + sign * dist, np.nan)
            for side, dist, sign in (("before_day", dprev, -1.0), ("after_day", dnext, 1.0))}
    ref = interpolate({"before": ends[0], "after": ends[1], **days}, target)  # as the linear baseline
    delta = s1_at(stack, target) - ref
    known = np.isfinite(delta).all(axis=0)
    parts = [np.where(known, delta, 0.0), known[None]]
    if span:
        between = ends[1] - ends[0]
        both = np.isfinite(between).all(axis=0)
        parts += [np.where(both, between, 0.0), both[None]]
    return np.concatenate(parts).astype(np.float32)


def guide_of(near: np.ndarray, bands: tuple[str, ...] | list[str] = GUIDE_BANDS) -> np.ndarray:
    """The guide of the field-scale averages: the previous and next clear values of `bands` (`near`,
    (20, h, w), NaN where none -> 0)."""
    idx = [S2_BANDS.index(b) for b in bands]
    return zero_invalid(near[idx + [len(S2_BANDS) + i for i in idx]].astype(np.float32), copy=False)


def guided_mean(values: np.ndarray, known: np.ndarray, guide: np.ndarray, radius: int,
                sigma: float = GUIDE_SIGMA) -> np.ndarray:
    """values (N, C, h, w) averaged over a (2 radius + 1)^2 px window, each known neighbour (`known`,
    (N, h, w) bool) weighted by exp(-|g_i - g_j|^2 / (2 sigma^2)), g the `guide` (G, h, w): a bilateral
    filter guided by the optical images, its weights computed once for all N x C layers. 0 where not
    known or where no known neighbour."""
    n, c, h, w = values.shape
    if (h, w) == (1, 1):  # a point series (training): every neighbour is the pixel itself (edge padding), weight 1
        return _guided_mean_of_one_pixel(values, known, (2 * radius + 1) ** 2)
    pad = ((radius, radius), (radius, radius))
    gp = np.pad(guide, ((0, 0), *pad), mode="edge")
    vp = np.pad(np.where(known[:, None], values, 0.0).astype(np.float32), ((0, 0), (0, 0), *pad), mode="edge")
    kp = np.pad(known.astype(np.float32), ((0, 0), *pad), mode="edge")
    num = np.zeros((n, c, h, w), np.float32)
    den = np.zeros((n, h, w), np.float32)
    for dy in range(2 * radius + 1):
        for dx in range(2 * radius + 1):
            d2 = ((gp[:, dy:dy + h, dx:dx + w] - guide) ** 2).sum(axis=0)
            wt = np.exp(d2 * np.float32(-0.5 / sigma ** 2)) * kp[:, dy:dy + h, dx:dx + w]
            num += wt[:, None] * vp[:, :, dy:dy + h, dx:dx + w]
            den += wt
    ok = known & (den > 0)
    return np.where(ok[:, None], num / np.where(den > 0, den, 1.0)[:, None], 0.0).astype(np.float32)


def _guided_mean_of_one_pixel(values: np.ndarray, known: np.ndarray, window: int) -> np.ndarray:
    """guided_mean of a 1 x 1 px image, bit for bit: the same float32 sum of `window` equal terms, in order."""
    v = np.where(known[:, None], values, 0.0).astype(np.float32)
    num = np.add.accumulate(np.broadcast_to(v, (window, *v.shape)), axis=0)[-1]
    den = np.where(known, np.float32(window), np.float32(0.0))
    return np.where(known[:, None], num / np.where(den > 0, den, np.float32(1.0))[:, None], 0.0).astype(np.float32)


def guided_change(change: np.ndarray, near: np.ndarray, radius: int, sigma: float = GUIDE_SIGMA,
                  bands: tuple[str, ...] | list[str] = GUIDE_BANDS) -> np.ndarray:
    """s1_change (C, h, w) with its VV / VH change channels averaged over a (2 radius + 1)^2 px window, each
    known neighbour weighted by exp(-|g_i - g_j|^2 / (2 sigma^2)), g the previous and next clear values of
    `bands` (`near`, (20, h, w), NaN where none): a field pools its radar, the next field does not
    (guided_mean). Pixels where the change is unknown stay 0."""
    if radius <= 0:
        return change
    out = change.copy()
    out[:2] = guided_mean(change[None, :2], (change[2] > 0.5)[None], guide_of(near, bands), radius, sigma)[0]
    return out


def guided_s1(s1: np.ndarray, s1_valid: np.ndarray, change: np.ndarray | None, near: np.ndarray, guided: dict
              ) -> tuple[np.ndarray, np.ndarray | None]:
    """The S1 observations (K1, 2, h, w) (each where `s1_valid`) and, when given, s1_change's VV / VH, all
    through guided_mean() with the same weights (`guided`: {"radius", "sigma", "guide_bands"}): the
    speckle of each acquisition averaged over the pixels of the same field (model version 7)."""
    radius = int(guided["radius"])
    if radius <= 0:
        return s1, change
    values, known = s1, s1_valid > 0.5
    if change is not None:
        values = np.concatenate([change[None, :2], s1])
        known = np.concatenate([(change[2] > 0.5)[None], known])
    out = guided_mean(values, known, guide_of(near, guided.get("guide_bands", GUIDE_BANDS)), radius,
                      float(guided.get("sigma", GUIDE_SIGMA)))
    if change is None:
        return out, None
    new = change.copy()
    new[:2] = out[0]
    return out[1:], new


def nearest_dates(days: np.ndarray, target: float, k: int, usable: np.ndarray | None = None) -> np.ndarray:
    """Indices (ascending in time) of the k usable dates nearest to target."""
    cand = np.flatnonzero(usable) if usable is not None else np.arange(len(days))
    if not cand.size:
        return cand
    order = cand[np.argsort(np.abs(days[cand] - target), kind="stable")][:k]
    return np.sort(order)


def model_inputs(stack: Stack, target_day: float, k2: int, k1: int,
                 pad: bool = True, change: bool = True, haze: dict | None = None,
                 obs_change: bool = False, span: bool = False, guided: dict | None = None,
                 exclude: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Unbatched model inputs (see model.INPUTS) for one target date over the whole stack window.

    S2 missing pixels get validity 0 (and value 0); with pad, the K axes are padded to k2/k1
    with fully invalid observations. `change`: also the s1_change input (only models built
    with it read it; `span`: its 6-channel form, see s1_change()); `obs_change`: also obs_s1_change
    (see obs_s1_change()); `guided`: {"radius": r, "sigma": s, "guide_bands": [...]} (as a model's config
    records it), s1_change through guided_change(), and with "obs": true the S1 observations too
    (guided_s1()). `haze`: the
    parameters of the multi-temporal haze screen (core/haze.py) applied to the S2 observations
    first, for models trained or calibrated with it. `exclude` (bool, T2): S2 dates not to use at all, as if
    they were not in the stack (an acquisition on the target date, core/same_day.py), without a copy of it.
    """
    if list(stack.bands) != S2_BANDS:
        raise InputError(f"the temporal model needs the S2 bands {S2_BANDS}, got {list(stack.bands)}")
    if haze:
        stack = screen_haze(stack, haze)
    h, w = stack.shape
    valid2 = stack.valid
    if exclude is not None and exclude.any():  # every use of the S2 dates below goes through valid2
        valid2 = valid2 & ~exclude[:, None, None]
    usable = valid2.reshape(len(stack.s2_days), -1).mean(axis=1) >= MIN_USABLE if len(stack.s2_days) else None
    i2 = nearest_dates(stack.s2_days, target_day, k2, usable)
    v1 = all_finite(stack.s1)
    i1 = nearest_dates(stack.s1_days, target_day, k1,
                       v1.reshape(len(stack.s1_days), -1).any(axis=1) if len(stack.s1_days) else None)
    n2, n1 = (k2, k1) if pad else (max(1, i2.size), max(1, i1.size))
    s2 = np.zeros((n2, len(S2_BANDS), h, w), np.float32)
    s2v = np.zeros((n2, h, w), np.float32)
    s2dt = np.zeros(n2, np.float32)
    s2[:i2.size] = stack.s2[i2]
    zero_invalid(s2[:i2.size], copy=False)
    s2v[:i2.size] = valid2[i2]
    s2dt[:i2.size] = stack.s2_days[i2] - target_day
    s1 = np.zeros((n1, 2, h, w), np.float32)
    s1v = np.zeros((n1, h, w), np.float32)
    s1dt = np.zeros(n1, np.float32)
    s1[:i1.size] = stack.s1[i1]
    zero_invalid(s1[:i1.size], copy=False)
    s1v[:i1.size] = v1[i1]
    s1dt[:i1.size] = stack.s1_days[i1] - target_day
    base, near, dprev, dnext = baselines(stack.s2, stack.s2_days, target_day, valid2)
    bvalid = np.isfinite(base).all(axis=0)
    info = np.stack([bvalid.astype(np.float32),
                     np.minimum(dprev, 3 * GAP_SCALE) / GAP_SCALE,
                     np.minimum(dnext, 3 * GAP_SCALE) / GAP_SCALE,
                     np.isfinite(dprev).astype(np.float32),
                     np.isfinite(dnext).astype(np.float32)]).astype(np.float32)
    x = {"s2": s2, "s2_valid": s2v, "s2_dt": s2dt, "s1": s1, "s1_valid": s1v, "s1_dt": s1dt,
         "base": zero_invalid(base), "near": zero_invalid(near), "base_info": info,
         "target_doy": np.float32(doy(target_day))}
    if change:
        x["s1_change"] = s1_change(stack, target_day, dprev, dnext, span=span)
    if guided and guided.get("obs"):  # S1 observations and s1_change, one pass
        x["s1"], pooled = guided_s1(s1, s1v, x.get("s1_change"), near, guided)
        if pooled is not None:
            x["s1_change"] = pooled
    elif guided and change:
        x["s1_change"] = guided_change(x["s1_change"], near, int(guided["radius"]),
                                       float(guided.get("sigma", GUIDE_SIGMA)),
                                       guided.get("guide_bands", GUIDE_BANDS))
    if obs_change:
        x["obs_s1_change"] = obs_s1_change(stack, target_day, i2, n2)
    return x


def obs_s1_change(stack: Stack, target: float, idx: np.ndarray, n: int) -> np.ndarray:
    """(n, 3, h, w): for the S2 observations `idx` of the stack (then padding), S1 VV and VH at the
    target minus S1 at the observation's date (both read as s1_at), and 1 where known (0 and 0
    where not). He & Yokoya's S1(t1) -> S1(t2) for every optical observation, not only the two the
    linear baseline interpolates between."""
    out = np.zeros((n, 3, *stack.shape), np.float32)
    at_target = s1_at(stack, target)
    for slot, j in enumerate(idx):
        delta = at_target - s1_at(stack, float(stack.s2_days[j]))
        known = np.isfinite(delta).all(axis=0)
        out[slot, :2] = np.where(known, delta, 0.0)
        out[slot, 2] = known
    return out


def month_block(day: float) -> int:
    t = from_days(float(day))
    return t.year * 12 + t.month - 1


def split_dates(stack: Stack, every: int = 4, offset: int = 3) -> np.ndarray:
    """Bool (T2): True for S2 dates held out for testing: every `every`-th month counted from
    the first month of the series (month index % every == offset)."""
    if every < 1 or not 0 <= offset < every:
        raise InputError(f"month blocks: every {every} must be >= 1 and the offset {offset} in 0..{every - 1}")
    m0 = month_block(stack.s2_days.min())
    return np.array([(month_block(d) - m0) % every == offset for d in stack.s2_days])


def validation_dates(stack: Stack, test: np.ndarray, every: int = 8, offset: int = 1) -> np.ndarray:
    """Bool (T2): S2 dates of the validation month blocks (month index % every == offset), which
    choose the checkpoint and calibrate the std; never test dates (`test` from split_dates)."""
    val = split_dates(stack, every, offset) & ~test
    if not val.any():
        raise InputError(f"no validation date: no S2 date outside the test months has month index % {every} "
                         f"== {offset}; choose another --val-offset")
    return val


@dataclass
class SamplerConfig:
    crop: int = 32
    k2: int = 8
    k1: int = 8
    min_target_clear: float = 0.5
    p_gap: float = 0.5
    max_gap: float = 60.0
    p_forecast: float = 0.3
    max_lead: float = 60.0
    p_clouds: float = 0.5
    target_margin: int = 0  # training loss only on target pixels this many px away from any non-clear pixel
    s1_change: bool = True  # samples carry the s1_change input (for models built with it)
    obs_s1_change: bool = False  # ... and the obs_s1_change input
    s1_span: bool = False  # s1_change in its 6-channel form (with the S1 span between the clear dates)
    s1_guided: dict | None = None  # model_inputs()' `guided`: s1_change (and with "obs" the S1 observations) pooled
    doy_jitter: float = 0.0  # the target's day of year is shifted by up to +/- this many days (not its dates)
    haze: dict | None = None  # haze screen (core/haze.py) on the inputs, as the model will see them
    haze_targets: bool = False  # ... and the loss leaves out target pixels the screen calls hazy


class Sampler:
    """Random training samples from one series: hide the target (+ a gap or a forecast cut-off),
    drop held-out dates from the inputs, borrow cloud masks, crop, flip and rotate."""

    def __init__(self, stack: Stack, held_out: np.ndarray, cfg: SamplerConfig, seed: int,
                 validation: bool = False):
        """Training: targets and inputs outside `held_out`. Validation: targets in `held_out`,
        inputs from every date (as the protocol evaluation sees them)."""
        self.stack, self.cfg = stack, cfg
        self.rng = np.random.default_rng(seed)
        clear = stack.valid.reshape(len(stack.s2_days), -1).mean(axis=1)
        self.targets = np.flatnonzero((clear >= cfg.min_target_clear) & (held_out if validation else ~held_out))
        self.keep = np.ones(len(held_out), bool) if validation else ~held_out
        self.target_valid = stack.valid
        if cfg.target_margin > 0:  # pixels beside clouds are often hazy although classed clear
            from scipy import ndimage

            size = (1, 2 * cfg.target_margin + 1, 2 * cfg.target_margin + 1)
            self.target_valid = ndimage.minimum_filter(stack.valid, size=size, mode="nearest")
        if cfg.haze and cfg.haze_targets:  # screened against the dates training may see only
            hazy = np.zeros_like(self.target_valid)
            hazy[self.keep] = haze_mask(stack.select_s2(self.keep), **parameters(cfg.haze))
            self.target_valid = self.target_valid & ~hazy
        if not self.targets.size:
            raise InputError("no training target date (S2 dates clear enough outside the held-out months)")

    def sample(self) -> dict[str, np.ndarray]:
        st, cfg, rng = self.stack, self.cfg, self.rng
        t = int(rng.choice(self.targets))
        day = float(st.s2_days[t])
        keep2 = self.keep & (np.abs(st.s2_days - day) > SAME_DAY)
        keep1 = np.ones(len(st.s1_days), bool)
        u = rng.random()
        if u < cfg.p_forecast:
            cut = day - rng.uniform(5.0, cfg.max_lead) + SAME_DAY
            keep2 &= st.s2_days <= cut
            keep1 &= st.s1_days <= cut
        elif u < cfg.p_forecast + cfg.p_gap:
            keep2 &= np.abs(st.s2_days - day) > rng.uniform(0.0, cfg.max_gap) + SAME_DAY
        h, w = st.shape
        c = min(cfg.crop, h, w)
        r0, c0 = int(rng.integers(0, h - c + 1)), int(rng.integers(0, w - c + 1))
        sub = Stack(st.s2[keep2][..., r0:r0 + c, c0:c0 + c].copy(), st.s2_days[keep2],
                    st.s1[keep1][..., r0:r0 + c, c0:c0 + c], st.s1_days[keep1], st.bands)
        if rng.random() < cfg.p_clouds and len(sub.s2_days):
            donors = st.valid[:, r0:r0 + c, c0:c0 + c]
            pick = rng.integers(0, len(donors), len(sub.s2_days))
            hit = rng.random(len(sub.s2_days)) < 0.5
            for i in np.flatnonzero(hit):
                sub.s2[i][:, ~donors[pick[i]]] = np.nan
        x = model_inputs(sub, day, cfg.k2, cfg.k1, change=cfg.s1_change, haze=cfg.haze, obs_change=cfg.obs_s1_change,
                         span=cfg.s1_span, guided=cfg.s1_guided)
        if cfg.doy_jitter > 0:  # one scene, one year: the season cue must not become a calendar to memorise
            x["target_doy"] = np.float32(x["target_doy"] + rng.uniform(-cfg.doy_jitter, cfg.doy_jitter))
        x["target"] = np.nan_to_num(st.s2[t][..., r0:r0 + c, c0:c0 + c], nan=0.0)
        x["target_valid"] = self.target_valid[t][r0:r0 + c, c0:c0 + c].astype(np.float32)
        k = int(rng.integers(0, 4))
        flip = rng.random() < 0.5
        for key, v in x.items():
            if v.ndim >= 2 and v.shape[-2:] == (c, c):
                v = np.rot90(v, k, axes=(-2, -1))
                x[key] = np.ascontiguousarray(v[..., ::-1] if flip else v)
        return x

    def batch(self, n: int) -> dict[str, np.ndarray]:
        items = [self.sample() for _ in range(n)]
        return {k: np.stack([it[k] for it in items]) for k in items[0]}
