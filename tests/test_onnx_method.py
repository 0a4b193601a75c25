"""ONNX export of the temporal model, its contract, tiling, and the "onnx" method on real data."""

from __future__ import annotations

import argparse
import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

from sentinel_densify.core.errors import InputError  # noqa: E402
from sentinel_densify.core.methods import create  # noqa: E402
from sentinel_densify.core.model_contract import read_contract, write_contract  # noqa: E402
from sentinel_densify.core.temporal import dataset as D  # noqa: E402
from sentinel_densify.core.temporal import train as TR  # noqa: E402
from sentinel_densify.core.temporal.calibration import nearest_clear_days, scale_map  # noqa: E402
from sentinel_densify.core.temporal.export import contract_for, export_onnx  # noqa: E402
from sentinel_densify.core.tiling import _starts, fit_tile, predict_tiled  # noqa: E402
from sentinel_densify.core.training import load_checkpoint  # noqa: E402


@pytest.fixture(scope="module")
def series(uds_dir):
    return D.load_series(uds_dir)


def _train_tiny(uds_dir, out, *extra: str):
    parser = argparse.ArgumentParser()
    TR.configure(parser)
    TR.train(parser.parse_args(["--data", str(uds_dir), "--out", str(out), "--no-progress", "--epochs", "1",
                                "--steps", "3", "--batch", "2", "--crop", "16", "--width", "8", "--heads", "2",
                                "--layers", "1", "--k2", "4", "--k1", "3", "--seed", "1", *extra]))
    return out / "last.pt", export_onnx(out / "last.pt", out / "model.onnx")


@pytest.fixture(scope="module")
def trained(uds_dir, tmp_path_factory):
    """A tiny model trained for a few steps on the real series, and its ONNX export."""
    return _train_tiny(uds_dir, tmp_path_factory.mktemp("onnx"))


def _with_contract(src, dst, contract: dict):
    """A copy of the ONNX file src at dst whose metadata is `contract` (a hand-edited contract)."""
    import onnx

    model = onnx.load(str(src))
    del model.metadata_props[:]
    onnx.save(model, str(dst))
    write_contract(dst, contract)
    return dst


def _matches_torch(model, sess, batch: dict, names: list[str]) -> list:
    """ONNX Runtime's outputs on `batch`, checked against the torch model's within 1e-4."""
    with torch.no_grad():
        ref = model(*TR.to_tensors(batch, "cpu"))
    got = sess.run(["mean", "logvar"], {k: batch[k] for k in names})
    for a, b in zip(got, ref, strict=True):
        assert a.shape == tuple(b.shape)
        np.testing.assert_allclose(a, b.numpy(), atol=1e-4, rtol=0)
    return got


def _inputs(series, day: float, k2: int, k1: int, size: int):
    sub = series.select_s2(np.abs(series.s2_days - day) > 0.5).crop(slice(5, 5 + size), slice(9, 9 + size))
    return sub, D.model_inputs(sub, day, k2, k1)


def test_onnx_matches_torch(trained, series):
    _check_onnx_matches_torch(*trained, series)


def test_onnx_matches_torch_with_s1_change_and_cloud_context(uds_dir, series, tmp_path, trained):
    """A model with the s1_change input (model version 3) and the clear-fraction windows exports,
    matches torch and runs through the onnx method; a version 2 model has no s1_change input."""
    ckpt_path, onnx_path = _train_tiny(uds_dir, tmp_path, "--cloud-context", "--target-margin", "2", "--s1-change")
    contract = read_contract(onnx_path)
    assert contract["version"] == 3 and contract["inputs"]["order"][-1] == "s1_change"
    assert contract["architecture"]["cloud_context"] is True and contract["architecture"]["s1_change"] is True
    assert load_checkpoint(ckpt_path)["config"]["target_margin"] == 2
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == contract["inputs"]["order"]
    _check_onnx_matches_torch(ckpt_path, onnx_path, series)
    old = read_contract(trained[1])
    assert old["version"] == 2 and "s1_change" not in old["inputs"]["order"]
    day = float(series.s2_days[80])
    sub, x = _inputs(series, day, 4, 3, 40)
    method = create(str(onnx_path), "cpu")
    mean, _ = method.predict(sub, day)
    ref, ref_lv = (o[0] for o in sess.run(["mean", "logvar"], {k: np.asarray(x[k])[None]
                                                                for k in contract["inputs"]["order"]}))
    np.testing.assert_allclose(mean, ref, atol=1e-5)  # one tile: the method feeds s1_change too
    x["s1_change"][:2] += 3.0  # the model does read it (ONNX Runtime is deterministic: any change counts)
    moved = sess.run(["mean", "logvar"], {k: np.asarray(x[k])[None] for k in contract["inputs"]["order"]})
    assert np.abs(moved[0][0] - ref).max() > 0 or np.abs(moved[1][0] - ref_lv).max() > 0


