"""`densify make-pairs`: training triplets (SEN12MS-CR layout) from S1 + S2 time series."""

from __future__ import annotations

import argparse
from collections import Counter

from .pairs import load_series, make_pairs


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--s2", nargs="+", required=True,
                   help="S2 files or folders (SCL masks found in them are paired)")
    p.add_argument("--s1", nargs="+", required=True, help="S1 files or folders (VV, VH)")
    p.add_argument("--mask", nargs="*", default=[], help="cloud masks (SCL, binary or probability)")
    p.add_argument("--out", required=True, help="output dataset folder")
    p.add_argument("--patch", type=int, default=64, help="patch size in pixels (default 64)")
    p.add_argument("--max-days", type=float, default=30.0,
                   help="max days between a cloudy image and its clear target (default 30)")
    p.add_argument("--synthetic-per-clear", type=int, default=8,
                   help="clouds of other dates composited onto each clear image (default 8; 0: none)")
    p.add_argument("--clear-min", type=float, default=0.95,
                   help="fraction of clear pixels for an acquisition to be a clear target (default 0.95)")
    p.add_argument("--seed", type=int, default=0)


def main(args: argparse.Namespace) -> int:
    series = load_series(args.s2, args.s1, args.mask)
    rows = make_pairs(series, args.out, patch=args.patch, max_days=args.max_days,
                      synthetic_per_clear=args.synthetic_per_clear, clear_min=args.clear_min,
                      seed=args.seed)
    kinds = Counter(r.kind for r in rows)
    print(f"wrote {len(rows)} triplets ({kinds['real']} real, {kinds['synthetic']} synthetic) to {args.out}")
    return 0
