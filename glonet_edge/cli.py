"""`glonet` command line: one module per command under glonet_edge/commands/.

Each command module exposes `add_parser(subparsers)` and `run(args) -> int`, and imports
its heavy libraries inside `run`, so `glonet --help` is instant and needs no torch.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from . import __version__
from .errors import GlonetError

# The pip extra that brings each optional library a command may import (pyproject.toml).
EXTRA_OF_MODULE = {
    "torch": "train", "safetensors": "train", "sklearn": "train", "onnxscript": "train", "tqdm": "train",
    "onnx": "train", "nncf": "quantize", "matplotlib": "report", "openvino": "openvino",
    "onnxruntime": "onnxruntime", "tensorrt": "tensorrt", "cuda": "tensorrt", "PIL": "images",
}

# Commands that need torch/onnx/nncf, whose supported Pythons start at 3.10; the serving
# commands (inspect, compile, profile, run, simulate, doctor) run on 3.8 (JetPack 5) and up.
TRAINING_COMMANDS = ("train", "export", "quantize", "explain", "pipeline", "demo", "bench")
TRAINING_PYTHON = (3, 10)

COMMANDS = ("train", "export", "quantize", "calibrate", "compile", "profile", "run", "simulate", "bench",
            "inspect", "doctor", "explain", "report", "pipeline", "demo")


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
    try:
        args = build_parser().parse_args(argv)  # --help writes to stdout too
        return _dispatch(args)
    except BrokenPipeError:
        return _stdout_closed()


def _dispatch(args: argparse.Namespace) -> int:
    if args.command in TRAINING_COMMANDS and sys.version_info < TRAINING_PYTHON:
        return _fail(args.command, f"needs Python {'.'.join(map(str, TRAINING_PYTHON))} or newer (this is "
                                   f"{sys.version.split()[0]}); run it where you train, and serve the bundle here "
                                   "with inspect, compile, profile, run, simulate and doctor")
    try:
        return int(args.func(args) or 0)
    except GlonetError as exc:
        return _fail(args.command, str(exc))
    except ModuleNotFoundError as exc:
        top = (exc.name or "").split(".")[0]
        if top not in EXTRA_OF_MODULE:
            raise
        return _fail(args.command, f"'{top}' is not installed but `glonet {args.command}` needs it; install it "
                                   f"with `pip install glonet-edge[{EXTRA_OF_MODULE[top]}]`")
    except KeyboardInterrupt:
        print(f"glonet {args.command}: interrupted; nothing half-written was kept", file=sys.stderr)
        return 130


def _fail(command: str, message: str) -> int:
    print(f"glonet {command}: error: {message}", file=sys.stderr)
    return 2


def _stdout_closed() -> int:
    """The reader of our output went away (`glonet ... --json | head`): stop quietly, as Unix
    tools do on SIGPIPE. stdout is pointed at /dev/null so the interpreter's final flush
    cannot raise again; the status is the shell's 128 + SIGPIPE."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 141


if __name__ == "__main__":
    sys.exit(main())
