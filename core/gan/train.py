"""Training of the cloud-removal models: Pix2Pix (Ledermann 2026), MTcGAN and its CNN-only variant
(He & Yokoya 2018).

cGAN + lambda * L1 (lambda 100), Adam lr 2e-4 betas (0.5, 0.999), batch 16 (pix2pix) or 1 (mtcgan,
cnn) unless set, random flips, AMP on
GPU, validation PSNR / SSIM / SAM every `val_every` epochs (RGB reflectance, EVALUATION.md), loss
curves as PNG, checkpoints (last.pt, best.pt by validation PSNR), resume, determinism, DDP
under torchrun. The CNN variant drops the discriminator (L1 only).
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .. import metrics as M
from ..atomic import OutputError, atomic_path, first_line, new_dirs_removed_on_error, write_text
from ..curate import RGB
from ..errors import InputError
from ..progress import Feedback
from ..training import (
    MetricsLog,
    autocast,
    check_run_folder,
    ddp_cleanup,
    ddp_setup,
    grad_scaler,
    is_main_process,
    load_checkpoint,
    save_checkpoint,
    seed_everything,
    unwrap,
)
from .data import (
    BAND_SETS,
    S1_RANGE,
    S2_RANGE,
    Sample,
    TripletDataset,
    in_channels,
    list_samples,
    load_sample,
    split,
    unscale_s2,
)

KINDS = ("pix2pix", "mtcgan", "cnn")


@dataclass
class TrainConfig:
    """Everything a training run needs; saved in its checkpoints."""

    kind: str
    data: list[str]
    out: str
    names_file: str | None = None
    epochs: int = 200
    batch: int | None = None  # None: the seed's, 16 for pix2pix (Ledermann), 1 for mtcgan / cnn (He & Yokoya)
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    lambda_l1: float = 100.0
    patch: int | None = None  # crop size (default: the dataset's patch size)
    ngf: int = 64
    ndf: int = 64
    n_blocks: int = 9
    depth: int | None = None  # U-Net depth (default: from the patch size)
    dropout: float = 0.5
    bands: str = "rgb"  # a key of BAND_SETS: rgb | rgbn | all
    val_fraction: float = 0.2
    val_every: int = 2
    seed: int = 0
    device: str = "auto"
    workers: int = 0
    resume: str | None = None
    max_minutes: float | None = None
    threads: int | None = None  # torch CPU threads (1 is much faster on a busy shared CPU)
    extra: dict = field(default_factory=dict)


def net_config(cfg: TrainConfig, patch: int) -> dict:
    """What export and inference need to rebuild the generator and scale its data."""
    from .nets import unet_depth

    bands = BAND_SETS[cfg.bands]
    depth = cfg.depth or unet_depth(patch)
    return {"kind": cfg.kind, "in_ch": in_channels(cfg.kind, len(bands)), "out_ch": len(bands),
            "ngf": cfg.ngf, "ndf": cfg.ndf, "depth": depth, "n_blocks": cfg.n_blocks, "dropout": cfg.dropout,
            "bands": bands, "patch": patch, "s1_range": list(S1_RANGE), "s2_range": list(S2_RANGE)}


def rgb_index(bands: list[str]) -> list[int]:
    return [bands.index(b) for b in RGB]


def score_rgb(pred: np.ndarray, truth: np.ndarray, bands: list[str]) -> dict[str, float]:
    """PSNR, SSIM, SAM on the R, G, B reflectance (clipped to [0, 1]) of one sample (EVALUATION.md)."""
    idx = rgb_index(bands)
    p, t = pred[idx], truth[idx]
    valid = np.isfinite(t).all(0)
    return {"psnr": M.psnr(p, t, valid), "ssim": M.ssim(p, t, valid), "sam": M.sam(p, t, valid)}


def _mean(rows: list[dict[str, float]]) -> dict[str, float]:
    keys = rows[0].keys() if rows else []
    return {k: float(np.nanmean([r[k] for r in rows if np.isfinite(r[k])] or [np.nan])) for k in keys}


def evaluate(predict, samples: list[Sample], kind: str, bands: list[str], baselines: bool = True
             ) -> dict[str, dict[str, float]]:
    """Mean RGB metrics of `predict(x) -> y` (scaled arrays) over samples, with the baselines
    'cloudy' (the cloudy input as it is) and 'nearest' (the nearest other clear acquisition),
    when the dataset has them."""
    from ..curate import read_s2_refl

    rows: dict[str, list[dict]] = {"model": [], "cloudy": [], "nearest": []}
    for s in samples:
        x, y = load_sample(s, kind, bands)
        truth = unscale_s2(y)
        rows["model"].append(score_rgb(unscale_s2(predict(x)), truth, bands))
        if baselines:
            for name, folder in (("cloudy", "s2_cloudy"), ("nearest", "s2_nearest")):
                path = s.root / folder / s.name
                if path.is_file():
                    refl, _, _ = read_s2_refl(path, bands)
                    rows[name].append(score_rgb(np.nan_to_num(refl, nan=0.0), truth, bands))
    return {k: {**_mean(v), "n": len(v)} for k, v in rows.items() if v}


def torch_predictor(gen, device):
    """A numpy (C, h, w) -> (C', h, w) function running the generator in eval mode."""
    import torch

    def predict(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return gen(torch.from_numpy(x[None]).to(device)).float().cpu().numpy()[0]
    return predict


RUN_FILES = ("last.pt", "best.pt", "metrics.jsonl", "loss_curves.png")


def check_run(cfg: TrainConfig) -> dict | None:
    """Refuse an OUT that cannot take the run's files or already holds a run (unless resuming) and
    a --resume checkpoint that cannot be continued; returns that checkpoint (None: a fresh run)."""
    out = Path(cfg.out)
    check_run_folder(out, RUN_FILES, bool(cfg.resume), f"--resume {out / 'last.pt'}")
    if not cfg.resume:
        return None
    here = out / "last.pt"
    ours = Path(cfg.resume).resolve().parent == out.resolve()  # OUT/last.pt (or OUT/best.pt: refused below)
    if (here.exists() or (out / "metrics.jsonl").exists()) and not ours:
        raise OutputError(f"--out {out} holds another run than --resume {cfg.resume}: resume from {here}, "
                          "or choose an --out without a run")
    ck = load_checkpoint(cfg.resume)
    if ck["kind"] != cfg.kind:
        raise InputError(f"{Path(cfg.resume).name}: a {ck['kind']} checkpoint, not {cfg.kind}")
    if not isinstance(ck.get("optim_state"), dict) or "G" not in ck["optim_state"]:
        raise InputError(f"{cfg.resume}: has no optimiser state (best.pt keeps the weights only): "
                         "resume needs the run's last.pt")
    done = ck.get("epoch")  # 1-based
    if isinstance(done, int) and done >= cfg.epochs:
        raise InputError(f"--resume {cfg.resume}: the run already finished epoch {done} of "
                         f"{(ck.get('config') or {}).get('epochs', done)}: give a larger --epochs (more than {done}) "
                         "to train it further")
    return ck


def _seed_worker(worker_id: int) -> None:
    """A DataLoader worker's own augmentation stream, from the loader's (seeded) generator."""
    import torch

    info = torch.utils.data.get_worker_info()
    info.dataset.rng = np.random.default_rng(info.seed % 2**32)


def train(cfg: TrainConfig, feedback: Feedback | None = None) -> dict:
    """Train; returns the final validation metrics and checkpoint paths (rank 0). A run that fails before its first
    epoch leaves no folder it made."""
    with new_dirs_removed_on_error(cfg.out):
        return _train(cfg, feedback)


def _train(cfg: TrainConfig, feedback: Feedback | None) -> dict:
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, DistributedSampler

    from .nets import PatchDiscriminator, build_generator, init_weights

    if cfg.kind not in KINDS:
        raise InputError(f"unknown model kind '{cfg.kind}' (one of {', '.join(KINDS)})")
    if cfg.bands not in BAND_SETS:
        raise InputError(f"unknown band set '{cfg.bands}' ({', '.join(BAND_SETS)})")
    if not 0 <= cfg.val_fraction < 1:
        raise InputError(f"--val-fraction {cfg.val_fraction} must be in [0, 1)")
    if cfg.batch is None:
        cfg.batch = 16 if cfg.kind == "pix2pix" else 1
    resumed = check_run(cfg)
    feedback = feedback or Feedback()
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    rank, world, device = ddp_setup(cfg.device)
    seed_everything(cfg.seed + rank)
    out = Path(cfg.out)
    bands = BAND_SETS[cfg.bands]
    samples = list_samples(cfg.data, cfg.kind, cfg.names_file)
    train_s, val_s = split(samples, cfg.val_fraction)
    if not train_s:
        raise InputError("no training triplet left after the validation split")
    x0, _ = load_sample(train_s[0], cfg.kind, bands)
    patch = cfg.patch or min(x0.shape[1:])
    try:
        ncfg = net_config(cfg, patch)
    except ValueError as exc:  # e.g. a patch too small for a U-Net
        raise InputError(str(exc)) from None
    if cfg.kind != "cnn" and patch < 32:
        raise InputError(f"patch {patch} is too small for the 70x70 PatchGAN (at least 32 px)")
    if cfg.kind == "pix2pix" and patch % (2 ** ncfg["depth"]):
        raise InputError(f"patch {patch} is not a multiple of 2**{ncfg['depth']} (U-Net depth)")

    G = init_weights(build_generator(ncfg)).to(device)
    D = init_weights(PatchDiscriminator(ncfg["in_ch"] + ncfg["out_ch"], cfg.ndf)).to(device) \
        if cfg.kind != "cnn" else None
    betas = (cfg.beta1, cfg.beta2)
    opt_G = torch.optim.Adam(G.parameters(), lr=cfg.lr, betas=betas)
    opt_D = torch.optim.Adam(D.parameters(), lr=cfg.lr, betas=betas) if D is not None else None
    start, best = 0, -math.inf
    if resumed is not None:
        ck = resumed
        try:
            G.load_state_dict(ck["model_state"])
            opt_G.load_state_dict(ck["optim_state"]["G"])
            if D is not None:
                D.load_state_dict(ck["optim_state"]["D_net"])
                opt_D.load_state_dict(ck["optim_state"]["D"])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise InputError(f"{cfg.resume}: does not fit this run's options (--ngf, --ndf, --n-blocks, --depth, "
                             f"--bands, --patch must be the checkpoint's): {first_line(exc)}") from None
        prev = ck.get("metrics", {}).get("best_psnr")
        start, best = int(ck["epoch"]), -math.inf if prev is None else float(prev)
    if world > 1:
        G = nn.parallel.DistributedDataParallel(G, device_ids=[device.index] if device.type == "cuda" else None)
        if D is not None:
            D = nn.parallel.DistributedDataParallel(D, device_ids=[device.index] if device.type == "cuda" else None)

    ds = TripletDataset(train_s, cfg.kind, bands, patch, augment=True, seed=cfg.seed + rank)
    sampler = DistributedSampler(ds, world, rank, shuffle=True, seed=cfg.seed) if world > 1 else None
    gen = torch.Generator().manual_seed(cfg.seed)
    loader = DataLoader(ds, batch_size=cfg.batch, shuffle=sampler is None, sampler=sampler, drop_last=False,
                        num_workers=cfg.workers, generator=gen, worker_init_fn=_seed_worker)
    bce, l1 = nn.BCEWithLogitsLoss(), nn.L1Loss()
    scaler_G, scaler_D = grad_scaler(device), grad_scaler(device)
    log = MetricsLog(out / "metrics.jsonl") if is_main_process() else None
    if log is not None and resumed is not None:
        drop_rows_after(log, start)
        if start not in {r.get("epoch") for r in log.read()}:  # stopped between its checkpoint and its row
            log.log(epoch=start, **{k: v for k, v in (resumed.get("metrics") or {}).items() if k != "best_psnr"})
    t0 = time.time()
    config = {**asdict(cfg), "net": ncfg, "n_train": len(train_s), "n_val": len(val_s),
              "val_names": [s.name for s in val_s]}
    last_val: dict = {}
    epoch = start
    for epoch in range(start + 1, cfg.epochs + 1):
        # every random stream starts from (seed, epoch, rank): a resumed run draws what an uninterrupted one would
        epoch_seed = cfg.seed * 1_000_003 + epoch * 7919
        gen.manual_seed(epoch_seed + rank)  # DataLoader workers' streams (the DistributedSampler has its own)
        ds.rng = np.random.default_rng(epoch_seed + rank)
        torch.manual_seed(epoch_seed + rank)
        if sampler is not None:
            sampler.set_epoch(epoch)
        G.train()
        if D is not None:
            D.train()
        sums = {"loss_G": 0.0, "loss_L1": 0.0, "loss_GAN": 0.0, "loss_D": 0.0}
        n = 0
        for x, y in loader:
            feedback.check()
            x, y = x.to(device), y.to(device)
            with autocast(device):
                fake = G(x)
            if D is not None:
                opt_D.zero_grad(set_to_none=True)
                with autocast(device):
                    real_logits, fake_logits = D(x, y), D(x, fake.detach())
                    loss_D = 0.5 * (bce(real_logits, torch.ones_like(real_logits))
                                    + bce(fake_logits, torch.zeros_like(fake_logits)))
                scaler_D.scale(loss_D).backward()
                scaler_D.step(opt_D)
                scaler_D.update()
            opt_G.zero_grad(set_to_none=True)
            with autocast(device):
                loss_L1 = l1(fake.float(), y)
                if D is not None:
                    logits = D(x, fake)
                    loss_GAN = bce(logits, torch.ones_like(logits))
                else:
                    loss_GAN = torch.zeros((), device=device)
                loss_G = loss_GAN + cfg.lambda_l1 * loss_L1
            scaler_G.scale(loss_G).backward()
            scaler_G.step(opt_G)
            scaler_G.update()
            k = x.shape[0]
            n += k
            sums["loss_G"] += float(loss_G.detach()) * k
            sums["loss_L1"] += float(loss_L1.detach()) * k
            sums["loss_GAN"] += float(loss_GAN.detach()) * k
            sums["loss_D"] += float(loss_D.detach()) * k if D is not None else 0.0
        row = {k: v / max(1, n) for k, v in sums.items()}
        timed_out = cfg.max_minutes is not None and (time.time() - t0) / 60 >= cfg.max_minutes
        if is_main_process():
            if val_s and (epoch % cfg.val_every == 0 or epoch == cfg.epochs or timed_out):
                g = unwrap(G)
                g.eval()
                last_val = evaluate(torch_predictor(g, device), val_s, cfg.kind, bands, baselines=False)["model"]
                row.update({f"val_{k}": v for k, v in last_val.items() if k != "n"})
            state = {"G": opt_G.state_dict()}
            if D is not None:
                state.update(D=opt_D.state_dict(), D_net=unwrap(D).state_dict())
            is_best = "val_psnr" in row and row["val_psnr"] > best
            best = max(best, row.get("val_psnr", best))
            ck_metrics = {**row, "best_psnr": best if math.isfinite(best) else None}
            save_checkpoint(out / "last.pt", kind=cfg.kind, model_state=unwrap(G).state_dict(), optim_state=state,
                            epoch=epoch, config=config, metrics=ck_metrics)
            if is_best or not val_s:
                save_checkpoint(out / "best.pt", kind=cfg.kind, model_state=unwrap(G).state_dict(),
                                optim_state=None, epoch=epoch, config=config, metrics=ck_metrics)
            log.log(epoch=epoch, **row)  # after its checkpoint: a stop in between leaves no row to repeat
        feedback.report(100.0 * (epoch - start) / max(1, cfg.epochs - start), f"epoch {epoch}/{cfg.epochs}")
        if timed_out:
            break
    if not val_s and is_main_process():
        print(f"warning: no validation split (--val-fraction {cfg.val_fraction} of {len(train_s)} triplets): "
              "best_psnr is null and best.pt is the last epoch", file=sys.stderr)
    result = {"epochs": epoch, "val": last_val, "best_psnr": best if math.isfinite(best) else None, "out": str(out),
              "checkpoint": str(out / "best.pt"), "last": str(out / "last.pt"),
              "minutes": (time.time() - t0) / 60}
    if is_main_process():
        plot_curves(out / "metrics.jsonl", out / "loss_curves.png")
    ddp_cleanup()
    return result


def drop_rows_after(log: MetricsLog, epoch: int) -> None:
    """Rewrite the log (atomically) without its rows of epochs after `epoch`: a run stopped after logging
    an epoch but before its checkpoint (older runs logged first) resumes from `epoch` and logs them again."""
    rows = log.read()
    keep = [r for r in rows if not (isinstance(r.get("epoch"), int | float) and r["epoch"] > epoch)]
    if len(keep) < len(rows):
        write_text(log.path, "".join(json.dumps(r) + "\n" for r in keep))


def plot_curves(log_path: str | Path, png: str | Path) -> Path | None:
    """Loss curves (adversarial, L1) and validation PSNR / SSIM as one PNG (Ledermann Fig. 3)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = MetricsLog(log_path).read()
    if not rows:
        return None
    ep = [r["epoch"] for r in rows]
    fig, ax = plt.subplots(1, 3, figsize=(13, 3.6))
    ax[0].plot(ep, [r["loss_GAN"] for r in rows], label="G adversarial")
    ax[0].plot(ep, [r["loss_D"] for r in rows], label="D")
    ax[0].set_title("(A) adversarial losses")
    ax[1].plot(ep, [r["loss_L1"] for r in rows], color="C2")
    ax[1].set_title("(B) generator L1 (scaled units)")
    val = [r for r in rows if "val_psnr" in r]
    if val:
        ax[2].plot([r["epoch"] for r in val], [r["val_psnr"] for r in val], "o-", label="PSNR (dB)")
        ax2 = ax[2].twinx()
        ax2.plot([r["epoch"] for r in val], [r["val_ssim"] for r in val], "s-", color="C3", label="SSIM")
        ax2.set_ylabel("SSIM")
    ax[2].set_title("(C) validation RGB")
    for a in ax:
        a.set_xlabel("epoch")
    ax[0].legend()
    fig.tight_layout()
    png = Path(png)
    with atomic_path(png) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)
    return png
