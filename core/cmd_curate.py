"""`densify curate`: keep or reject S1/S2 training triplets (SEN12MS-CR layout)."""

from __future__ import annotations

import argparse
import os

from .atomic import OutputError, output_dir_problem
from .curate import OUTPUTS, CurateConfig, curate


def configure(p: argparse.ArgumentParser) -> None:
    from .cli import nonnegative_float, positive_float, positive_int

    p.add_argument("--data", required=True, help="dataset folder with s1/, s2_cloudy/, s2_cloudfree/")
    p.add_argument("--out", required=True, help="folder for report.csv, summary.json/.md, kept.txt")
    p.add_argument("--workers", type=positive_int, default=min(4, os.cpu_count() or 1), help="parallel processes")
    p.add_argument("--summer-threshold", type=nonnegative_float, default=10.0,
                   help="min mean RGB std (8-bit display) outside winter (default 10)")
    p.add_argument("--winter-threshold", type=nonnegative_float, default=3.0,
                   help="min mean RGB std in winter (default 3)")
    p.add_argument("--sar-std-min", type=nonnegative_float, default=1e-4, help="min SAR std (dB scaled to [0, 1])")
    p.add_argument("--sar-max-min", type=nonnegative_float, default=1e-3, help="min SAR max (dB scaled to [0, 1])")
    p.add_argument("--display-max", type=positive_float, default=0.3,
                   help="reflectance shown as 255 in the 8-bit stretch (default 0.3)")
    p.add_argument("--size", type=positive_int, default=None, help="required patch size in pixels (default: any)")
    p.add_argument("--link", action="store_true",
                   help="also write OUT/s1, s2_cloudy, s2_cloudfree with links to the kept triplets")


def interrupted_note(args: argparse.Namespace) -> str:
    """What an interrupted curate leaves: no report; with --link, part of the link folders."""
    if args.link:
        return f"no report was written; {args.out} may hold part of the --link folders."
    return "no output was written."


def main(args: argparse.Namespace) -> int:
    problem = output_dir_problem(args.out, OUTPUTS)
    if problem:
        raise OutputError(f"--out {args.out}: {problem}")
    cfg = CurateConfig(summer_threshold=args.summer_threshold, winter_threshold=args.winter_threshold,
                       sar_std_min=args.sar_std_min, sar_max_min=args.sar_max_min,
                       display_max=args.display_max, size=args.size)
    s = curate(args.data, args.out, cfg, workers=max(1, args.workers), link=args.link)
    rejected = ", ".join(f"{k} {v}" for k, v in s.rejected.items()) or "none"
    print(f"kept {s.kept} of {s.total} triplets (rejected: {rejected}); report in {s.out_dir}")
    return 0
