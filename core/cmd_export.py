"""`densify export --checkpoint CKPT [CKPT ...] --out FILE.onnx`: a trained checkpoint to ONNX with its
contract; given several (runs of one recipe with different seeds), the one with the best validation
score is exported."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from .atomic import OutputError, output_file_problem
from .errors import InputError


def configure(parser: argparse.ArgumentParser) -> None:
    from .cli import nonnegative_float

    parser.add_argument("--checkpoint", required=True, nargs="+", metavar="CKPT",
                        help="checkpoint (.pt) from densify train; several: export the best validation score")
    parser.add_argument("--out", required=True, metavar="FILE.onnx", help="ONNX file to write")
    parser.add_argument("--recalibrate", action="store_true",
                        help="temporal: measure the checkpoint's validation again (its data and months) and "
                             "calibrate its std from that (for checkpoints saved before the per-distance "
                             "temperature existed)")
    parser.add_argument("--haze-screen", type=nonnegative_float, default=None, metavar="THRESHOLD",
                        help="temporal: the exported model screens hazy S2 pixels out of its inputs with this "
                             "blue-rise threshold (reflectance; 0: no screen) instead of what it was trained with; "
                             "its validation and std calibration are measured again with it")


SCORES = {"temporal": "val_score"}  # the validation score a kind's checkpoints compare by; others: val_psnr


def best_checkpoint(paths: list[str]) -> tuple[str, float]:
    """The checkpoint with the highest validation score (one kind only: val_score for temporal
    models, val_psnr for pix2pix / mtcgan / cnn), and that score."""
    from .training import load_checkpoint

    seen = {}  # path -> (kind, metrics): one checkpoint in memory at a time
    for path in paths:
        ckpt = load_checkpoint(path)
        seen[str(path)] = (ckpt["kind"], ckpt.get("metrics", {}))
        del ckpt
    kinds = {kind for kind, _ in seen.values()}
    if len(kinds) > 1:
        raise InputError(f"the checkpoints are of different kinds ({', '.join(sorted(kinds))})")
    key = SCORES.get(kinds.pop(), "val_psnr")
    scored = []
    for path, (_kind, metrics) in seen.items():
        score = metrics.get(key)
        if score is None or not math.isfinite(float(score)):
            raise InputError(f"{path}: no validation score ({key}) to compare checkpoints by")
        scored.append((float(score), path))
    score, path = max(scored)
    return path, score


def main(args: argparse.Namespace) -> int:
    from .training import load_checkpoint

    out = Path(args.out)
    if problem := output_file_problem(out, suffix=".onnx"):
        raise OutputError(f"--out {out}: {problem}")
    checkpoint = args.checkpoint[0]
    if len(args.checkpoint) > 1:
        checkpoint, score = best_checkpoint(args.checkpoint)
        print(f"best validation score {score:.3f}: {checkpoint}")
    kind = load_checkpoint(checkpoint)["kind"]
    if kind == "temporal":
        from .temporal.export import export_onnx
    else:
        try:
            from .gan.export import export_onnx
        except ModuleNotFoundError as exc:
            raise InputError(f"exporting a '{kind}' checkpoint needs core/gan/export.py ({exc})") from None
    if args.recalibrate and kind != "temporal":
        raise InputError(f"--recalibrate is for temporal checkpoints, not '{kind}'")
    if args.haze_screen is not None and kind != "temporal":
        raise InputError(f"--haze-screen is for temporal checkpoints, not '{kind}'")
    extra = {"recalibrate": True} if args.recalibrate else {}
    if args.haze_screen is not None:
        extra["haze"] = args.haze_screen
    path = export_onnx(checkpoint, out, **extra)
    print(f"wrote {path} ({kind})")
    return 0
