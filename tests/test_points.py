"""Point series (WorldCereal dekads, real file): decoding, masking, sampling and pre-training."""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
import pytest
from sentinel_densify.core.errors import InputError
from sentinel_densify.core.temporal import points as P
from sentinel_densify.core.temporal.dataset import SamplerConfig


@pytest.fixture(scope="module")
def series(points_file):
    return P.load_points(points_file)


def test_points_decode_real_rows(points_file, series):
    df = pd.read_parquet(points_file).sort_values(["sample_id", "timestamp"])
    ids = sorted(df["sample_id"].unique())
    assert len(series) == len(ids)
    raw = df[df["sample_id"] == ids[0]]
    st = series[0]
    assert st.s2.shape == (len(raw), 10, 1, 1) and np.all(np.diff(st.s2_days) > 0)
    s2 = raw[list(P.S2_COLUMNS.values())].to_numpy(np.float64)
    missing = ((s2 == 65535) | (s2 == 0)).any(axis=1)
    assert missing.any() and (~missing).any()  # this point has both cloudy and clear dekads
    np.testing.assert_array_equal(~np.isfinite(st.s2[:, 0, 0, 0]), missing)
    clear = np.flatnonzero(~missing)
    np.testing.assert_allclose(st.s2[clear, 0, 0, 0], s2[clear, 0] / 1e4, rtol=1e-6)  # B02
    np.testing.assert_array_equal(st.s2[:, 7], st.s2[:, 6])  # B8A filled from B08
    vv = raw["S1-SIGMA0-VV"].to_numpy(np.float64)
    ok = (vv > 0) & (vv < 65535)
    np.testing.assert_allclose(st.s1[:, 0, 0, 0], 20 * np.log10(vv[ok]) - 83, atol=1e-4)
    assert -30 < np.nanmean(st.s1[:, 0]) < 0 and np.nanmean(st.s1[:, 1]) < np.nanmean(st.s1[:, 0])
    assert np.isnan(P.decode_s1(np.array([65535, 0, np.nan]))).all()


def test_points_sampler_hides_target(series):
    sampler = P.PointsSampler(series[:40], SamplerConfig(k2=6, k1=4), seed=0)
    b = sampler.batch(64)
    assert b["s2"].shape == (64, 6, 10, 1, 1) and b["near"].shape == (64, 20, 1, 1)
    assert b["target_valid"].all() and np.isfinite(b["target"]).all()
    # the target date itself is never among the inputs (|dt| > half a day where valid)
    assert np.all(np.abs(b["s2_dt"])[b["s2_valid"][..., 0, 0] > 0] > 0.5)


def test_points_pretraining_lowers_loss(uds_dir, points_file, tmp_path):
    torch = pytest.importorskip("torch")
    from sentinel_densify.core.temporal import train as TR
    from sentinel_densify.core.temporal.model import gaussian_nll
    from sentinel_densify.core.training import load_checkpoint, seed_everything

    parser = argparse.ArgumentParser()
    TR.configure(parser)
    base = ["--data", str(uds_dir), "--no-progress", "--width", "8", "--heads", "1", "--layers", "1",
            "--k2", "4", "--k1", "3", "--crop", "8", "--batch", "1", "--epochs", "1", "--steps", "1",
            "--seed", "2", "--lr", "3e-3"]
    seed_everything(2)
    TR.train(parser.parse_args(base + ["--out", str(tmp_path / "a")]))
    seed_everything(2)
    TR.train(parser.parse_args(base + ["--out", str(tmp_path / "b"), "--points", str(points_file),
                                       "--points-steps", "80", "--points-batch", "64"]))
    a, b = load_checkpoint(tmp_path / "a" / "last.pt"), load_checkpoint(tmp_path / "b" / "last.pt")
    assert b["config"]["points"]["steps"] == 80 and "points" not in a["config"]
    batch = P.PointsSampler(P.load_points(points_file)[400:], SamplerConfig(k2=4, k1=3), seed=5).batch(256)

    def nll(ckpt) -> float:
        model = TR.build_model(ckpt["config"])
        model.load_state_dict(ckpt["model_state"])
        with torch.no_grad():
            mean, logvar = model.eval()(*TR.to_tensors(batch, "cpu"))
        return float(gaussian_nll(mean, logvar, torch.as_tensor(batch["target"]),
                                  torch.as_tensor(batch["target_valid"]) > 0.5, model.s2_std[:, 0]))

    assert nll(b) < nll(a) - 0.02  # held-out points (400+) are better predicted after pre-training


def test_points_bad_file(tmp_path):
    bad = tmp_path / "bad.parquet"
    pd.DataFrame({"x": [1]}).to_parquet(bad)
    with pytest.raises(InputError, match="bad.parquet"):
        P.load_points(bad)
    with pytest.raises(InputError, match="nope.parquet"):
        P.load_points(tmp_path / "nope.parquet")


