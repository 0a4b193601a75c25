"""`densify simulate`: write a synthetic S1/S2 scene (fields, phenology, clouds + SCL, SAR)."""

from __future__ import annotations

import argparse
import sys

from .progress import Feedback


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="folder to write S2/, S1/ and index.json into")
    parser.add_argument("--size", type=int, default=512, help="width = height in 10 m pixels (even)")
    parser.add_argument("--s2-dates", type=int, default=20, help="number of S2 acquisitions")
    parser.add_argument("--s1-dates", type=int, default=30, help="number of S1 acquisitions")
    parser.add_argument("--start", default="2021-03-01", help="first date (YYYY-MM-DD)")
    parser.add_argument("--end", default="2021-10-31", help="last date (YYYY-MM-DD)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same scene)")


def main(args: argparse.Namespace) -> int:
    from .simulate import simulate_scene

    def progress(percent: float, message: str) -> None:
        print(f"\r{percent:5.1f}% {message}", end="", file=sys.stderr, flush=True)

    tty = sys.stderr.isatty()
    result = simulate_scene(args.out, size=args.size, n_s2=args.s2_dates, n_s1=args.s1_dates,
                            start=args.start, end=args.end, seed=args.seed,
                            feedback=Feedback(progress if tty else None))
    if tty:
        print(file=sys.stderr)
    clear = sum(c == 0 for c in result["cloud_cover"])
    print(f"wrote {len(result['s2'])} S2 (+SCL, {clear} clear) and {len(result['s1'])} S1 files "
          f"of {args.size} x {args.size} px to {args.out} (index: {result['index']})")
    return 0
