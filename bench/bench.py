"""`make bench`: throughput and peak memory of `densify run` on growing synthetic scenes.

For each size, a scene of 20 S2 + 30 S1 dates is simulated into bench_out/scene_<size> (reused
when present), then `densify run` synthesizes one target date in a child process whose wall time
and peak RSS are measured. With --series N, each method also runs a series of N dates (10 days
apart, one `densify run`) on the smallest scene: its time per date against one date's. --device is
`densify run`'s (auto: the model on CUDA where a GPU and the provider are there; the method column says
which provider ran, the report names the GPU). Results: bench_out/bench.json and a markdown table on stdout.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
S2_TILE_PX = 10980 * 10980  # a full Sentinel-2 tile at 10 m


def _densify() -> str:
    exe = ROOT / ".venv" / "bin" / "densify"
    return str(exe) if exe.exists() else "densify"


def ensure_scene(out: Path, size: int, n_s2: int, n_s1: int, seed: int) -> tuple[dict, float | None]:
    """The scene's index.json (simulated in a child process when missing) and the simulation time."""
    index = out / "index.json"
    seconds = None
    if not _reusable(index, size, n_s2, n_s1, seed):
        t0 = time.perf_counter()
        subprocess.run([_densify(), "simulate", "--out", str(out), "--size", str(size),
                        "--s2-dates", str(n_s2), "--s1-dates", str(n_s1), "--seed", str(seed)],
                       check=True, stdout=subprocess.DEVNULL)
        seconds = time.perf_counter() - t0
    return json.loads(index.read_text()), seconds


def _reusable(index: Path, size: int, n_s2: int, n_s1: int, seed: int) -> bool:
    """True when index.json describes a scene made by this simulator version with these parameters."""
    from sentinel_densify.core.simulate import VERSION

    if not index.exists():
        return False
    sim = json.loads(index.read_text()).get("simulator", {})
    return (sim.get("version"), sim.get("size"), sim.get("n_s2"), sim.get("n_s1"), sim.get("seed")) == \
        (VERSION, size, n_s2, n_s1, seed)


def target_date(index: dict) -> dt.date:
    """The most cloudy S2 date strictly inside the series (a gap to fill)."""
    s2 = [o for o in index["observations"] if o["sensor"] == "S2"]
    inner = s2[1:-1] or s2
    best = max(inner, key=lambda o: o.get("cloud_cover", 0.0))
    return dt.date.fromisoformat(best["datetime"][:10])


SERIES_STEP_DAYS = 10


def series_dates(first: dt.date, count: int) -> list[dt.date]:
    """count dates from first, SERIES_STEP_DAYS apart."""
    return [first + dt.timedelta(days=SERIES_STEP_DAYS * k) for k in range(count)]


def measure_run(scene: Path, out: Path, dates: list[dt.date], method: str, device: str = "auto") -> dict:
    """Wall time, CPU time and peak RSS of one `densify run` child for the dates (one run for them all),
    from the kernel's own account of that child (os.wait4: no /usr/bin/time needed, other children
    never counted)."""
    import tempfile

    cmd = [_densify(), "run", "--s2", str(scene / "S2"), "--s1", str(scene / "S1"),
           "--date", *(d.isoformat() for d in dates), "--out", str(out), "--model", method, "--device", device]
    with tempfile.TemporaryFile("w+") as stderr:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=stderr)
        _pid, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        if proc.returncode != 0:
            stderr.seek(0)
            raise RuntimeError(f"densify run failed ({proc.returncode}): {stderr.read().strip()[-2000:]}")
    return dict(seconds=wall, cpu_seconds=usage.ru_utime + usage.ru_stime,
                peak_rss_mib=usage.ru_maxrss / 1024.0,  # KiB on Linux
                method_used=_method_used(out, dates[0]))


def run_folder(out_dir: Path, size: int, method: str, dates: int = 1) -> Path:
    """bench_out/run_<size>_<method> (a model file: its name without the folders and suffix), with
    _series<N> for a series of N dates."""
    label = Path(method).stem if method.lower().endswith(".onnx") else method
    return out_dir / f"run_{size}_{label}" if dates == 1 else out_dir / f"run_{size}_{label}_series{dates}"


def _method_used(out: Path, date: dt.date) -> str:
    """What the run says it used ("default" resolves to the bundled model, else linear)."""
    import rasterio

    with rasterio.open(out / f"synthesized_{date:%Y%m%d}.tif") as ds:
        tags = ds.tags()
    return tags.get("METHOD", "?") + (f" ({tags['PROVIDER']})" if "PROVIDER" in tags else "")


