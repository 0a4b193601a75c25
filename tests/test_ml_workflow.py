"""An ML engineer's workflow (session 31's audit): held-out cards, leakage notes, the protocol's baselines beside
a model, GAN logs and curves, comparable checkpoints, cloud-removal evaluation, contracts checked and clear
messages. Tiny settings on the real 31UDS series; each test takes seconds."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
torch = pytest.importorskip("torch")

from sentinel_densify.core import cli  # noqa: E402
from sentinel_densify.core.dates import from_days  # noqa: E402
from sentinel_densify.core.errors import InputError  # noqa: E402
from sentinel_densify.core.evaluate import evaluate, evaluate_heldout, target_indices  # noqa: E402
from sentinel_densify.core.gan.train import TrainConfig, plot_curves, train  # noqa: E402
from sentinel_densify.core.methods import create  # noqa: E402
from sentinel_densify.core.model_contract import read_contract, write_contract  # noqa: E402
from sentinel_densify.core.temporal import card as CARD  # noqa: E402
from sentinel_densify.core.temporal.dataset import load_series  # noqa: E402
from sentinel_densify.core.training import MetricsLog, load_checkpoint  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "default.onnx"
GAN = dict(ngf=4, ndf=4, n_blocks=1, patch=32, batch=8, val_fraction=0.25, val_every=1, device="cpu", threads=1)


def _bundled() -> Path:
    if not MODEL.exists():
        pytest.skip("models/default.onnx is not there")
    return MODEL


@pytest.fixture(scope="module")
def series(uds_dir):
    return load_series(uds_dir)


@pytest.fixture(scope="module")
def training_date(series) -> str:
    """A protocol target in one of the bundled model's training months (neither test nor validation)."""
    hold = read_contract(_bundled())["training"]["holdout"]
    held = set(hold["months"]) | set(hold["validation_months"])
    dates = [from_days(float(series.s2_days[t])).date().isoformat() for t in target_indices(series)]
    return next(d for d in dates if d[:7] not in held)


@pytest.fixture(scope="module")
def heldout_report(series, tmp_path_factory) -> Path:
    rep = evaluate_heldout(series, [str(_bundled())], ["linear", "nearest", "persistence"], label="default",
                           gaps=[0], leads=[], device="cpu")
    path = tmp_path_factory.mktemp("heldout") / "report.json"
    path.write_text(json.dumps(rep))
    return path


@pytest.fixture(scope="module")
def pairs(uds_dir, tmp_path_factory) -> Path:
    """Real triplets from the 31UDS series, 32 px patches, few dates."""
    from sentinel_densify.core.pairs import load_series as pair_series
    from sentinel_densify.core.pairs import make_pairs

    out = tmp_path_factory.mktemp("pairs")
    make_pairs(pair_series([str(uds_dir / "S2")], [str(uds_dir / "S1")]), out, patch=32, max_days=4,
               synthetic_per_clear=1, seed=0)
    return out


@pytest.fixture(scope="module")
def gan_runs(pairs, tmp_path_factory) -> dict[str, Path]:
    """One-epoch pix2pix and mtcgan runs (tiny nets)."""
    root = tmp_path_factory.mktemp("gan")
    runs = {}
    for kind in ("pix2pix", "mtcgan"):
        train(TrainConfig(kind=kind, data=[str(pairs)], out=str(root / kind), epochs=1, **GAN))
        runs[kind] = root / kind
    return runs


# ---------------------------------------------------------------- 1. the card takes held-out reports only


def test_card_refuses_a_report_that_is_not_held_out(series, training_date, heldout_report, tmp_path):
    model = _bundled()
    plain = evaluate(series, [str(model), "linear"], gaps=[0], leads=[], device="cpu", dates={training_date})
    path = tmp_path / "plain.json"
    path.write_text(json.dumps(plain))
    with pytest.raises(InputError, match="--heldout: not a held-out report"):
        CARD.write_card(model, tmp_path / "card.md", path)
    # a held-out report whose target lies in a training month of the model (edited): refused, the date named
    rep = json.loads(heldout_report.read_text())
    rep["rows"][-1]["target_date"] = training_date
    path.write_text(json.dumps(rep))
    with pytest.raises(InputError, match=f"{training_date} is in a training month of default.onnx"):
        CARD.write_card(model, tmp_path / "card.md", path)
    assert not (tmp_path / "card.md").exists()


