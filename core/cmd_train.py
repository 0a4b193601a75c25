"""`densify train KIND ...`: train a model (temporal here; pix2pix, mtcgan, cnn in core/gan)."""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

from .errors import DensifyError, InputError

GAN_KINDS = ("pix2pix", "mtcgan", "cnn")


def _gan_cli():
    try:
        return importlib.import_module(f"{__package__}.gan.cli")
    except ModuleNotFoundError as exc:
        if exc.name != f"{__package__}.gan.cli":
            raise
        return None


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="kind", metavar="KIND", required=True)
    from .temporal import train as temporal

    temporal.configure(sub.add_parser("temporal", help="S1+S2 temporal cross-attention generator"))
    gan = _gan_cli()
    for kind in GAN_KINDS:
        what = ("single-date S1 + cloudy S2 -> clear S2 (Ledermann)" if kind == "pix2pix" else
                "multi-temporal S1 t1 + S2 t1 + S1 t2 -> S2 t2 (He & Yokoya)")
        p = sub.add_parser(kind, help=f"{kind}: {what} (core/gan)")
        if gan is not None:
            gan.configure(p, kind)


def last_epoch(out: str | Path, kind: str) -> int | None:
    """The epochs OUT/last.pt has finished (1 = the first), None when there is none to read."""
    from .training import load_checkpoint

    last = Path(out) / "last.pt"
    if not last.is_file():
        return None
    try:
        epoch = load_checkpoint(last).get("epoch")
    except DensifyError:
        return None
    if not isinstance(epoch, int):
        return None
    return epoch + 1 if kind == "temporal" else epoch  # temporal checkpoints count epochs from 0


def interrupted_note(args: argparse.Namespace) -> str:
    """What an interrupted `densify train` leaves: the checkpoints of the epochs it finished (the last one
    saved named when OUT/last.pt is there)."""
    how = "--resume" if args.kind == "temporal" else f"--resume {args.out}/last.pt"
    done = last_epoch(args.out, args.kind)
    if done is not None:
        return (f"{args.out}/last.pt holds epoch {done} of {args.epochs} (the last one saved; metrics.jsonl and "
                f"best.pt are beside it): continue with {how}")
    return (f"the checkpoints and metrics of the finished epochs (if any) are in {args.out}: "
            f"continue with {how}")


def main(args: argparse.Namespace) -> int:
    if args.kind == "temporal":
        from .temporal import train as temporal

        temporal.train(args)
        return 0
    gan = _gan_cli()
    if gan is None:
        raise InputError(f"training '{args.kind}' needs core/gan/cli.py, which this build lacks")
    return int(gan.main(args, args.kind) or 0)