def _check_onnx_matches_torch(ckpt_path, onnx_path, series):
    ckpt = load_checkpoint(ckpt_path)
    model = TR.build_model(ckpt["config"])
    model.load_state_dict(ckpt["model_state"])
    model.eval()
    for i in range(model.head[-1].weight.shape[0]):  # exported weights: not just the zero-initialised head
        assert ckpt["model_state"]["head.2.weight"][i].abs().sum() > 0
    import onnx

    # the attention as exported: its inference form (model.FusedCrossAttention), no key / value projection of
    # each token left; its outputs are the trained model's within 1e-4 (below)
    weights = {i.name for i in onnx.load(str(onnx_path)).graph.initializer}
    assert {"attn.0.qk.weight", "attn.0.out.weight"} <= weights and not any(".k." in w or ".v." in w for w in weights)
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    # other K and tile size than the export example: the axes are dynamic
    for k2, k1, size in [(4, 3, 40), (6, 2, 23)]:
        _, x = _inputs(series, float(series.s2_days[75]), k2, k1, size)
        batch = {k: np.stack([v, v]) for k, v in x.items()}
        batch["s2_valid"][1, 0] = 0.0
        got = _matches_torch(model, sess, batch, [i.name for i in sess.get_inputs()])
        assert all(a.shape == (2, 10, size, size) for a in got)


def test_contract_roundtrip(trained, tmp_path):
    _, onnx_path = trained
    c = read_contract(onnx_path)
    assert c["kind"] == "temporal" and c["k2"] == 4 and c["k1"] == 3
    assert c["bands"][0] == "B02" and c["inputs"]["order"][0] == "s2" and c["tile"] > c["overlap"] > 0
    assert c["training"]["holdout"]["months"] and "std_scale" in c["calibration"]
    import onnx

    model = onnx.load(str(onnx_path))
    del model.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(model, str(bare))
    with pytest.raises(InputError, match="bare.onnx"):
        read_contract(bare)
    write_contract(bare, {"kind": "x", "inputs": {}, "outputs": {}, "note": [1, 2]})
    assert read_contract(bare)["note"] == [1, 2]
    with pytest.raises(InputError, match="bare.onnx"):
        create(str(bare), "cpu")  # a contract, but not a temporal model
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"junk")
    with pytest.raises(InputError, match="junk.onnx"):
        read_contract(junk)


@pytest.mark.parametrize("change, field", [
    (lambda c: c.pop("k2"), "k2"),
    (lambda c: c.update(k1="six"), "k1"),
    (lambda c: c.update(overlap=c["tile"]), "tile / overlap / halo"),
    (lambda c: c["calibration"].update(std_scale=-1.0), "calibration"),
    (lambda c: c["calibration"].update(std_scale_by_days={"days": [3.0, 10.0], "scale": [1.0]}), "calibration"),
    (lambda c: c.update(bands=7), "bands"),
    (lambda c: c.update(bands="{not json"), "bands"),  # metadata that is not JSON is kept as a string
    (lambda c: c.update(bands=["B02", "B99"]), "bands"),
])
def test_a_malformed_contract_is_named_not_a_traceback(trained, tmp_path, change, field):
    """A hand-edited or foreign contract that keeps kind / inputs / outputs but breaks a field the
    method needs: an InputError naming the file and the field, from every command that runs it."""
    _, onnx_path = trained
    contract = read_contract(onnx_path)
    change(contract)
    edited = _with_contract(onnx_path, tmp_path / "edited.onnx", contract)
    with pytest.raises(InputError, match=f"edited.onnx: its model contract's {field} is missing or malformed"):
        create(str(edited), "cpu")


def test_onnx_method_on_real_crop(trained, series):
    _, onnx_path = trained
    method = create(str(onnx_path), "cpu")
    assert method.provider == "CPUExecutionProvider"
    method.tile, method.overlap = 32, 8  # several tiles with overlap on this crop
    day = float(series.s2_days[80])
    sub, x = _inputs(series, day, 4, 3, 48)
    mean, std = method.predict(sub, day)
    assert mean.shape == std.shape == (10, 48, 48) and mean.dtype == np.float32
    assert np.isfinite(mean).all() and np.isfinite(std).all() and (std > 0).all()
    whole = create(str(onnx_path), "cpu")
    whole.tile = 64  # one tile: exactly the model on the crop
    m1, s1 = whole.predict(sub, day)
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    ref = sess.run(["mean", "logvar"], {i.name: np.asarray(x[i.name])[None] for i in sess.get_inputs()})
    np.testing.assert_allclose(m1, ref[0][0], atol=1e-6)
    raw = np.exp(0.5 * ref[1][0])
    table = read_contract(onnx_path)["calibration"]["std_scale_by_days"]  # fitted on the validation months
    assert whole.scale_by_days == table and len(table["days"]) >= 2
    days = nearest_clear_days(x["base_info"])
    np.testing.assert_allclose(s1, raw * scale_map(days, table)[None], rtol=1e-5)
    near, far = days <= table["days"][0], days >= table["days"][-1]  # the end bins' own temperatures
    np.testing.assert_allclose(s1[:, near], raw[:, near] * table["scale"][0], rtol=1e-5)
    np.testing.assert_allclose(s1[:, far], raw[:, far] * table["scale"][-1], rtol=1e-5)
    whole.scale_by_days = None  # a contract without the table: one temperature
    np.testing.assert_allclose(whole.predict(sub, day)[1], raw * whole.std_scale, rtol=1e-5)
    assert np.abs(mean - m1).mean() < 0.01  # tiles blend into nearly the one-tile answer


