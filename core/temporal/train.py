"""Train the temporal S1+S2 generator on a real series (`densify train temporal ...`).

Run alone, or with DDP: `torchrun --nproc_per_node=N -m sentinel_densify.core.temporal.train ...`.
Validation targets are S2 dates in held-out month blocks (every 4th month of the series);
those dates are never shown to the model in training, neither as targets nor as inputs.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

from ..stack import Stack
from .dataset import SAME_DAY, Sampler, SamplerConfig, load_series, model_inputs, month_block, split_dates

KIND = "temporal"
VAL_GAPS = (0.0, 30.0)
VAL_LEADS = (15.0,)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="series folder with S2/ (L2A + SCL) and S1/")
    parser.add_argument("--out", required=True, help="output folder (checkpoints, metrics.jsonl)")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--steps", type=int, default=40, help="optimiser steps per epoch")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--crop", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    parser.add_argument("--width", type=int, default=32, help="feature width d")
    parser.add_argument("--heads", type=int, default=2)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--k2", type=int, default=8, help="S2 observations used (nearest in time)")
    parser.add_argument("--k1", type=int, default=8, help="S1 observations used (nearest in time)")
    parser.add_argument("--max-gap", type=float, default=60.0, help="largest random gap hidden (days)")
    parser.add_argument("--max-lead", type=float, default=60.0, help="largest forecast lead (days)")
    parser.add_argument("--holdout-every", type=int, default=4, help="hold out every Nth month block")
    parser.add_argument("--points", default=None,
                        help="point-series parquet (WorldCereal dekads) to pre-train the per-pixel "
                             "temporal part on before the series epochs")
    parser.add_argument("--points-steps", type=int, default=200, help="pre-training steps on --points")
    parser.add_argument("--points-batch", type=int, default=256, help="points (1 x 1 px) per step")
    parser.add_argument("--val-samples", type=int, default=64,
                        help="random validation samples (crops, gaps, leads) on held-out dates; "
                             "the best checkpoint and the std temperature are chosen on them")
    parser.add_argument("--no-progress", action="store_true")


def _stats(stack: Stack, keep: np.ndarray) -> dict:
    s2 = stack.s2[keep]
    s1 = np.concatenate([stack.s1, stack.s1[:, :1] - stack.s1[:, 1:2]], axis=1)
    return {"s2_mean": np.nanmean(s2, axis=(0, 2, 3)).round(5).tolist(),
            "s2_std": np.nanstd(s2, axis=(0, 2, 3)).round(5).tolist(),
            "s1_mean": np.nanmean(s1, axis=(0, 2, 3)).round(4).tolist(),
            "s1_std": np.nanstd(s1, axis=(0, 2, 3)).round(4).tolist()}


def build_model(config: dict):
    from .model import TemporalGenerator

    m = config["model"]
    return TemporalGenerator(m["d"], m["heads"], m["layers"], m["s2_mean"], m["s2_std"],
                             m["s1_mean"], m["s1_std"])


def to_tensors(batch: dict[str, np.ndarray], device) -> list:
    import torch

    from .model import INPUTS

    return [torch.as_tensor(np.ascontiguousarray(batch[k]), device=device) for k in INPUTS]


def predict(model, stack: Stack, day: float, k2: int, k1: int, device=None) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std (B, h, w) over the whole window of `stack` with the torch model."""
    import torch

    x = model_inputs(stack, day, k2, k1)
    batch = {k: v[None] for k, v in x.items()}
    with torch.no_grad():
        mean, logvar = model(*to_tensors(batch, device or "cpu"))
    return mean[0].float().cpu().numpy(), np.exp(0.5 * logvar[0].float().cpu().numpy())


def val_targets(stack: Stack, held: np.ndarray) -> np.ndarray:
    """Held-out S2 dates clear enough to score: >= 99 % clear (the protocol), else >= 70 %."""
    clear = stack.valid.reshape(len(stack.s2_days), -1).mean(axis=1)
    idx = np.flatnonzero(held & (clear >= 0.99))
    return idx if idx.size else np.flatnonzero(held & (clear >= 0.7))


