"""Training utilities (core/training.py) and DDP training on CPU with gloo, on the real series."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sentinel_densify.core import training as T  # noqa: E402
from sentinel_densify.core.errors import InputError  # noqa: E402

TINY = ["--epochs", "1", "--steps", "2", "--batch", "2", "--crop", "16", "--width", "8", "--heads", "1",
        "--layers", "1", "--k2", "3", "--k1", "3", "--no-progress"]


def test_seed_everything_repeats_random_streams():
    T.seed_everything(7)
    a = (np.random.rand(3), torch.rand(3))
    T.seed_everything(7)
    b = (np.random.rand(3), torch.rand(3))
    assert np.array_equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_checkpoint_roundtrip_weights_only(tmp_path):
    model = torch.nn.Conv2d(3, 4, 3)
    opt = torch.optim.Adam(model.parameters())
    model(torch.rand(1, 3, 5, 5)).sum().backward()
    opt.step()
    path = T.save_checkpoint(tmp_path / "c.pt", kind="test", model_state=model.state_dict(),
                             optim_state=opt.state_dict(), epoch=3, config={"d": 4}, metrics={"loss": 0.5})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt"]  # no temporary file left
    raw = torch.load(path, weights_only=True)  # loads with the safe unpickler
    ckpt = T.load_checkpoint(path)
    assert raw["epoch"] == ckpt["epoch"] == 3 and ckpt["kind"] == "test" and ckpt["config"] == {"d": 4}
    fresh = torch.nn.Conv2d(3, 4, 3)
    fresh.load_state_dict(ckpt["model_state"])
    assert torch.equal(fresh.weight, model.weight)
    opt2 = torch.optim.Adam(fresh.parameters())
    opt2.load_state_dict(ckpt["optim_state"])
    assert opt2.state_dict()["state"][0]["step"] == 1


def test_load_checkpoint_rejects_bad_files(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="bad.pt"):
        T.load_checkpoint(bad)
    with pytest.raises(InputError, match="missing.pt"):
        T.load_checkpoint(tmp_path / "missing.pt")


def test_load_checkpoint_errors_are_one_plain_line(tmp_path):
    """A full-module pickle, random bytes, a truncated file: one line, no ANSI codes, never the advice
    to load with weights_only=False; a checkpoint without its config names the key."""
    good = T.save_checkpoint(tmp_path / "good.pt", kind="test", model_state=torch.nn.Linear(2, 2).state_dict(),
                             epoch=0, config={"d": 2}, metrics={})
    torch.save(torch.nn.Linear(2, 2), tmp_path / "module.pt")
    (tmp_path / "random.pt").write_bytes(np.random.default_rng(0).bytes(2000))
    (tmp_path / "cut.pt").write_bytes(good.read_bytes()[:300])
    (tmp_path / "text.pt").write_text("hello world\n")  # pickle's reader fails with KeyError('101')
    for name, cause in (("module.pt", "Linear"), ("random.pt", ""), ("cut.pt", "zip archive"),
                        ("text.pt", "not a PyTorch file, or a truncated one")):
        with pytest.raises(InputError) as exc:
            T.load_checkpoint(tmp_path / name)
        msg = str(exc.value)
        assert f"{tmp_path / name}: not a checkpoint saved by densify train (state dicts only; " in msg
        assert cause in msg and len(msg.splitlines()) == 1
        assert "weights_only" not in msg and "\x1b" not in msg
    ckpt = T.load_checkpoint(good)
    del ckpt["config"]
    torch.save(ckpt, tmp_path / "bare.pt")
    with pytest.raises(InputError, match=r"bare\.pt: .*'config'"):
        T.load_checkpoint(tmp_path / "bare.pt")


def test_metrics_log_appends_json_lines(tmp_path):
    log = T.MetricsLog(tmp_path / "m.jsonl")
    log.log(epoch=0, loss=np.float32(1.5))
    log.log(epoch=1, loss=0.5)
    rows = log.read()
    assert [r["epoch"] for r in rows] == [0, 1] and rows[0]["loss"] == 1.5


def test_device_and_amp_helpers_on_cpu():
    dev = T.select_device("cpu")
    assert dev.type == "cpu" and T.ddp_setup("cpu") == (0, 1, dev) and T.is_main_process()
    with T.autocast(dev):  # a no-op on CPU: full precision
        y = torch.nn.Linear(2, 2)(torch.rand(1, 2))
    assert y.dtype == torch.float32
    assert not T.grad_scaler(dev).is_enabled()
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="CUDA"):
            T.select_device("cuda")


def test_ddp_two_processes_gloo(uds_dir, points_file, tmp_path):
    """torchrun with 2 CPU processes (gloo): both ranks train (with the points loss mixed in, as the
    bundled model's recipe), rank 0 writes a loadable checkpoint."""
    out = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "sentinel_densify.core.temporal.train", "--data", str(uds_dir), "--out", str(out), *TINY,
           "--points", str(points_file), "--points-steps", "1", "--points-batch", "8", "--points-mix", "0.5"]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
    assert "rank 0/2: 2 steps done" in res.stdout and "rank 1/2: 2 steps done" in res.stdout
    ckpt = T.load_checkpoint(out / "last.pt")
    assert ckpt["kind"] == "temporal" and ckpt["epoch"] == 0 and ckpt["config"]["world_size"] == 2
    assert ckpt["config"]["points"]["mix"] == 0.5
    assert len(T.MetricsLog(out / "metrics.jsonl").read()) == 1  # only rank 0 logs