def test_onnx_method_fits_its_tiles_to_the_window(trained, series, monkeypatch):
    """The exported graph takes any tile size, so the method runs tiles up to RUN_TILE (not the
    contract's 64 px) shrunk to the window (fit_tile): fewer pixels through ONNX Runtime than
    tiles of the full size, and the same answer within the blending of tile edges."""
    from sentinel_densify.core.methods import onnx_method

    _, onnx_path = trained
    method = create(str(onnx_path), "cpu")
    assert method.fit and method.tile == max(read_contract(onnx_path)["tile"], onnx_method.RUN_TILE)
    day = float(series.s2_days[80])
    sub, _ = _inputs(series, day, 4, 3, 60)
    whole = method.predict(sub, day)  # 60 px < RUN_TILE: one tile
    fed = []
    run = method._run
    monkeypatch.setattr(method, "_run", lambda t, c: fed.append(t["s2"].shape) or run(t, c))
    h, w = sub.s2.shape[-2:]  # 60 x 55 px: two tiles of 44 px per axis, fitted to 34 x 32 px
    method.tile, method.overlap = 44, 8
    fitted = method.predict(sub, day)
    assert {s[-2:] for s in fed} == {(fit_tile(h, 44, 8), fit_tile(w, 44, 8))} == {(34, 32)}
    assert sum(s[0] for s in fed) == 4
    method.fit, fed[:] = False, []  # the same tile count at the full 44 px
    plain = method.predict(sub, day)
    assert {s[-2:] for s in fed} == {(44, 44)} and sum(s[0] for s in fed) == 4
    for got in (fitted, plain):
        assert np.abs(got[0] - whole[0]).mean() < 0.01 and np.abs(got[1] - whole[1]).mean() < 0.01


def _names(providers: list) -> list[str]:
    """The providers' names, without the options some are given with (name, options)."""
    return [p if isinstance(p, str) else p[0] for p in providers]


def test_cuda_is_asked_for_when_a_gpu_is_present_and_cpu_runs_when_it_fails(trained, series, monkeypatch):
    """No GPU here, so its presence is mocked (model_contract.gpu_present) and a spy records the
    providers each real ONNX Runtime session is asked for: CUDA first on `auto` and `gpu`, never on
    `cpu`; the method reports the provider that ran, and where CUDA cannot start the CPU runs the model."""
    from sentinel_densify.core import model_contract

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("this onnxruntime build has no CUDA provider to ask for")
    _, onnx_path = trained
    real, asked, options = ort.InferenceSession, [], []

    def spy(path, sess_options=None, providers=None, **kw):
        asked.append(_names(providers))
        options.append([p[1] for p in providers if not isinstance(p, str)])
        return real(path, sess_options=sess_options, providers=providers, **kw)

    monkeypatch.setattr(ort, "InferenceSession", spy)
    monkeypatch.setattr(model_contract, "gpu_present", lambda: True)
    day = float(series.s2_days[80])
    sub, _ = _inputs(series, day, 4, 3, 32)
    expected = create(str(onnx_path), "cpu").predict(sub, day)
    assert asked[-1] == ["CPUExecutionProvider"]
    # what ORT runs when asked for CUDA: the CPU here (no CUDA libraries), CUDA on a GPU machine
    ran = real(str(onnx_path), providers=["CUDAExecutionProvider", "CPUExecutionProvider"]).get_providers()[0]
    for device in ("auto", "gpu"):
        method = create(str(onnx_path), device)
        assert asked[-1][0] == "CUDAExecutionProvider" and options[-1] == [{"use_tf32": "0"}]  # full float32
        assert method.provider == ran
        np.testing.assert_allclose(method.predict(sub, day)[0], expected[0],
                                   atol=1e-6 if ran == "CPUExecutionProvider" else 1e-4)

    def failing(path, sess_options=None, providers=None, **kw):  # a CUDA provider that raises
        asked.append(_names(providers))
        if "CUDAExecutionProvider" in asked[-1]:
            raise RuntimeError("CUDA failure")
        return real(path, sess_options=sess_options, providers=providers, **kw)

    monkeypatch.setattr(ort, "InferenceSession", failing)
    method = create(str(onnx_path), "auto")
    assert asked[-2][0] == "CUDAExecutionProvider" and asked[-1] == ["CPUExecutionProvider"]
    assert method.provider == "CPUExecutionProvider"


