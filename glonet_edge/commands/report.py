"""`glonet report RUN_OR_BUNDLE`: one self-contained HTML page (see glonet_edge/report/report.py)."""

from __future__ import annotations

import argparse

from ._output import add_json_flag


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "report", help="write one self-contained HTML page: trade-off per depth, family, quantization, explain",
        description="Write a single HTML file (plots embedded, no external resources) with the accuracy / "
                    "latency / energy trade-off per depth, the exported family (depths, params, MACs, "
                    "artifacts, sizes), quantization deltas and rejected precisions, the power policies "
                    "simulated, per-block contributions and training curves (when the checkpoint is given or "
                    "the bundle's source checkpoint is reachable) and the environment.")
    p.add_argument("source", metavar="RUN_OR_BUNDLE", help="a bundle directory (manifest.json) or a checkpoint (RUN)")
    p.add_argument("--out", default=None, metavar="FILE.html", help="where to write (default: RUN_OR_BUNDLE/report.html)")
    p.add_argument("--run", default=None, metavar="RUN",
                   help="the bundle's source checkpoint, when export.json's path is not valid on this machine")
    p.add_argument("--sim", "--simulate", dest="simulate", default=None, metavar="DIR",
                   help="a `glonet simulate --out DIR` directory (or its simulate.json) to include (default: "
                        "../simulate/simulate.json next to a pipeline bundle, if present; else the page says none "
                        "was found)")
    p.add_argument("--no-explain", action="store_true", help="skip the block contributions (needs torch)")
    add_json_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json
    import sys
    from pathlib import Path

    from ..report.report import NO_SIMULATION, write_report

    out = Path(args.out) if args.out else Path(args.source) / "report.html"
    info = write_report(args.source, out, run_dir=args.run, simulate=args.simulate, explain=not args.no_explain)
    if NO_SIMULATION in info["notes"]:  # on stderr, also with --json (stdout stays JSON)
        print(f"glonet report: {NO_SIMULATION}", file=sys.stderr)
    if args.json:
        json.dump({"report": str(out), "bytes": out.stat().st_size, **info}, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    for note in info["notes"]:
        if note != NO_SIMULATION:  # already on stderr
            print(f"note: {note}")
    print(f"report written to {out} ({out.stat().st_size} bytes, self-contained)")
    return 0
