"""The temporal S1+S2 cross-attention generator: inputs, masking, training, resume (real series)."""

from __future__ import annotations

import argparse
import re

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sentinel_densify.core.errors import InputError  # noqa: E402
from sentinel_densify.core.stack import Stack  # noqa: E402
from sentinel_densify.core.temporal import dataset as D  # noqa: E402
from sentinel_densify.core.temporal import train as TR  # noqa: E402
from sentinel_densify.core.temporal.model import TemporalGenerator, gaussian_nll  # noqa: E402
from sentinel_densify.core.training import load_checkpoint, seed_everything  # noqa: E402


@pytest.fixture(scope="module")
def series(uds_dir):
    return D.load_series(uds_dir)


def _args(uds_dir, out, **kw) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    TR.configure(parser)
    argv = ["--data", str(uds_dir), "--out", str(out), "--no-progress", "--width", "8", "--heads", "1",
            "--layers", "1", "--k2", "4", "--k1", "4", "--crop", "16", "--batch", "4"]
    for k, v in kw.items():
        argv += [f"--{k.replace('_', '-')}"] + ([] if v is True else [str(v)])
    return parser.parse_args(argv)


def test_linear_baseline_matches_per_pixel_interpolation(series):
    st = series.crop(slice(10, 14), slice(20, 23))
    day = float(st.s2_days[60]) + 0.7  # not on an acquisition's day (within 0.5: that acquisition, as linear)
    base, dprev, dnext = D.linear_baseline(st.s2, st.s2_days, day)
    for r in range(4):
        for c in range(3):
            ok = np.isfinite(st.s2[:, :, r, c]).all(axis=1)
            d, v = st.s2_days[ok], st.s2[ok, :, r, c]
            expect = np.array([np.interp(day, d, v[:, b]) for b in range(v.shape[1])])
            np.testing.assert_allclose(base[:, r, c], expect, rtol=1e-5, atol=1e-6)
            assert dprev[r, c] == pytest.approx(day - d[d <= day].max(), abs=1e-3)
            assert dnext[r, c] == pytest.approx(d[d > day].min() - day, abs=1e-3)
    _, near, _, _ = D.baselines(st.s2, st.s2_days, day)
    for r in range(4):
        for c in range(3):
            ok = np.isfinite(st.s2[:, :, r, c]).all(axis=1)
            d, v = st.s2_days[ok], st.s2[ok, :, r, c]
            np.testing.assert_array_equal(near[:10, r, c], v[d <= day][-1])  # previous clear value
            np.testing.assert_array_equal(near[10:, r, c], v[d > day][0])  # next clear value


def test_untrained_model_blends_available_baselines(series):
    """With a zero head the mean is the equal blend of the baselines available per pixel."""
    model = TemporalGenerator(d=8, heads=1, layers=1).eval()
    day = float(series.s2_days[-1]) + 10.0  # forecast: no next observation anywhere
    x = D.model_inputs(series.crop(slice(0, 12), slice(0, 12)), day, 4, 4)
    assert x["base_info"][4].max() == 0 and x["base_info"][3].min() == 1
    with torch.no_grad():
        mean, _ = model(*TR.to_tensors({k: v[None] for k, v in x.items()}, "cpu"))
    np.testing.assert_allclose(mean[0].numpy(), 0.5 * (x["base"] + x["near"][:10]), atol=1e-5)
    np.testing.assert_allclose(x["base"], x["near"][:10])  # one side only: linear = previous


def test_model_inputs_pick_nearest_and_pad(series):
    day = float(series.s2_days[50])
    sub = series.select_s2(np.abs(series.s2_days - day) > 0.5)
    x = D.model_inputs(sub, day, 8, 8)
    assert x["s2"].shape == (8, 10, 64, 64) and x["s1"].shape == (8, 2, 64, 64)
    assert np.all(x["s2_dt"] != 0) and np.all(np.diff(x["s2_dt"]) > 0)
    assert np.isfinite(x["base"]).all() and set(np.unique(x["s2_valid"])) <= {0.0, 1.0}
    few = sub.select_s2(np.arange(len(sub.s2_days)) < 2)
    y = D.model_inputs(few.select_s1(np.arange(len(few.s1_days)) < 1), day, 8, 8)
    assert y["s2_valid"][2:].sum() == 0 and y["s1_valid"][1:].sum() == 0  # padded, masked out
    assert "s1_change" in x and "s1_change" not in D.model_inputs(sub, day, 8, 8, change=False)


def test_held_out_month_blocks(series):
    held = D.split_dates(series)
    months = {D.month_block(d) for d in series.s2_days[held]}
    m0 = D.month_block(series.s2_days.min())
    assert held.any() and (~held).any() and all((m - m0) % 4 == 3 for m in months)
    sampler = D.Sampler(series, held, D.SamplerConfig(crop=16), seed=0)
    assert not held[sampler.targets].any()
    val = D.validation_dates(series, held)
    vmonths = {D.month_block(d) for d in series.s2_days[val]}
    assert val.any() and not (val & held).any() and all((m - m0) % 8 == 1 for m in vmonths)
    with pytest.raises(InputError, match="validation"):
        D.validation_dates(series, held | val)  # every validation month already a test month