def test_cuda_libraries_are_preloaded_once_and_only_when_cuda_is_tried(trained, monkeypatch, capsys):
    """No GPU here (mocked as above): open_session loads the pip CUDA libraries (onnxruntime.preload_dlls)
    before it asks for CUDA, once per process and without printing what it did not find, never for `cpu`.
    On an H200 the CUDA session it opens runs in full float32 (use_tf32 0), checked there (models/README)."""
    from sentinel_densify.core import model_contract

    if not hasattr(ort, "preload_dlls") or "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("this onnxruntime build has no CUDA provider or no preload_dlls")
    real, calls = ort.preload_dlls, []

    def spy(*a, **kw):
        calls.append(1)
        return real(*a, **kw)

    monkeypatch.setattr(ort, "preload_dlls", spy)
    monkeypatch.setattr(model_contract, "_PRELOADED", [])
    monkeypatch.setattr(model_contract, "gpu_present", lambda: True)
    path = str(trained[1])
    model_contract.open_session(path, "cpu")
    assert calls == []
    for device in ("auto", "cuda", "auto"):
        model_contract.open_session(path, device)
    assert calls == [1]
    assert capsys.readouterr().out == ""


def test_fit_tile_covers_with_as_few_tiles_and_no_more_pixels():
    assert fit_tile(528, 256, 16) == 187  # 3 tiles of 187 px instead of 256 px at 0, 240 and 272
    assert fit_tile(40, 64, 16) == 40 and fit_tile(64, 64, 16) == 64
    for size in range(1, 600, 7):
        for tile, overlap in [(64, 16), (256, 16), (32, 0), (20, 19)]:
            fit = fit_tile(size, tile, overlap)
            n = len(_starts(size, min(tile, size), max(1, min(tile, size) - overlap)))
            assert fit <= min(tile, size) and len(_starts(size, fit, max(1, fit - overlap))) == n
            if fit < size:  # the smallest such tile
                assert len(_starts(size, fit - 1, max(1, fit - 1 - overlap))) > n
    x = np.random.default_rng(1).random((3, 70, 53)).astype(np.float32)
    shapes = []
    out = predict_tiled(lambda t: shapes.append(t["x"].shape) or t["x"] + 1, {"x": x}, tile=32, overlap=8,
                        batch=2, fit=True)
    np.testing.assert_allclose(out, x + 1, rtol=1e-6)
    th, tw = fit_tile(70, 32, 8), fit_tile(53, 32, 8)
    assert {s[-2:] for s in shapes} == {(th, tw)} and [s[0] for s in shapes] == [2, 2, 2]
    shapes.clear()  # max_pixels instead of batch: as many tiles per call as hold them
    out = predict_tiled(lambda t: shapes.append(t["x"].shape) or t["x"] + 1, {"x": x}, tile=32, overlap=8,
                        batch=2, fit=True, max_pixels=4 * th * tw + 1)
    np.testing.assert_allclose(out, x + 1, rtol=1e-6)
    assert [s[0] for s in shapes] == [4, 2]


def test_predict_tiled_blends_without_seams():
    rng = np.random.default_rng(0)
    x = rng.random((2, 70, 53)).astype(np.float32)
    same = predict_tiled(lambda t: t["x"] * 2, {"x": x}, tile=32, overlap=8, batch=3)
    np.testing.assert_allclose(same, 2 * x, rtol=1e-6)
    # each tile adds its own offset: blending must turn tile steps into smooth ramps
    counter = iter(range(1000))
    smooth = predict_tiled(lambda t: np.stack([np.full(t["x"].shape[1:], float(next(counter)))
                                               for _ in t["x"]]), {"x": x}, tile=32, overlap=12, batch=1)
    hard = predict_tiled(lambda t: np.stack([np.full(t["x"].shape[1:], float(next(counter)))
                                             for _ in t["x"]]), {"x": x}, tile=32, overlap=0, batch=1)
    assert np.abs(np.diff(smooth, axis=-1)).max() < 0.5 * np.abs(np.diff(hard, axis=-1)).max()


