"""`densify lai`: LAI, its std and flags from one S2 L2A image (ESA SNAP LAI v3 network)."""

from __future__ import annotations

import argparse
import sys

from .atomic import GEOTIFF_SUFFIXES, check_output_file
from .cli import add_extent_arguments, extent_of, print_warnings
from .progress import Feedback


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--s2", required=True, metavar="PATH",
                        help="Sentinel-2 L2A image: a raster file, or one acquisition's .SAFE product (folder "
                             "or .zip) or one of its band files: the acquisition's band files are read as one image; "
                             "so are the files of a date exported as a 10 m and a 20 m file, given one of them")
    parser.add_argument("--out", required=True, metavar="FILE",
                        help="output GeoTIFF (bands LAI, LAI_std, flags)")
    parser.add_argument("--std", metavar="FILE", default=None,
                        help="the uncertainty file written with a synthesized image (bands B03_std, ...): "
                             "its reflectance std is propagated into LAI_std (without it LAI_std is 0)")
    parser.add_argument("--band-order", metavar="B02,B03,...", default=None,
                        help="band names of the input when its bands have no descriptions; given, the file is "
                             "read alone, as it is (not with the other files of its date, e.g. the 20 m file of a "
                             "10 m and 20 m export)")
    add_extent_arguments(parser, "the whole image")


def main(args: argparse.Namespace) -> int:
    from .lai import lai_file

    order = [b.strip() for b in args.band_order.split(",") if b.strip()] if args.band_order else None
    extent, extent_crs = extent_of(args)
    check_output_file(args.out, {"--s2": args.s2, **({"--std": args.std} if args.std else {})}, label="--out ",
                      suffix=GEOTIFF_SUFFIXES)

    shown = [False]

    def progress(percent: float, message: str) -> None:
        shown[0] = True
        print(f"\r{message} {percent:5.1f} %", end="", file=sys.stderr, flush=True)

    warnings: list[str] = []
    try:
        path = lai_file(args.s2, args.out, Feedback(progress), band_order=order, std_path=args.std,
                        extent=extent, extent_crs=extent_crs, warnings=warnings)  # a failure leaves no folder it made
    finally:
        if shown[0]:  # end the progress line
            print(file=sys.stderr)
    print(path)
    print_warnings("lai", warnings)
    return 0