def test_training_never_sees_test_or_validation_dates(uds_dir, tmp_path, monkeypatch):
    """Training targets and inputs avoid both month kinds; validation inputs avoid the test months."""
    seen_train, seen_val = [], []
    real_inputs, real_predict = D.model_inputs, TR.predict

    def spy_inputs(stack, day, *a, **kw):
        seen_train.append((day, stack.s2_days.copy()))
        return real_inputs(stack, day, *a, **kw)

    def spy_predict(model, stack, day, *a, **kw):
        seen_val.append((day, stack.s2_days.copy()))
        return real_predict(model, stack, day, *a, **kw)

    monkeypatch.setattr(D, "model_inputs", spy_inputs)
    monkeypatch.setattr(TR, "predict", spy_predict)
    TR.train(_args(uds_dir, tmp_path / "run", epochs=1, steps=2, seed=4))
    series = D.load_series(uds_dir)
    test = D.split_dates(series)
    val = D.validation_dates(series, test)
    test_days, val_days = set(series.s2_days[test].tolist()), set(series.s2_days[val].tolist())
    assert seen_train and seen_val
    for day, inputs in seen_train:
        assert day not in test_days | val_days and not (set(inputs.tolist()) & (test_days | val_days))
    assert {day for day, _ in seen_val} <= val_days
    for _, inputs in seen_val:
        assert not set(inputs.tolist()) & test_days
    ckpt = load_checkpoint(tmp_path / "run" / "best.pt")
    h = ckpt["config"]["holdout"]
    assert h["months"] and h["validation_months"] and not set(h["months"]) & set(h["validation_months"])
    assert {"psnr_gap10", "psnr_forecast60", "temperature", "val_score"} <= set(ckpt["metrics"])


@pytest.mark.parametrize("cloud_context", [False, True])
def test_masked_observations_are_ignored(series, cloud_context):
    """Cloudy pixels are masked out of attention: their values cannot change the output."""
    seed_everything(0)
    model = TemporalGenerator(d=16, heads=2, layers=2, cloud_context=cloud_context).eval()
    for p in model.head[-1].parameters():  # give the zero-initialised head an output
        torch.nn.init.normal_(p, std=0.1)
    day = float(series.s2_days[70])
    x = D.model_inputs(series.select_s2(np.abs(series.s2_days - day) > 0.5).crop(slice(0, 24), slice(0, 24)),
                       day, 6, 6)
    x["s2_valid"][2] = 0.0
    t = TR.to_tensors({k: v[None] for k, v in x.items()}, "cpu")
    with torch.no_grad():
        mean, logvar, maps = model(*t, return_attn=True)
        t[0][:, 2] = 5.0  # garbage in the masked observation
        mean2, _ = model(*t)
    assert maps[0].shape == (1, 2, 6 + 6 + 1, 24, 24)
    assert float(maps[0][:, :, 2].max()) < 1e-6
    np.testing.assert_allclose(maps[0].sum(2).numpy(), 1.0, atol=1e-5)
    torch.testing.assert_close(mean, mean2)
    assert float(maps[0][:, :, 0].max()) > 1e-3  # valid observations do get weight


@pytest.mark.parametrize("heads", [1, 2, 4])
def test_inference_form_of_the_attention_gives_the_same_outputs(series, heads):
    """for_inference (what densify export writes) folds the key / value projections into the query: the
    same means, log-variances and attention weights as the trained model, masks and null token included."""
    from sentinel_densify.core.temporal.model import FusedCrossAttention, for_inference

    seed_everything(0)
    model = TemporalGenerator(d=16, heads=heads, layers=2, cloud_context=True, s1_change=True).eval()
    with torch.no_grad():
        for p in model.parameters():  # away from the initial zeros (head, null tokens) and small biases
            p.add_(torch.randn_like(p) * 0.3)
    day = float(series.s2_days[70])
    x = D.model_inputs(series.select_s2(np.abs(series.s2_days - day) > 0.5).crop(slice(0, 20), slice(0, 20)),
                       day, 5, 4, change=True)
    x["s2_valid"][:, :4, :4] = 0.0  # a corner with no clear optical observation: SAR and the null token
    x["s1_valid"][:, :2, :2] = 0.0  # and a smaller one with nothing at all: the null token only
    # in float64 the two forms agree to rounding: the same function, not an approximation of it
    # (in float32 the exported model matches the trained one within the contract's 1e-4: test_onnx_method)
    model = model.double()
    t = [v.double() for v in TR.to_tensors({k: v[None] for k, v in x.items()}, "cpu")]
    fused = for_inference(model)
    assert all(isinstance(a, FusedCrossAttention) for a in fused.attn)
    assert not any(isinstance(a, FusedCrossAttention) for a in model.attn)  # the trained model is left as it was
    with torch.no_grad():
        mean, logvar, maps = model(*t, return_attn=True)
        fmean, flogvar, fmaps = fused(*t, return_attn=True)
    assert float(mean.abs().max()) > 1.0  # the weights moved enough for the outputs to vary widely
    torch.testing.assert_close(fmean, mean, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(flogvar, logvar, atol=1e-10, rtol=1e-10)
    for a, b in zip(fmaps, maps, strict=True):
        assert a.shape == b.shape == (1, heads, 5 + 4 + 1, 20, 20)
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)
    assert float(maps[0][0, :, -1, 0, 0].min()) == pytest.approx(1.0)  # nothing valid there: all on the null token
    assert float(maps[0][0, :, -1].min()) < 0.9  # elsewhere the observations do get weight