def test_heldout_evaluation_scores_each_fold_on_its_own_months(trained, uds_dir, series, tmp_path):
    """Cross-validation by month blocks: a fold's model is scored only on its test months."""
    from sentinel_densify.core.evaluate import evaluate_heldout, heldout_dates, target_indices

    _, fold3 = trained
    _, fold2 = _train_tiny(uds_dir, tmp_path / "fold2", "--holdout-offset", "2")
    months3 = set(read_contract(fold3)["training"]["holdout"]["months"])
    months2 = set(read_contract(fold2)["training"]["holdout"]["months"])
    assert months3 and months2 and not months3 & months2
    assert all(d[:7] in months2 for d in heldout_dates(fold2, series))
    rep = evaluate_heldout(series, [str(fold3), str(fold2)], ["linear", "persistence"], label="cv",
                           gaps=[0], leads=[15], device="cpu")
    model_rows = [r for r in rep["rows"] if r["method"] == "cv"]
    assert model_rows and 0 < len(rep["targets"]) < len(target_indices(series))  # only held-out targets
    for r in model_rows:
        months = months3 if r["model"] == str(fold3) else months2
        assert r["target_date"][:7] in months
    assert {r["model"] for r in model_rows} == {str(fold3), str(fold2)}
    lin = {(r["target_date"], r["task"], r["days"]) for r in rep["rows"] if r["method"] == "linear"}
    assert lin == {(r["target_date"], r["task"], r["days"]) for r in model_rows}  # same targets and tasks
    cv = [s for s in rep["summary"] if s["method"] == "cv" and s["task"] == "gap-filling"]
    assert cv[0]["n_targets"] == len({r["target_date"] for r in model_rows})


def test_model_card_from_heldout_report(trained, series, tmp_path):
    """The card's numbers are the report's; the bar checks follow from them; JSON beside the markdown."""
    import json

    from sentinel_densify.core.evaluate import evaluate_heldout
    from sentinel_densify.core.temporal.card import build_card, write_card

    _, onnx_path = trained
    rep = evaluate_heldout(series, [str(onnx_path)], ["linear", "nearest", "persistence"], label="tiny",
                           gaps=[0, 10], leads=[15], device="cpu")
    md, card = build_card(onnx_path, rep, figure="fig.png", command="densify train temporal ...")
    rows = card["evaluation"]["heldout"]["rows"]
    assert [(r["task"], r["days"]) for r in rows] == [("gap-filling", 0.0), ("gap-filling", 10.0),
                                                       ("forecasting", 15.0)]
    summary = {(s["task"], s["days"], s["method"]): s for s in rep["summary"]}
    for r in rows:
        ref = "linear" if r["task"] == "gap-filling" else "persistence"
        assert r["psnr"] == summary[(r["task"], r["days"], "tiny")]["psnr"]
        assert r["gain_db"] == pytest.approx(r["psnr"] - summary[(r["task"], r["days"], ref)]["psnr"])
        assert f"**{r['psnr']:.2f}**" in md and f"{r['gain_db']:+.2f}" in md
    bar = {b["what"]: b for b in card["evaluation"]["heldout"]["bar"]}
    g0, g10 = rows[0]["gain_db"], rows[1]["gain_db"]
    assert bar["PSNR gain over linear at G = 0 >= 2 dB"]["met"] == (g0 >= 2.0)
    assert bar["gain at G = 10 larger than at G = 0"]["met"] == (g10 > g0)
    assert bar["gain at G = 10 more than 2 dB"]["met"] == (g10 > 2.0)
    assert bar["better than persistence at L = 15"]["met"] == (rows[2]["gain_db"] > 0)
    assert card["contract"]["kind"] == "temporal" and card["size_bytes"] == onnx_path.stat().st_size
    assert "fig.png" in md and "2018-07" in md  # the held-out month's targets are named
    from sentinel_densify.core.methods.onnx_method import RUN_TILE

    tile = card["contract"]["tile"]  # the contract's tile is the least the method runs; it says how large it goes
    assert f"tiles of {tile} px or more" in md and f"up to {RUN_TILE} px" in md

    report = tmp_path / "report.json"
    report.write_text(json.dumps(rep))
    out_md, out_json = write_card(onnx_path, tmp_path / "card.md", report)
    assert out_md.read_text().startswith("# Model card") and json.loads(out_json.read_text())["sha256"]
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InputError, match="bad.json"):
        write_card(onnx_path, tmp_path / "c2.md", bad)


