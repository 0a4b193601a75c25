"""The `densify` command: one subcommand per module, each a thin shell over the core API.

Each command module defines `configure(parser)` and `main(args) -> int`. Modules are
imported only when their command runs, so `densify --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading

from .errors import DensifyError


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, except where there is none (required options, unset ones)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or action.required:
            return action.help or ""
        return super()._get_help_string(action)


def _number(kind: type, test, what: str):
    """An argparse `type` converting with `kind` and refusing values failing `test` ("not `what`")."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not test(value):
            raise argparse.ArgumentTypeError(f"{text} is not {what}")
        return value
    parse.__name__ = what  # argparse names the type in its messages
    return parse


positive_int = _number(int, lambda v: v > 0, "a positive integer")
nonnegative_int = _number(int, lambda v: v >= 0, "an integer >= 0")
positive_float = _number(float, lambda v: v > 0 and v < float("inf"), "a positive number")
nonnegative_float = _number(float, lambda v: 0 <= v < float("inf"), "a number >= 0")
fraction = _number(float, lambda v: 0 <= v <= 1, "a number in [0, 1]")


def add_extent_arguments(parser: argparse.ArgumentParser, whole: str) -> None:
    """--extent XMIN YMIN XMAX YMAX and --extent-crs CRS (read back with `extent_of`); `whole` names what is
    computed without them."""
    parser.add_argument("--extent", type=float, nargs=4, metavar=("XMIN", "YMIN", "XMAX", "YMAX"),
                        help=f"compute only this area (default: {whole}); the outputs are the whole S2 pixels "
                             "it touches")
    parser.add_argument("--extent-crs", metavar="CRS",
                        help="the CRS of --extent, e.g. EPSG:4326 (default: the S2 grid's)")


def extent_of(args: argparse.Namespace) -> tuple[tuple[float, ...] | None, str | None]:
    """The extent and its CRS given by `add_extent_arguments`'s options; InputError for a CRS without one."""
    from .errors import InputError

    if args.extent_crs and not args.extent:
        raise InputError("--extent-crs is the CRS of --extent: give --extent XMIN YMIN XMAX YMAX too")
    return (tuple(args.extent) if args.extent else None), args.extent_crs


class Terminated(KeyboardInterrupt):
    """SIGTERM (or Windows's SIGBREAK), raised in the main thread like Ctrl-C so every open output is removed."""


_received: set[int] = set()  # the signals that stopped this command (see main)
_installed: list[int] = []  # the termination signals whose handler main installed (see _handle_sigterm)


def print_warnings(command: str, warnings) -> None:
    """The warnings of a command on stderr, one line each ("densify COMMAND: warning: ...")."""
    for warning in warnings:
        print(f"densify {command}: warning: {warning}", file=sys.stderr)


def _termination_signals() -> list[int]:
    """SIGTERM, and SIGBREAK where there is one (Windows: Ctrl-Break, and closing the console window)."""
    return [signal.SIGTERM] + ([signal.SIGBREAK] if hasattr(signal, "SIGBREAK") else [])


def _on_sigterm(signum, frame) -> None:
    for sig in _installed:  # a second one must not cut the clean-up short
        signal.signal(sig, signal.SIG_IGN)
    _received.add(signal.SIGTERM)  # SIGBREAK asks the same: end the command (message and exit status of SIGTERM)
    raise Terminated()


def _on_sigint(signum, frame) -> None:
    _received.add(signal.SIGINT)
    raise KeyboardInterrupt


def _handle_sigterm() -> bool:
    """Turn SIGTERM (and SIGBREAK, where it is not handled yet) into `Terminated` (and note SIGINT) unless
    SIGTERM is already handled (or ignored) or this is not the main thread."""
    if threading.current_thread() is not threading.main_thread():
        return False  # and `_installed` is the main thread's, left alone
    _installed.clear()
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return False
    for sig in _termination_signals():
        if signal.getsignal(sig) is signal.SIG_DFL:
            signal.signal(sig, _on_sigterm)
            _installed.append(sig)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _on_sigint)
    return True

# name -> (module under core/, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("cmd_run", "synthesize S2, uncertainty and LAI at a target date"),
    "evaluate": ("cmd_evaluate", "evaluate methods with the project's protocol (gap-filling, forecasting)"),
    "lai": ("cmd_lai", "LAI, its std and flags from an S2 image (ESA SNAP network)"),
    "simulate": ("cmd_simulate", "write a synthetic S1/S2 scene with clouds and SCL"),
    "demo": ("cmd_demo", "run the main job on the shared data (or a synthetic scene) with a quick-look"),
    "train": ("cmd_train", "train a model (temporal, pix2pix, mtcgan, cnn)"),
    "export": ("cmd_export", "export a trained checkpoint to ONNX with its contract"),
    "curate": ("cmd_curate", "keep or reject S1/S2 training triplets (SEN12MS-CR layout)"),
    "make-pairs": ("cmd_make_pairs", "build training triplets from S1+S2 time series"),
    "remove-clouds": ("cmd_remove_clouds", "single-date cloud removal with a Pix2Pix model"),
    "card": ("cmd_card", "model card (markdown + JSON) of a temporal model from its evaluation reports"),
    "attention": ("cmd_attention", "which S2 and S1 observations a temporal checkpoint attends to for a date"),
    "figure": ("cmd_figure", "figure: truth vs synthesized vs uncertainty at a few dates, and one pixel's series"),
}


def _interrupted_note(module, args: argparse.Namespace) -> str:
    """What an interrupted command left: the module's `interrupted_note(args)` when it has one."""
    note = getattr(module, "interrupted_note", None)
    return note(args) if note is not None else "no output was written."


def _module(name: str):
    return importlib.import_module(f"{__package__}.{COMMANDS[name][0]}")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="densify", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_mod, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == only:
            _module(name).configure(p)
    return parser


def _never_fail_on_encoding() -> None:
    """Characters stdout's or stderr's encoding lacks ("σ" in cp1252, a Windows pipe or file) are written
    escaped (\\u03c3) instead of raising UnicodeEncodeError."""
    for stream in (sys.stdout, sys.stderr):
        if getattr(stream, "errors", None) == "strict" and hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")


def main(argv: list[str] | None = None) -> int:
    _never_fail_on_encoding()
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    if command not in COMMANDS:
        command = None
    parser = build_parser(command)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    _received.clear()
    handled = _handle_sigterm()
    module = _module(args.command)
    try:
        return int(module.main(args) or 0)
    except (KeyboardInterrupt, Exception) as exc:
        # a signal first: its KeyboardInterrupt, swallowed by a C extension, can come back as another
        # error (rasterio: "src_nodata must be in valid range", or a read error the core names as bad
        # input): still an interruption, not a crash
        if signal.SIGTERM in _received or isinstance(exc, Terminated):
            print(f"densify {args.command}: terminated (SIGTERM); {_interrupted_note(module, args)}",
                  file=sys.stderr)
            return 128 + signal.SIGTERM
        if signal.SIGINT in _received or isinstance(exc, KeyboardInterrupt):
            print(f"densify {args.command}: interrupted; {_interrupted_note(module, args)}", file=sys.stderr)
            return 130
        if isinstance(exc, DensifyError):
            print(f"densify {args.command}: {exc}", file=sys.stderr)
            return 1
        raise
    finally:
        if handled:
            for sig in _installed:
                signal.signal(sig, signal.SIG_DFL)
            if signal.getsignal(signal.SIGINT) is _on_sigint:
                signal.signal(signal.SIGINT, signal.default_int_handler)


if __name__ == "__main__":
    sys.exit(main())
