"""The EVALUATION.md protocol on the real 31UDS series (few targets to stay fast)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sentinel_densify.core import cli, metrics
from sentinel_densify.core import methods as registry
from sentinel_densify.core.dates import from_days
from sentinel_densify.core.evaluate import (
    FORECAST,
    GAP,
    evaluate,
    format_table,
    inputs_for,
    target_indices,
)
from sentinel_densify.core.reader import load_stack

METHODS = ["linear", "nearest", "persistence"]
GAPS = (0, 10, 30)
LEADS = (5, 15, 30, 60)


def _files(uds_dir):
    return (sorted(str(p) for p in (uds_dir / "S2").glob("*_L2A_10m.tif")),
            sorted(str(p) for p in (uds_dir / "S1").glob("*.tif")),
            sorted(str(p) for p in (uds_dir / "S2").glob("*_SCL_20m.tif")))


@pytest.fixture(scope="module")
def stack(uds_dir):
    s2, s1, masks = _files(uds_dir)
    return load_stack(s2=s2, s1=s1, masks=masks)


@pytest.fixture(scope="module")
def report(stack):
    return evaluate(stack, METHODS, gaps=GAPS, leads=LEADS, max_targets=3)


def _summary(report, task, days, method):
    hits = [s for s in report["summary"] if (s["task"], s["days"], s["method"]) == (task, days, method)]
    assert len(hits) == 1, (task, days, method)
    return hits[0]


def test_targets_are_the_clear_acquisitions(stack):
    clear = stack.valid.reshape(len(stack.s2_days), -1).mean(1)
    idx = target_indices(stack)
    assert idx.size >= 3
    assert np.all(clear[idx] >= 0.99)
    assert np.all(np.delete(clear, idx) < 0.99)
    few = target_indices(stack, max_targets=3)
    assert few.size == 3 and set(few) <= set(idx)
    assert few[0] == idx[0] and few[-1] == idx[-1]  # evenly spaced over the whole list
    # restricted to some dates (a model's test months, --heldout), max_targets picks among those dates
    iso = [from_days(float(stack.s2_days[t])).date().isoformat() for t in idx]
    chosen = set(iso[1:3])
    assert list(target_indices(stack, max_targets=1, dates=chosen)) == [idx[1]]
    assert list(target_indices(stack, dates=chosen)) == list(idx[1:3])


def test_every_metric_present_and_finite(report):
    assert len(report["targets"]) == 3
    keys = metrics.METRICS + ["gap_days", "gap_days_min", "filled"]
    expected = {(GAP, float(g), m) for g in GAPS for m in METHODS if m != "persistence"}
    expected |= {(FORECAST, float(lead), m) for lead in LEADS for m in METHODS}
    assert {(s["task"], s["days"], s["method"]) for s in report["summary"]} == expected
    for s in report["summary"]:
        assert s["n_targets"] >= 1
        for k in keys:
            assert s[k] is not None and np.isfinite(s[k]), (s["task"], s["days"], s["method"], k)
    for r in report["rows"]:
        for k in keys:
            assert r[k] is not None and np.isfinite(r[k]), (r, k)
        assert 0 < r["filled"] <= 1 and r["n_pixels"] > 0
    json.dumps(report, allow_nan=False)  # strict JSON


def test_linear_versus_nearest(report):
    """On 31UDS: at G = 0 linear has the better spectral angle; with longer gaps linear wins clearly
    (measured on all 8 targets: G = 10 28.1 vs 25.7 dB, G = 30 26.4 vs 24.6 dB)."""
    for g in (10.0, 30.0):
        lin, near = _summary(report, GAP, g, "linear"), _summary(report, GAP, g, "nearest")
        assert lin["psnr"] > near["psnr"] and lin["rmse"] < near["rmse"], g
    assert _summary(report, GAP, 0.0, "linear")["sam"] < _summary(report, GAP, 0.0, "nearest")["sam"]


def test_forecasting_rows_and_persistence(report):
    for lead in LEADS:
        rows = [r for r in report["rows"] if r["task"] == FORECAST and r["days"] == float(lead)]
        assert {r["method"] for r in rows} == set(METHODS)
        for r in rows:
            assert r["gap_days_min"] >= lead - 0.5
    assert not [r for r in report["rows"] if r["task"] == GAP and r["method"] == "persistence"]
    # with only the past left, interpolation degenerates to persistence: any future S2 leaking
    # into the forecasting inputs would make linear differ from it
    for lead in LEADS:
        lin = _summary(report, FORECAST, float(lead), "linear")
        pers = _summary(report, FORECAST, float(lead), "persistence")
        assert lin["psnr"] == pytest.approx(pers["psnr"]) and lin["sam"] == pytest.approx(pers["sam"])
    # longer leads are harder for the persistence baseline
    assert _summary(report, FORECAST, 60.0, "persistence")["psnr"] < \
        _summary(report, FORECAST, 5.0, "persistence")["psnr"]


def test_gaps_leave_no_observation_within_g(report):
    for r in report["rows"]:
        if r["task"] == GAP:
            assert r["gap_days_min"] > r["days"]
    g0 = _summary(report, GAP, 0.0, "linear")
    g30 = _summary(report, GAP, 30.0, "linear")
    assert g30["gap_days"] > g0["gap_days"] and g30["psnr"] < g0["psnr"]


def test_hidden_date_never_reaches_the_method(stack, report, monkeypatch):
    """A real linear method that records what it is given: prepare/predict only ever see the
    reduced inputs, and its prediction is not the hidden truth."""
    seen = []

    def spy(device="auto"):
        inner = registry.create("linear", device)
        prepare, predict = inner.prepare, inner.predict

        def rec_prepare(s):
            seen.append(("prepare", s.s2_days.copy(), s.s1_days.copy()))
            return prepare(s)

        def rec_predict(s, day):
            seen.append(("predict", s.s2_days.copy(), s.s1_days.copy(), day))
            return predict(s, day)

        inner.prepare, inner.predict = rec_prepare, rec_predict
        return inner

    registry.available()  # load the baselines before patching the registry
    monkeypatch.setitem(registry._REGISTRY, "spy", spy)
    rep = evaluate(stack, ["spy"], gaps=(0,), leads=(15,), max_targets=2)
    days = [float(stack.s2_days[t]) for t in target_indices(stack, max_targets=2)]
    predicts = [s for s in seen if s[0] == "predict"]
    assert len(predicts) == 4 and len([s for s in seen if s[0] == "prepare"]) == 4
    for i, (_, s2_days, s1_days, day) in enumerate(predicts):
        assert day in days
        if i % 2 == 0:  # gap-filling G=0: the target gone, all S1 kept
            assert np.abs(s2_days - day).min() > 0.5
            assert len(s2_days) == len(stack.s2_days) - 1
            assert len(s1_days) == len(stack.s1_days)
        else:  # forecasting L=15: nothing later than 15 days before
            assert s2_days.max() <= day - 14.5 and s1_days.max() <= day - 14.5
    for r in rep["rows"]:
        assert r["rmse"] > 0.005 and r["psnr"] < 60  # not the truth itself
    # and the reduced stack of the first target really differs from the truth there
    t = target_indices(stack, max_targets=2)[0]
    inputs = inputs_for(stack, float(stack.s2_days[t]), GAP, 0)
    mean, _ = registry.create("linear").predict(inputs, float(stack.s2_days[t]))
    ok = stack.valid[t] & np.isfinite(mean).all(0)
    assert np.abs(mean[:, ok] - stack.s2[t][:, ok]).mean() > 0.005


def test_format_table(report):
    table = format_table(report)
    assert "Gap-filling" in table and "Forecasting" in table
    lines = [ln for ln in table.splitlines() if ln.startswith("| ")]
    assert len(lines) == 2 + len(GAPS) * 2 + len(LEADS) * 3  # two headers + one line per summary row
    lin = _summary(report, GAP, 0.0, "linear")
    assert f"| 0 | linear | 3 | {lin['psnr']:.2f} |" in table


def test_cli_writes_reports(uds_dir, tmp_path, capsys):
    s2, s1, masks = _files(uds_dir)
    out = tmp_path / "eval"
    rc = cli.main(["evaluate", "--s2", *s2, "--s1", *s1, "--mask", *masks, "--max-targets", "1",
                   "--gaps", "0", "--leads", "15", "--out", str(out)])
    assert rc == 0
    assert sorted(p.name for p in out.iterdir()) == ["report.json", "report.md"]  # no partial files
    rep = json.loads((out / "report.json").read_text())
    assert {s["method"] for s in rep["summary"]} == set(METHODS)
    assert len(rep["targets"]) == 1
    md = (out / "report.md").read_text()
    assert "| 0 | linear | 1 |" in md and "| 15 | persistence | 1 |" in md
    assert "| 0 | linear | 1 |" in capsys.readouterr().out


def test_cli_unknown_method_is_a_message(uds_dir, tmp_path, capsys):
    s2, s1, masks = _files(uds_dir)
    rc = cli.main(["evaluate", "--s2", *s2[:20], "--s1", *s1[:20], "--mask", *masks[:20],
                   "--methods", "linear,no_such_method", "--out", str(tmp_path / "x")])
    assert rc == 1
    assert "no_such_method" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_cli_nothing_scored_is_a_message_not_an_empty_report(uds_subset, tmp_path, capsys):
    """One S2 image: every task hides it and is skipped; evaluate says why instead of writing an empty report."""
    s2 = uds_subset["s2"][10]
    out = tmp_path / "eval"
    rc = cli.main(["evaluate", "--s2", str(s2), "--s1", *map(str, uds_subset["s1"]), "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 1 and not out.exists()
    assert (f"densify evaluate: Bad input: nothing to evaluate in {s2.name} (1 S2 acquisition): every task was "
            "skipped: no S2 acquisition left in the inputs") in err
    assert "Traceback" not in err


def test_cli_nothing_scored_says_which_tasks_were_skipped_and_why_the_rest_scored_nothing(uds_subset, tmp_path,
                                                                                           capsys):
    """Second audit: persistence (forecasts only) with gaps alone, one of them too long for the series: the message
    said "every task was skipped" though the short gaps ran; it says how many were skipped and that persistence scores
    forecasts only."""
    s2 = [str(p) for p in uds_subset["s2"][:6]]
    s1 = [str(p) for p in uds_subset["s1"][:3]]
    rc = cli.main(["evaluate", "--s2", *s2, "--s1", *s1, "--methods", "persistence", "--gaps", "0,400", "--leads=",
                   "--max-targets", "1", "--out", str(tmp_path / "eval")])
    err = capsys.readouterr().err
    assert rc == 1 and not (tmp_path / "eval").exists()
    assert ("1 of 2 tasks were skipped: no S2 acquisition left in the inputs; persistence is scored for forecasting "
            "only, and --leads is empty") in err, err


def test_cli_heldout_folds_nothing_scored_whatever_their_order(uds_dir, tmp_path, capsys):
    """Second audit: with several folds only the last fold's skipped tasks were kept, so one order of the folds
    said "no S2 acquisition is at least 99 % clear in the test months" (false: one was, its tasks had no inputs)."""
    import shutil

    from sentinel_densify.core.model_contract import read_contract, write_contract

    model = registry.default_model()
    if model is None:
        pytest.skip("no bundled model")
    contract = read_contract(model)
    training = contract["training"]
    months = set(training["holdout"]["months"])
    s2 = sorted((uds_dir / "S2").glob("*_L2A_10m.tif"))
    stack = load_stack([str(p) for p in s2])
    clear = [from_days(float(stack.s2_days[i])).date().isoformat() for i in target_indices(stack)]
    day = next(d for d in clear if d[:7] in months)  # a protocol target in the model's test months
    one = [str(p) for p in s2 if day.replace("-", "") in p.name]
    s1 = [str(p) for p in sorted((uds_dir / "S1").glob("*.tif"))[:3]]
    a, b = shutil.copy(model, tmp_path / "a.onnx"), shutil.copy(model, tmp_path / "b.onnx")
    write_contract(b, {**contract, "training": {**training, "holdout": {**training["holdout"], "months": ["2030-01"]}}})
    for order in ((a, b), (b, a)):
        rc = cli.main(["evaluate", "--s2", *one, "--s1", *s1, "--heldout", "--methods", ",".join(map(str, order)),
                       "--gaps", "0",
                       "--leads", "15", "--out", str(tmp_path / "eval")])
        err = capsys.readouterr().err
        assert rc == 1 and "every task was skipped: no S2 acquisition left in the inputs" in err, (order, err)


def test_cli_heldout_without_a_model_is_refused_before_reading(tmp_path, capsys):
    out = tmp_path / "eval"
    assert cli.main(["evaluate", "--s2", str(tmp_path / "none"), "--s1", str(tmp_path / "none"), "--heldout",
                     "--methods", "linear,nearest", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "--heldout" in err and ".onnx" in err and not out.exists()


def test_evaluate_shows_the_inventorys_warnings(uds_subset, tmp_path, capsys):
    """S2 without their SCL masks: every pixel counts as clear, and evaluate says so (as run does)."""
    from sentinel_densify.core import cli

    argv = ["evaluate", "--s2", *map(str, uds_subset["s2"]), "--s1", *map(str, uds_subset["s1"]),
            "--methods", "linear", "--gaps", "10", "--leads", "5", "--max-targets", "1", "--out", str(tmp_path / "e")]
    assert cli.main(argv) == 0
    err = capsys.readouterr().err
    assert "densify evaluate: warning: no cloud masks given: every valid S2 pixel counts as clear" in err


def _evaluate_args(uds_subset, out) -> list[str]:
    """A small evaluation: 8 S2 acquisitions without masks, linear only, one target."""
    return ["evaluate", "--s2", *map(str, uds_subset["s2"][:8]), "--s1", *map(str, uds_subset["s1"]),
            "--methods", "linear", "--gaps", "10", "--leads", "5", "--max-targets", "1", "--out", str(out)]


def test_cli_table_on_a_stdout_without_sigma_still_writes_the_reports(densify, uds_subset, tmp_path):
    """Windows writes a redirected stdout in cp1252, which has no "σ" (the table's "cov 1σ"): the run ended with a
    UnicodeEncodeError traceback and no report. The character is escaped instead."""
    import os
    import subprocess

    out = tmp_path / "eval"
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", GDAL_PAM_ENABLED="NO", PYTHONIOENCODING="cp1252")
    env.pop("PYTHONUTF8", None)
    proc = subprocess.run(densify.command + _evaluate_args(uds_subset, out), capture_output=True, env=env,
                          timeout=300)
    stdout, stderr = proc.stdout.decode("cp1252"), proc.stderr.decode("cp1252")
    assert proc.returncode == 0 and "Traceback" not in stderr, stderr
    assert sorted(p.name for p in out.iterdir()) == ["report.json", "report.md"]
    assert "cov 1\\u03c3" in stdout and "cov 1σ" in (out / "report.md").read_text(encoding="utf-8")


def test_cli_writes_the_reports_before_printing_the_table(uds_subset, tmp_path, monkeypatch):
    """A stdout that cannot show the table (and cannot be reconfigured) fails only after the reports are written."""
    class Cp1252Console:
        def write(self, text: str) -> int:
            text.encode("cp1252")  # strict: UnicodeEncodeError on "σ"
            return len(text)

        def flush(self) -> None:
            pass

    monkeypatch.setattr("sys.stdout", Cp1252Console())
    out = tmp_path / "eval"
    with pytest.raises(UnicodeEncodeError):
        cli.main(_evaluate_args(uds_subset, out))
    assert sorted(p.name for p in out.iterdir()) == ["report.json", "report.md"]