def test_export_of_several_runs_keeps_the_best_validation_score(uds_dir, tmp_path, capsys):
    from sentinel_densify.core import cli

    runs = [_train_tiny(uds_dir, tmp_path / f"seed{s}", "--seed", str(s))[0] for s in (7, 8)]
    scores = [load_checkpoint(p)["metrics"]["val_score"] for p in runs]
    assert scores[0] != scores[1]
    out = tmp_path / "best.onnx"
    assert cli.main(["export", "--checkpoint", *map(str, runs), "--out", str(out)]) == 0
    assert read_contract(out)["metrics"]["val_score"] == pytest.approx(max(scores))
    assert str(runs[scores.index(max(scores))]) in capsys.readouterr().out
    bare = tmp_path / "bare.pt"
    ckpt = load_checkpoint(runs[0])
    ckpt["metrics"].pop("val_score")
    torch.save(ckpt, bare)
    assert cli.main(["export", "--checkpoint", str(runs[0]), str(bare), "--out", str(out)]) == 1
    assert "bare.pt" in capsys.readouterr().err
    old = load_checkpoint(runs[0])  # saved before the per-distance temperature: --recalibrate measures it
    measured = dict(old["metrics"])
    for key in ("temperature_days", "temperature_by_days"):
        old["metrics"].pop(key)
    torch.save(old, bare)
    assert cli.main(["export", "--checkpoint", str(bare), "--out", str(out)]) == 0
    assert "std_scale_by_days" not in read_contract(out)["calibration"]
    assert cli.main(["export", "--checkpoint", str(bare), "--out", str(out), "--recalibrate"]) == 0
    cal = read_contract(out)["calibration"]
    np.testing.assert_allclose(cal["std_scale_by_days"]["scale"], measured["temperature_by_days"], rtol=1e-5)
    assert cal["std_scale"] == pytest.approx(measured["temperature"], rel=1e-5)
    # a haze screen added at export: written to the contract, validation and calibration measured with it
    assert cli.main(["export", "--checkpoint", str(runs[0]), "--out", str(out), "--haze-screen", "0.04"]) == 0
    screened = read_contract(out)
    assert screened["haze_screen"]["threshold"] == 0.04 and "how" in screened["haze_screen"]
    assert screened["metrics"]["val_score"] != pytest.approx(scores[0], abs=1e-6)  # hazy validation inputs
    with pytest.raises(SystemExit) as stop:  # an argument error: argparse's usage line and exit 2
        cli.main(["export", "--checkpoint", str(runs[0]), "--out", str(out), "--haze-screen", "-1"])
    assert stop.value.code == 2 and "--haze-screen: -1 is not a number >= 0" in capsys.readouterr().err


def test_haze_screen_travels_from_training_to_the_onnx_method(uds_dir, series, tmp_path):
    """--haze-screen is recorded by training, written to the contract and applied by the onnx method
    exactly as torch applies it; `export --haze-screen 0` drops it (and measures the validation again)."""
    ckpt_path, onnx_path = _train_tiny(uds_dir, tmp_path, "--haze-screen", "0.04", "--haze-targets")
    ckpt = load_checkpoint(ckpt_path)
    assert ckpt["config"]["haze_screen"]["threshold"] == 0.04 and ckpt["config"]["haze_targets"] is True
    assert read_contract(onnx_path)["haze_screen"]["threshold"] == 0.04
    day = float(series.s2_days[80])
    sub = series.select_s2(np.abs(series.s2_days - day) > 0.5).crop(slice(0, 40), slice(0, 40))
    j = int(np.argmin(np.abs(sub.s2_days - day)))
    sub.s2[j, :3, 4:30, 4:30] += np.array([0.08, 0.06, 0.045], np.float32)[:, None, None]  # haze on the nearest
    method = create(str(onnx_path), "cpu")
    assert method.describe()["haze_screen"]["threshold"] == 0.04
    model = TR.model_from_checkpoint(ckpt)
    mean, _ = method.predict(sub, day)
    ref, _ = TR.predict(model, sub, day, 4, 3)
    np.testing.assert_allclose(mean, ref, atol=1e-4)
    model.haze = None
    off, _ = TR.predict(model, sub, day, 4, 3)
    assert np.abs(off - ref)[:, 8:26, 8:26].mean() > 1e-3  # the screen changes what the model sees
    plain = export_onnx(ckpt_path, tmp_path / "plain.onnx", haze=0.0)
    assert "haze_screen" not in read_contract(plain)
    np.testing.assert_allclose(create(str(plain), "cpu").predict(sub, day)[0], off, atol=1e-4)


def test_version_4_model_with_obs_s1_change_exports_and_runs(uds_dir, series, tmp_path):
    """A model with the per-observation S1 change (model version 4) exports with a dynamic K2 for
    it, matches torch, runs through the onnx method and reads that input."""
    ckpt_path, onnx_path = _train_tiny(uds_dir, tmp_path, "--s1-change", "--obs-s1-change")
    contract = read_contract(onnx_path)
    assert contract["version"] == 4 and contract["inputs"]["order"][-2:] == ["s1_change", "obs_s1_change"]
    assert load_checkpoint(ckpt_path)["config"]["model"]["obs_s1_change"] is True
    model = TR.model_from_checkpoint(load_checkpoint(ckpt_path))
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    day = float(series.s2_days[80])
    for k2, size in [(4, 40), (6, 23)]:  # another K2 and tile size than the export example
        sub = series.select_s2(np.abs(series.s2_days - day) > 0.5).crop(slice(5, 5 + size), slice(9, 9 + size))
        x = D.model_inputs(sub, day, k2, 3, obs_change=True)
        _matches_torch(model, sess, {k: np.asarray(v)[None] for k, v in x.items()}, names)
    sub = series.select_s2(np.abs(series.s2_days - day) > 0.5).crop(slice(5, 45), slice(9, 49))
    x = D.model_inputs(sub, day, 4, 3, obs_change=True)
    mean, _ = create(str(onnx_path), "cpu").predict(sub, day)
    ref = sess.run(["mean", "logvar"], {k: np.asarray(x[k])[None] for k in names})
    np.testing.assert_allclose(mean, ref[0][0], atol=1e-5)  # one tile: the method feeds obs_s1_change
    x["obs_s1_change"][:, :2] += 3.0
    moved = sess.run(["mean", "logvar"], {k: np.asarray(x[k])[None] for k in names})
    assert np.abs(moved[0][0] - ref[0][0]).max() > 0 or np.abs(moved[1][0] - ref[1][0]).max() > 0


