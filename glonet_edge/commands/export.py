"""`glonet export RUN --out BUNDLE`: the depth family of ONNX graphs as a checksummed bundle."""

from __future__ import annotations

import argparse

from ._output import add_json_flag, emit


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export", help="export a checkpoint as a bundle of depth-truncated ONNX graphs",
        description="Export one ONNX graph per chosen depth (dynamic batch, opset 17 by default) and the segment "
                    "chain for anytime inference, check each against torch on the held-out split with "
                    "onnxruntime, and write BUNDLE/manifest.json with sha256, params, MACs and measured scores. "
                    "The bundle is replaced only if everything passes.")
    p.add_argument("run", metavar="RUN", help="checkpoint directory written by `glonet train`")
    p.add_argument("--out", required=True, metavar="BUNDLE", help="bundle directory to create or replace")
    p.add_argument("--depths", default="all", metavar="SPEC",
                   help="'all' (default), 'auto' (cheapest depth per 0.5 point of score, plus the full depth) "
                        "or a comma list such as 1,2,4,8")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17: TensorRT 8.5 on JetPack 5 parses <= 17)")
    p.add_argument("--no-segments", action="store_true", help="do not write the segment chain")
    p.add_argument("--shared-weights", action="store_true",
                   help="store the depth graphs' weights once, in onnx/family.fp32.bin shared by all of them")
    p.add_argument("--data", metavar="SPEC", default=None,
                   help="data set to reload the held-out split from, when the path in RUN/config.json is not on "
                        "this machine (same seed and split as training)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_json_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..fileio import read_json
    from ..export.bundle import REPORT_NAME, export_bundle
    from ..export.select import parse_depths

    manifest = export_bundle(args.run, args.out, depths=parse_depths(args.depths), opset=args.opset,
                             segments=not args.no_segments, progress=not (args.no_progress or args.json),
                             shared_weights=args.shared_weights, dataset=args.data)
    report = read_json(Path(args.out) / REPORT_NAME, "export report")
    storage = report["storage"]
    title = (f"{manifest.model['model']} depth {manifest.max_depth}: exported depths {manifest.depth_values()}, "
             f"{len(manifest.segments)} segments, opset {manifest.opset}, "
             f"scored on {report['validation']['samples']} held-out samples in {report['seconds']['total']:.1f} s")
    emit(args, report, report["rows"], title=title)
    if not args.json:
        print(f"storage: truncated family {storage['truncated_family_bytes']} B, segments {storage['segments_bytes']} B, "
              f"shared-weights family {storage.get('shared_weights_bytes', '-')} B")
        print(f"bundle written to {args.out} (manifest.json, {REPORT_NAME})")
    return 0