def test_card_checks_each_fold_of_a_cross_validation(heldout_report, tmp_path):
    model = _bundled()
    cv = json.loads(heldout_report.read_text())
    folds = cv["methods"]["default"]["folds"]
    folds["/elsewhere/fold0.onnx"] = {"sha256": "0" * 64, "holdout_months": ["2018-01"]}
    row = next(r for r in cv["rows"] if r["method"] == "default")
    cv["rows"].append({**row, "model": "/elsewhere/fold0.onnx", "target_date": "2018-02-02"})
    path = tmp_path / "cv.json"
    path.write_text(json.dumps(cv))
    with pytest.raises(InputError, match="--cv: 2018-02-02 is in a training month of fold0.onnx"):
        CARD.write_card(model, tmp_path / "card.md", heldout_report, path)
    cv["rows"][-1]["target_date"] = "2018-01-20"  # in that fold's own test month: accepted
    path.write_text(json.dumps(cv))
    CARD.write_card(model, tmp_path / "card.md", heldout_report, path)


def test_a_users_model_is_not_headed_bundled(heldout_report, monkeypatch):
    rep = json.loads(heldout_report.read_text())
    md, _ = CARD.build_card(_bundled(), rep)
    assert "| target | bundled model |" in md  # the bundled file itself (models/default.md)
    monkeypatch.setattr(CARD, "bundled_model", lambda: None)  # any other model file
    md, _ = CARD.build_card(_bundled(), rep)
    assert "| target | model |" in md and "bundled model" not in md


# ---------------------------------------------------------------- 2, 3. leakage and the protocol's baselines


def test_plain_evaluate_warns_about_training_dates_and_adds_the_baselines(uds_dir, training_date, tmp_path,
                                                                          capsys):
    out = tmp_path / "eval"
    argv = ["evaluate", "--s2", str(uds_dir / "S2"), "--s1", str(uds_dir / "S1"), "--methods", "default",
            "--gaps", "0", "--leads", "5", "--max-targets", "1", "--device", "cpu", "--out", str(out)]
    assert cli.main(argv) == 0
    err = capsys.readouterr().err
    rep = json.loads((out / "report.json").read_text())
    assert {s["method"] for s in rep["summary"]} == {"default", "linear", "nearest", "persistence"}
    leaked = rep["notes"]["leakage"]["default"]
    assert leaked["targets"] == rep["targets"] and rep["targets"][0][:7] not in read_contract(_bundled())[
        "training"]["holdout"]["months"]
    assert (f"densify evaluate: warning: default was trained, or chosen and calibrated, on the months of target(s) "
            f"{rep['targets'][0]}") in err
    from sentinel_densify.core.evaluate import training_targets  # validation months chose and calibrated it: named

    contract = {"training": {"holdout": {"months": ["2018-07"], "validation_months": ["2018-05"]}}}
    assert training_targets(contract, ["2018-05-20", "2018-06-28", "2018-07-23"]) == ["2018-05-20", "2018-06-28"]
    assert "--heldout" in leaked["note"]
    with pytest.raises(SystemExit):
        cli.main(["evaluate", "--help"])
    assert "added when missing" in " ".join(capsys.readouterr().out.split())


