"""The model figure: true vs synthesized vs uncertainty at a few dates, and one pixel's series.

Works with any synthesis method (`core.methods.create`: a registered name or an .onnx path).

Panels (one row per target date): the S2 truth in true colour, the method's mean with the same
stretch, and the mean over bands of the predicted std. Each target is predicted as the
gap-filling task of EVALUATION.md (`core.evaluate.inputs_for`: every S2 acquisition within
+/- gap days, plus SAME_DAY, removed; all S1 kept); the method is `prepare`d on those inputs
only and the PSNR is `core.metrics.score` on the pixels clear in the truth.

Series (bottom row): for one pixel, the predicted mean of one band with a 2-sigma band on days
every `step_days` over the S2 span plus every day that pixel was observed clear; at each day
the S2 acquisitions within SAME_DAY are removed, so at an observed date the curve is a true
gap-fill and the dots (the observations) can fall outside the band. The method is prepared once
on the whole series for the curve, and predictions run on a small crop around the pixel (wide
enough for the method's spatial halo); the centre value is kept.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from . import metrics
from .atomic import OutputError, atomic_path, output_file_problem
from .dates import from_days, parse_date, to_days
from .errors import InputError
from .evaluate import GAP, SAME_DAY, finite_or_none, inputs_for, target_indices
from .methods import Method, create
from .progress import Feedback
from .quicklook import RGB, nanmean0, stretch
from .stack import Stack

MAX_DEFAULT_DATES = 3
MIN_HALF_CROP = 12  # px each side of the pixel: a 24 x 24 crop for per-pixel methods


def _iso(day: float) -> str:
    return from_days(float(day)).date().isoformat()


def _floats(values: np.ndarray) -> list[float | None]:
    return [finite_or_none(v) for v in np.ravel(values)]


def _band_index(stack: Stack, band: str) -> int:
    names = [b.upper() for b in stack.bands]
    if band.upper() not in names:
        raise InputError(f"band '{band}' is not in the series (bands: {', '.join(stack.bands)})")
    return names.index(band.upper())


def _as_date(value: str | dt.date) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return parse_date(str(value))
    except ValueError as exc:
        raise InputError(str(exc)) from None


def pick_targets(stack: Stack, dates: Sequence[str | dt.date] | None = None,
                 max_targets: int = MAX_DEFAULT_DATES) -> np.ndarray:
    """S2 indices of the figure's targets: the acquisition of each given date (the clearest when
    several fall within SAME_DAY of its noon), or up to `max_targets` protocol targets."""
    if not dates:
        idx = target_indices(stack, max_targets=max_targets)
        if not idx.size:
            raise InputError("no S2 acquisition is at least 99 % clear: give the dates to show")
        return idx
    clear = stack.valid.reshape(len(stack.s2_days), -1).mean(axis=1)
    out = []
    for value in dates:
        date = _as_date(value)
        day = to_days(date)
        near = np.flatnonzero(np.abs(stack.s2_days - day) <= SAME_DAY)
        if not near.size:
            if len(stack.s2_days):
                nearest = _iso(stack.s2_days[np.argmin(np.abs(stack.s2_days - day))])
                hint = f" (nearest: {nearest})"
            else:
                hint = ""
            raise InputError(f"no S2 acquisition on {date.isoformat()}{hint}")
        out.append(int(near[np.argmax(clear[near])]))
    return np.array(out, dtype=int)


def _crop_around(stack: Stack, row: int, col: int, half: int) -> tuple[Stack, int, int]:
    h, w = stack.shape
    r0, c0 = max(0, row - half), max(0, col - half)
    crop = stack.crop(slice(r0, min(h, row + half)), slice(c0, min(w, col + half)))
    return crop, row - r0, col - c0


def pixel_series(stack: Stack, method: Method, pixel: tuple[int, int], band: str = "B08",
                 step_days: float = 5.0, feedback: Feedback | None = None) -> dict:
    """The predicted mean/std of `band` at `pixel` over the series (see module doc).

    The method must already be prepared. Returns days, mean, std (one per day), the pixel's
    clear observations (observed_days, observed) and the prediction at each of them
    (observed_mean, observed_std), plus coverage_2s (% of observations within 2 std).
    """
    feedback = feedback or Feedback()
    b = _band_index(stack, band)
    row, col = pixel
    obs_sel = stack.valid[:, row, col]
    obs_days = stack.s2_days[obs_sel]
    obs = stack.s2[obs_sel, b, row, col].astype(np.float64)
    grid = np.arange(float(stack.s2_days.min()), float(stack.s2_days.max()) + 1e-9, float(step_days))
    if obs_days.size:
        grid = grid[np.abs(grid[:, None] - obs_days[None]).min(axis=1) > SAME_DAY]
    days = np.unique(np.concatenate([grid, obs_days]))
    crop, cr, cc = _crop_around(stack, row, col, max(MIN_HALF_CROP, 2 * int(method.halo)))
    mean = np.full(days.size, np.nan)
    std = np.full(days.size, np.nan)
    for i, day in enumerate(days):
        feedback.check()
        feedback.report(100.0 * i / max(1, days.size), f"pixel series {_iso(day)}")
        inputs = inputs_for(crop, float(day), GAP, 0.0)
        if not len(inputs.s2_days):
            continue
        m, s = method.predict(inputs, float(day))
        mean[i], std[i] = m[b, cr, cc], s[b, cr, cc]
    at = np.searchsorted(days, obs_days)
    obs_mean, obs_std = mean[at], std[at]
    ok = np.isfinite(obs_mean) & np.isfinite(obs_std)
    inside = np.abs(obs[ok] - obs_mean[ok]) <= 2.0 * obs_std[ok]
    return {"band": stack.bands[b], "pixel": [int(row), int(col)], "step_days": float(step_days),
            "days": days.tolist(), "dates": [_iso(d) for d in days],
            "mean": _floats(mean), "std": _floats(std),
            "observed_days": obs_days.tolist(), "observed": _floats(obs),
            "observed_mean": _floats(obs_mean), "observed_std": _floats(obs_std),
            "coverage_2s": finite_or_none(100.0 * inside.mean()) if inside.size else None}


def _rgb(img: np.ndarray, idx: list[int]) -> np.ndarray:
    return np.moveaxis(img[idx], 0, -1)


def model_figure(stack: Stack, method: str | Method, out_png: str | Path,
                 dates: Sequence[str | dt.date] | None = None, gap: float = 0.0,
                 pixel: tuple[int, int] | None = None, band: str = "B08", step_days: float = 5.0,
                 title: str | None = None, device: str = "auto",
                 feedback: Feedback | None = None) -> dict:
    """Write the model figure (see module doc) as one PNG; returns what was plotted.

    method: a Method, or a name / .onnx path for `core.methods.create(method, device)`.
    Returns {"png", "method", "gap", "targets": [{date, day, n_s2, psnr, ssim, rmse,
    coverage_2s}], plus pixel_series' keys (band, pixel, days, mean, std, observed...)}.
    """
    if problem := output_file_problem(out_png, suffix=".png"):
        raise OutputError(f"{out_png}: {problem}")
    feedback = feedback or Feedback()
    h, w = stack.shape
    _band_index(stack, band)
    missing = [b for b in RGB if b not in stack.bands]
    if missing:
        raise InputError(f"the series lacks the true-colour band(s) {', '.join(missing)}")
    if pixel is None:
        pixel = (h // 2, w // 2)
    row, col = (int(v) for v in pixel)
    if not (0 <= row < h and 0 <= col < w):
        raise InputError(f"pixel ({row}, {col}) is outside the {h} x {w} px window")
    if not np.isfinite(gap) or gap < 0:
        raise InputError(f"gap must be a non-negative number of days, not {gap}")
    if not np.isfinite(step_days) or step_days <= 0:
        raise InputError(f"step_days must be a positive number of days, not {step_days}")
    targets = pick_targets(stack, dates)
    if isinstance(method, str):
        method = create(method, device)
    name = method.describe().get("method", method.name)
    rgb = [stack.bands.index(b) for b in RGB]

    rows = []
    n_steps = len(targets) + 1
    for k, t in enumerate(targets):
        feedback.check()
        day = float(stack.s2_days[t])
        feedback.report(100.0 * k / n_steps, f"target {_iso(day)}")
        inputs = inputs_for(stack, day, GAP, float(gap))
        if not len(inputs.s2_days):
            raise InputError(f"a gap of {gap:g} days around {_iso(day)} removes every S2 acquisition")
        method.prepare(inputs)
        mean, std = method.predict(inputs, day)
        truth, clear = stack.s2[t], stack.valid[t]
        scores = metrics.score(mean, std, truth, clear)
        rows.append({"date": _iso(day), "day": day, "n_s2": int(len(inputs.s2_days)),
                     "clear": float(clear.mean()), "mean": mean, "std": std, "truth": truth,
                     **{key: finite_or_none(scores[key]) for key in ("psnr", "ssim", "rmse", "coverage_2s")}})

    method.prepare(stack)
    series = pixel_series(stack, method, (row, col), band, step_days,
                          feedback.sub(100.0 * len(targets) / n_steps, 100.0))
    _draw(rows, series, rgb, out_png, name, gap, title)
    keep = ("date", "day", "n_s2", "clear", "psnr", "ssim", "rmse", "coverage_2s")
    return {"png": str(out_png), "method": name, "gap": float(gap),
            "targets": [{k: r[k] for k in keep} for r in rows], **series}


def _draw(rows: list[dict], series: dict, rgb: list[int], out_png: str | Path, name: str,
          gap: float, title: str | None) -> None:
    from matplotlib.figure import Figure  # no pyplot: no global backend, safe in QGIS threads

    n = len(rows)
    fig = Figure(figsize=(11.0, 3.4 * n + 3.2), layout="constrained")
    grid = fig.add_gridspec(n + 1, 3, height_ratios=[1.0] * n + [0.9])
    row, col = series["pixel"]
    for i, r in enumerate(rows):
        truth, mean = _rgb(r["truth"], rgb), _rgb(r["mean"], rgb)
        finite = truth[np.isfinite(truth).all(axis=-1)]
        if not finite.size:
            finite = mean[np.isfinite(mean).all(axis=-1)]
        lo, hi = (np.percentile(finite, 2), np.percentile(finite, 98)) if finite.size else (0.0, 0.3)
        unc = nanmean0(r["std"])
        vmax = float(np.nanpercentile(unc, 98)) if np.isfinite(unc).any() else 1.0
        psnr = "–" if r["psnr"] is None else f"{r['psnr']:.2f} dB"
        panels = [(f"truth {r['date']} ({100 * r['clear']:.0f} % clear)", stretch(truth, lo, hi), {}),
                  (f"{name}, gap {gap:g} d: PSNR {psnr}", stretch(mean, lo, hi), {}),
                  ("uncertainty: mean std over bands", unc,
                   {"cmap": "magma", "vmin": 0.0, "vmax": max(vmax, 1e-4)})]
        for j, (label, img, opts) in enumerate(panels):
            ax = fig.add_subplot(grid[i, j])
            shown = ax.imshow(img, interpolation="nearest", **opts)
            if opts:
                fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.02, label="reflectance std")
            ax.plot([col], [row], marker="+", color="cyan", markersize=9, mew=1.5)
            ax.set_title(label, fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])

    ax = fig.add_subplot(grid[n, :])
    when = [from_days(d) for d in series["days"]]
    mean = np.array([np.nan if v is None else v for v in series["mean"]])
    std = np.array([np.nan if v is None else v for v in series["std"]])
    ax.fill_between(when, mean - 2 * std, mean + 2 * std, color="tab:blue", alpha=0.25, lw=0,
                    label="mean ± 2σ")
    ax.plot(when, mean, color="tab:blue", lw=1.2, label=f"{name} mean (same-day S2 hidden)")
    ax.plot([from_days(d) for d in series["observed_days"]], series["observed"], "o", ms=3.5,
            color="black", label="observed (clear)")
    for r in rows:
        ax.axvline(from_days(r["day"]), color="grey", ls="--", lw=0.8)
    cov = series["coverage_2s"]
    cov_text = "" if cov is None else f"; {cov:.0f} % of observations within 2σ"
    ax.set_title(f"pixel (row {row}, col {col}), {series['band']}{cov_text}", fontsize=9)
    ax.set_ylabel(f"{series['band']} reflectance")
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=11)
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