def test_version_5_model_with_s1_span_exports_and_runs(uds_dir, series, tmp_path):
    """A model with the S1 span (s1_change in 6 channels, model version 5) exports, matches torch,
    and the onnx method feeds it the span (read from the contract's architecture)."""
    ckpt_path, onnx_path = _train_tiny(uds_dir, tmp_path, "--s1-change", "--s1-span")
    contract = read_contract(onnx_path)
    assert contract["version"] == 5 and contract["architecture"]["s1_span"] is True
    assert "6, h, w" in contract["inputs"]["s1_change"]
    model = TR.model_from_checkpoint(load_checkpoint(ckpt_path))
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    day = float(series.s2_days[80])
    sub = series.select_s2(np.abs(series.s2_days - day) > 20).crop(slice(5, 45), slice(9, 49))
    x = D.model_inputs(sub, day, 4, 3, span=True)
    batch = {k: np.asarray(v)[None] for k, v in x.items()}
    got = _matches_torch(model, sess, batch, names)
    method = create(str(onnx_path), "cpu")
    mean, _ = method.predict(sub, day)
    np.testing.assert_allclose(mean, got[0][0], atol=1e-5)  # one tile: the method feeds the 6 channels
    batch["s1_change"][:, 3:5] += 3.0
    moved = sess.run(["mean", "logvar"], {k: batch[k] for k in names})
    assert np.abs(moved[0] - got[0]).max() > 0 or np.abs(moved[1] - got[1]).max() > 0

    contract["architecture"].pop("s1_span")  # a contract that lost it
    edited = _with_contract(onnx_path, tmp_path / "edited.onnx", contract)
    with pytest.raises(InputError, match="edited.onnx: its s1_change input has 6 channels but its model contract "
                                         "does not say s1_span"):
        create(str(edited), "cpu")


HEAD = {"head.2.weight": 0.3, "head.2.bias": 0.3}  # three steps leave the zero-initialised head near zero


def _shaken(uds_dir, tmp_path, options: list[str], shake: dict[str, float]):
    """A tiny model trained with `options`, the weights in `shake` randomised (times their scale) so its output
    depends on its inputs and feeding them is tested, and its ONNX export: (checkpoint, its path, onnx path)."""
    ckpt = load_checkpoint(_train_tiny(uds_dir, tmp_path / "run", *options)[0])
    gen = torch.Generator().manual_seed(0)
    for key, scale in shake.items():
        ckpt["model_state"][key] = torch.randn(ckpt["model_state"][key].shape, generator=gen) * scale
    torch.save(ckpt, tmp_path / "shaken.pt")
    return ckpt, tmp_path / "shaken.pt", export_onnx(tmp_path / "shaken.pt", tmp_path / "shaken.onnx")


def _method_matches_torch(onnx_path, ckpt_path, series):
    """The onnx method and the torch model on a real 40 px window with a 20-day gap agree within 1e-4:
    (method, model, window, day, torch's mean)."""
    model = TR.model_from_checkpoint(load_checkpoint(ckpt_path))
    day = float(series.s2_days[80])
    sub = series.select_s2(np.abs(series.s2_days - day) > 20).crop(slice(5, 45), slice(9, 49))
    method = create(str(onnx_path), "cpu")
    mean, _ = method.predict(sub, day)
    ref, _ = TR.predict(model, sub, day, 4, 3)
    np.testing.assert_allclose(mean, ref, atol=1e-4)
    return method, model, sub, day, ref


def test_version_6_model_with_a_field_scale_s1_change_exports_and_runs(uds_dir, series, tmp_path):
    """--s1-guided R (model version 6): training records it, the contract carries it, the onnx method
    feeds the guided s1_change exactly as torch does (it changes the output), and a malformed value
    in a contract is named."""
    ckpt, ckpt_path, onnx_path = _shaken(uds_dir, tmp_path, ["--s1-change", "--s1-guided", "2"], HEAD)
    guided = ckpt["config"]["model"]["s1_guided"]
    assert guided == {"radius": 2, "sigma": D.GUIDE_SIGMA, "guide_bands": list(D.GUIDE_BANDS)}
    contract = read_contract(onnx_path)
    assert contract["version"] == 6 and contract["architecture"]["s1_guided"] == guided
    assert "window of 5 px a side" in contract["inputs"]["s1_change"]
    assert contract["halo"] == 8  # radius 2 + the model's own context fit in the usual halo
    wide = copy.deepcopy(ckpt)
    wide["config"]["model"]["s1_guided"]["radius"] = 7
    assert contract_for(wide)["halo"] == 10  # a wider filter needs more context around each engine tile
    method, model, sub, day, ref = _method_matches_torch(onnx_path, ckpt_path, series)
    assert method.describe()["s1_guided"] == guided
    model.s1_guided = None
    per_pixel, _ = TR.predict(model, sub, day, 4, 3)
    assert np.abs(per_pixel - ref).max() > 1e-3  # the method fed the guided input, not the per-pixel one

    for bad in ({"radius": 0}, {"radius": 2, "sigma": -1.0}, {"radius": "two"}, {"radius": 2, "guide_bands": ["B99"]},
                {"radius": 2, "guide_bands": []}):
        edited = _with_contract(onnx_path, tmp_path / "edited.onnx", contract | {
            "architecture": contract["architecture"] | {"s1_guided": bad}})
        with pytest.raises(InputError, match="edited.onnx: its model contract's architecture's s1_guided is missing "
                                             "or malformed"):
            create(str(edited), "cpu")


