"""The model commands refuse what would mislead: a card built from another model's report, folds of
a cross-validation that overlap, output paths that cannot be written (checked before any work),
leaking attention settings; GAN contracts carry a model version."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from sentinel_densify.core import cli  # noqa: E402
from sentinel_densify.core.atomic import OutputError  # noqa: E402
from sentinel_densify.core.errors import InputError  # noqa: E402
from sentinel_densify.core.evaluate import evaluate_heldout, file_sha256  # noqa: E402
from sentinel_densify.core.model_contract import read_contract, write_contract  # noqa: E402
from sentinel_densify.core.temporal.card import check_report_model, write_card  # noqa: E402
from sentinel_densify.core.temporal.dataset import load_series  # noqa: E402

MODEL = Path(__file__).resolve().parents[1] / "models" / "default.onnx"
BASE = ["linear", "persistence"]
FAST = dict(gaps=[0], leads=[15], device="cpu")


@pytest.fixture(scope="module")
def series(uds_dir):
    return load_series(uds_dir)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """The bundled model; a byte copy under another name (as models/default.onnx is of its fold);
    a retouched copy with the same file name (another model); the same network claiming other
    test months (a second fold)."""
    if not MODEL.exists():
        pytest.skip("models/default.onnx is not there")
    root = tmp_path_factory.mktemp("models")
    copy = shutil.copy(MODEL, root / "fold3.onnx")
    (root / "other").mkdir()
    other = shutil.copy(MODEL, root / "other" / MODEL.name)
    contract = read_contract(MODEL)
    write_contract(other, {**contract, "metrics": {**contract.get("metrics", {}), "retouched": 1}})
    fold = shutil.copy(MODEL, root / "fold2.onnx")
    training = contract["training"]
    months = set(training["holdout"]["months"])
    shifted = sorted(f"2018-{m:02d}" for m in range(1, 13) if f"2018-{m:02d}" not in months)[:3]
    write_contract(fold, {**contract, "training": {**training, "holdout": {**training["holdout"], "months": shifted}}})
    return {"bundled": MODEL, "copy": Path(copy), "other": Path(other), "fold": Path(fold)}


@pytest.fixture(scope="module")
def reports(series, models, tmp_path_factory) -> dict[str, Path]:
    """report.json of the bundled model alone and of a two-fold cross-validation holding it."""
    root = tmp_path_factory.mktemp("reports")
    out = {}
    for name, folds in (("heldout", [models["bundled"]]), ("cv", [models["bundled"], models["fold"]])):
        rep = evaluate_heldout(series, [str(m) for m in folds], BASE, label=f"temporal ({name})", **FAST)
        out[name] = root / f"{name}.json"
        out[name].write_text(json.dumps(rep))
    return out


def test_heldout_report_records_each_model_file(reports, models):
    import hashlib

    folds = json.loads(reports["cv"].read_text())["methods"]["temporal (cv)"]["folds"]
    assert {Path(p).name for p in folds} == {"default.onnx", "fold2.onnx"}
    for path, record in folds.items():
        assert record["sha256"] == hashlib.sha256(Path(path).read_bytes()).hexdigest()
        assert set(record["holdout_months"]) == set(read_contract(path)["training"]["holdout"]["months"])


def test_card_of_the_reported_model_or_a_byte_copy(reports, models, tmp_path):
    for key in ("bundled", "copy"):  # the bundled model is a copy of its fold's file
        md, js = write_card(models[key], tmp_path / f"{key}.md", reports["heldout"], reports["cv"])
        card = json.loads(js.read_text())
        assert card["model"] == models[key].name and "cross_validation" in card["evaluation"]


def test_card_refuses_the_report_of_another_model(reports, models, tmp_path, capsys):
    out = tmp_path / "card.md"
    with pytest.raises(InputError, match="not of .*other.*default.onnx"):  # same name, other bytes
        write_card(models["other"], out, reports["heldout"])
    argv = ["card", "--model", str(models["fold"]), "--heldout", str(reports["heldout"]), "--out", str(out)]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "fold2.onnx" in err and str(models["bundled"]) in err
    with pytest.raises(InputError, match="scores 2 models"):  # a cross-validation given as --heldout
        write_card(models["bundled"], out, reports["cv"])
    cv = json.loads(reports["cv"].read_text())
    sha = file_sha256(models["other"])
    with pytest.raises(InputError, match="none of which is"):  # --cv without the card's model
        check_report_model(cv, models["other"], sha, "--cv", fold=True)
    check_report_model(cv, models["copy"], file_sha256(models["copy"]), "--cv", fold=True)
    assert not out.exists() and not out.with_suffix(".json").exists()


def test_card_out_must_be_a_writable_md(reports, models, tmp_path, capsys):
    for bad, why in ((tmp_path / "card.txt", "must be a .md"), (tmp_path / "dir.md", "existing folder"),
                     (tmp_path / "file" / "card.md", "which is a file")):
        (tmp_path / "dir.md").mkdir(exist_ok=True)
        (tmp_path / "file").write_text("x")
        argv = ["card", "--model", str(models["bundled"]), "--heldout", str(reports["heldout"]), "--out", str(bad)]
        assert cli.main(argv) == 1
        err = capsys.readouterr().err.strip()
        assert why in err and len(err.splitlines()) == 1
    assert not (tmp_path / "card.txt").exists() and not (tmp_path / "card.json").exists()
    heldout = tmp_path / "report.json"  # evaluate's report.json; a card named report.md would replace it
    shutil.copy(reports["heldout"], heldout)
    before = heldout.read_bytes()
    argv = ["card", "--model", str(models["bundled"]), "--heldout", str(heldout), "--out", str(tmp_path / "report.md")]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert "would replace the input --heldout" in err and len(err.splitlines()) == 1
    assert heldout.read_bytes() == before and not (tmp_path / "report.md").exists()


def test_card_names_a_json_that_is_not_an_evaluation_report(reports, models, tmp_path, capsys):
    wrong = tmp_path / "card.json"
    wrong.write_text(json.dumps({"model": "default.onnx"}))  # valid JSON, e.g. another card
    argv = ["card", "--model", str(models["bundled"]), "--heldout", str(wrong), "--out", str(tmp_path / "c.md")]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.endswith("card.json: not a report.json of densify evaluate (it has no 'summary' list)")
    assert "Traceback" not in err and not (tmp_path / "c.md").exists()


def test_overlapping_folds_are_refused(series, models, uds_dir, tmp_path, capsys):
    months = sorted(read_contract(MODEL)["training"]["holdout"]["months"])
    with pytest.raises(InputError, match=f"{models['copy']}.*same test months.*{months[0]}"):
        evaluate_heldout(series, [str(models["bundled"]), str(models["copy"])], BASE, **FAST)
    with pytest.raises(InputError, match="given twice"):
        evaluate_heldout(series, [str(MODEL), str(MODEL)], BASE, **FAST)
    out = tmp_path / "eval"
    assert cli.main(["evaluate", "--s2", str(uds_dir / "S2"), "--s1", str(uds_dir / "S1"), "--heldout",
                     "--methods", f"linear,{models['bundled']},{models['copy']}", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert str(models["bundled"]) in err and str(models["copy"]) in err and months[0] in err
    assert not out.exists()


@pytest.mark.parametrize("bad", ["dir", "file/x", "txt"])
def test_export_out_checked_before_the_checkpoint_is_read(tmp_path, bad, capsys):
    """Temporal and GAN exports refuse an existing folder, a path under a file or a name that is not
    .onnx, before any work (the checkpoint here does not even exist)."""
    from sentinel_densify.core.gan.export import export_onnx as gan_export
    from sentinel_densify.core.temporal.export import export_onnx as temporal_export

    (tmp_path / "dir.onnx").mkdir()
    (tmp_path / "file").write_text("x")
    out = tmp_path / {"dir": "dir.onnx", "file/x": "file/x.onnx", "txt": "model.txt"}[bad]
    why = {"dir": "existing folder", "file/x": "which is a file", "txt": r"must be a \.onnx file"}[bad]
    for export in (temporal_export, gan_export):
        with pytest.raises(OutputError, match=why):
            export(tmp_path / "missing.pt", out)
    assert cli.main(["export", "--checkpoint", str(tmp_path / "missing.pt"), "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"densify export: --out {out}") and len(err.splitlines()) == 1


@pytest.mark.parametrize("option", [["--gap", "-5"], ["--lead", "-5"], ["--lead", "0.5"]])
def test_attention_refuses_leaking_settings(option, uds_dir, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["attention", "--checkpoint", "x.pt", "--data", str(uds_dir), "--date", "2018-07-05", *option])
    assert exit_.value.code == 2 and option[0] in capsys.readouterr().err


def test_attention_out_checked_before_the_checkpoint_is_read(uds_dir, tmp_path, capsys):
    base = ["attention", "--checkpoint", str(tmp_path / "missing.pt"), "--data", str(uds_dir), "--date", "2018-07-05"]
    (tmp_path / "dir.json").mkdir()
    assert cli.main([*base, "--out", str(tmp_path / "dir.json")]) == 1
    assert "existing folder" in capsys.readouterr().err
    assert cli.main([*base, "--out", str(tmp_path / "att.txt")]) == 1
    assert "must be a .json file" in capsys.readouterr().err
    ckpt = tmp_path / "ckpt.json"  # a checkpoint named .json: --out on it would replace it
    ckpt.write_bytes(b"weights")
    argv = ["attention", "--checkpoint", str(ckpt), "--data", str(uds_dir), "--date", "2018-07-05", "--out", str(ckpt)]
    assert cli.main(argv) == 1
    assert "is the input --checkpoint" in capsys.readouterr().err and ckpt.read_bytes() == b"weights"
    data = tmp_path / "data"  # the series through links: a refused --out there never reaches ../shared
    data.mkdir()
    for sub in ("S2", "S1"):
        (data / sub).symlink_to(uds_dir / sub)
    argv = ["attention", "--checkpoint", str(tmp_path / "missing.pt"), "--data", str(data), "--date", "2018-07-05",
            "--out", str(data / "att.json")]
    assert cli.main(argv) == 1
    assert "is inside the --data folder" in capsys.readouterr().err and not (data / "att.json").exists()


def test_series_commands_name_a_missing_or_file_data(tmp_path, capsys):
    afile = tmp_path / "series.tif"
    afile.write_bytes(b"x")
    for data, why in ((tmp_path / "nope", "does not exist"), (afile, "is a file, not a series folder")):
        assert cli.main(["figure", "--data", str(data), "--model", "linear", "--out", str(tmp_path / "f.png")]) == 1
        assert capsys.readouterr().err.strip().endswith(f"{data}: {why}")
    with pytest.raises(SystemExit) as exit_:
        cli.main(["figure", "--data", str(tmp_path), "--model", "linear", "--out", str(tmp_path / "f.png"),
                  "--device", "gpu"])
    assert exit_.value.code == 2 and "--device" in capsys.readouterr().err


def test_figure_out_must_be_a_png(uds_dir, tmp_path, capsys):
    for name in ("fig.jpg", "fig"):
        out = tmp_path / name
        assert cli.main(["figure", "--data", str(uds_dir), "--model", "linear", "--out", str(out)]) == 1
        assert ".png" in capsys.readouterr().err and not out.exists()
    (tmp_path / "d.png").mkdir()
    assert cli.main(["figure", "--data", str(uds_dir), "--model", "linear", "--out", str(tmp_path / "d.png")]) == 1
    assert "existing folder" in capsys.readouterr().err


def test_gan_contract_has_a_model_version(uds_dir, tmp_path):
    """A pix2pix trained briefly on real triplets exports a contract with a version, as temporal ones."""
    from sentinel_densify.core.gan.export import VERSION, export_onnx
    from sentinel_densify.core.gan.train import TrainConfig, train
    from sentinel_densify.core.pairs import load_series as load_pairs_series
    from sentinel_densify.core.pairs import make_pairs

    series = load_pairs_series([str(uds_dir / "S2")], [str(uds_dir / "S1")])
    make_pairs(series, tmp_path / "pairs", patch=32, max_days=4, synthetic_per_clear=1, seed=0)
    train(TrainConfig(kind="pix2pix", data=[str(tmp_path / "pairs")], out=str(tmp_path / "run"), epochs=1,
                      lr=1e-3, ngf=4, ndf=4, n_blocks=1, patch=32, batch=8, val_fraction=0.25, val_every=1,
                      device="cpu", threads=1))
    out = export_onnx(tmp_path / "run" / "best.pt", tmp_path / "p2p.onnx")
    contract = read_contract(out)
    assert contract["kind"] == "pix2pix" and contract["version"] == VERSION >= 1
    assert isinstance(read_contract(MODEL)["version"], int)  # the temporal key, same type
