"""`glonet` command line: one module per command under glonet_edge/commands/.

Each command module exposes `add_parser(subparsers)` and `run(args) -> int`, and imports
its heavy libraries inside `run`, so `glonet --help` is instant and needs no torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__
from .errors import GlonetError

COMMANDS = ("train", "export", "quantize", "compile", "profile", "run", "simulate", "bench",
            "inspect", "explain", "report", "pipeline", "demo")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="glonet",
        description="Ship a trained GloNet to edge devices: train → export a depth family → quantize → "
                    "compile → serve with a power-aware runtime.",
    )
    parser.add_argument("--version", action="version", version=f"glonet-edge {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        try:
            module = importlib.import_module(f".commands.{name}", __package__)
        except ModuleNotFoundError as exc:
            if exc.name != f"{__package__}.commands.{name}":
                raise
            continue  # command not shipped in this build
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except GlonetError as exc:
        print(f"glonet {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"glonet {args.command}: interrupted; nothing half-written was kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
