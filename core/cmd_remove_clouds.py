"""`densify remove-clouds`: single-date cloud removal from S1 + cloudy S2 with a Pix2Pix model."""

from __future__ import annotations

import argparse

from .cloud_removal import remove_clouds


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--s1", required=True, help="Sentinel-1 image (VV, VH; resampled onto the S2 grid)")
    p.add_argument("--s2", required=True, help="cloudy Sentinel-2 image")
    p.add_argument("--out", required=True, help="output GeoTIFF (cloud-free bands, reflectance)")
    p.add_argument("--model", default=None,
                   help="Pix2Pix ONNX model (default: models/pix2pix.onnx when bundled)")
    p.add_argument("--mask", default=None, help="optional cloud mask: pixels it calls clear are kept")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])


def main(args: argparse.Namespace) -> int:
    r = remove_clouds(args.s1, args.s2, args.out, model=args.model, mask=args.mask, device=args.device)
    print(f"wrote {r.output} ({', '.join(r.bands)}; model {r.model}; {r.provider})")
    return 0