def test_training_reduces_loss_and_resumes(uds_dir, series, tmp_path):
    out = tmp_path / "run"
    args = _args(uds_dir, out, epochs=1, steps=24, lr=0.002, seed=3, width=32, heads=2, ema=0)
    TR.train(args)
    ckpt = load_checkpoint(out / "last.pt")
    assert "train_state" not in ckpt  # no moving average: the raw weights are the model
    assert ckpt["epoch"] == 0 and ckpt["kind"] == "temporal" and "psnr_gap0" in ckpt["metrics"]
    assert ckpt["config"]["holdout"]["months"]
    met = ckpt["metrics"]
    assert len(met["temperature_days"]) == len(met["temperature_by_days"]) >= 2
    again = TR.revalidate(ckpt)  # the same validation, from what the checkpoint records
    for key in ("val_score", "temperature", "temperature_by_days", "psnr_gap0"):
        np.testing.assert_allclose(again[key], met[key], rtol=1e-5)

    test = D.split_dates(series)
    held = test | D.validation_dates(series, test)  # as in training
    batch = D.Sampler(series, held, D.SamplerConfig(crop=16, k2=4, k1=4), seed=99).batch(16)
    target = torch.as_tensor(batch["target"])
    valid = torch.as_tensor(batch["target_valid"]) > 0.5

    def nll(model) -> float:
        with torch.no_grad():
            mean, logvar = model.eval()(*TR.to_tensors(batch, "cpu"))
            return float(gaussian_nll(mean, logvar, target, valid, model.s2_std[:, 0]))

    untrained = TR.build_model(ckpt["config"])
    trained = TR.build_model(ckpt["config"])
    trained.load_state_dict(ckpt["model_state"])
    assert nll(trained) < nll(untrained) - 0.02

    TR.train(_args(uds_dir, out, epochs=2, steps=2, seed=3, width=32, heads=2, resume=True))
    again = load_checkpoint(out / "last.pt")
    assert again["epoch"] == 1
    rows = (out / "metrics.jsonl").read_text().splitlines()
    assert len(rows) == 2 and '"epoch": 1' in rows[1]
    assert not all(torch.equal(again["model_state"][k], ckpt["model_state"][k]) for k in ckpt["model_state"])


def test_moving_average_is_saved_and_resumed(uds_dir, tmp_path):
    """With --ema the checkpoint's model_state (validated, exported) is the average; training resumes
    from the raw weights kept in train_state."""
    out = tmp_path / "ema"
    TR.train(_args(uds_dir, out, epochs=1, steps=6, lr=0.01, seed=5, ema=0.5))
    ckpt = load_checkpoint(out / "last.pt")
    raw, avg = ckpt["train_state"], ckpt["model_state"]
    assert raw.keys() == avg.keys() and ckpt["config"]["ema"] == 0.5
    moved = [k for k in raw if not torch.equal(raw[k], avg[k])]
    assert moved  # the average lags the raw weights
    model = TR.build_model(ckpt["config"])
    model.load_state_dict(avg)  # the average is a complete model
    TR.train(_args(uds_dir, out, epochs=2, steps=1, lr=1e-9, seed=5, ema=0.5, resume=True))
    again = load_checkpoint(out / "last.pt")
    assert again["config"]["lr"] == 1e-9 and again["config"]["resumed"] == [{"epoch": 1, "lr": 1e-9, "steps": 1}]
    for k in moved:  # lr ~ 0: raw weights stay, the average moves half-way towards them
        torch.testing.assert_close(again["train_state"][k], raw[k], atol=1e-6, rtol=0)
        torch.testing.assert_close(again["model_state"][k], 0.5 * (avg[k] + raw[k]), atol=1e-5, rtol=1e-4)


def test_a_resumed_dropout_run_matches_an_uninterrupted_one(uds_dir, tmp_path):
    """With --dropout the masks come from torch's generator, seeded once per run: stopped after epoch 1 and
    resumed, the run goes on with the generator's state from the checkpoint, and its weights equal those of one
    run of 2 epochs, bit for bit (they differed by up to 1e-4 before)."""
    from sentinel_densify.core import training

    kw = dict(epochs=2, steps=3, seed=4, dropout=0.3, crop=8, batch=2)
    TR.train(_args(uds_dir, tmp_path / "whole", **kw))

    def stop(self, **values):  # Ctrl-C once epoch 0's checkpoints are written
        raise KeyboardInterrupt

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(training.MetricsLog, "log", stop)
        with pytest.raises(KeyboardInterrupt):
            TR.train(_args(uds_dir, tmp_path / "cut", **kw))
    assert load_checkpoint(tmp_path / "cut" / "last.pt")["epoch"] == 0
    TR.train(_args(uds_dir, tmp_path / "cut", resume=True, **kw))
    whole, cut = load_checkpoint(tmp_path / "whole" / "last.pt"), load_checkpoint(tmp_path / "cut" / "last.pt")
    assert cut["epoch"] == whole["epoch"] == 1
    for key in ("model_state", "train_state"):
        for name, value in whole[key].items():
            assert torch.equal(cut[key][name], value), (key, name)