def test_points_mix_keeps_the_model_fit_to_points(uds_dir, points_file, tmp_path):
    """--points-mix adds a points loss to each series step: held-out points are predicted better than
    after the same series steps without it."""
    torch = pytest.importorskip("torch")
    from sentinel_densify.core.temporal import train as TR
    from sentinel_densify.core.training import load_checkpoint

    parser = argparse.ArgumentParser()
    TR.configure(parser)
    base = ["--data", str(uds_dir), "--no-progress", "--width", "8", "--heads", "1", "--layers", "1",
            "--k2", "4", "--k1", "3", "--crop", "8", "--batch", "2", "--epochs", "1", "--steps", "60",
            "--seed", "6", "--lr", "3e-3", "--ema", "0", "--points", str(points_file), "--points-steps", "1",
            "--points-batch", "64"]
    TR.train(parser.parse_args(base + ["--out", str(tmp_path / "plain")]))
    TR.train(parser.parse_args(base + ["--out", str(tmp_path / "mix"), "--points-mix", "2.0"]))
    plain, mix = load_checkpoint(tmp_path / "plain" / "last.pt"), load_checkpoint(tmp_path / "mix" / "last.pt")
    assert mix["config"]["points"]["mix"] == 2.0 and "mix" not in plain["config"]["points"]
    batch = P.PointsSampler(P.load_points(points_file)[400:], SamplerConfig(k2=4, k1=3), seed=8).batch(256)

    def nll(ckpt) -> float:
        model = TR.build_model(ckpt["config"])
        model.load_state_dict(ckpt["model_state"])
        with torch.no_grad():
            return float(TR.points_loss(model.eval(), batch, "cpu"))

    assert nll(mix) < nll(plain) - 0.01


def test_a_resumed_points_mix_run_matches_an_uninterrupted_one(uds_dir, points_file, tmp_path):
    """Stopped after epoch 1 and resumed: the points batches go on where they stopped (their random
    states are in the checkpoint), so the weights equal those of one run of 2 epochs, bit for bit."""
    torch = pytest.importorskip("torch")
    from sentinel_densify.core.temporal import train as TR
    from sentinel_densify.core.training import load_checkpoint

    parser = argparse.ArgumentParser()
    TR.configure(parser)
    base = ["--data", str(uds_dir), "--no-progress", "--width", "8", "--heads", "1", "--layers", "1",
            "--k2", "4", "--k1", "3", "--crop", "8", "--batch", "2", "--steps", "3", "--seed", "4",
            "--points", str(points_file), "--points-steps", "2", "--points-batch", "16", "--points-mix", "0.5"]
    TR.train(parser.parse_args(base + ["--epochs", "2", "--out", str(tmp_path / "whole")]))
    from sentinel_densify.core import training

    def stop(self, **values):  # Ctrl-C once epoch 0's checkpoints are written
        raise KeyboardInterrupt

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(training.MetricsLog, "log", stop)
        with pytest.raises(KeyboardInterrupt):
            TR.train(parser.parse_args(base + ["--epochs", "2", "--out", str(tmp_path / "cut")]))
    first = load_checkpoint(tmp_path / "cut" / "last.pt")
    assert first["epoch"] == 0
    assert len(first["rng_state"]) == 1 and len(first["rng_state"][0]["points"]["samplers"]) > 100
    assert not (tmp_path / "cut" / "metrics.jsonl").exists()  # stopped before epoch 0's row was written
    with pytest.raises(InputError, match=r"--resume: options differ .*no --points \(checkpoint: "):
        TR.train(parser.parse_args([a for a in base if a != "--points" and a != str(points_file)]
                                   + ["--epochs", "2", "--out", str(tmp_path / "cut"), "--resume"]))
    TR.train(parser.parse_args(base + ["--epochs", "2", "--out", str(tmp_path / "cut"), "--resume"]))
    whole, cut = load_checkpoint(tmp_path / "whole" / "last.pt"), load_checkpoint(tmp_path / "cut" / "last.pt")
    assert cut["epoch"] == whole["epoch"] == 1
    for key in ("model_state", "train_state"):
        for name, value in whole[key].items():
            assert torch.equal(cut[key][name], value), (key, name)
    # epoch 0's row, from its checkpoint, then epoch 1's: the same rows as the uninterrupted run's
    rows = [[{k: v for k, v in r.items() if k != "time"} for r in training.MetricsLog(tmp_path / run /
                                                                                        "metrics.jsonl").read()]
            for run in ("whole", "cut")]
    assert [r["epoch"] for r in rows[1]] == [0, 1] and rows[1] == rows[0]
