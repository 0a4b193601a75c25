"""`densify make-pairs`: training triplets (SEN12MS-CR layout) from S1 + S2 time series."""

from __future__ import annotations

import argparse
from collections import Counter

from .atomic import OutputError, output_dir_problem, under_input_folder
from .errors import InputError
from .pairs import LAYOUT_FOLDERS, load_series, make_pairs


def configure(p: argparse.ArgumentParser) -> None:
    from .cli import fraction, nonnegative_float, nonnegative_int, positive_int

    p.add_argument("--s2", nargs="+", required=True,
                   help="S2 files or folders (SCL masks found in them are paired)")
    p.add_argument("--s1", nargs="+", required=True, help="S1 files or folders (VV, VH)")
    p.add_argument("--mask", nargs="*", default=[], help="cloud masks (SCL, binary or probability)")
    p.add_argument("--out", required=True, help="output dataset folder")
    p.add_argument("--patch", type=positive_int, default=64, help="patch size in pixels (default 64)")
    p.add_argument("--max-days", type=nonnegative_float, default=30.0,
                   help="max days between a cloudy image and its clear target (default 30)")
    p.add_argument("--max-s1-days", type=nonnegative_float, default=5.0,
                   help="max days between each S1 and the optical image it goes with (default 5, He & Yokoya)")
    p.add_argument("--synthetic-per-clear", type=nonnegative_int, default=8,
                   help="clouds of other dates composited onto each clear image (default 8; 0: none)")
    p.add_argument("--clear-min", type=fraction, default=0.95,
                   help="fraction of clear pixels for an acquisition to be a clear target (default 0.95)")
    p.add_argument("--seed", type=int, default=0, help="random seed (which clouds are composited)")


def main(args: argparse.Namespace) -> int:
    from .cli import print_warnings

    problem = output_dir_problem(args.out, (*LAYOUT_FOLDERS, "pairs.csv"))
    if problem:
        raise OutputError(f"--out {args.out}: {problem}")
    if inside := under_input_folder(args.out, [*args.s2, *args.s1, *(args.mask or [])]):
        raise OutputError(f"--out {args.out}: is inside the input folder {inside}; the triplets would be read as "
                          "inputs by later runs: write them elsewhere")
    if args.clear_min == 0:
        raise InputError("--clear-min must be > 0 (the fraction of clear pixels of a clear target)")
    series = load_series(args.s2, args.s1, args.mask)
    print_warnings("make-pairs", series.warnings)
    rows = make_pairs(series, args.out, patch=args.patch, max_days=args.max_days,
                      synthetic_per_clear=args.synthetic_per_clear, clear_min=args.clear_min,
                      seed=args.seed, max_s1_days=args.max_s1_days)
    kinds = Counter(r.kind for r in rows)
    print(f"wrote {len(rows)} triplets ({kinds['real']} real, {kinds['synthetic']} synthetic) to {args.out}")
    return 0
