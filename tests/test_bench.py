"""bench/bench.py on a tiny synthetic scene: per-child measurements and a strict JSON report."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _bench_module():
    spec = importlib.util.spec_from_file_location("bench", ROOT / "bench" / "bench.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tiny_bench_measures_each_run_and_writes_strict_json(tmp_path, capsys):
    bench = _bench_module()
    model = ROOT / "models" / "default.onnx"
    methods = "linear" + (f",{model}" if model.exists() else "")
    assert bench.main(["--sizes", "32", "--methods", methods, "--out", str(tmp_path), "--series", "3",
                       "--device", "cpu"]) == 0
    report = json.loads((tmp_path / "bench.json").read_text(), parse_constant=lambda c: 1 / 0)  # no NaN
    rows = report["results"]
    assert [(r["method"], r["dates"]) for r in rows] == [(m, n) for m in methods.split(",") for n in (1, 3)]
    for r in rows:
        assert r["seconds"] > 0 and 0 < r["cpu_seconds"] and 50 < r["peak_rss_mib"] < 4000, r
        assert r["seconds_per_date"] == round(r["seconds"] / r["dates"], 2)
    assert rows[0]["method_used"] == "linear (numpy)" and {r["device"] for r in rows} == {"cpu"}
    assert report["machine"]["gpu"] == bench.gpu_name()  # None without nvidia-smi (here)
    runs = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("run_"))
    labels = ["linear"] + (["default"] if model.exists() else [])
    assert runs == sorted([f"run_32_{m}" for m in labels] + [f"run_32_{m}_series3" for m in labels])
    series = sorted(p.name for p in (tmp_path / "run_32_linear_series3").glob("synthesized_*.tif"))
    first = bench.target_date(json.loads((tmp_path / "scene_32" / "index.json").read_text()))
    assert series == [f"synthesized_{d:%Y%m%d}.tif" for d in bench.series_dates(first, 3)]
    assert "linear series of 3, per date/one date@32" in report["time_ratios"]
    if model.exists():
        assert rows[2]["method_used"].startswith("onnx:default") and "models/default.onnx/linear@32" in str(
            report["time_ratios"])
    assert "time ratio" in capsys.readouterr().out or not model.exists()
