"""`densify train pix2pix|mtcgan|cnn`: options and entry point (dispatched by core/cmd_train.py)."""

from __future__ import annotations

import argparse
import json

DEFAULTS = {  # the seeds' settings; the CNN-only variant has no discriminator
    "pix2pix": "Pix2Pix (Ledermann 2026): S1 VV/VH + cloudy S2 -> clear S2, U-Net + 70x70 PatchGAN",
    "mtcgan": "MTcGAN (He & Yokoya 2018): S1 t1, clear S2 t1, S1 t2 -> S2 t2, ResNet generator + PatchGAN",
    "cnn": "MTCNN (He & Yokoya 2018): the MTcGAN generator trained with L1 only",
}


def configure(p: argparse.ArgumentParser, kind: str) -> None:
    from ..cli import DefaultsHelpFormatter, fraction, nonnegative_float, nonnegative_int, positive_float, positive_int

    p.description = DEFAULTS[kind]
    p.formatter_class = DefaultsHelpFormatter
    p.add_argument("--data", nargs="+", required=True, help="SEN12MS-CR layout folder(s) (make-pairs, curate --link)")
    p.add_argument("--out", required=True, help="run folder: checkpoints, metrics.jsonl, loss_curves.png")
    p.add_argument("--names", default=None, help="only the triplets listed in this file (curate's kept.txt)")
    p.add_argument("--epochs", type=positive_int, default=200, help="epochs")
    p.add_argument("--batch", type=positive_int, default=16 if kind == "pix2pix" else 1, help="samples per step")
    p.add_argument("--lr", type=positive_float, default=2e-4, help="Adam learning rate")
    p.add_argument("--lambda-l1", type=nonnegative_float, default=100.0, help="weight of the L1 loss")
    p.add_argument("--patch", type=positive_int, default=None, help="crop size (default: the dataset's patch size)")
    p.add_argument("--ngf", type=positive_int, default=64, help="generator base width")
    p.add_argument("--ndf", type=positive_int, default=64, help="discriminator base width")
    p.add_argument("--n-blocks", type=nonnegative_int, default=9, help="residual blocks (mtcgan, cnn)")
    p.add_argument("--depth", type=positive_int, default=None, help="U-Net depth (default log2(patch), at most 8)")
    p.add_argument("--bands", choices=["rgb", "rgbn", "all"], default="rgb",
                   help="R, G, B; R, G, B, NIR (B08, He & Yokoya's four); or the 10 S2 bands")
    p.add_argument("--val-fraction", type=fraction, default=0.2, help="target dates held out for validation")
    p.add_argument("--val-every", type=positive_int, default=2, help="validate every N epochs")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1")
    p.add_argument("--workers", type=nonnegative_int, default=0, help="data loader processes")
    p.add_argument("--resume", default=None, help="checkpoint to resume from (last.pt)")
    p.add_argument("--max-minutes", type=positive_float, default=None, help="stop after this many minutes")
    p.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads (default: torch's choice)")


def main(args: argparse.Namespace, kind: str) -> int:
    from ..training import is_main_process
    from .train import TrainConfig, train

    cfg = TrainConfig(kind=kind, data=list(args.data), out=args.out, names_file=args.names, epochs=args.epochs,
                      batch=args.batch, lr=args.lr, lambda_l1=args.lambda_l1, patch=args.patch, ngf=args.ngf,
                      ndf=args.ndf, n_blocks=args.n_blocks, depth=args.depth, bands=args.bands,
                      val_fraction=args.val_fraction, val_every=args.val_every, seed=args.seed,
                      device=args.device, workers=args.workers, resume=args.resume, max_minutes=args.max_minutes,
                      threads=args.threads)
    result = train(cfg)
    if is_main_process():
        print(json.dumps(result, indent=1))
    return 0
