"""Pix2Pix / MTcGAN / CNN: networks, short CPU trainings on triplets made from the real 31UDS series,
resume, determinism and ONNX export (tiny nets and 16 px patches so each test stays fast)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sentinel_densify.core.errors import InputError  # noqa: E402
from sentinel_densify.core.gan.data import list_samples, split  # noqa: E402
from sentinel_densify.core.gan.nets import (  # noqa: E402
    PatchDiscriminator,
    ResnetGenerator,
    UNetGenerator,
    unet_depth,
)
from sentinel_densify.core.gan.train import TrainConfig, train  # noqa: E402
from sentinel_densify.core.training import MetricsLog, load_checkpoint  # noqa: E402

TINY = dict(ngf=4, ndf=4, n_blocks=1, patch=32, batch=8, val_fraction=0.25, val_every=1, device="cpu",
            threads=1)  # one thread: far faster on a shared CPU


@pytest.fixture(scope="module")
def pairs(uds_dir, tmp_path_factory):
    """Real triplets from the 31UDS series, cut into 32 px patches (few dates: fast)."""
    from sentinel_densify.core.pairs import load_series, make_pairs

    series = load_series([str(uds_dir / "S2")], [str(uds_dir / "S1")])
    out = tmp_path_factory.mktemp("pairs32")
    make_pairs(series, out, patch=32, max_days=4, synthetic_per_clear=1, seed=0)
    return out


def test_unet_depth_adapts_to_patch_and_keeps_shape():
    assert unet_depth(256) == 8 and unet_depth(64) == 6 and unet_depth(16) == 4
    for patch in (16, 64):
        g = UNetGenerator(5, 3, ngf=4, depth=unet_depth(patch)).eval()
        y = g(torch.randn(2, 5, patch, patch))
        assert y.shape == (2, 3, patch, patch) and float(y.detach().abs().max()) <= 1.0


def test_patchgan_is_70px_and_resnet_matches_he_yokoya():
    d = PatchDiscriminator(8, ndf=4).eval()
    assert d(torch.zeros(1, 5, 256, 256), torch.zeros(1, 3, 256, 256)).shape == (1, 1, 30, 30)
    # receptive field: the input pixels one logit depends on (non-zero gradient) span 70 x 70
    x, y = torch.randn(1, 5, 256, 256, requires_grad=True), torch.randn(1, 3, 256, 256, requires_grad=True)
    d(x, y)[0, 0, 15, 15].backward()
    seen = (x.grad.abs().sum((0, 1)) + y.grad.abs().sum((0, 1))) > 0
    rows, cols = torch.nonzero(seen.any(1)).flatten(), torch.nonzero(seen.any(0)).flatten()
    assert int(rows.max() - rows.min() + 1) == 70 and int(cols.max() - cols.min() + 1) == 70
    g = ResnetGenerator(8, 4, ngf=4, n_blocks=9)
    assert sum(isinstance(m, torch.nn.Dropout) and m.p == 0.5 for m in g.modules()) == 9
    assert isinstance(list(g.modules())[-1], torch.nn.Tanh)
    assert g.eval()(torch.randn(1, 8, 20, 20)).shape == (1, 4, 20, 20)  # stride 1: no size constraint


def test_split_keeps_target_dates_apart(pairs):
    samples = list_samples([pairs], "pix2pix")
    tr, va = split(samples, 0.25)
    assert tr and va and len(tr) + len(va) == len(samples)
    assert not {s.group for s in tr} & {s.group for s in va}


def test_multitemporal_inputs_take_s1_at_the_target_date(pairs):
    """MTcGAN's x = S1 t1 (nearest O1), O1, S1 t2: t2 is the target's date, not the cloudy one."""
    from sentinel_densify.core.curate import read_s1_db
    from sentinel_densify.core.gan.data import load_sample, scale_s1
    from sentinel_densify.core.pairs import read_index

    rows = {r["name"]: r for r in read_index(pairs)}
    samples = list_samples([pairs], "mtcgan")
    differ = 0
    for s in samples[:40]:
        x, _ = load_sample(s, "mtcgan", ["B04", "B03", "B02"])
        t2, _ = read_s1_db(pairs / "s1_target" / s.name)
        np.testing.assert_allclose(x[-2:], scale_s1(t2))
        t1, _ = read_s1_db(pairs / "s1_nearest" / s.name)
        np.testing.assert_allclose(x[:2], scale_s1(t1))
        differ += rows[s.name]["s1_target_date"] != rows[s.name]["s1_date"]
    assert differ  # some real triplets: the S1 nearest the cloudy date is not the target's


@pytest.mark.parametrize("kind", ["pix2pix", "mtcgan", "cnn"])
def test_short_training_reduces_l1_and_exports_matching_onnx(kind, pairs, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from sentinel_densify.core.gan.export import build_from_checkpoint, export_onnx
    from sentinel_densify.core.model_contract import read_contract

    res = train(TrainConfig(kind=kind, data=[str(pairs)], out=str(tmp_path), epochs=3, lr=1e-3, **TINY))
    rows = MetricsLog(tmp_path / "metrics.jsonl").read()
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert rows[-1]["loss_L1"] < rows[0]["loss_L1"]
    assert (rows[0]["loss_D"] > 0) == (kind != "cnn")
    assert np.isfinite(res["val"]["psnr"]) and 0 < res["val"]["ssim"] <= 1
    assert (tmp_path / "loss_curves.png").stat().st_size > 0

    onnx_path = export_onnx(tmp_path / "best.pt", tmp_path / "m.onnx")
    umask = os.umask(0)
    os.umask(umask)
    assert onnx_path.stat().st_mode & 0o777 == 0o666 & ~umask  # not the temp file's private 0600
    contract = read_contract(onnx_path)
    assert contract["kind"] == kind and contract["bands"] == ["B04", "B03", "B02"]
    assert contract["tile"]["size"] == 32
    gen, ck = build_from_checkpoint(tmp_path / "best.pt")
    x = np.random.default_rng(1).uniform(-1, 1, (2, ck["config"]["net"]["in_ch"], 32, 32)).astype("float32")
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        ref = gen(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(sess.run(None, {"input": x})[0], ref, atol=1e-4)
    # its config edited so that the weights no longer fit: named, not a traceback
    ck["config"]["net"]["ngf"] *= 2
    torch.save(ck, tmp_path / "edited.pt")
    with pytest.raises(InputError, match="edited.pt: its weights do not fit the architecture its config names"):
        export_onnx(tmp_path / "edited.pt", tmp_path / "edited.onnx")
    assert not (tmp_path / "edited.onnx").exists()


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_write_contract_gives_the_model_normal_permissions(umask, tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper
    from sentinel_densify.core.model_contract import read_contract, write_contract

    graph = helper.make_graph([helper.make_node("Identity", ["input"], ["output"])], "g",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1])])
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph), str(path))
    path.chmod(0o600)
    old = os.umask(umask)
    try:
        write_contract(path, {"kind": "test", "inputs": {}, "outputs": {}})
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    assert read_contract(path)["kind"] == "test"
    assert not list(tmp_path.glob(".m.onnx.*"))  # no temporary file left behind


def test_resume_and_determinism(pairs, tmp_path):
    cfg = dict(kind="cnn", data=[str(pairs)], epochs=1, **TINY)
    train(TrainConfig(out=str(tmp_path / "a"), **cfg))
    train(TrainConfig(out=str(tmp_path / "b"), **cfg))
    a = MetricsLog(tmp_path / "a" / "metrics.jsonl").read()
    b = MetricsLog(tmp_path / "b" / "metrics.jsonl").read()
    assert a[0]["loss_L1"] == b[0]["loss_L1"]  # same seed, same run
    train(TrainConfig(out=str(tmp_path / "a"), **{**cfg, "epochs": 2}, resume=str(tmp_path / "a" / "last.pt")))
    assert [r["epoch"] for r in MetricsLog(tmp_path / "a" / "metrics.jsonl").read()] == [1, 2]
    train(TrainConfig(out=str(tmp_path / "whole"), **{**cfg, "epochs": 2}))  # the same 2 epochs in one go
    resumed, whole = (load_checkpoint(tmp_path / d / "last.pt") for d in ("a", "whole"))
    for name, value in whole["model_state"].items():  # the same crops, flips and batches after the resume
        assert torch.equal(resumed["model_state"][name], value), name
    with pytest.raises(InputError, match="checkpoint, not pix2pix"):
        train(TrainConfig(out=str(tmp_path / "c"), **{**cfg, "kind": "pix2pix"},
                          resume=str(tmp_path / "a" / "last.pt")))
    from sentinel_densify.core.atomic import OutputError

    before = {p.name: p.read_bytes() for p in (tmp_path / "b").iterdir() if p.is_file()}
    with pytest.raises(OutputError, match="holds another run than --resume"):  # b's run is not a's
        train(TrainConfig(out=str(tmp_path / "b"), **{**cfg, "epochs": 2}, resume=str(tmp_path / "a" / "last.pt")))
    assert {p.name: p.read_bytes() for p in (tmp_path / "b").iterdir() if p.is_file()} == before


def test_resume_needs_last_pt_and_a_fresh_run_a_fresh_folder(pairs, tmp_path, capsys):
    """best.pt has no optimiser state; without validation split best_psnr is null (valid JSON)."""
    from sentinel_densify.core.atomic import OutputError

    cfg = dict(kind="cnn", data=[str(pairs)], epochs=1, **{**TINY, "val_fraction": 0.0})
    result = train(TrainConfig(out=str(tmp_path / "a"), **cfg))
    assert result["best_psnr"] is None
    json.loads(json.dumps(result, allow_nan=False))
    assert "no validation split" in capsys.readouterr().err
    with pytest.raises(InputError, match="last.pt"):
        train(TrainConfig(out=str(tmp_path / "a"), **{**cfg, "epochs": 2}, resume=str(tmp_path / "a" / "best.pt")))
    with pytest.raises(OutputError, match="already holds a run"):
        train(TrainConfig(out=str(tmp_path / "a"), **cfg))
    result = train(TrainConfig(out=str(tmp_path / "a"), **{**cfg, "epochs": 2}, resume=str(tmp_path / "a" / "last.pt")))
    assert result["epochs"] == 2 and result["best_psnr"] is None


def test_bad_dataset_or_patch_is_input_error(sen12_dir, pairs, tmp_path):
    with pytest.raises(InputError, match="s1_nearest"):
        train(TrainConfig(kind="mtcgan", data=[str(sen12_dir)], out=str(tmp_path), **TINY))
    with pytest.raises(InputError, match="PatchGAN"):
        train(TrainConfig(kind="pix2pix", data=[str(pairs)], out=str(tmp_path), **{**TINY, "patch": 16}))
    for kind in ("pix2pix", "cnn"):  # too small for the generator's U-Net: said, not a ValueError's traceback
        with pytest.raises(InputError, match="patch 3 is too small for a U-Net"):
            train(TrainConfig(kind=kind, data=[str(pairs)], out=str(tmp_path), **{**TINY, "patch": 3}))
    with pytest.raises(InputError, match="missing.txt: cannot be read as a list of triplet names"):
        train(TrainConfig(kind="cnn", data=[str(pairs)], out=str(tmp_path), names_file=str(tmp_path / "missing.txt"),
                          **TINY))


def test_a_run_failing_before_its_first_epoch_leaves_no_folder(pairs, tmp_path, capsys):
    """`densify train pix2pix` with patches larger than the dataset's: one line, exit 1, and the --out folder it
    made is gone."""
    from sentinel_densify.core.cli import main as cli_main

    out = tmp_path / "new" / "run"
    assert cli_main(["train", "pix2pix", "--data", str(pairs), "--out", str(out), "--patch", "128", "--epochs", "1",
                     "--ngf", "8", "--ndf", "8", "--threads", "1"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("densify train: ") and "\n" not in err
    assert list(tmp_path.iterdir()) == []


def test_ddp_under_torchrun_on_cpu(pairs, tmp_path):
    """Two gloo processes on the CPU (the GPU path is the same code with nccl)."""
    import shutil
    import subprocess
    import sys

    torchrun = shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")
    cmd = [torchrun, "--nproc_per_node", "2", "-m", "sentinel_densify.core.cli", "train", "pix2pix", "--data",
           str(pairs), "--out", str(tmp_path), "--epochs", "2", "--ngf", "4", "--ndf", "4", "--batch", "8",
           "--device", "cpu", "--threads", "1", "--val-every", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = MetricsLog(tmp_path / "metrics.jsonl").read()
    assert [r["epoch"] for r in rows] == [1, 2]  # only rank 0 logs
    assert (tmp_path / "best.pt").exists()


def test_export_of_several_gan_checkpoints_keeps_the_best_val_psnr(pairs, tmp_path, capsys):
    """`densify export --checkpoint A B` compares GAN checkpoints by their val_psnr (temporal ones by
    val_score); checkpoints of two kinds are refused before any export."""
    from sentinel_densify.core.cli import main as cli_main
    from sentinel_densify.core.model_contract import read_contract

    runs = {}
    for kind, seed in (("cnn", 1), ("cnn", 2), ("mtcgan", 1)):
        out = tmp_path / f"{kind}{seed}"
        train(TrainConfig(kind=kind, data=[str(pairs)], out=str(out), epochs=1, **{**TINY, "seed": seed}))
        runs[out.name] = out / "best.pt"
    psnr = {name: load_checkpoint(path)["metrics"]["val_psnr"] for name, path in runs.items()}
    best = max(("cnn1", "cnn2"), key=psnr.get)
    assert cli_main(["export", "--checkpoint", str(runs["cnn1"]), str(runs["cnn2"]),
                     "--out", str(tmp_path / "m.onnx")]) == 0
    assert f"best validation score {psnr[best]:.3f}: {runs[best]}" in capsys.readouterr().out
    assert read_contract(tmp_path / "m.onnx")["kind"] == "cnn"
    assert cli_main(["export", "--checkpoint", str(runs["cnn1"]), str(runs["mtcgan1"]),
                     "--out", str(tmp_path / "x.onnx")]) == 1
    assert "different kinds (cnn, mtcgan)" in capsys.readouterr().err and not (tmp_path / "x.onnx").exists()


def test_he_yokoya_four_bands_and_the_seeds_batch_sizes(pairs, tmp_path):
    """`rgbn` gives MTcGAN He & Yokoya's input of n = 8 channels (S1 t1, O1 R-G-B-NIR, S1 t2) and a 4-band
    output; an unset batch size is the seed's (1 for mtcgan / cnn, 16 for pix2pix)."""
    from sentinel_densify.core.curate import read_s2_refl
    from sentinel_densify.core.gan.data import BAND_SETS, load_sample, scale_s2

    assert BAND_SETS["rgbn"] == ["B04", "B03", "B02", "B08"]
    tiny = {k: v for k, v in TINY.items() if k != "batch"}
    cfg = TrainConfig(kind="mtcgan", data=[str(pairs)], out=str(tmp_path / "m"), epochs=1, bands="rgbn", **tiny)
    train(cfg)
    ck = load_checkpoint(tmp_path / "m" / "last.pt")
    net = ck["config"]["net"]
    assert (net["in_ch"], net["out_ch"], net["bands"]) == (8, 4, ["B04", "B03", "B02", "B08"])
    assert cfg.batch == 1 and ck["config"]["batch"] == 1
    sample = list_samples([pairs], "mtcgan")[0]
    x, y = load_sample(sample, "mtcgan", BAND_SETS["rgbn"])
    nir, _, _ = read_s2_refl(pairs / "s2_cloudfree" / sample.name, ["B08"])
    assert x.shape[0] == 8 and y.shape[0] == 4
    np.testing.assert_allclose(y[3], scale_s2(nir[0]), atol=1e-6)  # the fourth band is NIR
    p2p = TrainConfig(kind="pix2pix", data=[str(pairs)], out=str(tmp_path / "p"), epochs=1, **tiny)
    train(p2p)
    assert p2p.batch == 16


