"""`densify demo`: the main job on the shared data (or a synthetic scene), with a PNG quick-look."""

from __future__ import annotations

import argparse
import datetime as dt
import os
from pathlib import Path

import numpy as np

from .dates import parse_date, to_days
from .errors import InputError, Problem
from .progress import Feedback

REAL_SERIES = "worldcereal-31UDS-2017"
CLEAR_ENOUGH = 0.9  # clear fraction of an acquisition shown as "before"/"after"


def default_data() -> Path | None:
    """The real series in <repo>/../shared/data (or $DENSIFY_SHARED/data), if present."""
    root = Path(__file__).resolve().parent.parent
    shared = Path(os.environ.get("DENSIFY_SHARED", root.parent / "shared"))
    path = shared / "data" / REAL_SERIES
    return path if (path / "S2").is_dir() else None


def series_inputs(data: Path) -> tuple[list[str], list[str]]:
    """S2 and S1 inputs of a series folder laid out as S2/ and S1/ (or S2 files only)."""
    if not data.is_dir():
        raise InputError(Problem(str(data), "is a file, not a data folder" if data.exists() else
                                 "data folder does not exist"))
    s2 = data / "S2" if (data / "S2").is_dir() else data
    s1 = [str(data / "S1")] if (data / "S1").is_dir() else []
    return [str(s2)], s1


def clear_fractions(s2: list[str], s1: list[str]) -> tuple[list[dt.datetime], np.ndarray, list[str]]:
    """Acquisition times, clear fraction (from the paired masks) and paths of the S2 inputs."""
    from . import inventory
    from .reader import read_clear_fraction

    inv = inventory.build(s2, s1)
    fractions = np.array([read_clear_fraction(inv, info, max_size=64) for info in inv.s2])
    return [info.when for info in inv.s2], fractions, [info.path for info in inv.s2]


def choose_target(times: list[dt.datetime], clear: np.ndarray) -> dt.date:
    """A cloudy S2 date inside the series with clear images on both sides, mid-summer preferred."""
    n = len(times)
    if n < 3:
        return (times[0] + (times[-1] - times[0]) / 2).date()
    good = clear >= min(CLEAR_ENOUGH, float(clear.max()))
    cands = [i for i in range(1, n - 1) if clear[i] < 0.5 and good[:i].any() and good[i + 1:].any()]
    if not cands:
        cands = list(range(1, n - 1))
    summer = [i for i in cands if times[i].month in (6, 7, 8)]
    pool = summer or cands

    def key(i: int) -> tuple[float, float]:
        mid = dt.datetime(times[i].year, 7, 15, tzinfo=times[i].tzinfo)
        return (round(float(clear[i]), 2), abs((times[i] - mid).total_seconds()))

    return times[min(pool, key=key)].date()


def neighbours(times: list[dt.datetime], clear: np.ndarray, paths: list[str],
               target: dt.date) -> tuple[str | None, str | None]:
    """The nearest clear-enough S2 acquisition strictly before and after the target day."""
    day = to_days(target)
    days = np.array([to_days(t.date()) for t in times])
    good = clear >= min(CLEAR_ENOUGH, float(clear.max()))
    before = [i for i in range(len(times)) if days[i] < day and good[i]]
    after = [i for i in range(len(times)) if days[i] > day and good[i]]
    return (paths[before[-1]] if before else None, paths[after[0]] if after else None)


def run_demo(out: str | Path, data: str | Path | None = None, date: dt.date | None = None,
             method: str = "default", feedback: Feedback | None = None, scene_size: int = 256) -> dict:
    """Run the main job on `data` (real series by default, else a synthetic scene) and draw a quick-look.

    Returns {"result": DensifyResult, "quicklook": path, "data": folder, "before": ..., "after": ...}.
    """
    from .engine import run
    from .quicklook import quicklook
    from .request import DensifyRequest

    out = Path(out)
    if data is None:
        data = default_data()
        if data is None:
            from .simulate import simulate_scene

            data = out / "scene"
            if not (data / "index.json").exists():
                simulate_scene(data, size=scene_size, n_s2=20, n_s1=30, seed=0)
    data = Path(data)
    s2, s1 = series_inputs(data)
    times, clear, paths = clear_fractions(s2, s1)
    target = date or choose_target(times, clear)
    before, after = neighbours(times, clear, paths, target)
    request = DensifyRequest(s2=s2, s1=s1, target_date=target, out_dir=str(out), method=method)
    result = run(request, feedback)
    png = quicklook(out / f"quicklook_{target:%Y%m%d}.png", result.outputs["synthesized"],
                    result.outputs["uncertainty"], result.outputs.get("lai"), before, after,
                    title=f"{data.name}: {result.mode} at {target:%Y-%m-%d} with {result.method}")
    return dict(result=result, quicklook=str(png), data=str(data), before=before, after=after)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--data", metavar="DIR",
                        help=f"series folder with S2/ and S1/ (default: shared/data/{REAL_SERIES} when "
                             "present, else a synthetic scene simulated into DIR/scene)")
    parser.add_argument("--date", help="target date YYYY-MM-DD (default: a cloudy mid-summer S2 date)")
    parser.add_argument("--model", default="default", help="method name or model file")


def main(args: argparse.Namespace) -> int:
    from .cli import print_warnings
    from .cmd_run import progress_bar
    from .engine import describe_outputs

    try:
        target = parse_date(args.date) if args.date else None
    except ValueError as exc:
        raise InputError(str(exc)) from None
    feedback, close = progress_bar("demo")
    try:
        demo = run_demo(args.out, args.data, target, args.model, feedback)
    finally:
        close()
    print(f"data: {demo['data']}")
    print(describe_outputs(demo["result"], warnings=False))
    print(f"  quick-look: {demo['quicklook']}")
    print_warnings("demo", feedback.unshown(demo["result"].warnings))  # as `densify run`: warnings on stderr
    return 0