def test_version_7_model_with_field_scale_s1_observations_exports_and_runs(uds_dir, series, tmp_path):
    """--s1-guided-obs (model version 7): training records it, the contract carries it, the onnx method
    averages the S1 observations exactly as torch's predict does (it changes the output), a malformed
    value is named, and without --s1-guided it is a one-line error before any work."""
    ckpt, ckpt_path, onnx_path = _shaken(uds_dir, tmp_path, ["--s1-change", "--s1-guided", "2", "--s1-guided-obs"],
                                         HEAD | {"enc_s1.net.0.weight": 1.0, "attn.0.v.weight": 1.0})  # and on S1
    guided = ckpt["config"]["model"]["s1_guided"]
    assert guided == {"radius": 2, "sigma": D.GUIDE_SIGMA, "guide_bands": list(D.GUIDE_BANDS), "obs": True}
    contract = read_contract(onnx_path)
    assert contract["version"] == 7 and contract["architecture"]["s1_guided"] == guided
    assert "averaged like s1_change" in contract["inputs"]["s1"]
    method, model, sub, day, ref = _method_matches_torch(onnx_path, ckpt_path, series)
    assert method.describe()["s1_guided"] == guided
    model.s1_guided = {k: v for k, v in guided.items() if k != "obs"}
    raw_obs, _ = TR.predict(model, sub, day, 4, 3)
    assert np.abs(raw_obs - ref).max() > 1e-3  # the method fed the averaged observations, not the raw ones

    edited = _with_contract(onnx_path, tmp_path / "edited.onnx", contract | {
        "architecture": contract["architecture"] | {"s1_guided": guided | {"obs": "yes"}}})
    with pytest.raises(InputError, match="edited.onnx: its model contract's architecture's s1_guided is missing "
                                         "or malformed"):
        create(str(edited), "cpu")
    with pytest.raises(InputError, match="--s1-guided-obs needs --s1-guided RADIUS"):
        _train_tiny(uds_dir, tmp_path / "refused", "--s1-change", "--s1-guided-obs")
    assert not (tmp_path / "refused").exists()


def test_span_and_obs_change_need_s1_change(uds_dir, tmp_path):
    """--s1-span, --obs-s1-change or --s1-guided without --s1-change is a one-line error before any work."""
    for option in ("--s1-span", "--obs-s1-change", "--s1-guided 2"):
        with pytest.raises(InputError, match=f"{option.split()[0]} needs --s1-change"):
            _train_tiny(uds_dir, tmp_path / option.strip("-"), *option.split())
        assert not (tmp_path / option.strip("-")).exists()


def test_export_and_attention_check_out_before_work(trained, uds_dir, tmp_path, capsys):
    """A real checkpoint: `export --out` an existing folder or a path under a file, `attention --out`
    an existing folder: one line, exit 1, nothing written."""
    from sentinel_densify.core import cli

    ckpt, _ = trained
    (tmp_path / "m.onnx").mkdir()
    (tmp_path / "file").write_text("x")
    for out, why in ((tmp_path / "m.onnx", "existing folder"), (tmp_path / "file" / "m.onnx", "which is a file")):
        assert cli.main(["export", "--checkpoint", str(ckpt), "--out", str(out)]) == 1
        err = capsys.readouterr().err.strip()
        assert err == f"densify export: --out {out}: " + (
            "is an existing folder, not a file" if why == "existing folder"
            else f"is under {tmp_path / 'file'}, which is a file, not a folder")
    (tmp_path / "a.json").mkdir()
    assert cli.main(["attention", "--checkpoint", str(ckpt), "--data", str(uds_dir), "--date", "2018-07-05",
                     "--out", str(tmp_path / "a.json")]) == 1
    err = capsys.readouterr()
    assert err.err.strip() == f"densify attention: --out {tmp_path / 'a.json'}: is an existing folder, not a file"
    assert not err.out  # refused before any attention was computed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "file", "m.onnx"]
