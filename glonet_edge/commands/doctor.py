"""glonet doctor: what this device can do, and whether a bundle's artifacts load here."""

from __future__ import annotations

import argparse

from ._output import add_json_flag, emit


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("doctor", help="check this device: Python, engines, GPU/CUDA/TensorRT, Jetson, power sources",
                       description="One screen on what this device can do: Python and platform; each engine with "
                                   "its version or what installs it; GPU driver, CUDA and TensorRT; Jetson model, "
                                   "L4T/JetPack release and power mode; each power source and its reading; the "
                                   "cache directory. With BUNDLE: whether each artifact loads here, and the command "
                                   "that fixes one that does not.")
    p.add_argument("bundle", nargs="?", default=None, metavar="BUNDLE", help="bundle directory to check (optional)")
    p.add_argument("--root", default="/", help="filesystem root to read device files under (default /)")
    add_json_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..doctor import examine

    report = examine(root=args.root, bundle=args.bundle)
    rows = [{"": {True: "ok", False: "!!", None: ""}[f["ok"]], "section": f["section"], "name": f["name"],
             "found": f["value"], "fix": f["fix"] if f["ok"] is False else ""} for f in report["findings"]]
    emit(args, report, rows, title="glonet doctor")
    return 0
