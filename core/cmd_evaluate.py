"""`densify evaluate`: the EVALUATION.md protocol (gap-filling, forecasting) over a series."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from .atomic import OutputError, new_dirs_removed_on_error, output_dir_problem, write_texts
from .errors import InputError, short_list
from .progress import Feedback

REPORTS = ("report.json", "report.md")
PROTOCOL_BASELINES = ("linear", "nearest", "persistence")  # EVALUATION.md: shown beside every model


def _floats(text: str, minimum: float = -math.inf, what: str = "") -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a comma-separated list of numbers") from None
    bad = [v for v in values if not (math.isfinite(v) and v >= minimum)]
    if bad:
        raise argparse.ArgumentTypeError(f"{bad[0]:g} is not a valid {what} (finite, at least {minimum:g})")
    return values


def gap_days(text: str) -> list[float]:
    """argparse type: gap-filling half-widths, days >= 0."""
    return _floats(text, 0.0, "gap in days")


def lead_days(text: str) -> list[float]:
    """argparse type: forecasting lead times, days >= 1 (a shorter lead would keep the target)."""
    from .evaluate import MIN_LEAD

    return _floats(text, MIN_LEAD, "lead time in days")


def configure(parser: argparse.ArgumentParser) -> None:
    from .cli import positive_int

    parser.add_argument("--s2", required=True, nargs="+", metavar="PATH",
                        help="Sentinel-2 L2A GeoTIFFs or folders (SCL files found there are used as masks)")
    parser.add_argument("--s1", required=True, nargs="+", metavar="PATH",
                        help="Sentinel-1 GeoTIFFs or folders")
    parser.add_argument("--mask", nargs="+", metavar="PATH", default=None,
                        help="cloud masks (SCL, s2cloudless probability, binary) if not beside the S2")
    parser.add_argument("--methods", default="linear,nearest,persistence",
                        help="comma-separated method names or .onnx model paths (default: %(default)s; "
                             "persistence is scored for forecasting only); a learned model (default, an .onnx "
                             "file) is always scored beside the protocol's baselines linear, nearest and "
                             "persistence, which are added when missing")
    parser.add_argument("--gaps", type=gap_days, default=[0.0, 10.0, 30.0], metavar="G,...",
                        help="gap-filling half-widths in days, each >= 0 (default: 0,10,30)")
    parser.add_argument("--leads", type=lead_days, default=[5.0, 15.0, 30.0, 60.0], metavar="L,...",
                        help="forecasting lead times in days, each >= 1 (default: 5,15,30,60)")
    parser.add_argument("--max-targets", type=positive_int, default=None, metavar="N",
                        help="evaluate at most N target dates, evenly spaced (default: all)")
    parser.add_argument("--band-order", metavar="B02,B03,...", default=None,
                        help="band names of the S2 inputs when their bands have no descriptions")
    parser.add_argument("--heldout", action="store_true",
                        help="score each .onnx model only on the target dates of the test months its "
                             "training held out (its contract); several models = the folds of a "
                             "cross-validation, merged as one method; the other methods on the same dates")
    parser.add_argument("--label", default=None, help="with --heldout: the name of the merged model rows")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                        help="device of the learned methods (default: %(default)s)")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for report.json and report.md")


def _feedback() -> tuple[Feedback, object | None]:
    """A tqdm bar on a terminal, plain percent lines otherwise."""
    if sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=100, unit="%", bar_format="{l_bar}{bar}| {elapsed}<{remaining}")

        def progress(percent: float, message: str) -> None:
            bar.set_description(message, refresh=False)
            bar.update(percent - bar.n)

        return Feedback(progress), bar
    last = [-10.0]

    def plain(percent: float, message: str) -> None:
        if percent - last[0] >= 10 or percent >= 100:
            last[0] = percent
            print(f"{percent:5.1f} % {message}", file=sys.stderr, flush=True)

    return Feedback(plain), None


def resolve_models(methods: list[str], heldout: bool) -> tuple[list[str], list[str]]:
    """(methods, the learned models among them): with `heldout`, `default` (and `onnx`) as the bundled
    model's path; the protocol baselines added after the methods when a learned model is there."""
    from .methods import default_model

    bundled = default_model()  # None: `default` runs the linear baseline (no model file or no onnxruntime)
    if heldout and bundled is not None:
        methods = [str(bundled) if m in ("default", "onnx") else m for m in methods]
    models = [m for m in methods if m.lower().endswith(".onnx")]
    learned = models or [m for m in methods if m in ("default", "onnx") and bundled is not None]
    if learned:
        methods = methods + [b for b in PROTOCOL_BASELINES if b not in methods]
    return list(dict.fromkeys(methods)), models


