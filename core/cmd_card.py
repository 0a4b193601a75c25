"""`densify card`: the markdown + JSON model card of a temporal model from its evaluation reports."""

from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="the temporal .onnx model")
    parser.add_argument("--heldout", required=True, metavar="REPORT_JSON",
                        help="report.json of `densify evaluate --heldout` with this model alone (checked by sha256)")
    parser.add_argument("--cv", default=None, metavar="REPORT_JSON",
                        help="report.json of `densify evaluate --heldout` over the folds of a cross-validation, "
                             "this model one of them")
    parser.add_argument("--figure", default=None, help="figure path, as the card should link it")
    parser.add_argument("--reproduce", default=None, metavar="COMMAND",
                        help="the command that reproduces the model (shown verbatim)")
    parser.add_argument("--out", required=True, help="card .md file (the .json is written beside it)")


def main(args: argparse.Namespace) -> int:
    from .temporal.card import write_card

    md, js = write_card(args.model, args.out, args.heldout, args.cv, args.figure, args.reproduce)
    print(f"wrote {md} and {js}")
    return 0