def _psnr(pred: np.ndarray, truth: np.ndarray, ok: np.ndarray) -> float:
    err = np.clip(pred, 0, 1)[:, ok] - np.clip(truth, 0, 1)[:, ok]
    return float(10 * np.log10(1.0 / max(np.mean(err ** 2), 1e-12)))


def validate(model, stack: Stack, targets: np.ndarray, k2: int, k1: int, device=None) -> dict:
    """PSNR of the model and of the linear baseline, and normalised errors z, on held-out targets
    (gap-filling G = 0, 30 d; forecasting L = 15 d, as in EVALUATION.md)."""
    rows, zs = [], []
    for t in targets:
        day = float(stack.s2_days[t])
        truth, ok = stack.s2[t], stack.valid[t]
        for task, days in [("gap", g) for g in VAL_GAPS] + [("forecast", lead) for lead in VAL_LEADS]:
            if task == "gap":
                sub = stack.select_s2(np.abs(stack.s2_days - day) > days + SAME_DAY - 1e-9)
            else:
                cut = day - days + SAME_DAY
                sub = stack.select_s2(stack.s2_days <= cut).select_s1(stack.s1_days <= cut)
            mean, std = predict(model, sub, day, k2, k1, device)
            base = model_inputs(sub, day, 1, 1)["base"]
            rows.append({"task": task, "days": days, "psnr": _psnr(mean, truth, ok),
                         "psnr_linear": _psnr(base, truth, ok)})
            zs.append(((mean - truth) / std)[:, ok].ravel())
    z = np.concatenate(zs) if zs else np.zeros(1)
    out: dict = {}
    for task, days in {(r["task"], r["days"]) for r in rows}:
        sel = [r for r in rows if r["task"] == task and r["days"] == days]
        key = f"{task}{days:g}"
        out[f"psnr_{key}"] = float(np.mean([r["psnr"] for r in sel]))
        out[f"psnr_linear_{key}"] = float(np.mean([r["psnr_linear"] for r in sel]))
    az = np.abs(z)
    out["cov1"] = float(np.mean(az <= 1) * 100)
    out["cov2"] = float(np.mean(az <= 2) * 100)
    # temperature for the std so that 68.3 % of |z| fall within 1 std (median-based, robust)
    out["temperature"] = float(np.quantile(az, 0.683)) if az.size else 1.0
    out["val_score"] = float(np.mean([out[k] - out[k.replace("psnr_", "psnr_linear_")]
                                      for k in out if k.startswith("psnr_") and "linear" not in k]))
    return out


def validation_set(stack: Stack, held: np.ndarray, scfg: SamplerConfig, n: int, seed: int
                   ) -> list[dict[str, np.ndarray]]:
    """`n` fixed random samples (batches of 8) targeting held-out dates, inputs as in the protocol."""
    if n <= 0:
        return []
    try:
        sampler = Sampler(stack, held, scfg, seed=seed + 99_991, validation=True)
    except Exception:  # noqa: BLE001 - no held-out date clear enough: no sample validation
        return []
    return [sampler.batch(min(8, n - i)) for i in range(0, n, 8)]


