"""`densify figure`: truth vs synthesized vs uncertainty at a few dates, and one pixel's series."""

from __future__ import annotations

import argparse
import sys


def pixel_arg(text: str) -> tuple[int, int]:
    """argparse type of a --pixel ROW,COL option."""
    try:
        row, col = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not ROW,COL (two integers)") from None
    return row, col


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, metavar="DIR",
                        help="series folder with S2/ (*_L2A_10m.tif + *_SCL_20m.tif) and S1/")
    parser.add_argument("--model", required=True, metavar="NAME_OR_ONNX",
                        help="method name (linear, nearest, ...) or path to a temporal .onnx model")
    parser.add_argument("--out", required=True, metavar="PNG", help="the figure to write")
    parser.add_argument("--dates", default=None, metavar="YYYY-MM-DD,...",
                        help="S2 dates to synthesize (default: up to 3 protocol targets, >= 99 %% clear)")
    parser.add_argument("--gap", type=float, default=0.0, metavar="G",
                        help="hide every S2 within +/- G days of each date (default: 0, the date only)")
    parser.add_argument("--pixel", type=pixel_arg, default=None, metavar="ROW,COL",
                        help="pixel of the time series (default: the centre of the window)")
    parser.add_argument("--band", default="B08", help="band of the time series (default: %(default)s)")
    parser.add_argument("--step-days", type=float, default=5.0, metavar="D",
                        help="days between predictions of the time series (default: %(default)s)")
    parser.add_argument("--title", default=None, help="figure title")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                        help="for learned methods")


def main(args: argparse.Namespace) -> int:
    from .atomic import OutputError, output_file_problem
    from .cli import print_warnings
    from .figures import model_figure
    from .temporal.dataset import load_series

    if problem := output_file_problem(args.out, suffix=".png"):
        raise OutputError(f"--out {args.out}: {problem}")

    dates = [d.strip() for d in args.dates.split(",") if d.strip()] if args.dates else None
    stack = load_series(args.data)
    print_warnings("figure", stack.warnings)
    report = model_figure(stack, args.model, args.out, dates=dates, gap=args.gap, pixel=args.pixel,
                          band=args.band, step_days=args.step_days, title=args.title,
                          device=args.device)
    for t in report["targets"]:
        psnr = "–" if t["psnr"] is None else f"{t['psnr']:.2f} dB"
        print(f"{t['date']}: PSNR {psnr} ({t['n_s2']} S2 inputs, gap {report['gap']:g} d)")
    cov = report["coverage_2s"]
    row, col = report["pixel"]
    print(f"pixel ({row}, {col}) {report['band']}: {len(report['observed_days'])} clear observations"
          + ("" if cov is None else f", {cov:.1f} % within 2 sigma of the gap-filled prediction"))
    print(f"wrote {args.out}", file=sys.stderr)
    return 0