def test_python_m_train_says_bad_input_in_one_line_and_leaves_no_folder(uds_dir, tmp_path, capsys):
    """`python -m ...temporal.train` (and torchrun) as `densify train temporal`: bad input is one line on stderr and
    exit 1, not a traceback; a run that fails before its first epoch leaves no folder it made."""
    argv = ["--data", str(uds_dir), "--no-progress", "--width", "8", "--heads", "1", "--layers", "1", "--epochs", "1",
            "--steps", "1"]
    assert TR.main([*argv[:1], str(tmp_path / "missing"), *argv[2:], "--out", str(tmp_path / "a")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("densify train temporal: ") and "missing: does not exist" in err and "\n" not in err
    assert TR.main([*argv, "--out", str(tmp_path / "b" / "run"), "--min-target-clear", "1.0"]) == 1
    assert "no training target date" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_a_resume_trains_with_its_own_weight_decay(uds_dir, tmp_path):
    """The optimiser state brings the first run's weight decay back: the resumed run's must win, and
    the config says which it used."""
    out = tmp_path / "wd"
    TR.train(_args(uds_dir, out, epochs=1, steps=1, seed=2, ema=0, weight_decay=5.0))
    TR.train(_args(uds_dir, out, epochs=2, steps=1, seed=2, ema=0, weight_decay=0.0, resume=True))
    ckpt = load_checkpoint(out / "last.pt")
    assert [g["weight_decay"] for g in ckpt["optim_state"]["param_groups"]] == [0.0]
    assert ckpt["config"]["weight_decay"] == 0.0 and ckpt["config"]["resumed"] == [{"epoch": 1, "weight_decay": 0.0}]


def test_weight_decay_shrinks_the_weights(uds_dir, tmp_path):
    """--weight-decay switches to AdamW: same seed and data, the decayed weights end up smaller."""
    norms = {}
    for wd in (0.0, 50.0):
        out = tmp_path / f"wd{wd:g}"
        TR.train(_args(uds_dir, out, epochs=1, steps=4, lr=0.01, seed=2, ema=0, weight_decay=wd))
        ckpt = load_checkpoint(out / "last.pt")
        assert ckpt["config"]["weight_decay"] == wd
        w = [v for k, v in ckpt["model_state"].items() if k.endswith("weight") and "head" not in k]
        norms[wd] = float(sum((v.float() ** 2).sum() for v in w))
    assert norms[50.0] < 0.9 * norms[0.0]


def test_dropout_acts_in_training_only(uds_dir, series, tmp_path):
    """--dropout p: recorded in the config; in training two forward passes differ (features dropped), in
    evaluation they do not, and the evaluated model is the same weights without dropout (nothing else changes)."""
    import torch

    TR.train(_args(uds_dir, tmp_path / "d", epochs=1, steps=2, seed=3, ema=0, dropout=0.5))
    ckpt = load_checkpoint(tmp_path / "d" / "last.pt")
    assert ckpt["config"]["model"]["dropout"] == 0.5
    model = TR.model_from_checkpoint(ckpt)
    assert model.config["dropout"] == 0.5 and not model.training
    day = float(series.s2_days[70]) + 0.2
    x = D.model_inputs(series.crop(slice(8, 24), slice(8, 24)), day, 4, 4)
    x = TR.to_tensors({k: v[None] for k, v in x.items()}, "cpu")
    plain = TR.build_model({**ckpt["config"], "model": {k: v for k, v in ckpt["config"]["model"].items()
                                                          if k != "dropout"}})
    plain.load_state_dict(ckpt["model_state"])
    with torch.no_grad():
        first, again, without = model(*x)[0], model(*x)[0], plain.eval()(*x)[0]
        model.train()
        dropped = [model(*x)[0] for _ in range(2)]
    assert torch.equal(first, again) and torch.equal(first, without)
    assert not torch.equal(dropped[0], dropped[1]) and not torch.equal(dropped[0], first)
    with pytest.raises(ValueError, match="dropout 1.0 must be in"):
        TemporalGenerator(dropout=1.0)


def test_beta_nll_weights_pixels_by_their_variance():
    """beta = 0 is the plain NLL; beta = 1 gives the mean the squared error's gradient whatever
    the predicted variance, while the variance still gets the NLL's gradient direction."""
    g = torch.Generator().manual_seed(0)
    target = torch.rand(2, 3, 5, 5, generator=g)
    valid = torch.rand(2, 5, 5, generator=g) > 0.2
    scale = torch.full((1, 3, 1, 1), 0.5)
    mean = torch.rand(2, 3, 5, 5, generator=g).requires_grad_(True)
    logvar = (torch.randn(2, 3, 5, 5, generator=g) * 2).requires_grad_(True)
    with torch.no_grad():
        assert float(gaussian_nll(mean, logvar, target, valid, scale, beta=0.0)) == pytest.approx(
            float(gaussian_nll(mean, logvar, target, valid, scale)))
    gaussian_nll(mean, logvar, target, valid, scale, beta=1.0).backward()
    n = valid.sum() * 3
    expect = torch.where(valid.unsqueeze(1), (mean - target) / scale**2, 0.0) / n
    torch.testing.assert_close(mean.grad, expect.detach())
    lv_plain = logvar.detach().clone().requires_grad_(True)
    gaussian_nll(mean.detach(), lv_plain, target, valid, scale).backward()
    m = valid.unsqueeze(1).expand_as(logvar)
    assert torch.equal(torch.sign(logvar.grad[m]), torch.sign(lv_plain.grad[m]))


def test_band_weights_weigh_the_loss_as_the_reflectance_mse(uds_dir, tmp_path):
    """--band-weights variance: each band's NLL term weighted by its std squared (mean 1), so a band twice
    as variable counts four times as much; "equal" is the plain loss. The choice is recorded in the config."""
    from sentinel_densify.core.temporal.model import band_weights

    std = torch.tensor([0.03, 0.06, 0.12])
    w = band_weights("variance", std.view(1, 1, 3, 1, 1))
    torch.testing.assert_close(w, torch.tensor([1.0, 4.0, 16.0]) / 7.0)
    assert band_weights("equal", std) is None
    with pytest.raises(ValueError, match="band weights"):
        band_weights("loudest", std)
    g = torch.Generator().manual_seed(0)
    target, mean = torch.rand(2, 3, 5, 5, generator=g), torch.rand(2, 3, 5, 5, generator=g)
    logvar = torch.randn(2, 3, 5, 5, generator=g)
    valid = torch.rand(2, 5, 5, generator=g) > 0.2
    scale = std.view(1, 3, 1, 1)
    per_band = torch.stack([gaussian_nll(mean[:, b:b + 1], logvar[:, b:b + 1], target[:, b:b + 1], valid,
                                         scale[:, b:b + 1]) for b in range(3)])
    torch.testing.assert_close(gaussian_nll(mean, logvar, target, valid, scale), per_band.mean())
    torch.testing.assert_close(gaussian_nll(mean, logvar, target, valid, scale, weights=w), (per_band * w).mean())
    from sentinel_densify.core.temporal import model as M

    seen = []
    real = M.gaussian_nll

    def spy(*a, **kw):  # the weights each loss term gets (positional in train.py)
        seen.append(a[6] if len(a) > 6 else kw.get("weights"))
        return real(*a, **kw)

    for kind in ("variance", "equal"):
        seen.clear()
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(M, "gaussian_nll", spy)
            TR.train(_args(uds_dir, tmp_path / kind, epochs=1, steps=1, band_weights=kind))
        ckpt = load_checkpoint(tmp_path / kind / "last.pt")
        assert ckpt["config"]["band_weights"] == kind and seen
        if kind == "equal":
            assert all(w is None for w in seen)
        else:
            std = torch.tensor(ckpt["config"]["model"]["s2_std"])
            torch.testing.assert_close(seen[0], std ** 2 / (std ** 2).mean())


def test_cloud_context_is_the_clear_fraction_around_each_pixel():
    from sentinel_densify.core.temporal.model import CLOUD_WINDOWS, clear_fraction

    v = torch.ones(1, 2, 1, 60, 60)
    v[0, 1, 0, 30, 30] = 0.0  # one cloudy pixel in the second observation
    f = clear_fraction(v)
    assert f.shape == (1, 2, len(CLOUD_WINDOWS), 60, 60)
    torch.testing.assert_close(f[0, 0], torch.ones(len(CLOUD_WINDOWS), 60, 60))  # borders too
    for i, w in enumerate(CLOUD_WINDOWS):
        assert float(f[0, 1, i, 30, 30 + w // 2]) == pytest.approx(1 - 1 / w**2)  # cloud inside the window
        assert float(f[0, 1, i, 30, 30 + w // 2 + 1]) == 1.0  # just outside


def test_target_margin_keeps_loss_away_from_clouds(series):
    test = D.split_dates(series)
    plain = D.Sampler(series, test, D.SamplerConfig(crop=16), seed=0)
    margin = D.Sampler(series, test, D.SamplerConfig(crop=16, target_margin=2), seed=0)
    tv, v = margin.target_valid, series.valid
    assert not (tv & ~v).any() and tv.sum() < v.sum()
    t, r, c = np.argwhere(~v[:, 2:-2, 2:-2])[0] + (0, 2, 2)  # a non-clear pixel, a clear one 2 px away
    assert not tv[t, r - 2:r + 3, c - 2:c + 3].any()
    x0, x1 = plain.sample(), margin.sample()  # same random draws: same target and crop
    np.testing.assert_array_equal(x0["target"], x1["target"])
    assert x1["target_valid"].sum() <= x0["target_valid"].sum()


def test_doy_jitter_shifts_only_the_season_cue(series):
    test = D.split_dates(series)
    plain = D.Sampler(series, test, D.SamplerConfig(crop=16), seed=1)
    jitter = D.Sampler(series, test, D.SamplerConfig(crop=16, doy_jitter=20.0), seed=1)
    a, b = plain.sample(), jitter.sample()  # same draws up to the jitter: same target date and inputs
    np.testing.assert_array_equal(a["s2_dt"], b["s2_dt"])
    shift = abs(float(b["target_doy"]) - float(a["target_doy"]))
    assert 0.0 < shift <= 20.0
    true_doys = np.array([D.doy(d) for d in series.s2_days[plain.targets]])
    for _ in range(5):
        assert np.min(np.abs(true_doys - plain.sample()["target_doy"])) < 1e-3  # the target's own day of year


def test_temperature_per_distance_to_clear():
    from sentinel_densify.core.temporal import calibration as C

    info = np.zeros((5, 1, 4), np.float32)
    info[1], info[2] = [[0.02, 0.5, 0.3, 0.9]], [[0.1, 0.05, 0.0, 0.0]]
    info[3], info[4] = [[1, 1, 1, 0]], [[1, 1, 0, 0]]  # has previous / next
    np.testing.assert_allclose(C.nearest_clear_days(info), [[2, 5, 30, 300]])  # none: the cap
    rng = np.random.default_rng(0)
    days = rng.uniform(0, 90, 40_000)
    true = np.where(days < 15, 0.8, 1.3)  # errors wider than the std far from clear observations
    az = np.abs(rng.normal(size=days.size)) * true
    table = C.fit_by_days(az, days)
    assert len(table["days"]) == len(C.EDGES) + 1 and table["days"] == sorted(table["days"])
    np.testing.assert_allclose(table["scale"], [0.8, 0.8, 1.3, 1.3, 1.3], rtol=0.05)  # |N(0,1)| q68.3 = 1
    np.testing.assert_allclose(C.scale_map(np.array([0.0, 200.0]), table), [table["scale"][0], table["scale"][-1]])
    assert C.fit_by_days(az[:10], days[:10]) is None  # too few values for any bin


def test_s1_change_is_sar_change_since_the_baseline_dates(series):
    """S1 read at a date is the Gaussian-weighted mean of the acquisitions around it; s1_change is
    S1 at the target minus S1 interpolated between each pixel's previous and next clear S2 dates."""
    st = series.crop(slice(20, 30), slice(30, 40))
    day = float(st.s2_days[70]) + 0.2
    at = D.s1_at(st, day)
    near = np.abs(st.s1_days - day) <= D.S1_REACH * D.S1_SIGMA
    w = np.exp(-0.5 * ((st.s1_days[near] - day) / D.S1_SIGMA) ** 2)
    r, c = 4, 6
    x = st.s1[near][:, :, r, c]
    ok = np.isfinite(x).all(axis=1)
    np.testing.assert_allclose(at[:, r, c], (x[ok] * w[ok, None]).sum(0) / w[ok].sum(), rtol=1e-5)
    assert np.isnan(D.s1_at(st, float(st.s1_days.max()) + 10 * D.S1_SIGMA)).all()  # no S1 near

    sub = st.select_s2(np.abs(st.s2_days - day) > 20)  # a gap: previous / next clear dates 20+ d away
    x = D.model_inputs(sub, day, 6, 4)
    _, _, dprev, dnext = D.baselines(sub.s2, sub.s2_days, day)
    p, n = D.s1_at(sub, day - float(dprev[r, c])), D.s1_at(sub, day + float(dnext[r, c]))
    wp = dnext[r, c] / (dprev[r, c] + dnext[r, c])
    expect = at[:, r, c] - (wp * p[:, r, c] + (1 - wp) * n[:, r, c])
    np.testing.assert_allclose(x["s1_change"][:2, r, c], expect, rtol=1e-4, atol=1e-4)
    assert x["s1_change"].shape == (3, 10, 10) and x["s1_change"][2].min() == 1.0

    past = sub.select_s1(sub.s1_days < day - 60)  # forecast-like: no S1 near the target
    y = D.model_inputs(past.select_s2(past.s2_days < day), day, 6, 4)
    assert y["s1_change"].max() == 0.0 and y["s1_change"].min() == 0.0  # unknown: zero and flag 0


def test_s1_span_is_sar_change_between_the_baseline_dates(series):
    """s1_change's 6-channel form (span): the first 3 channels unchanged, then S1 at each pixel's next
    clear S2 date minus S1 at its previous one, and 1 where both are known; with one side only
    (forecast) 0 and flag 0. A model takes it only with s1_change, and only in the form it was built for."""
    st = series.crop(slice(20, 30), slice(30, 40))
    day = float(st.s2_days[70]) + 0.2
    sub = st.select_s2(np.abs(st.s2_days - day) > 20)
    plain, x = D.model_inputs(sub, day, 6, 4), D.model_inputs(sub, day, 6, 4, span=True)
    assert x["s1_change"].shape == (6, 10, 10)
    np.testing.assert_array_equal(x["s1_change"][:3], plain["s1_change"])
    _, _, dprev, dnext = D.baselines(sub.s2, sub.s2_days, day)
    for r, c in [(4, 6), (0, 0), (9, 3)]:
        p, n = D.s1_at(sub, day - float(dprev[r, c])), D.s1_at(sub, day + float(dnext[r, c]))
        np.testing.assert_allclose(x["s1_change"][3:5, r, c], n[:, r, c] - p[:, r, c], rtol=1e-4, atol=1e-4)
    assert x["s1_change"][5].min() == 1.0 and np.abs(x["s1_change"][3:5]).max() > 0.5
    ahead = D.model_inputs(sub.select_s2(sub.s2_days < day), day, 6, 4, span=True)["s1_change"]
    assert ahead[2].min() == 1.0 and not ahead[3:].any()  # no next clear date: span unknown
    with pytest.raises(ValueError, match="s1_change"):
        TemporalGenerator(d=8, heads=2, layers=1, s1_span=True)
    model = TemporalGenerator(d=8, heads=2, layers=1, s1_change=True, s1_span=True).eval()
    assert model.config["s1_span"] is True and "s1_span" not in TemporalGenerator(s1_change=True).config
    with torch.no_grad(), pytest.raises(ValueError, match="6 channels, got 3"):
        model(*TR.to_tensors({k: v[None] for k, v in plain.items()}, "cpu"))
    with torch.no_grad():
        mean, _ = model(*TR.to_tensors({k: v[None] for k, v in x.items()}, "cpu"))
    assert mean.shape == (1, 10, 10, 10) and torch.isfinite(mean).all()


def test_s1_guided_pools_the_sar_change_within_a_field(series):
    """guided_change: each pixel's VV / VH change becomes the mean of its known neighbours' within the
    window, weighted by how alike their previous / next clear B04, B08, B11 are; the known flag is kept,
    unknown pixels stay 0, a huge sigma gives the plain window mean and a tiny one the pixel's own value."""
    st = series.crop(slice(10, 34), slice(20, 44))
    day = float(st.s2_days[70]) + 0.2
    sub = st.select_s2(np.abs(st.s2_days - day) > 20)
    plain = D.model_inputs(sub, day, 6, 4)["s1_change"]
    x = D.model_inputs(sub, day, 6, 4, guided={"radius": 2, "sigma": 0.04})["s1_change"]
    np.testing.assert_array_equal(x[2], plain[2])
    assert plain[2].min() == 1.0 and np.abs(x[:2] - plain[:2]).max() > 0.1
    _, near, _, _ = D.baselines(sub.s2, sub.s2_days, day)
    idx = [D.S2_BANDS.index(b) for b in D.GUIDE_BANDS]
    g = near[idx + [10 + i for i in idx]]
    wide = D.guided_change(plain, near, 2, sigma=1e3)
    for r, c in [(10, 12), (5, 17)]:  # interior pixels: the 5 x 5 window needs no padding
        win = (slice(None), slice(r - 2, r + 3), slice(c - 2, c + 3))
        w = np.exp(-((g[win] - g[:, r:r + 1, c:c + 1]) ** 2).sum(0) / (2 * 0.04 ** 2))
        expect = (plain[:2][win] * w).sum((1, 2)) / w.sum()
        np.testing.assert_allclose(x[:2, r, c], expect, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(wide[:2, r, c], plain[:2][win].mean((1, 2)), rtol=1e-4, atol=1e-5)
    own = D.guided_change(plain, near, 2, sigma=1e-6)
    assert (np.abs(own[:2] - plain[:2]) < 1e-5).mean() > 0.95  # only exact twins of a pixel's spectra pool
    assert D.guided_change(plain, near, 0) is plain
    past = sub.select_s1(sub.s1_days < day - 60)  # no S1 near the target: unknown, stays 0
    y = D.model_inputs(past.select_s2(past.s2_days < day), day, 6, 4, guided={"radius": 2})["s1_change"]
    assert not y.any()


def test_a_point_s_window_sums_are_those_of_the_filters_bit_for_bit():
    """A point series is a 1 x 1 px image: guided_mean and the haze screen take a shortcut there (training's
    points batches spent most of their time on windows of one pixel and a loop over dates). Bit for bit what the
    window computation gives a pixel whose neighbours are all itself, as in a 1 x 2 image of two equal pixels."""
    from sentinel_densify.core.haze import haze_mask

    rng = np.random.default_rng(3)
    for _ in range(200):
        n, c, radius = int(rng.integers(1, 4)), int(rng.integers(1, 3)), int(rng.integers(1, 6))
        values = rng.normal(0, rng.choice([1e-3, 1.0, 40.0]), (n, c, 1, 1)).astype(np.float32)
        known = rng.random((n, 1, 1)) < 0.7
        guide = rng.normal(0, 0.1, (6, 1, 1)).astype(np.float32)
        one = D.guided_mean(values, known, guide, radius)
        two = D.guided_mean(values.repeat(2, -1), known.repeat(2, -1), guide.repeat(2, -1), radius)
        assert one.dtype == two.dtype and one.tobytes() == two[..., :1].tobytes()
        t = int(rng.integers(1, 40))  # dekads, some cloudy, some with a band missing only
        days = np.sort(rng.choice(np.arange(0, 400, 10), t, replace=False)).astype(float)
        s2 = rng.normal(0.1, 0.05, (t, len(D.S2_BANDS), 1, 1)).astype(np.float32)
        s2[rng.random(t) < 0.4] = np.nan
        s2[rng.random(t) < 0.2, int(rng.integers(0, len(D.S2_BANDS)))] = np.nan
        point = Stack(s2, days, np.zeros((0, 2, 1, 1), np.float32), np.zeros(0))
        pair = Stack(s2.repeat(2, -1), days, np.zeros((0, 2, 1, 2), np.float32), np.zeros(0))
        for kw in ({}, {"threshold": 0.01}, {"threshold": 0.0, "bright": 0.03}):
            assert np.array_equal(haze_mask(point, **kw), haze_mask(pair, **kw)[..., :1])


def test_s1_guided_obs_pools_each_sar_acquisition_within_a_field(series):
    """guided "obs" (model version 7): each S1 observation's VV / VH becomes the mean of its valid neighbours'
    within the window, with the weights of guided_change (the same s1_change results); validity is kept, and
    invalid pixels of an acquisition neither count nor change (they stay 0)."""
    st = series.crop(slice(10, 34), slice(20, 44))
    day = float(st.s2_days[70]) + 0.2
    sub = st.select_s2(np.abs(st.s2_days - day) > 20)
    sub = Stack(sub.s2, sub.s2_days, sub.s1.copy(), sub.s1_days, sub.bands)  # the fixture is shared: a copy
    sub.s1[np.flatnonzero(sub.s1_days > day)[0], :, 3:6, 4:9] = np.nan  # a hole in the next acquisition
    guided = {"radius": 2, "sigma": 0.04}
    field = D.model_inputs(sub, day, 6, 8, guided=guided)
    x = D.model_inputs(sub, day, 6, 8, guided=guided | {"obs": True})
    np.testing.assert_array_equal(x["s1_change"], field["s1_change"])
    np.testing.assert_array_equal(x["s1_valid"], field["s1_valid"])
    assert field["s1_valid"].min() == 0.0 and field["s1_valid"][:-1].max() == 1.0
    assert np.abs(x["s1"] - field["s1"]).max() > 0.5
    _, near, _, _ = D.baselines(sub.s2, sub.s2_days, day)
    idx = [D.S2_BANDS.index(b) for b in D.GUIDE_BANDS]
    g = near[idx + [10 + i for i in idx]]
    raw, ok = field["s1"], field["s1_valid"] > 0.5
    for k in range(len(raw)):
        for r, c in [(10, 12), (5, 17), (6, 5)]:  # interior pixels (6, 5: beside the hole)
            win = (slice(r - 2, r + 3), slice(c - 2, c + 3))
            w = np.exp(-((g[:, win[0], win[1]] - g[:, r:r + 1, c:c + 1]) ** 2).sum(0) / (2 * 0.04 ** 2)) * ok[k][win]
            if not ok[k, r, c]:
                assert not x["s1"][k, :, r, c].any()
                continue
            expect = (raw[k][(slice(None), *win)] * w).sum((1, 2)) / w.sum()
            np.testing.assert_allclose(x["s1"][k, :, r, c], expect, rtol=1e-4, atol=1e-4)
    assert (~ok).sum() == 15 and not x["s1"].transpose(1, 0, 2, 3)[:, ~ok].any()
    alone = D.model_inputs(sub, day, 6, 8, change=False, guided=guided | {"obs": True})
    assert "s1_change" not in alone
    np.testing.assert_array_equal(alone["s1"], x["s1"])


def test_obs_s1_change_is_sar_change_since_each_observation(series):
    """obs_s1_change: per S2 observation, S1 at the target minus S1 at that observation's date;
    padding slots and unknown values are 0 with flag 0. A model takes it only with s1_change."""
    st = series.crop(slice(20, 30), slice(30, 40))
    day = float(st.s2_days[70]) + 0.2
    sub = st.select_s2(np.abs(st.s2_days - day) > 0.5)
    x = D.model_inputs(sub, day, 6, 4, obs_change=True)
    assert "obs_s1_change" not in D.model_inputs(sub, day, 6, 4)
    at = D.s1_at(sub, day)
    oc = x["obs_s1_change"]
    assert oc.shape == (6, 3, 10, 10)
    for slot, dt in enumerate(x["s2_dt"]):
        expect = at - D.s1_at(sub, day + float(dt))
        known = np.isfinite(expect).all(axis=0)
        assert known.any()
        np.testing.assert_allclose(oc[slot, :2][:, known], expect[:, known], rtol=1e-4, atol=1e-4)
        np.testing.assert_array_equal(oc[slot, 2], known.astype(np.float32))
    few = sub.select_s2(np.abs(sub.s2_days - day) < 8)
    y = D.model_inputs(few, day, 6, 4, obs_change=True)
    n = int(np.count_nonzero(y["s2_valid"].reshape(6, -1).any(axis=1)))
    assert 0 < n < 6 and not y["obs_s1_change"][n:].any()  # padding slots
    past = sub.select_s1(sub.s1_days < day - 60)  # no S1 near the target: unknown everywhere
    assert not D.model_inputs(past, day, 6, 4, obs_change=True)["obs_s1_change"].any()
    with pytest.raises(ValueError, match="s1_change"):
        TemporalGenerator(d=8, heads=2, layers=1, obs_s1_change=True)


@pytest.fixture(scope="module")
def attn_checkpoint(uds_dir, tmp_path_factory):
    """A small two-layer model trained for a few steps on the real series."""
    out = tmp_path_factory.mktemp("attn")
    TR.train(_args(uds_dir, out, epochs=1, steps=3, seed=2, heads=2, layers=2, s1_change=True))
    return out / "last.pt"


def test_attention_weights_per_observation(series, attn_checkpoint):
    from sentinel_densify.core.evaluate import GAP, inputs_for
    from sentinel_densify.core.temporal.attention import at_pixel, attention, sensor_shares

    model = TR.model_from_checkpoint(load_checkpoint(attn_checkpoint))
    day = float(series.s2_days[80])
    sub = inputs_for(series, day, GAP, 0.0).crop(slice(0, 24), slice(0, 24))
    sub.s2[:, :, :6, :6] = np.nan  # a corner cloudy on every date: no optical observation there
    res = attention(model, sub, day, 4, 4)
    x = D.model_inputs(sub, day, 4, 4)
    obs = res["observations"]
    assert [o["sensor"] for o in obs] == ["S2"] * 4 + ["S1"] * 4 + ["none"]  # K2 + K1 observations, the null token
    np.testing.assert_allclose([o["days"] for o in obs[:8]], np.r_[x["s2_dt"], x["s1_dt"]], atol=0.01)
    assert res["weights"].shape == (2, 9, 24, 24)
    np.testing.assert_allclose(res["weights"].sum(axis=1), 1.0, atol=1e-5)  # per layer and pixel
    masked = res["valid"] < 0.5
    assert masked[:4].any() and float(res["weights"][:, :8][:, masked].max()) < 1e-6  # masked out: no weight
    corner = at_pixel(res, 2, 2)
    assert [r["weight"][-1] for r in corner] == sorted((r["weight"][-1] for r in corner), reverse=True)
    assert all(r["weight"] == [0.0, 0.0] and r["clear"] is False for r in corner if r["sensor"] == "S2")
    on_sar = sum(r["weight"][-1] for r in corner if r["sensor"] != "S2")
    assert on_sar == pytest.approx(1.0, abs=1e-3)  # all on SAR and the null token
    shares = sensor_shares(res)
    assert sum(s["pixels"] for s in shares) == 24 * 24
    for s in shares:
        assert s["S2"] + s["S1"] + s["none"] == pytest.approx(1.0, abs=1e-3)
    far = shares[-1]  # the cloudy corner has no clear observation at all
    assert far["nearest_clear_days"] == "> 60" and far["pixels"] >= 36 and far["S2"] < 1e-3


def test_attention_cli(uds_dir, attn_checkpoint, tmp_path, capsys):
    import json

    from sentinel_densify.core import cli

    out = tmp_path / "att.json"
    base = ["attention", "--checkpoint", str(attn_checkpoint), "--data", str(uds_dir)]
    assert cli.main([*base, "--date", "2018-05-20", "--lead", "15", "--pixel", "3,4", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["task"] == "forecasting" and report["pixel"] == [3, 4]
    dated = [r for r in report["at_pixel"] if r["date"]]
    assert dated and all(r["date"] <= "2018-05-05" for r in dated)  # nothing after the cut-off
    assert "S2" in capsys.readouterr().out
    assert cli.main([*base, "--date", "2031-01-01"]) == 1
    assert "out of range" in capsys.readouterr().err
    assert cli.main([*base, "--date", "2018-05-20", "--pixel", "500,1"]) == 1
    assert "outside" in capsys.readouterr().err
    assert not list(tmp_path.glob(".*partial*"))  # the JSON was written whole


def test_hand_made_checkpoints_are_named_errors(uds_dir, attn_checkpoint, tmp_path, capsys):
    """A checkpoint edited by hand (no architecture in its config, or weights of another size) is a
    one-line error naming the file in export and attention, not a KeyError or a torch traceback."""
    from sentinel_densify.core import cli

    ckpt = load_checkpoint(attn_checkpoint)
    no_arch = {**ckpt, "config": {k: v for k, v in ckpt["config"].items() if k != "model"}}
    partial = {**ckpt, "config": {**ckpt["config"], "model": {"d": 32}}}
    wider = {**ckpt, "config": {**ckpt["config"], "model": {**ckpt["config"]["model"], "d": 48}}}
    for name, bad, says in (("no_arch.pt", no_arch, "its config lacks the architecture (model)"),
                            ("partial.pt", partial, "its config lacks the architecture (heads, layers"),
                            ("wider.pt", wider, "its weights do not fit the architecture its config names")):
        path = tmp_path / name
        torch.save(bad, path)
        with pytest.raises(InputError, match=re.escape(f"{name}: {says}")):
            TR.model_from_checkpoint(load_checkpoint(path), name)
        for argv in (["export", "--checkpoint", str(path), "--out", str(tmp_path / f"{name}.onnx")],
                     ["attention", "--checkpoint", str(path), "--data", str(uds_dir), "--date", "2018-05-20"]):
            assert cli.main(argv) == 1
            err = capsys.readouterr().err
            assert says in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / f"{name}.onnx").exists()
    TR.model_from_checkpoint(ckpt)  # the real one loads