def bench(sizes: list[int], methods: list[str], out_dir: Path, n_s2: int, n_s1: int, seed: int,
          series: int = 0, device: str = "auto") -> dict:
    rows = []
    for size in sizes:
        scene = out_dir / f"scene_{size}"
        index, sim_seconds = ensure_scene(scene, size, n_s2, n_s1, seed)
        date = target_date(index)
        runs = [1] + ([series] if series > 1 and size == min(sizes) else [])
        for dates, method in ((n, m) for m in methods for n in runs):
            res = measure_run(scene, run_folder(out_dir, size, method, dates), series_dates(date, dates), method,
                              device)
            mpx = size * size / 1e6 * dates
            rows.append(dict(
                size=size, method=method, device=device, method_used=res["method_used"], target_date=date.isoformat(),
                dates=dates, s2_dates=n_s2, s1_dates=n_s1,
                megapixels=mpx, seconds=round(res["seconds"], 2), cpu_seconds=round(res["cpu_seconds"], 2),
                seconds_per_date=round(res["seconds"] / dates, 2),
                peak_rss_mib=round(res["peak_rss_mib"], 1),
                mpx_per_s=round(mpx / res["seconds"], 3),
                full_tile_minutes=round(S2_TILE_PX / 1e6 / (mpx / res["seconds"]) / 60.0, 1),
                simulate_seconds=None if sim_seconds is None else round(sim_seconds, 1)))
            print(f"size {size} {method} ({dates} date(s)): {res['seconds']:.1f} s, "
                  f"peak {res['peak_rss_mib']:.0f} MiB", file=sys.stderr, flush=True)
    return report(rows, methods)


def gpu_name() -> str | None:
    """The NVIDIA GPU(s) nvidia-smi lists, or None (no driver tools)."""
    import shutil

    if not shutil.which("nvidia-smi"):
        return None
    res = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                         text=True, check=False)
    names = [n.strip() for n in res.stdout.splitlines() if n.strip()] if res.returncode == 0 else []
    return ", ".join(names) or None


def report(rows: list[dict], methods: list[str]) -> dict:
    """The report of the rows: time ratios of each method to the first one (one date), and of a series'
    time per date to one date's (same size and method)."""
    ratios = {}
    one = {(r["size"], r["method"]): r for r in rows if r["dates"] == 1}
    for r in rows:
        base = one[(r["size"], methods[0])]
        if r["dates"] == 1 and r["method"] != methods[0]:
            ratios[f"{r['method']}/{methods[0]}@{r['size']}"] = round(r["seconds"] / base["seconds"], 2)
        if r["dates"] > 1:
            single = one[(r["size"], r["method"])]["seconds"]
            ratios[f"{r['method']} series of {r['dates']}, per date/one date@{r['size']}"] = round(
                r["seconds_per_date"] / single, 2)
    return dict(
        when=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        machine=dict(platform=platform.platform(), cpus=os.cpu_count(), python=platform.python_version(),
                     gpu=gpu_name()),
        note="wall time of one run (dates: how many target dates it synthesized), including input checks, "
             "calibration, LAI and overviews; "
             "cpu_seconds = user + system of the child (wall exceeds it on a loaded machine); peak_rss_mib: "
             "the child's maximum resident set (os.wait4); "
             "full_tile_minutes extrapolates the wall rate linearly to 10980 x 10980 px",
        results=rows, time_ratios=ratios)


def markdown(report: dict) -> str:
    lines = ["| size (px) | method (used) | target | dates | wall (s) | CPU (s) | Mpx/s | peak RSS (MiB) "
             "| full S2 tile (min) |", "|---:|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in report["results"]:
        lines.append(f"| {r['size']} | {r['method']} ({r['method_used']}) | {r['target_date']} | {r['dates']} | "
                     f"{r['seconds']:.1f} | {r['cpu_seconds']:.1f} | {r['mpx_per_s']:.3f} | "
                     f"{r['peak_rss_mib']:.0f} | {r['full_tile_minutes']:.1f} |")
    for k, v in report["time_ratios"].items():
        lines.append(f"\ntime ratio {k}: {v}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="1024,2048,4096", help="comma-separated scene sizes (px)")
    p.add_argument("--methods", default="linear", help="comma-separated methods, e.g. linear,default")
    p.add_argument("--out", default=str(ROOT / "bench_out"), help="bench folder (scenes are reused)")
    p.add_argument("--s2-dates", type=int, default=20)
    p.add_argument("--s1-dates", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--series", type=int, default=0, metavar="N",
                   help=f"also a series of N dates ({SERIES_STEP_DAYS} days apart) per method on the smallest size")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="`densify run --device`: auto runs a model on CUDA where a GPU and the provider are there")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    from sentinel_densify.core.atomic import write_text

    result = bench(sizes, methods, out, args.s2_dates, args.s1_dates, args.seed, args.series, args.device)
    path = write_text(out / "bench.json", json.dumps(result, indent=1))
    print(markdown(result))
    print(f"\nwritten: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
