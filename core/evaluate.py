"""The evaluation protocol of EVALUATION.md over one series: gap-filling and forecasting.

Target dates are the S2 acquisitions with at least 99 % clear pixels. For each target:
- gap-filling, G days: every S2 acquisition within +/- G days of the target is removed
  (dates within half a day count as the same day, so G = 0 removes the target and any
  same-day duplicate); all S1 is kept;
- forecasting, L days: only S2 and S1 acquired at least L days before the target are kept
  (half a day of tolerance, so the 5-day revisit counts as 5 days).
Each method is `prepare`d on the reduced stack only (the hidden date never reaches it), then
asked for the target date; `core.metrics.score` compares with the truth on pixels clear in it.

Per row, `gap_days` is the mean over evaluated pixels of the days from the target to that
pixel's nearest clear S2 observation left in the inputs (pixels with none are left out) and
`gap_days_min` the scene-level minimum of the same per-pixel distance.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence
from pathlib import Path

import numpy as np

from . import metrics
from .dates import SAME_DAY, from_days
from .errors import InputError
from .methods import create
from .progress import Feedback
from .stack import Stack

MIN_CLEAR = 0.99
MIN_LEAD = 1.0  # days: a shorter forecasting lead would keep the target's own acquisition
GAP, FORECAST = "gap-filling", "forecasting"
FORECAST_ONLY = {"persistence"}
EXTRA = ["gap_days", "gap_days_min", "filled", "seconds"]


def target_indices(stack: Stack, min_clear: float = MIN_CLEAR, max_targets: int | None = None,
                   dates: Collection[str] | None = None) -> np.ndarray:
    """Indices of the S2 acquisitions at least `min_clear` clear (on `dates`, ISO, when given); `max_targets`
    evenly spaced among them."""
    clear = stack.valid.reshape(len(stack.s2_days), -1).mean(axis=1)
    idx = np.flatnonzero(clear >= min_clear)
    if dates is not None:
        idx = np.array([t for t in idx if from_days(float(stack.s2_days[t])).date().isoformat() in dates], dtype=int)
    if max_targets is not None and 0 < max_targets < idx.size:
        idx = idx[np.unique(np.linspace(0, idx.size - 1, max_targets).round().astype(int))]
    return idx


def inputs_for(stack: Stack, day: float, task: str, days: float) -> Stack:
    """The inputs a method may see for a target at `day` (see module doc)."""
    if task == GAP:
        return stack.select_s2(np.abs(stack.s2_days - day) > days + SAME_DAY - 1e-9)
    cut = day - days + SAME_DAY
    return stack.select_s2(stack.s2_days <= cut).select_s1(stack.s1_days <= cut)


def days_to_clear(inputs: Stack, day: float, where: np.ndarray) -> tuple[float, float]:
    """(mean, min) over `where` pixels of the days to the nearest clear S2 input observation."""
    per_pixel = inputs.days_to_clear(day)[where]
    per_pixel = per_pixel[np.isfinite(per_pixel)]
    if not per_pixel.size:
        return float("nan"), float("nan")
    return float(per_pixel.mean()), float(per_pixel.min())


def finite_or_none(value) -> float | None:
    """JSON-safe float: None for NaN/inf."""
    value = float(value)
    return value if np.isfinite(value) else None


def _summary(rows: list[dict]) -> list[dict]:
    keys = metrics.METRICS + EXTRA
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["task"], r["days"], r["method"]), []).append(r)
    out = []
    for (task, days, method), rs in groups.items():
        s = {"task": task, "days": days, "method": method, "n_targets": len(rs)}
        for k in keys:
            vals = np.array([r[k] for r in rs if r.get(k) is not None], dtype=float)
            s[k] = finite_or_none(vals.mean()) if vals.size else None
        out.append(s)
    return out


def training_targets(contract: dict, targets: Sequence[str]) -> list[str] | None:
    """The `targets` (ISO dates) outside a learned model's test months (training.holdout.months): in the
    months it was trained on, or in its validation months, on which its checkpoint was chosen and its std
    calibrated; None when the contract records no test months (nothing to tell)."""
    hold = (contract.get("training") or {}).get("holdout") or {}
    months = set(hold.get("months") or [])
    if not months:
        return None
    return [d for d in targets if d[:7] not in months]


def leakage(instances: dict, targets: Sequence[str]) -> dict[str, list[str]]:
    """{method name: its targets in its training months} for the learned methods that have any."""
    out = {}
    for name, method in instances.items():
        contract = getattr(method, "contract", None)
        if isinstance(contract, dict) and (seen := training_targets(contract, targets)):
            out[name] = seen
    return out


def leakage_note(name: str, dates: Sequence[str]) -> str:
    """One line: a model scored on target dates of its training months."""
    return (f"{name} was trained, or chosen and calibrated, on the months of target(s) {', '.join(dates)}: its "
            "scores there are not held out (use --heldout to score it on its test months only)")


def check_settings(gaps: Sequence[float], leads: Sequence[float]) -> None:
    """Raise InputError for a gap < 0 days or a lead < MIN_LEAD days (either would leak the target)."""
    bad = [f"gap {g:g} d (must be >= 0)" for g in gaps if not (np.isfinite(g) and g >= 0)]
    bad += [f"lead {v:g} d (must be >= {MIN_LEAD:g})" for v in leads if not (np.isfinite(v) and v >= MIN_LEAD)]
    if bad:
        raise InputError("invalid " + "; ".join(bad) + ": the hidden target would reach the inputs")


def evaluate(stack: Stack, methods: Sequence[str], gaps: Sequence[float] = (0, 10, 30),
             leads: Sequence[float] = (5, 15, 30, 60), device: str = "auto",
             feedback: Feedback | None = None, max_targets: int | None = None,
             min_clear: float = MIN_CLEAR, dates: Collection[str] | None = None) -> dict:
    """Run the protocol for every method; returns the JSON-serialisable report.

    `dates` (ISO dates), when given, restricts the targets to those dates.

    report["rows"]: one record per (task, G or L, method, target); report["summary"]: the
    mean over targets of every metric per (task, days, method). Non-finite values are None.
    Methods must refit in `prepare` everything that depends on the series.
    """
    check_settings(gaps, leads)
    feedback = feedback or Feedback()
    instances = {name: create(name, device) for name in methods}
    targets = target_indices(stack, min_clear, max_targets, dates)  # max_targets among the dates, not before
    settings = [(GAP, float(g)) for g in gaps] + [(FORECAST, float(lead)) for lead in leads]
    rows: list[dict] = []
    skipped: list[dict] = []
    steps = max(1, len(targets) * len(settings))
    step = 0
    for t in targets:
        day = float(stack.s2_days[t])
        date = from_days(day).date().isoformat()
        truth = stack.s2[t]
        clear = stack.valid[t]
        for task, days in settings:
            feedback.check()
            feedback.report(100.0 * step / steps, f"{task} {days:g} d, target {date}")
            step += 1
            inputs = inputs_for(stack, day, task, days)
            if not len(inputs.s2_days):
                skipped.append({"task": task, "days": days, "target_date": date,
                                "reason": "no S2 acquisition left in the inputs"})
                continue
            gap_mean, gap_min = days_to_clear(inputs, day, clear)
            for name, method in instances.items():
                if task == GAP and name in FORECAST_ONLY:
                    continue
                start = time.perf_counter()
                method.prepare(inputs)
                mean, std = method.predict(inputs, day)
                seconds = time.perf_counter() - start
                scores = metrics.score(mean, std, truth, clear)
                row = {"task": task, "days": days, "method": name, "target_date": date,
                       "target_day": day, "n_s2": int(len(inputs.s2_days)),
                       "n_s1": int(len(inputs.s1_days)), "n_pixels": scores.pop("n_pixels"),
                       "gap_days": gap_mean, "gap_days_min": gap_min, "seconds": seconds}
                row.update(scores)
                rows.append({k: finite_or_none(v) if isinstance(v, float) else v for k, v in row.items()})
    feedback.report(100.0, "evaluation done")
    iso = [from_days(float(stack.s2_days[t])).date().isoformat() for t in targets]
    leaked = leakage(instances, iso)
    return {
        "protocol": "EVALUATION.md",
        "area": {"height": int(stack.shape[0]), "width": int(stack.shape[1]),
                 "n_s2": int(len(stack.s2_days)), "n_s1": int(len(stack.s1_days)),
                 "bands": list(stack.bands),
                 "start": from_days(float(min(stack.s2_days))).date().isoformat() if len(stack.s2_days)
                 else None,
                 "end": from_days(float(max(stack.s2_days))).date().isoformat() if len(stack.s2_days)
                 else None},
        "methods": {name: m.describe() for name, m in instances.items()},
        "gaps": [float(g) for g in gaps], "leads": [float(lead) for lead in leads],
        "min_clear": min_clear,
        "targets": iso,
        "notes": {"gap_days": "mean over evaluated pixels of days to the pixel's nearest clear S2 input",
                  "gap_days_min": "scene-level minimum of the same per-pixel distance",
                  "filled": "fraction of truth-clear pixels the method predicted (finite)",
                  "coverage": "percent of |error| <= 1 or 2 predicted std",
                  "ssim": "masked Gaussian SSIM, see core/metrics.py",
                  **({"leakage": {name: {"targets": dates, "note": leakage_note(name, dates)}
                                  for name, dates in leaked.items()}} if leaked else {})},
        "rows": rows,
        "skipped": skipped,
        "summary": _summary(rows),
    }


def file_sha256(path: str | Path) -> str:
    """The sha256 (hex) of a file's bytes: what identifies a model in reports and cards."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def heldout_months(model: str | Path) -> set[str]:
    """The test months ('YYYY-MM') a model's contract says its training never saw
    (training.holdout.months); InputError when it names none."""
    from .model_contract import read_contract

    months = set((read_contract(model).get("training") or {}).get("holdout", {}).get("months") or [])
    if not months:
        raise InputError(f"{Path(model).name}: its contract names no held-out months")
    return months


