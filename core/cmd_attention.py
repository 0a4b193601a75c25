"""`densify attention`: which S2 and S1 observations a temporal checkpoint attends to for a date."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

from .cmd_evaluate import gap_days, lead_days
from .cmd_figure import pixel_arg


def _one(parse: Callable[[str], list[float]]) -> Callable[[str], float]:
    """argparse type: one value checked by `parse` (cmd_evaluate's gap_days / lead_days)."""
    def single(text: str) -> float:
        values = parse(text)
        if len(values) != 1:
            raise argparse.ArgumentTypeError(f"'{text}' is not one number of days")
        return values[0]

    single.__name__ = parse.__name__  # argparse names the type in its message
    return single


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="temporal checkpoint (.pt) from `densify train temporal`")
    parser.add_argument("--data", required=True, metavar="DIR",
                        help="series folder with S2/ (*_L2A_10m.tif + *_SCL_20m.tif) and S1/")
    parser.add_argument("--date", required=True, metavar="YYYY-MM-DD", help="target date")
    task = parser.add_mutually_exclusive_group()
    task.add_argument("--gap", type=_one(gap_days), default=0.0, metavar="G",
                      help="gap-filling: hide every S2 within +/- G days of the date, G >= 0 "
                           "(default: 0, the date only)")
    task.add_argument("--lead", type=_one(lead_days), default=None, metavar="L",
                      help="forecasting: only S2 and S1 at least L days before the date, L >= 1")
    parser.add_argument("--pixel", type=pixel_arg, default=None, metavar="ROW,COL",
                        help="pixel whose weights are listed (default: the centre of the window)")
    parser.add_argument("--out", default=None, metavar="JSON",
                        help="also write everything to this JSON file (.json, outside --data)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")


def main(args: argparse.Namespace) -> int:
    from .atomic import OutputError, check_output_file, under_input_folder, write_text
    from .cli import print_warnings
    from .dates import parse_date, to_days
    from .errors import InputError
    from .evaluate import FORECAST, GAP, inputs_for
    from .inventory import check_target
    from .temporal.attention import at_pixel, attention, sensor_shares
    from .temporal.dataset import load_series
    from .temporal.train import model_from_checkpoint
    from .training import load_checkpoint, select_device

    if args.out:
        check_output_file(args.out, {"--checkpoint": args.checkpoint}, suffix=".json", label="--out ")
        if under_input_folder(args.out, [args.data]):
            raise OutputError(f"--out {args.out}: is inside the --data folder {args.data}; write it elsewhere")
    ckpt = load_checkpoint(args.checkpoint)
    model = model_from_checkpoint(ckpt, args.checkpoint)
    try:
        target = parse_date(args.date)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    stack = load_series(args.data)
    print_warnings("attention", stack.warnings)
    check_target(stack, target)
    day = to_days(target)
    task, days = (GAP, args.gap) if args.lead is None else (FORECAST, args.lead)
    sub = inputs_for(stack, day, task, days)
    if not len(sub.s2_days):
        raise InputError(f"{args.data}: no S2 observation left for {args.date} ({task} {days:g} d)")
    h, w = stack.shape
    row, col = args.pixel or (h // 2, w // 2)
    if not (0 <= row < h and 0 <= col < w):
        raise InputError(f"pixel ({row}, {col}) is outside the {h} x {w} window of {args.data}")
    device = select_device(args.device)
    result = attention(model.to(device), sub, day, ckpt["config"]["k2"], ckpt["config"]["k1"], device)
    pixel, shares = at_pixel(result, row, col), sensor_shares(result)
    print(f"{args.date}, {task} {days:g} d, pixel ({row}, {col}): weight per layer (mean over heads)")
    for r in pixel:
        seen = "" if r["clear"] is None else ("clear" if r["clear"] else "masked")
        when = "" if r["days"] is None else f"{r['days']:+7.1f} d"
        weights = " ".join(f"{v:.3f}" for v in r["weight"])
        print(f"  {r['sensor']:4s} {r['date'] or '(null)':10s} {when:9s} {weights}  {seen}")
    print("last layer, mean over pixels by days to the nearest clear S2 observation: S2 / S1 / null")
    for s in shares:
        print(f"  {s['nearest_clear_days']:>6s} d ({s['pixels']} px): {s['S2']:.3f} / {s['S1']:.3f} / {s['none']:.3f}")
    if args.out:
        write_text(args.out, json.dumps({"checkpoint": str(args.checkpoint), "date": args.date, "task": task,
                                         "days": days, "pixel": [row, col], "at_pixel": pixel,
                                         "sensor_shares": shares}, indent=1))
    return 0
