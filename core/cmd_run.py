"""`densify run`: synthesized S2, uncertainty and LAI at a target date."""

from __future__ import annotations

import argparse
import sys

from .dates import parse_date
from .errors import InputError
from .progress import Feedback
from .request import DensifyRequest


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--s2", nargs="+", required=True, metavar="PATH",
                   help="S2 L2A rasters or folders (searched recursively; SCL files found there are used as masks)")
    p.add_argument("--s1", nargs="*", default=[], metavar="PATH", help="S1 GRD VV/VH rasters or folders")
    p.add_argument("--mask", nargs="*", default=[], metavar="PATH",
                   help="SCL rasters, binary cloud masks or cloud probabilities, or folders")
    p.add_argument("--date", required=True, help="target date YYYY-MM-DD (inside, before or after the series)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--model", default="default",
                   help="method name (default, linear, nearest, persistence) or a model file (.onnx)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--band-order", help="comma-separated band names of the S2 files when not described")
    p.add_argument("--no-lai", action="store_true", help="do not compute LAI")
    p.add_argument("--tile-size", type=int, default=512, help="processing tile size in pixels")


def progress_bar(enabled: bool | None = None) -> tuple[Feedback, callable]:
    """A Feedback drawing a tqdm bar on a terminal (silent otherwise) and its closer."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return Feedback(), lambda: None
    from tqdm import tqdm

    bar = tqdm(total=100, unit="%", bar_format="{l_bar}{bar}| {n:.0f}% [{elapsed}<{remaining}] {postfix}")

    def progress(pct: float, msg: str) -> None:
        bar.n = pct
        bar.set_postfix_str(msg, refresh=False)
        bar.refresh()

    return Feedback(progress), bar.close


def main(args: argparse.Namespace) -> int:
    from .engine import describe_outputs, run

    try:
        target = parse_date(args.date)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    request = DensifyRequest(
        s2=args.s2, s1=args.s1, masks=args.mask, target_date=target, out_dir=args.out, method=args.model,
        device=args.device, lai=not args.no_lai, tile_size=args.tile_size,
        band_order=args.band_order.split(",") if args.band_order else None)
    feedback, close = progress_bar()
    try:
        result = run(request, feedback)
    finally:
        close()
    print(describe_outputs(result))
    return 0