def heldout_dates(model: str | Path, stack: Stack, months: set[str] | None = None) -> set[str]:
    """ISO dates of the S2 acquisitions of `stack` in the test months of a model (heldout_months,
    unless already known)."""
    months = heldout_months(model) if months is None else months
    iso = [from_days(float(d)).date().isoformat() for d in stack.s2_days]
    return {d for d in iso if d[:7] in months}


def check_disjoint_folds(models: Sequence[str | Path]) -> dict[str, set[str]]:
    """Each model's test months; InputError when two models share one (the same fold twice: their
    rows would overwrite each other per target) or a model is given twice."""
    months: dict[str, set[str]] = {}
    for model in models:
        if str(model) in months:
            raise InputError(f"{model} is given twice")
        mine = heldout_months(model)  # one read of each model's contract
        for other, seen in months.items():
            if shared := seen & mine:
                raise InputError(f"{other} and {model} hold out the same test months ({', '.join(sorted(shared))}): "
                                 "the folds of a cross-validation must not overlap; evaluate them separately")
        months[str(model)] = mine
    return months


def evaluate_heldout(stack: Stack, models: Sequence[str], baselines: Sequence[str] = ("linear", "nearest",
                     "persistence"), label: str | None = None, months: dict[str, set[str]] | None = None,
                     **kwargs) -> dict:
    """The protocol with each model scored only on the targets of its own test months, beside the
    baselines on the same targets. Several models (the folds of a cross-validation, whose test
    months must not overlap) are merged under one `label` (default: the model's path, or
    'model (N folds)'); report["methods"][label]["folds"] records each file's sha256 and months."""
    if not models:
        raise InputError("no model to evaluate on its held-out dates")
    months = months if months is not None else check_disjoint_folds(models)  # the caller's, if it checked
    label = label or (str(models[0]) if len(models) == 1 else f"model ({len(models)} folds)")
    rows: dict[tuple, dict] = {}
    report: dict = {}
    methods: dict = {}
    skipped: list[dict] = []  # every fold's
    for model in models:
        report = evaluate(stack, [*baselines, str(model)], dates=heldout_dates(model, stack, months[str(model)]),
                          **kwargs)
        methods[str(model)] = {**report["methods"].pop(str(model)), "sha256": file_sha256(model),
                               "holdout_months": sorted(months[str(model)])}
        skipped += [{**s, "model": str(model)} for s in report["skipped"]]
        for r in report["rows"]:
            r = {**r, "method": label, "model": str(model)} if r["method"] == str(model) else r
            rows[(r["task"], r["days"], r["method"], r["target_date"])] = r
    out = dict(report)
    out["rows"] = list(rows.values())
    out["skipped"] = skipped
    out["summary"] = _summary(out["rows"])
    out["targets"] = sorted({r["target_date"] for r in out["rows"]})
    out["methods"] = {**report["methods"], label: {"folds": methods}}
    out["notes"] = {**report["notes"], "heldout": f"{label}: each model scored only on target dates in the test "
                                                  "months of its training (contract training.holdout.months)"}
    return out


