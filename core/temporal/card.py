"""The model card of a temporal model: markdown for people, JSON for tools (`densify card`).

Both are built from the ONNX contract (core/model_contract.py) and from `densify evaluate
--heldout` reports (the model alone on its test months, and optionally the folds of a
cross-validation), so every figure in the card is one a command measured.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..atomic import OutputError, output_file_problem, same_file, write_texts
from ..errors import InputError
from ..evaluate import FORECAST, GAP, file_sha256
from ..methods import bundled_model
from ..methods.onnx_method import RUN_TILE
from ..model_contract import read_contract

BASELINES = ("linear", "nearest", "persistence")
# the bar of the main-model issue, checked on the reports
BAR = {"gap0_gain_db": 2.0, "cov1": (60.0, 76.0), "cov2": (90.0, 98.0)}


def _uncertainty_line(cal: dict) -> str:
    table = cal.get("std_scale_by_days")
    if not table:
        return (f"- Uncertainty: std = exp(logvar / 2) x {cal.get('std_scale', 1.0):.3f} "
                "(temperature fitted on the validation months)")
    pairs = ", ".join(f"{s:.2f} at {d:g} d" for d, s in zip(table["days"], table["scale"], strict=True))
    return ("- Uncertainty: std = exp(logvar / 2) x s(d), d = days to the pixel's nearest clear S2 observation, "
            f"s = {pairs} (interpolated; temperatures fitted per distance on the validation months)")

def _model_label(report: dict) -> str:
    from ..methods import available

    others = (set(available()) | set(BASELINES)) - {"onnx"}  # every registered baseline, not only the table's
    labels = sorted({s["method"] for s in report["summary"]} - others)
    if len(labels) != 1:
        raise InputError(f"the report should hold one model beside the baselines, found {labels or 'none'}")
    return labels[0]


def _recorded_models(report: dict) -> dict[str, dict]:
    """{model path as the report recorded it: its record} for the report's model rows (the folds of
    `evaluate --heldout`, or the one .onnx method of a plain `evaluate`)."""
    label = _model_label(report)
    entry = (report.get("methods") or {}).get(label)
    if not isinstance(entry, dict):
        return {}
    folds = entry.get("folds")
    return folds if isinstance(folds, dict) else {label: entry}


def _same_model(path: str, record: dict, model: Path, sha: str) -> bool:
    """Whether a report's model record is `model`: by the sha256 the report recorded, else by the
    bytes of the recorded file when it is still there, else by file name (older reports)."""
    if record.get("sha256"):
        return record["sha256"] == sha
    if Path(path).is_file():
        return file_sha256(path) == sha
    return (record.get("model") or Path(path).name) == model.name


def check_report_model(report: dict, model: str | Path, sha: str, what: str, fold: bool = False) -> None:
    """InputError unless `report`'s model rows are those of `model` (for a cross-validation,
    `fold`: unless `model` is one of its folds)."""
    model = Path(model)
    recorded = _recorded_models(report)
    if not recorded:
        raise InputError(f"{what}: the report records no model file, so it cannot be checked to be "
                         f"{model.name}'s")
    names = ", ".join(recorded)
    if fold:
        if not any(_same_model(p, r, model, sha) for p, r in recorded.items()):
            raise InputError(f"{what}: a cross-validation of {names}, none of which is {model} "
                             f"(sha256 {sha[:16]}…); the card's model must be one of its folds")
        return
    if len(recorded) != 1:
        raise InputError(f"{what}: the report scores {len(recorded)} models ({names}); it must be "
                         f"that of {model.name} alone (`densify evaluate --heldout --methods ...,{model}`)")
    path, record = next(iter(recorded.items()))
    if not _same_model(path, record, model, sha):
        raise InputError(f"{what}: the report's numbers are those of {path}, not of {model} "
                         f"(sha256 {sha[:16]}…); evaluate this model with `densify evaluate --heldout`")


def check_heldout(report: dict, model: str | Path, sha: str, months: set[str], what: str) -> None:
    """InputError unless `report` is a `densify evaluate --heldout` report whose model rows all lie in
    the test months of their fold: `months` (the contract's) for `model`'s, the months the report
    recorded for the other folds of a cross-validation."""
    model = Path(model)
    if "heldout" not in (report.get("notes") or {}):
        raise InputError(f"{what}: not a held-out report (it has no 'heldout' note): make it with "
                         f"`densify evaluate --heldout --methods ...,{model.name}`")
    label = _model_label(report)
    recorded = _recorded_models(report)
    for path, record in recorded.items():
        mine = _same_model(path, record, model, sha)
        allowed = months if mine else set(record.get("holdout_months") or [])
        dates = {r["target_date"] for r in report.get("rows", [])
                 if r.get("method") == label and r.get("model", path) == path}
        if mine and len(recorded) == 1:
            dates |= set(report.get("targets") or [])
        if outside := sorted(d for d in dates if str(d)[:7] not in allowed):
            raise InputError(f"{what}: {outside[0]} is in a training month of {Path(path).name} (its test months: "
                             f"{', '.join(sorted(allowed)) or 'none recorded'}); evaluate it with "
                             "`densify evaluate --heldout`")


def _row(report: dict, task: str, days: float, method: str) -> dict | None:
    return next((s for s in report["summary"]
                 if s["task"] == task and s["days"] == days and s["method"] == method), None)


def comparison(report: dict) -> list[dict]:
    """Per task and G / L: the model's metrics, the baselines' PSNR and the model's gain over the
    reference baseline (linear for gaps, persistence for forecasts)."""
    label = _model_label(report)
    out = []
    for task in (GAP, FORECAST):
        for days in sorted({s["days"] for s in report["summary"] if s["task"] == task}):
            m = _row(report, task, days, label)
            if m is None:
                continue
            ref = _row(report, task, days, "linear" if task == GAP else "persistence")
            row = {"task": task, "days": days, "n_targets": m["n_targets"],
                   **{k: m.get(k) for k in ("psnr", "ssim", "sam", "rmse", "coverage_1s", "coverage_2s",
                                            "uce", "spearman")}}
            for b in BASELINES:
                base = _row(report, task, days, b)
                row[f"psnr_{b}"] = base["psnr"] if base else None
            row["gain_db"] = (m["psnr"] - ref["psnr"]) if ref and None not in (m["psnr"], ref["psnr"]) else None
            out.append(row)
    return out


def bar_checks(rows: list[dict]) -> list[dict]:
    """The issue's targets, each with the measured value and whether it is met."""
    gaps = {r["days"]: r for r in rows if r["task"] == GAP}
    checks = []
    g0 = gaps.get(0.0, {}).get("gain_db")
    if g0 is not None:
        checks.append({"what": "PSNR gain over linear at G = 0 >= 2 dB", "value": round(g0, 2),
                       "met": g0 >= BAR["gap0_gain_db"]})
        # "and more at larger gaps", read both ways: more than the 2 dB bar, and more than at G = 0
        for g, r in sorted(gaps.items()):
            if g > 0 and r["gain_db"] is not None:
                checks.append({"what": f"gain at G = {g:g} more than {BAR['gap0_gain_db']:g} dB",
                               "value": round(r["gain_db"], 2), "met": r["gain_db"] > BAR["gap0_gain_db"]})
                checks.append({"what": f"gain at G = {g:g} larger than at G = 0", "value": round(r["gain_db"], 2),
                               "met": r["gain_db"] > g0})
    for r in rows:
        if r["task"] == FORECAST and r["gain_db"] is not None:
            checks.append({"what": f"better than persistence at L = {r['days']:g}", "value": round(r["gain_db"], 2),
                           "met": r["gain_db"] > 0})
    for key, name in (("coverage_1s", "cov1"), ("coverage_2s", "cov2")):
        lo, hi = BAR[name]
        vals = [r[key] for r in rows if r[key] is not None]
        if vals:
            checks.append({"what": f"{key[-2]}σ coverage within {lo:g}-{hi:g} % on every row",
                           "value": [round(min(vals), 2), round(max(vals), 2)],  # 2 decimals: 98.01 is out
                           "met": lo <= min(vals) and max(vals) <= hi})
    return checks


def _table(rows: list[dict]) -> list[str]:
    lines = ["| task | G / L (d) | targets | linear | nearest | persistence | **model** | gain (dB) | SSIM | "
             "SAM (°) | RMSE | cov 1σ / 2σ (%) | UCE | Spearman |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]

    def f(v, fmt):
        return "–" if v is None else fmt.format(v)

    for r in rows:
        lines.append("| " + " | ".join([
            "gap" if r["task"] == GAP else "forecast", f"{r['days']:g}", str(r["n_targets"]),
            f(r["psnr_linear"], "{:.2f}"), f(r["psnr_nearest"], "{:.2f}"), f(r["psnr_persistence"], "{:.2f}"),
            f(r["psnr"], "**{:.2f}**"), f(r["gain_db"], "{:+.2f}"), f(r["ssim"], "{:.3f}"), f(r["sam"], "{:.2f}"),
            f(r["rmse"], "{:.4f}"), f"{f(r['coverage_1s'], '{:.1f}')} / {f(r['coverage_2s'], '{:.1f}')}",
            f(r["uce"], "{:.4f}"), f(r["spearman"], "{:.2f}")]) + " |")
    return lines


def build_card(model: str | Path, heldout: dict, cv: dict | None = None, figure: str | None = None,
               command: str | None = None) -> tuple[str, dict]:
    """(markdown, json) card of `model` from its held-out report and an optional cross-validation."""
    model = Path(model)
    c = read_contract(model)
    if c.get("kind") != "temporal":
        raise InputError(f"{model.name}: a '{c.get('kind')}' model, the card is for temporal models")
    sha, size = file_sha256(model), model.stat().st_size
    tr = c.get("training") or {}
    hold = tr.get("holdout") or {}
    months = set(hold.get("months") or [])
    check_report_model(heldout, model, sha, "--heldout")
    check_heldout(heldout, model, sha, months, "--heldout")
    if cv:
        check_report_model(cv, model, sha, "--cv", fold=True)
        check_heldout(cv, model, sha, months, "--cv")
    bundled = bundled_model()
    name = "bundled model" if bundled is not None and file_sha256(bundled) == sha else "model"
    rows = comparison(heldout)
    cv_rows = comparison(cv) if cv else None
    checks = bar_checks(rows)
    cv_checks = bar_checks(cv_rows) if cv_rows else None
    arch = c.get("architecture", {})
    md = [f"# Model card: {model.name}", "",
          "Probabilistic S1+S2 temporal cross-attention generator (Defonte et al. 2026 seed): a Sentinel-2 "
          "image (10 bands, surface reflectance) at any date, with a per-pixel, per-band standard deviation, "
          "from the nearest S2 (cloudy pixels masked out of attention) and S1 observations.", "",
          f"- File: `{model.name}`, {size / 1e6:.2f} MB, sha256 `{sha[:16]}…`, "
          f"model version {c.get('version')} (contract format {c.get('contract_version')})",
          f"- Architecture: d = {arch.get('d')}, {arch.get('heads')} heads, {arch.get('layers')} layers; "
          f"K2 = {c.get('k2')} S2 and K1 = {c.get('k1')} S1 observations per target; tiles of {c.get('tile')} px "
          f"or more (the ONNX method fits tiles of up to {RUN_TILE} px to each window when the graph takes any "
          f"size), overlap {c.get('overlap')} px"
          + ("; the query also sees the S1 change since each pixel's previous / next clear S2 dates (input "
             "`s1_change`)" if arch.get("s1_change") else "")
          + (", and the S1 change between those two dates" if arch.get("s1_span") else "")
          + (f", averaged over the pixels of the same field ({2 * arch['s1_guided'].get('radius', 0) + 1} px window, "
             "weighted by how alike their clear B04, B08, B11 are)" if arch.get("s1_guided") else "")
          + ("; the S1 observations it attends to are averaged the same way"
             if (arch.get("s1_guided") or {}).get("obs") else "")
          + ("; each S2 observation also carries the S1 change from its date to the target (input "
             "`obs_s1_change`)" if arch.get("obs_s1_change") else "")
          + ("; each S2 observation also carries the clear fraction around each pixel"
             if arch.get("cloud_context") else "")
          + (f"; S2 pixels whose blue reflectance rose more than {c['haze_screen'].get('threshold')} above the other "
             f"clear observations within {c['haze_screen'].get('window_days'):g} d, and more than red did or more "
             f"than {c['haze_screen'].get('bright')}, are screened out of its inputs (haze and thin cloud SCL "
             "calls clear)" if c.get("haze_screen") else ""),
          f"- Bands: {', '.join(c.get('bands', []))}; S1: VV, VH in dB",
          _uncertainty_line(c.get("calibration", {})), "",
          "## Training", "",
          f"- Data: `{Path(str(tr.get('data', '?'))).name}`; seed {tr.get('seed')}; the checkpoint after "
          f"{tr.get('epochs')} epochs x {tr.get('steps_per_epoch')} steps (the best on validation of its run), "
          f"batch {tr.get('batch')}, crop {tr.get('crop')} px, lr {tr.get('lr')}",
          f"- Test months (never seen in training, the table below): {', '.join(hold.get('months', []))} "
          f"({hold.get('n_dates')} S2 dates)",
          f"- Validation months (checkpoint choice and std temperature): "
          f"{', '.join(hold.get('validation_months', []))} ({hold.get('n_validation_dates')} S2 dates)"]
    if command:
        md += ["", "Reproduce:", "", "```", command.strip(), "```"]
    md += ["", "## Evaluation on held-out dates (EVALUATION.md)", "",
           f"The model on the protocol targets (>= 99 % clear) of its test months: "
           f"{', '.join(heldout.get('targets', []))}. PSNR in dB (mean over targets); gain over `linear` "
           "for gaps, over persistence for forecasts.", "", *_table(rows)]
    if cv_rows:
        folds = (cv.get("methods", {}).get(_model_label(cv)) or {}).get("folds", {})
        md += ["", f"Cross-validation of the same recipe over {len(folds)} month folds: every protocol target "
                   "scored by the fold model that never saw its month (each trained, selected and calibrated "
                   f"without it); targets {', '.join(cv.get('targets', []))}.", "", *_table(cv_rows)]
    md += ["", "## Against the issue's bar", "", f"| target | {name} | " +
           ("cross-validation |" if cv_checks else ""), "|---|---|" + ("---|" if cv_checks else "")]
    for ch in checks:
        cells = [ch["what"], f"{'met' if ch['met'] else '**not met**'} ({ch['value']})"]
        if cv_checks:
            other = next((x for x in cv_checks if x["what"] == ch["what"]), None)
            cells.append("–" if other is None else f"{'met' if other['met'] else '**not met**'} ({other['value']})")
        md.append("| " + " | ".join(cells) + " |")
    if figure:
        md += ["", "## Figure", "", f"![truth, synthesized, uncertainty and one pixel's series]({figure})"]
    card = {"model": model.name, "sha256": sha, "size_bytes": size,
            "contract": c, "evaluation": {"heldout": {"targets": heldout.get("targets"), "rows": rows,
                                                      "bar": checks}},
            "figure": figure, "command": command}
    if cv_rows:
        card["evaluation"]["cross_validation"] = {"targets": cv.get("targets"), "rows": cv_rows, "bar": cv_checks}
    return "\n".join(md) + "\n", card


def write_card(model: str | Path, out_md: str | Path, heldout: str | Path, cv: str | Path | None = None,
               figure: str | None = None, command: str | None = None) -> tuple[Path, Path]:
    """Write `out_md` (.md) and the JSON card beside it (same stem, .json) from report.json files;
    OutputError, before anything is read, when either cannot be written."""
    out_md = Path(out_md)
    inputs = {"--model": model, "--heldout": heldout, "--cv": cv, "--figure": figure}
    for path, suffix in ((out_md, ".md"), (out_md.with_suffix(".json"), None)):
        if problem := output_file_problem(path, suffix=suffix):
            raise OutputError(f"--out {path}: {problem} (the card is a .md, its .json is written beside it)")
        for option, given in inputs.items():
            if given and same_file(given, path):
                raise OutputError(f"--out {out_md}: the card would replace the input {option} {given} (the card "
                                  "is a .md, its .json is written beside it); choose another name")

    def load(path: str | Path) -> dict:
        try:
            report = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise InputError(f"{path}: not a readable evaluation report ({exc})") from None
        if not (isinstance(report, dict) and isinstance(report.get("summary"), list)):
            raise InputError(f"{path}: not a report.json of densify evaluate (it has no 'summary' list)")
        return report

    md, card = build_card(model, load(heldout), load(cv) if cv else None, figure, command)
    out_json = out_md.with_suffix(".json")
    write_texts({out_md: md, out_json: json.dumps(card, indent=1, allow_nan=False)})  # together: they match
    return out_md, out_json