def test_heldout_default_is_the_bundled_model_beside_the_baselines(uds_dir, tmp_path, capsys, monkeypatch):
    out = tmp_path / "eval"
    argv = ["evaluate", "--s2", str(uds_dir / "S2"), "--s1", str(uds_dir / "S1"), "--methods", "default", "--heldout",
            "--gaps", "0", "--leads", "5", "--max-targets", "1", "--device", "cpu", "--out", str(out)]
    assert cli.main(argv) == 0
    err = capsys.readouterr().err
    rep = json.loads((out / "report.json").read_text())
    assert {s["method"] for s in rep["summary"]} == {str(_bundled()), "linear", "nearest", "persistence"}
    assert "heldout" in rep["notes"] and "leakage" not in rep["notes"] and "warning: default" not in err
    CARD.write_card(_bundled(), tmp_path / "card.md", out / "report.json")  # a held-out report: accepted
    from sentinel_densify.core import methods

    monkeypatch.setattr(methods, "default_model", lambda: None)  # no onnxruntime (mocked): `default` is linear
    assert cli.main([*argv[:-1], str(tmp_path / "none")]) == 1
    assert "`default` is the linear baseline here" in capsys.readouterr().err


# ---------------------------------------------------------------- 5. GAN logs and curves


def test_loss_curves_are_written_atomically(tmp_path, monkeypatch):
    import matplotlib.figure

    log = MetricsLog(tmp_path / "metrics.jsonl")
    for e in (1, 2):
        log.log(epoch=e, loss_G=1.0, loss_L1=0.5, loss_GAN=0.2, loss_D=0.3, val_psnr=20.0 + e, val_ssim=0.5)
    seen = []
    real = matplotlib.figure.Figure.savefig

    def savefig(self, fname, *a, **kw):
        seen.append(Path(fname).name)
        return real(self, fname, *a, **kw)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", savefig)
    png = plot_curves(tmp_path / "metrics.jsonl", tmp_path / "loss_curves.png")
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert seen and seen[0] != "loss_curves.png"  # a temporary name, renamed into place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["loss_curves.png", "metrics.jsonl"]


