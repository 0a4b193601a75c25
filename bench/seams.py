"""Seams between processing windows: `densify run` in tiles of --tile-size px against one window covering the
whole raster, and the mean |step| of their difference image across the windows' edges against elsewhere.

    python bench/seams.py --s2 S2 --s1 S1 --date 2021-05-15 --tile-size 256 [--model default] [--out DIR]

(rasters up to 2048 px, the largest tile size: the one window covers the whole raster.)

Windows that disagree where they meet (each chose its own dates) make the difference image step between the
rows (columns) either side of their edges, which lie at k * tile + the outputs' WINDOW_BLEND tag; elsewhere it
varies smoothly. Steps are means over the bands and the other axis, in DN; the report also gives the mean
|difference| (how much the tiling changes the pixels anywhere). JSON on stdout.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import _densify  # noqa: E402  (bench/bench.py, beside this file)


def _run(args, tile: int, out: Path) -> tuple[np.ndarray, dict]:
    """The synthesized image of one `densify run` in tiles of `tile` px (float64 DN) and its tags."""
    import rasterio

    cmd = [_densify(), "run", "--s2", *args.s2, *(["--s1", *args.s1] if args.s1 else []), "--date", args.date,
           "--out", str(out), "--model", args.model, "--device", args.device, "--tile-size", str(tile), "--no-lai"]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    path = next(out.glob("synthesized_*.tif"))
    with rasterio.open(path) as ds:
        return ds.read().astype(np.float64), ds.tags()


def steps(diff: np.ndarray, tile: int, shift: int) -> dict:
    """Mean |step| of a (B, h, w) difference image between the rows (columns) either side of the windows'
    edges (at k * tile + shift) and the median step between other neighbouring rows (columns)."""
    report = {}
    for name, axis in (("rows", 1), ("cols", 2)):
        step = np.nanmean(np.abs(np.diff(diff, axis=axis)), axis=tuple(a for a in (0, 1, 2) if a != axis))
        edges = list(range(tile + shift, diff.shape[axis], tile))
        report[name] = {"edges": edges, "step_at_edges": [round(float(step[e - 1]), 2) for e in edges],
                        "median_step_elsewhere": round(float(np.median(np.delete(step, [e - 1 for e in edges]))), 2)}
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--s2", nargs="+", required=True)
    p.add_argument("--s1", nargs="*", default=[])
    p.add_argument("--date", required=True)
    p.add_argument("--tile-size", type=int, required=True)
    p.add_argument("--model", default="default")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", help="keep the two runs' outputs here (default: a temporary folder)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or tmp)
        tiled, tags = _run(args, args.tile_size, out / "tiled")
        whole = max(tiled.shape[1:])
        one, _ = _run(args, whole, out / "one_window")
    diff = tiled - one
    blend = int(tags.get("WINDOW_BLEND", 0))  # none before the windows were blended (and none for per-pixel methods)
    report = {"tile_size": args.tile_size, "one_window": whole, "method": tags.get("METHOD"), "window_blend": blend,
              **steps(diff, args.tile_size, blend),
              "mean_abs_difference": round(float(np.nanmean(np.abs(diff))), 2)}
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
