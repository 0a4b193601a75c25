"""`densify run`: synthesized S2, uncertainty and LAI at a target date."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

from .atomic import OutputError, same_file
from .cli import add_extent_arguments, extent_of
from .dates import every as dates_every
from .dates import parse_date
from .errors import InputError
from .grid import DEFAULT_TILE_SIZE, MAX_TILE_SIZE, MIN_TILE_SIZE, WINDOW_BYTES
from .progress import Feedback
from .request import DensifyRequest


def tile_size(text: str) -> int:
    """argparse type: a tile size of MIN_TILE_SIZE to MAX_TILE_SIZE pixels."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number of pixels") from None
    if value < MIN_TILE_SIZE:
        raise argparse.ArgumentTypeError(f"{value} is below the minimum of {MIN_TILE_SIZE} pixels")
    if value > MAX_TILE_SIZE:
        raise argparse.ArgumentTypeError(f"{value} is above the maximum of {MAX_TILE_SIZE} pixels (memory grows "
                                         "with the square of the tile size; larger tiles are not faster)")
    return value


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--s2", nargs="+", required=True, metavar="PATH",
                   help="S2 L2A rasters or folders (searched recursively; SCL files found there are used as masks)")
    p.add_argument("--s1", nargs="*", default=[], metavar="PATH", help="S1 GRD VV/VH rasters or folders")
    p.add_argument("--mask", nargs="*", default=[], metavar="PATH",
                   help="SCL rasters, binary cloud masks or cloud probabilities, or folders")
    p.add_argument("--date", required=True, nargs="+", metavar="YYYY-MM-DD",
                   help="target date(s) (inside, before or after the series); several dates are computed in one "
                        "run, reading the inputs once")
    p.add_argument("--every", type=positive_days, metavar="DAYS",
                   help="with two --date values: every DAYS days from the first to the second (e.g. --date "
                        "2018-04-01 2018-09-30 --every 5)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--model", default="default",
                   help="method name (default, linear, nearest, persistence, linear-haze) or a model file (.onnx)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--band-order", help="comma-separated band names of the S2 files when not described")
    p.add_argument("--no-lai", action="store_true", help="do not compute LAI")
    add_extent_arguments(p, "the whole grid of the earliest S2 image")
    p.add_argument("--tile-size", type=tile_size, default=None,
                   help=f"processing tile size in pixels ({MIN_TILE_SIZE} to {MAX_TILE_SIZE}; default: "
                        f"{DEFAULT_TILE_SIZE}, smaller for a series so long that a window of it would hold more than "
                        f"{WINDOW_BYTES >> 20} MiB)")


def positive_days(text: str) -> int:
    """argparse type: a whole number of days, 1 or more."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number of days") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value}: the step is at least 1 day")
    return value


def target_dates(texts: list[str], every: int | None) -> list[dt.date]:
    """The dates of --date (and --every), sorted, each once; InputError naming a bad one."""
    try:
        given = [parse_date(t) for t in texts]
    except ValueError as exc:
        raise InputError(str(exc)) from None
    if every is None:
        return sorted(set(given))
    if len(given) != 2 or given[1] < given[0]:
        raise InputError("--every needs two --date values, the first date and the last (not before the first)")
    return dates_every(*given, every)


def progress_bar(command: str, enabled: bool | None = None) -> tuple[Feedback, callable]:
    """A Feedback drawing a tqdm bar on a terminal (silent otherwise), which prints the warnings it is given at once
    on stderr ("densify COMMAND: warning: ...", above the bar), and its closer."""
    from .cli import print_warnings

    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return Feedback(warn=lambda w: print_warnings(command, [w])), lambda: None
    from tqdm import tqdm

    bar = tqdm(total=100, unit="%", bar_format="{l_bar}{bar}| {n:.0f}% [{elapsed}<{remaining}] {postfix}")

    def progress(pct: float, msg: str) -> None:
        bar.n = pct
        bar.set_postfix_str(msg, refresh=False)
        bar.refresh()

    def warn(warning: str) -> None:
        with bar.external_write_mode(file=sys.stderr):
            print_warnings(command, [warning])

    return Feedback(progress, warn=warn), bar.close


def replaced_input(request: DensifyRequest, path: Path) -> str | None:
    """The input that writing `path` would replace: an input file given as such, or one found in an
    input folder unless it is a Densify output (those are skipped there, see `inventory.build`)."""
    if not path.is_file():
        return None
    from .inventory import describe, find_rasters  # reads rasters: not at `densify --help`

    for given in [*request.s2, *request.s1, *request.masks]:
        if Path(given).is_dir():
            found, _missing = find_rasters(given)
            hit = next((f for f in found if same_file(f, path)), None)
            if hit is not None and not describe(path).output_kind:
                return hit
        elif same_file(given, path):
            return given
    return None


def check_outputs(request: DensifyRequest) -> None:
    """Raise OutputError ("--out DIR: problem") when an output of `request` cannot be written in
    --out or would replace one of its inputs; cheap, run before any computation."""
    paths = [request.output_path(k) for k in request.kinds()]
    if problem := request.output_folder_problem():
        raise OutputError(f"--out {request.out_dir}: {problem}")
    for path in paths:
        if (clash := replaced_input(request, path)) is not None:
            raise OutputError(f"--out {request.out_dir}: writing {path.name} would replace the input {clash}")


def main(args: argparse.Namespace) -> int:
    from .cli import print_warnings
    from .engine import describe_outputs, run_series, series_requests

    when = target_dates(args.date, args.every)
    extent, extent_crs = extent_of(args)
    request = DensifyRequest(
        s2=args.s2, s1=args.s1, masks=args.mask, target_date=when[0], out_dir=args.out, method=args.model,
        device=args.device, lai=not args.no_lai, tile_size=args.tile_size,
        band_order=args.band_order.split(",") if args.band_order else None,
        extent=extent, extent_crs=extent_crs)
    requests = series_requests(request, when)
    for r in requests:
        check_outputs(r)
    feedback, close = progress_bar("run")
    try:
        results = run_series(requests, feedback)  # a failure leaves no folder it made
    finally:
        close()
    for result in results:
        print(describe_outputs(result, warnings=False, seconds=len(results) == 1))  # warnings: on stderr
    if len(results) > 1:
        print(f"{len(results)} dates in {results[0].seconds:.1f} s")
    print_warnings("run", feedback.unshown(w for result in results for w in result.warnings))
    return 0