def test_gan_checkpoint_before_its_row_and_no_row_twice_on_resume(pairs, tmp_path, monkeypatch):
    from sentinel_densify.core.gan import train as GT

    out = tmp_path / "run"
    cfg = dict(kind="cnn", data=[str(pairs)], out=str(out), **GAN)
    real = GT.save_checkpoint

    def stop_at_epoch_2(path, **kw):  # the run stops while writing epoch 2's checkpoint
        if kw["epoch"] == 2:
            raise KeyboardInterrupt
        return real(path, **kw)

    monkeypatch.setattr(GT, "save_checkpoint", stop_at_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        train(TrainConfig(epochs=3, **cfg))
    monkeypatch.setattr(GT, "save_checkpoint", real)
    assert [r["epoch"] for r in MetricsLog(out / "metrics.jsonl").read()] == [1]  # epoch 2 not logged
    # a log written before its checkpoint (older runs): epoch 2's row is there, last.pt is epoch 1's
    MetricsLog(out / "metrics.jsonl").log(epoch=2, loss_G=9.0, loss_L1=9.0, loss_GAN=0.0, loss_D=0.0)
    train(TrainConfig(epochs=2, resume=str(out / "last.pt"), **cfg))
    rows = MetricsLog(out / "metrics.jsonl").read()
    assert [r["epoch"] for r in rows] == [1, 2] and rows[1]["loss_G"] != 9.0
    with pytest.raises(InputError, match="already finished epoch 2 of 2: give a larger --epochs"):
        train(TrainConfig(epochs=2, resume=str(out / "last.pt"), **cfg))


# ---------------------------------------------------------------- 6. export compares runs of one recipe


def test_export_refuses_checkpoints_of_other_recipes(gan_runs, tmp_path, capsys):
    best = gan_runs["pix2pix"] / "best.pt"
    ck = load_checkpoint(best)
    seed = tmp_path / "seed.pt"  # another seed, run elsewhere: one recipe
    torch.save({**ck, "config": {**ck["config"], "seed": 7, "out": str(tmp_path / "x"), "threads": 2}}, seed)
    other = tmp_path / "other.pt"
    torch.save({**ck, "config": {**ck["config"], "net": {**ck["config"]["net"], "dropout": 0.0}}}, other)
    assert cli.main(["export", "--checkpoint", str(best), str(seed), "--out", str(tmp_path / "a.onnx")]) == 0
    capsys.readouterr()
    assert cli.main(["export", "--checkpoint", str(best), str(other), "--out", str(tmp_path / "b.onnx")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "other.pt" in err and "'net.dropout' differs" in err
    assert not (tmp_path / "b.onnx").exists()
    # second audit: the same data folder typed another way (relative, through a link) is one recipe; another is not
    data = ck["config"]["data"]
    folder = Path(data[0] if isinstance(data, list) else data).resolve()
    (tmp_path / "link").symlink_to(folder)
    typed = tmp_path / "typed.pt"
    relative = os.path.relpath(tmp_path / "link", Path.cwd())
    torch.save({**ck, "config": {**ck["config"], "seed": 8, "data": [relative] if isinstance(data, list) else
                                 relative}}, typed)
    assert cli.main(["export", "--checkpoint", str(best), str(typed), "--out", str(tmp_path / "c.onnx")]) == 0
    capsys.readouterr()
    moved = tmp_path / "moved.pt"
    torch.save({**ck, "config": {**ck["config"], "seed": 9, "data": str(tmp_path)}}, moved)
    assert cli.main(["export", "--checkpoint", str(best), str(moved), "--out", str(tmp_path / "d.onnx")]) == 1
    assert "'data' differs" in capsys.readouterr().err


# ---------------------------------------------------------------- 7. scripts/eval_cloud_removal.py


def _eval_script():
    spec = importlib.util.spec_from_file_location("eval_cloud_removal", ROOT / "scripts" / "eval_cloud_removal.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_eval_cloud_removal_reads_the_contract(gan_runs, pairs, tmp_path, capsys):
    onnx_path = tmp_path / "p2p.onnx"
    assert cli.main(["export", "--checkpoint", str(gan_runs["pix2pix"] / "best.pt"), "--out", str(onnx_path)]) == 0
    contract = read_contract(onnx_path)
    val_names = load_checkpoint(gan_runs["pix2pix"] / "best.pt")["config"]["val_names"]
    assert val_names and contract["training"]["val_names"] == val_names
    script = _eval_script()
    capsys.readouterr()
    assert script.main([str(onnx_path), str(pairs), "mtcgan", str(tmp_path / "e1")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("eval_cloud_removal: ")
    assert err.endswith("p2p.onnx: a 'pix2pix' model (its contract), not mtcgan")
    assert script.main([str(onnx_path), str(pairs), "pix2pix", str(tmp_path / "e2")]) == 0
    res = json.loads((tmp_path / "e2" / "p2p_eval.json").read_text())
    assert res["held_out"] == "the training run's val_names" and res["all"]["model"]["n"] == len(val_names)
    none = tmp_path / "none.onnx"  # second audit: a run that held nothing out says so
    shutil.copy(onnx_path, none)
    write_contract(none, {**contract, "training": {**contract["training"], "val_names": []}})
    capsys.readouterr()
    assert script.main([str(none), str(pairs), "pix2pix", str(tmp_path / "e3")]) == 1
    assert "its training run held no triplet out" in capsys.readouterr().err


def test_mtcgan_export_is_quiet_about_constant_folding(gan_runs, tmp_path, recwarn):
    assert cli.main(["export", "--checkpoint", str(gan_runs["mtcgan"] / "best.pt"), "--out",
                     str(tmp_path / "mt.onnx")]) == 0
    assert not [w for w in recwarn if "onstant folding" in str(w.message)]


# ---------------------------------------------------------------- 8. a curate --link folder and MTcGAN


def test_curate_link_folder_says_how_to_train_mtcgan(pairs, tmp_path):
    from sentinel_densify.core.curate import curate
    from sentinel_densify.core.gan.data import list_samples

    out = tmp_path / "cur"
    curate(pairs, out, workers=1, link=True)
    with pytest.raises(InputError, match="lacks") as info:
        list_samples([out], "mtcgan")
    assert f"--data {pairs.resolve()} --names {out / 'kept.txt'}" in str(info.value)
    assert len(list_samples([pairs], "mtcgan", out / "kept.txt")) > 0  # what it suggests works


# ---------------------------------------------------------------- 9. contracts


def _copy_with(tmp_path: Path, name: str, edit) -> Path:
    contract = read_contract(_bundled())
    edit(contract)
    path = Path(shutil.copy(_bundled(), tmp_path / name))
    write_contract(path, contract)
    return path


def test_contracts_that_do_not_match_their_graph_or_this_code(tmp_path):
    future = _copy_with(tmp_path, "future.onnx", lambda c: c.update(contract_version=99))
    with pytest.raises(InputError, match="future.onnx: its contract format 99 was made by a newer Sentinel Densify"):
        read_contract(future)
    no_change = _copy_with(tmp_path, "nochange.onnx",
                           lambda c: c["architecture"].update(s1_change=False, s1_guided=None))
    with pytest.raises(InputError, match="nochange.onnx: its graph takes an s1_change input but its model contract "
                                         "does not say s1_change"):
        create(str(no_change), "cpu")
    bands = _copy_with(tmp_path, "reversed.onnx", lambda c: c.update(bands=c["bands"][::-1]))
    with pytest.raises(InputError, match=r"reversed.onnx: its model contract's bands B12, .* differ from the "
                                         r"temporal model's B02, .*export the model again"):
        create(str(bands), "cpu")
    assert create(str(_bundled()), "cpu").name == "onnx:default"


# ---------------------------------------------------------------- 10. messages


def test_messages_name_the_problem(tmp_path):
    from sentinel_densify.core.curate import curate
    from sentinel_densify.core.gan.export import export_onnx
    from sentinel_densify.core.temporal.train import build_model, model_from_checkpoint

    arch = {"d": 8, "heads": 2, "layers": 1, "s2_mean": [0.0] * 10, "s2_std": [1.0] * 10, "s1_mean": [0.0] * 3,
            "s1_std": [1.0] * 3}
    state = build_model({"model": {**arch, "d": 16}}).state_dict()
    with pytest.raises(InputError, match=r"fit the architecture its config names \(size mismatch for "):
        model_from_checkpoint({"kind": "temporal", "config": {"model": arch}, "model_state": state})
    ck = tmp_path / "p2p.pt"
    torch.save({"kind": "pix2pix", "model_state": {}, "epoch": 1, "config": {}}, ck)
    with pytest.raises(InputError, match=r"p2p.pt: its config lacks the network \('net'\)"):
        export_onnx(ck, tmp_path / "m.onnx")
    with pytest.raises(InputError, match="p2p.pt: a PyTorch checkpoint.*densify export --checkpoint"):
        create(str(ck))
    with pytest.raises(InputError, match=r"known: default, linear, .*persistence, or a path") as info:
        create("nosuch")
    assert "onnx," not in str(info.value)
    with pytest.raises(InputError, match="nowhere: does not exist"):
        curate(tmp_path / "nowhere", tmp_path / "out")


def test_temporal_crop_resume_and_interrupt_note(uds_dir, tmp_path, capsys):
    """--crop larger than the series: said, and the config records the crop used; --resume of a finished run
    is refused; the Ctrl-C note names the last epoch saved."""
    from sentinel_densify.core.cmd_train import interrupted_note

    out = tmp_path / "run"
    argv = ["train", "temporal", "--data", str(uds_dir), "--out", str(out), "--no-progress", "--epochs", "1",
            "--steps", "1", "--batch", "1", "--crop", "500", "--width", "8", "--heads", "1", "--layers", "1",
            "--k2", "3", "--k1", "3", "--device", "cpu"]
    assert cli.main(argv) == 0
    assert "warning: --crop 500 is larger than the series (64 x 64 px)" in capsys.readouterr().err
    ck = load_checkpoint(out / "last.pt")
    assert ck["config"]["crop"] == 64 and np.isfinite(ck["metrics"]["loss"])
    assert cli.main([*argv, "--resume"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "already finished epoch 1 of 1: give a larger --epochs" in err
    note = interrupted_note(argparse.Namespace(kind="temporal", out=str(out), epochs=3))
    assert f"{out}/last.pt holds epoch 1 of 3" in note and "--resume" in note