def nothing_scored(report: dict, s2: list[str]) -> str:
    """Why a report holds no score, naming the S2 inputs: the reasons its tasks were skipped, and the methods that
    score forecasts only where only gaps were asked or ran."""
    from .evaluate import FORECAST_ONLY

    why = []
    if reasons := sorted({s["reason"] for s in report.get("skipped", [])}):
        tasks = len(report["targets"] or {s["target_date"] for s in report["skipped"]}) * (
            len(report["gaps"]) + len(report["leads"]))
        n = len(report["skipped"])
        why.append(f"{'every task was' if n >= tasks else f'{n} of {tasks} tasks were'} skipped: {'; '.join(reasons)}")
    if forecasts := [m for m in report["methods"] if m in FORECAST_ONLY]:
        why.append(f"{', '.join(forecasts)} {'is' if len(forecasts) == 1 else 'are'} scored for forecasting only"
                   + (", and --leads is empty" if not report["leads"] else ""))
    n = report["area"]["n_s2"]
    names = short_list([Path(p).name for p in s2])
    return f"nothing to evaluate in {names} ({n} S2 acquisition{'s' * (n != 1)}): {'; '.join(why)}"


def main(args: argparse.Namespace) -> int:
    from .cli import print_warnings
    from .evaluate import check_disjoint_folds, evaluate, evaluate_heldout, format_table
    from .reader import load_stack

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if not methods:
        raise InputError("--methods names no method")
    if not args.gaps and not args.leads:
        raise InputError("--gaps and --leads are both empty: nothing to evaluate")
    if problem := output_dir_problem(args.out, REPORTS):
        raise OutputError(f"--out {args.out}: {problem}")
    methods, models = resolve_models(methods, args.heldout)
    months = None
    if args.heldout:
        if not models:
            cannot = (" (`default` is the linear baseline here: the bundled model needs models/default.onnx and "
                      "onnxruntime)" if any(m in ("default", "onnx") for m in methods) else "")
            raise InputError(f"--heldout: --methods names no .onnx model{cannot}")
        months = check_disjoint_folds(models)  # before the series is read
    order = [b.strip() for b in args.band_order.split(",") if b.strip()] if args.band_order else None
    stack = load_stack(s2=args.s2, s1=args.s1, masks=args.mask, band_order=order)
    print_warnings("evaluate", stack.warnings)
    feedback, bar = _feedback()
    try:
        kw = dict(gaps=args.gaps, leads=args.leads, device=args.device, feedback=feedback,
                  max_targets=args.max_targets)
        if args.heldout:
            others = [m for m in methods if m not in models]
            report = evaluate_heldout(stack, models, others, label=args.label, months=months, **kw)
        else:
            report = evaluate(stack, methods, **kw)
    finally:
        if bar is not None:
            bar.close()
    if not report["targets"] and not report.get("skipped"):
        where = " in the test months of the model(s)" if args.heldout else ""
        raise InputError(f"no S2 acquisition is at least 99 % clear{where}: nothing to evaluate")
    if not report["rows"]:
        raise InputError(nothing_scored(report, args.s2))
    for entry in (report["notes"].get("leakage") or {}).values():
        print(f"densify evaluate: warning: {entry['note']}", file=sys.stderr)
    table = format_table(report)
    out = Path(args.out)
    with new_dirs_removed_on_error(out):
        write_texts({out / REPORTS[0]: json.dumps(report, indent=1, allow_nan=False),  # together: a report's
                     out / REPORTS[1]: "# Evaluation (EVALUATION.md protocol)\n\n" + table})  # .json matches its .md
    print(table)  # after the files: a console that cannot show it must not cost the evaluation
    print(f"wrote {out / 'report.json'} and {out / 'report.md'}", file=sys.stderr)
    return 0
