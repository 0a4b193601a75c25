"""`densify export --checkpoint CKPT --out FILE.onnx`: a trained checkpoint to ONNX with its contract."""

from __future__ import annotations

import argparse
from pathlib import Path

from .errors import InputError


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, metavar="CKPT", help="checkpoint (.pt) from densify train")
    parser.add_argument("--out", required=True, metavar="FILE.onnx", help="ONNX file to write")


def main(args: argparse.Namespace) -> int:
    from .training import load_checkpoint

    out = Path(args.out)
    if out.suffix.lower() != ".onnx":
        raise InputError(f"{out.name}: the output must be an .onnx file")
    kind = load_checkpoint(args.checkpoint)["kind"]
    if kind == "temporal":
        from .temporal.export import export_onnx
    else:
        try:
            from .gan.export import export_onnx
        except ModuleNotFoundError as exc:
            raise InputError(f"exporting a '{kind}' checkpoint needs core/gan/export.py ({exc})") from None
    path = export_onnx(args.checkpoint, out)
    print(f"wrote {path} ({kind})")
    return 0
