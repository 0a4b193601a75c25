"""The shells of `densify train`, `make-pairs` and `curate`: option and --out checks before any data
is read, resume rules, messages on interrupt, logs and help."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from sentinel_densify.core import cli

torch = pytest.importorskip("torch")

TINY = ["--epochs", "1", "--steps", "2", "--batch", "2", "--crop", "16", "--width", "8", "--heads", "1",
        "--layers", "1", "--k2", "3", "--k1", "3", "--points-steps", "0"]
KINDS = ["temporal", "pix2pix", "mtcgan", "cnn"]


def _one_line_error(capsys, argv: list[str], *needles: str) -> str:
    """Run the CLI, expect exit 1 and a one-line message holding every needle."""
    assert cli.main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    return err


@pytest.fixture
def a_file(tmp_path):
    f = tmp_path / "file.txt"
    f.write_text("x")
    return f


@pytest.mark.parametrize("kind", KINDS)
def test_bad_out_refused_before_reading_data(kind, a_file, tmp_path, capsys):
    missing = str(tmp_path / "no-such-data")  # read first, it would be the error instead
    for out, what in ((a_file, "existing file"), (a_file / "sub", "which is a file")):
        _one_line_error(capsys, ["train", kind, "--data", missing, "--out", str(out)], str(out), what)


def test_uncreatable_out_refused(tmp_path, capsys, monkeypatch):
    """The one thing mocked: os.access says the folder is not writable (the tests run as root, who
    may write anywhere); the check and the command are real."""
    from sentinel_densify.core import atomic

    locked = tmp_path / "locked"
    locked.mkdir()
    real = os.access
    monkeypatch.setattr(atomic.os, "access", lambda p, mode: Path(p) != locked and real(p, mode))
    _one_line_error(capsys, ["train", "temporal", "--data", str(tmp_path), "--out", str(locked / "run")],
                    "not writable")


def test_curate_and_make_pairs_refuse_a_file_as_out(a_file, tmp_path, capsys):
    missing = str(tmp_path / "no-such-data")
    _one_line_error(capsys, ["curate", "--data", missing, "--out", str(a_file)], "existing file")
    _one_line_error(capsys, ["make-pairs", "--s2", missing, "--s1", missing, "--out", str(a_file)],
                    "existing file")


@pytest.mark.parametrize("argv", [
    ["train", "temporal", "--batch", "0"], ["train", "temporal", "--holdout-every", "0"],
    ["train", "temporal", "--crop", "0"], ["train", "temporal", "--lr", "-1"],
    ["train", "temporal", "--epochs", "0"], ["train", "temporal", "--steps", "0"],
    ["train", "temporal", "--k2", "0"], ["train", "temporal", "--k1", "0"], ["train", "temporal", "--lr", "nan"],
    ["train", "pix2pix", "--batch", "0"], ["train", "cnn", "--epochs", "0"],
    ["make-pairs", "--s2", "x", "--s1", "y", "--patch", "0"], ["curate", "--data", "x", "--workers", "0"],
])
def test_bad_option_values_are_usage_errors(argv, tmp_path, capsys):
    base = ["--data", "x"] if argv[0] == "train" else []
    with pytest.raises(SystemExit) as exc:
        cli.main([*argv, *base, "--out", str(tmp_path / "o")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {argv[-2]}" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("extra, needle", [
    (["--width", "33"], "divisible by --heads"),
    (["--holdout-offset", "4"], "--holdout-offset 4 must be in 0..3"),
    (["--holdout-every", "3", "--holdout-offset", "3"], "must be in 0..2"),
    (["--haze-targets"], "--haze-targets needs --haze-screen"),
    (["--dropout", "1"], "--dropout 1.0 must be in [0, 1)"),
])
def test_inconsistent_temporal_options_refused(extra, needle, tmp_path, capsys):
    _one_line_error(capsys, ["train", "temporal", "--data", str(tmp_path / "nothing"), "--out",
                             str(tmp_path / "o"), *extra], needle)
    assert not (tmp_path / "o").exists()


def test_resume_rules_on_a_real_run(uds_dir, tmp_path, capsys):
    out = tmp_path / "run"
    base = ["train", "temporal", "--data", str(uds_dir), "--out", str(out)]
    _one_line_error(capsys, [*base, *TINY, "--resume"], str(out / "last.pt"), "does not exist")
    assert not out.exists()
    assert cli.main([*base, *TINY, "--no-progress"]) == 0
    capsys.readouterr()
    log = (out / "metrics.jsonl").read_text()
    _one_line_error(capsys, [*base, *TINY], "already holds a run", "--resume")
    assert (out / "metrics.jsonl").read_text() == log  # nothing appended
    err = _one_line_error(capsys, [*base, *TINY, "--resume", "--width", "16", "--k2", "4"], "--width 16", "--k2 4")
    assert "--heads" not in err and "--k1" not in err
    _one_line_error(capsys, [*base, *TINY, "--resume", "--haze-screen", "0.04"], "--haze-screen")
    _one_line_error(capsys, [*base, *TINY, "--resume", "--s1-change", "--s1-guided", "2"],
                    "--s1-guided 2 (checkpoint: 0)")
    _one_line_error(capsys, [*base, *TINY, "--resume", "--dropout", "0.1"], "--dropout 0.1 (checkpoint: 0.0)")
    # other held-out months or another series: test months could be trained on, so refused
    _one_line_error(capsys, [*base, *TINY, "--resume", "--holdout-offset", "0"],
                          "--holdout-every/--holdout-offset/--val-every/--val-offset 4/0/8/1", "== 3")
    _one_line_error(capsys, ["train", "temporal", "--data", str(tmp_path), "--out", str(out), *TINY, "--resume"],
                    "--data", str(uds_dir.resolve()))
    assert (out / "metrics.jsonl").read_text() == log
    # same options: continues (epoch 2), and with stderr not a terminal no progress bar is drawn
    assert cli.main([*base, *[a if a != "1" else "2" for a in TINY[:2]], *TINY[2:], "--resume"]) == 0
    err = capsys.readouterr().err
    assert "epoch 2/2" not in err and "it/s" not in err and "\r" not in err
    assert [json.loads(r)["epoch"] for r in (out / "metrics.jsonl").read_text().splitlines()] == [0, 1]
    # a checkpoint without its config: export and attention name the file and the key
    ckpt = torch.load(out / "last.pt", weights_only=True)
    del ckpt["config"]
    bare = tmp_path / "bare.pt"
    torch.save(ckpt, bare)
    _one_line_error(capsys, ["export", "--checkpoint", str(bare), "--out", str(tmp_path / "m.onnx")],
                    str(bare), "'config'")
    _one_line_error(capsys, ["attention", "--checkpoint", str(bare), "--data", str(uds_dir), "--date",
                             "2018-03-01"], str(bare), "'config'")


@pytest.mark.parametrize("command, argv, needle", [
    ("train", ["train", "temporal", "--data", "d", "--out", "OUTDIR"], "continue with --resume"),
    ("train", ["train", "cnn", "--data", "d", "--out", "OUTDIR"], "--resume OUTDIR/last.pt"),
    ("make-pairs", ["make-pairs", "--s2", "a", "--s1", "b", "--out", "OUTDIR"], "no output was written"),
    ("curate", ["curate", "--data", "a", "--out", "OUTDIR"], "no output was written"),
])
def test_interrupt_message_says_what_is_left(command, argv, needle, monkeypatch, capsys):
    module = cli._module(command)

    def interrupted(args):  # stands in for the user's Ctrl-C (test_cli_outputs sends a real SIGINT)
        raise KeyboardInterrupt

    monkeypatch.setattr(module, "main", interrupted)
    assert cli.main(argv) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and needle in err
    if command == "train":
        assert "no output was written" not in err and "OUTDIR" in err


def test_help_shows_defaults_and_the_recipe(capsys):
    from sentinel_densify.core.temporal.train import RECIPE

    with pytest.raises(SystemExit):
        cli.main(["train", "temporal", "--help"])
    out = " ".join(capsys.readouterr().out.split())  # unwrapped
    for text in ("--epochs EPOCHS epochs", "(default: 20)", "--batch BATCH samples per step (default: 8)",
                 "(default: 32)", "(default: 0.002)", "(default: auto)", "attention heads (default: 2)",
                 "cross-attention layers", "--no-progress no progress bars", RECIPE):
        assert text in out, text
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    assert "temporal, pix2pix, mtcgan, cnn" in capsys.readouterr().out


def test_the_build_script_trains_with_the_recipe_and_it_parses():
    """scripts/build_default_model.sh takes RECIPE from core/temporal/train.py, and every option of it is
    accepted by `densify train temporal` as it is now (so `make model` does not fail after an hour); it
    is the recipe the bundled model records in its contract."""
    import argparse
    import subprocess
    import sys

    from sentinel_densify.core.temporal.train import RECIPE, configure

    root = Path(__file__).resolve().parent.parent
    script = (root / "scripts" / "build_default_model.sh").read_text()
    line = next(ln for ln in script.splitlines() if ln.startswith("RECIPE="))
    done = subprocess.run(["bash", "-c", f'{line}; printf %s "$RECIPE"'], capture_output=True, text=True,
                          cwd=root, env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable})
    assert done.returncode == 0 and done.stdout == RECIPE, done.stderr
    parser = argparse.ArgumentParser()
    configure(parser)  # the options of `densify train temporal`
    args = parser.parse_args(["--data", "d", "--out", "o", *RECIPE.split()])
    from sentinel_densify.core.model_contract import read_contract

    bundled = read_contract(root / "models" / "default.onnx")
    trained, arch = bundled["training"], bundled["architecture"]
    assert (args.k2, args.k1, args.haze_screen) == (bundled["k2"], bundled["k1"], bundled["haze_screen"]["threshold"])
    assert (args.crop, args.batch, args.lr, args.steps, args.max_gap, args.max_lead) == (
        trained["crop"], trained["batch"], trained["lr"], trained["steps_per_epoch"], trained["max_gap"],
        trained["max_lead"])
    assert (args.width, args.heads, args.layers, args.cloud_context, args.s1_change, args.s1_span) == (
        arch["d"], arch["heads"], arch["layers"], arch["cloud_context"], arch["s1_change"], arch.get("s1_span", False))
    assert args.s1_guided == (arch.get("s1_guided") or {}).get("radius", 0)
    assert args.s1_guided_obs == bool((arch.get("s1_guided") or {}).get("obs", False))
    assert args.epochs >= trained["epochs"]  # the contract records the epochs up to the best one