def test_a_kept_list_is_read_as_utf8_whatever_the_locale(sen12_dir, tmp_path, monkeypatch):
    """Portability finding 10: kept.txt (curate writes UTF-8) was read in the locale's encoding (Windows: cp1252), so
    a non-ASCII triplet name was not found; a byte order mark (Windows' Notepad) is read past too."""
    import shutil

    from sentinel_densify.core.curate import FOLDERS

    names = ["ROIs2017_winter_Zürich_p1.tif", "ROIs2017_winter_1_p2.tif"]
    for f in FOLDERS:
        (tmp_path / "data" / f).mkdir(parents=True)
        for name in names:
            shutil.copy(sen12_dir / f / "ROIs2017_winter_112_p797.tif", tmp_path / "data" / f / name)
    read_text = Path.read_text  # Windows: the locale's encoding when none is given

    def cp1252(self, encoding=None, errors=None):
        return read_text(self, encoding or "cp1252", errors)

    monkeypatch.setattr(Path, "read_text", cp1252)
    for bom in (b"", b"\xef\xbb\xbf"):
        kept = tmp_path / "kept.txt"
        kept.write_bytes(bom + f"{names[0]}\n".encode())
        assert [s.name for s in list_samples([tmp_path / "data"], "pix2pix", kept)] == names[:1]
