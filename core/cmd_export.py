"""`densify export --checkpoint CKPT [CKPT ...] --out FILE.onnx`: a trained checkpoint to ONNX with its
contract; given several (runs of one recipe with different seeds), the one with the best validation
score is exported."""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

from .atomic import OutputError, output_file_problem
from .errors import InputError


def configure(parser: argparse.ArgumentParser) -> None:
    from .cli import nonnegative_float

    parser.add_argument("--checkpoint", required=True, nargs="+", metavar="CKPT",
                        help="checkpoint (.pt) from densify train; several (runs of one recipe that differ only by "
                             "--seed): export the best validation score")
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
# config entries runs of one recipe may differ by: the seed, where and how a run ran, resume bookkeeping
NOT_RECIPE = {"seed", "resumed", "resume", "out", "device", "workers", "threads", "max_minutes", "world_size",
              "no_progress"}


PATH_OPTIONS = {"data", "points", "names"}  # files and folders: one recipe however they were typed (relative, links)


def _resolved(value):
    """A path option's value (a path, or a list of them) as absolute, resolved paths."""
    if isinstance(value, list | tuple):
        return [_resolved(v) for v in value]
    return os.path.realpath(value) if isinstance(value, str) and value else value


def first_difference(a, b, where: str = "") -> str | None:
    """The first option (dotted path) whose value differs between two checkpoint configs, outside NOT_RECIPE
    at the top level (PATH_OPTIONS compared as resolved paths); None when they are one recipe."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            if not where and key in NOT_RECIPE:
                continue
            path = f"{where}.{key}" if where else str(key)
            if key not in a or key not in b:
                return path
            x, y = (a[key], b[key]) if where or key not in PATH_OPTIONS else (_resolved(a[key]), _resolved(b[key]))
            if found := first_difference(x, y, path):
                return found
        return None
    return None if a == b else (where or "config")


def best_checkpoint(paths: list[str]) -> tuple[str, float]:
    """The checkpoint with the highest validation score (one kind only: val_score for temporal
    models, val_psnr for pix2pix / mtcgan / cnn), and that score; InputError unless every config is the
    first's but for the seed and how the runs ran (first_difference)."""
    from .training import load_checkpoint

    seen = {}  # path -> (kind, metrics): one checkpoint in memory at a time
    first: tuple[str, dict] | None = None  # the first checkpoint's path and config, the others compared to it
    for path in paths:
        ckpt = load_checkpoint(path)
        seen[str(path)] = (ckpt["kind"], ckpt.get("metrics", {}))
        config = ckpt.get("config") if isinstance(ckpt.get("config"), dict) else {}
        if first is None:
            first = (str(path), config)
        elif len({kind for kind, _ in seen.values()}) == 1 and (option := first_difference(first[1], config)):
            raise InputError(f"{path}: not a run of {first[0]}'s recipe (its option '{option}' differs): "
                             "only runs that differ by their seed can be compared")
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
