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
    assert bench.main(["--sizes", "32", "--methods", methods, "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "bench.json").read_text(), parse_constant=lambda c: 1 / 0)  # no NaN
    rows = report["results"]
    assert [r["method"] for r in rows] == methods.split(",")
    for r in rows:
        assert r["seconds"] > 0 and 0 < r["cpu_seconds"] and 50 < r["peak_rss_mib"] < 4000, r
    assert rows[0]["method_used"] == "linear (numpy)"
    runs = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("run_"))
    assert runs == sorted(["run_32_linear"] + (["run_32_default"] if model.exists() else []))
    if model.exists():
        assert rows[1]["method_used"].startswith("onnx:default") and "models/default.onnx/linear@32" in str(
            report["time_ratios"])
    assert "time ratio" in capsys.readouterr().out or not model.exists()