def validate_samples(model, batches: list[dict[str, np.ndarray]], device=None) -> dict:
    """NLL, MSE (normalised) of the model and of the linear / nearest baselines, and the std
    temperature fitted so that 68.3 % of |z| <= 1, over the validation samples."""
    import torch

    from .model import N_S2, gaussian_nll

    scale = model.s2_std[:, 0]
    nll, se, se_lin, se_near, npx, zs = 0.0, 0.0, 0.0, 0.0, 0.0, []
    with torch.no_grad():
        for b in batches:
            mean, logvar = model(*to_tensors(b, device or "cpu"))
            target = torch.as_tensor(b["target"], device=mean.device)
            valid = torch.as_tensor(b["target_valid"], device=mean.device) > 0.5
            info = torch.as_tensor(b["base_info"], device=mean.device)
            near = torch.as_tensor(b["near"], device=mean.device)
            ok = valid & (info[:, 0] > 0.5)
            m = ok.unsqueeze(1).float()
            n = float(m.sum()) * N_S2
            nll += float(gaussian_nll(mean, logvar, target, ok, scale)) * n
            base = torch.as_tensor(b["base"], device=mean.device)
            nearest = torch.where(info[:, 1:2] <= info[:, 2:3], near[:, :N_S2], near[:, N_S2:])
            se += float((((mean - target) / scale) ** 2 * m).sum())
            se_lin += float((((base - target) / scale) ** 2 * m).sum())
            se_near += float((((nearest - target) / scale) ** 2 * m).sum())
            npx += n
            z = ((mean - target) * torch.exp(-0.5 * logvar)).permute(1, 0, 2, 3)[:, ok]
            zs.append(z.abs().flatten().cpu().numpy())
    npx = max(npx, 1.0)
    az = np.concatenate(zs) if zs else np.ones(1)
    return {"val_nll": nll / npx, "val_mse": se / npx, "val_mse_linear": se_lin / npx,
            "val_mse_nearest": se_near / npx,
            "val_gain_db": float(10 * np.log10(min(se_lin, se_near) / max(se, 1e-12))) if se else 0.0,
            "temperature": float(np.quantile(az, 0.683))}


def pretrain_points(model, args: argparse.Namespace, scfg: SamplerConfig, device, log=None) -> float:
    """`--points-steps` Adam steps on 1 x 1 px samples of the point series (B8A out of the loss);
    returns the mean loss of the last 20 steps."""
    import torch

    from .model import N_S2, gaussian_nll
    from .points import B8A_INDEX, PointsSampler, load_points

    sampler = PointsSampler(load_points(args.points), scfg, args.seed + 12_345)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    scale = model.s2_std[:, 0]
    keep = torch.ones(N_S2, dtype=torch.bool)
    keep[B8A_INDEX] = False
    model.train()
    losses = []
    for step in range(args.points_steps):
        for group in opt.param_groups:
            group["lr"] = args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / max(1, args.points_steps))))
        b = sampler.batch(args.points_batch)
        mean, logvar = model(*to_tensors(b, device))
        valid = torch.as_tensor(b["target_valid"], device=device) > 0.5
        target = torch.as_tensor(b["target"], device=device)
        loss = gaussian_nll(mean[:, keep], logvar[:, keep], target[:, keep], valid, scale[:, keep])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(float(loss.detach()))
        if log is not None and (step + 1) % 50 == 0:
            log.log(phase="points", step=step + 1, loss=float(np.mean(losses[-50:])))
    return float(np.mean(losses[-20:])) if losses else float("nan")