_COLUMNS = [("n_targets", "targets", "{:d}"), ("psnr", "PSNR (dB)", "{:.2f}"), ("ssim", "SSIM", "{:.3f}"),
            ("sam", "SAM (°)", "{:.2f}"), ("rmse", "RMSE", "{:.4f}"),
            ("coverage_1s", "cov 1σ (%)", "{:.1f}"), ("coverage_2s", "cov 2σ (%)", "{:.1f}"),
            ("uce", "UCE", "{:.4f}"), ("spearman", "Spearman", "{:.2f}"),
            ("gap_days", "gap (d)", "{:.1f}")]


def format_table(report: dict) -> str:
    """The summary as markdown: one table per task."""
    area = report["area"]
    lines = [f"Area {area['width']} x {area['height']} px, {area['n_s2']} S2 / {area['n_s1']} S1 "
             f"acquisitions ({area['start']} to {area['end']}); {len(report['targets'])} target dates "
             f"(S2 >= {100 * report['min_clear']:g} % clear)."]
    titles = {GAP: ("Gap-filling: S2 within ±G days of the target removed, all S1 kept", "G (d)"),
              FORECAST: ("Forecasting: only S2 and S1 at least L days before the target", "L (d)")}
    for task, (title, key) in titles.items():
        summary = sorted((s for s in report["summary"] if s["task"] == task),
                         key=lambda s: (s["days"], s["method"]))
        if not summary:
            continue
        lines += ["", f"**{title}**", "",
                  "| " + " | ".join([key, "method"] + [c[1] for c in _COLUMNS]) + " |",
                  "|" + "---|" * (len(_COLUMNS) + 2)]
        for s in summary:
            cells = [f"{s['days']:g}", s["method"]]
            cells += ["–" if s.get(k) is None else fmt.format(s[k]) for k, _, fmt in _COLUMNS]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
