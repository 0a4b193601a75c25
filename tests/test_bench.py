"""bench/bench.py on a tiny synthetic scene: per-child measurements and a strict JSON report."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _bench_module(name: str = "bench"):
    """bench/<name>.py as a module."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
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


def test_seams_finds_the_windows_edges_and_measures_their_steps(uds_dir, capsys):
    """bench/seams.py on the real series in 32 px tiles: `linear` is per pixel (its tiled run is the one-window
    run: every step 0, edges at 32); the bundled model's windows meet at 40 (32 + its WINDOW_BLEND), where the
    difference image steps no more than twice as much as elsewhere (the model's blending)."""
    seams = _bench_module("seams")
    common = ["--s2", str(uds_dir / "S2"), "--date", "2018-08-29", "--tile-size", "32"]
    assert seams.main([*common, "--model", "linear"]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert plain["window_blend"] == 0 and plain["rows"]["edges"] == plain["cols"]["edges"] == [32]
    assert plain["mean_abs_difference"] == 0 and plain["rows"]["step_at_edges"] == [0]
    if not (ROOT / "models" / "default.onnx").exists():
        return
    assert seams.main([*common, "--s1", str(uds_dir / "S1")]) == 0
    model = json.loads(capsys.readouterr().out)
    assert model["method"] == "onnx:default" and model["one_window"] == 64 and model["window_blend"] == 8
    for axis in ("rows", "cols"):
        assert model[axis]["edges"] == [40]
        assert 0 < model[axis]["step_at_edges"][0] <= 2 * model[axis]["median_step_elsewhere"]
    assert model["mean_abs_difference"] > 0  # each window's choice of dates still shows away from the edges