def train(args: argparse.Namespace) -> dict:
    """The training loop; returns the last validation metrics (rank 0) or {}."""
    import torch
    from torch.nn.parallel import DistributedDataParallel

    from .. import training as T
    from .model import gaussian_nll

    rank, world, device = T.ddp_setup(args.device)
    if world > 1 and device.type == "cpu":
        torch.set_num_threads(1)
    T.seed_everything(args.seed)
    out = Path(args.out)
    stack = load_series(args.data)
    held = split_dates(stack, args.holdout_every, args.holdout_every - 1)
    months = sorted({month_block(d) for d in stack.s2_days[held]})
    config = {
        "model": {"d": args.width, "heads": args.heads, "layers": args.layers, **_stats(stack, ~held)},
        "k2": args.k2, "k1": args.k1, "crop": args.crop, "batch": args.batch, "lr": args.lr,
        "seed": args.seed, "steps": args.steps, "epochs": args.epochs, "world_size": world,
        "max_gap": args.max_gap, "max_lead": args.max_lead,
        "data": str(Path(args.data).resolve()),
        "holdout": {"rule": f"S2 dates whose month index since the series start % {args.holdout_every} "
                            f"== {args.holdout_every - 1} are held out (never shown in training)",
                    "months": [f"{m // 12}-{m % 12 + 1:02d}" for m in months],
                    "n_dates": int(held.sum())},
    }
    model = build_model(config).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    start = 0
    best = -math.inf
    last = out / "last.pt"
    if args.resume and last.exists():
        ckpt = T.load_checkpoint(last)
        model.load_state_dict(ckpt["model_state"])
        if ckpt.get("optim_state"):
            opt.load_state_dict(ckpt["optim_state"])
        start = int(ckpt["epoch"]) + 1
        best = float(ckpt["metrics"].get("best_score", -math.inf))
        config = {**ckpt["config"], "epochs": args.epochs}
    scfg = SamplerConfig(crop=args.crop, k2=args.k2, k1=args.k1, max_gap=args.max_gap, max_lead=args.max_lead)
    if getattr(args, "points", None) and start == 0:
        config["points"] = {"file": str(Path(args.points).resolve()), "steps": args.points_steps,
                            "batch": args.points_batch}
        loss = pretrain_points(model, args, scfg, device)
        print(json.dumps({"phase": "points", "loss": round(loss, 4)}), flush=True)
    net = DistributedDataParallel(model) if world > 1 else model
    scaler = T.grad_scaler(device)
    log = T.MetricsLog(out / "metrics.jsonl") if T.is_main_process() else None
    vt = val_targets(stack, held)
    vset = validation_set(stack, held, scfg, getattr(args, "val_samples", 64), args.seed)
    scale = model.s2_std[:, 0]
    metrics: dict = {}
    total = 0
    for epoch in range(start, args.epochs):
        sampler = Sampler(stack, held, scfg, seed=args.seed * 1_000_003 + epoch * 7919 + rank)
        net.train()
        steps = range(args.steps)
        if T.is_main_process() and not args.no_progress:
            from tqdm import tqdm

            steps = tqdm(steps, desc=f"epoch {epoch + 1}/{args.epochs}", leave=False)
        losses = []
        for step in steps:
            progress = (epoch * args.steps + step) / max(1, args.epochs * args.steps)
            for group in opt.param_groups:  # cosine decay to 5 % of the initial rate
                group["lr"] = args.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))
            b = sampler.batch(args.batch)
            x = to_tensors(b, device)
            target = torch.as_tensor(b["target"], device=device)
            valid = torch.as_tensor(b["target_valid"], device=device) > 0.5
            with T.autocast(device):
                mean, logvar = net(*x)
            loss = gaussian_nll(mean.float(), logvar.float(), target, valid, scale)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            scaler.step(opt)
            scaler.update()
            losses.append(float(loss.detach()))
            total += 1
        if T.is_main_process():
            model.eval()
            metrics = {"epoch": epoch, "loss": float(np.mean(losses))}
            if vt.size:
                metrics.update(validate(model, stack, vt, config["k2"], config["k1"], device))
            if vset:  # selection and temperature on many samples, not on the few protocol targets
                metrics.update(validate_samples(model, vset, device))
                metrics["val_score"] = -metrics["val_mse"]
            score = metrics.get("val_score", -metrics["loss"])
            improved = score > best
            best = max(best, score)
            metrics["best_score"] = best
            metrics["val_dates"] = [str(x) for x in vt.tolist()]
            state = dict(kind=KIND, model_state=model.state_dict(), optim_state=opt.state_dict(),
                         epoch=epoch, config=config, metrics=metrics)
            T.save_checkpoint(last, **state)
            if improved:
                T.save_checkpoint(out / "best.pt", **state)
            log.log(**{k: v for k, v in metrics.items() if k != "val_dates"})
            print(json.dumps({k: round(v, 3) if isinstance(v, float) else v
                              for k, v in metrics.items() if k != "val_dates"}), flush=True)
    print(f"rank {rank}/{world}: {total} steps done", flush=True)
    T.ddp_cleanup()
    return metrics


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="densify train temporal", description=__doc__.splitlines()[0])
    configure(parser)
    train(parser.parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
