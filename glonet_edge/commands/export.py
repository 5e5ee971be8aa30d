"""`glonet export RUN --out BUNDLE`, or `glonet export --module pkg.mod:build_fn --weights W --val DATA
--out BUNDLE`: the depth family of ONNX graphs as a checksummed bundle."""

from __future__ import annotations

import argparse
from typing import Any

from ._output import add_json_flag, emit


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export", help="export a checkpoint or your own GloNet as a bundle of depth-truncated ONNX graphs",
        description="Export one ONNX graph per chosen depth (dynamic batch, opset 17 by default) and the segment "
                    "chain for anytime inference, check each against torch on held-out data with "
                    "onnxruntime, and write BUNDLE/manifest.json with sha256, params, MACs and measured scores. "
                    "The bundle is replaced only if everything passes. The model is a checkpoint RUN written by "
                    "`glonet train`, or your own: --module names a function that builds it (a glonet_edge.GloNet), "
                    "--weights its state_dict and --val the held-out data.")
    p.add_argument("run", metavar="RUN", nargs="?", default=None, help="checkpoint directory written by `glonet train`")
    p.add_argument("--out", required=True, metavar="BUNDLE", help="bundle directory to create or replace")
    p.add_argument("--module", metavar="PKG.MOD:FN", default=None,
                   help="instead of RUN: a function returning your model (importable from the working directory)")
    p.add_argument("--weights", metavar="FILE", default=None,
                   help="with --module: its state_dict, .safetensors or a .pt read with torch.load(weights_only=True)")
    p.add_argument("--val", metavar="DATA", default=None,
                   help="with --module: held-out data, an .npz with X and y or an image folder (DIR/<class>/<image>.png)")
    p.add_argument("--image-size", type=int, default=None, metavar="N",
                   help="resize an image folder's images to NxN (default: the model's input size)")
    p.add_argument("--metric", choices=("accuracy", "r2"), default=None,
                   help="with --module: how --val is scored (default: accuracy for integer labels, else r2)")
    p.add_argument("--depths", default="all", metavar="SPEC",
                   help="'all' (default), 'auto' (cheapest depth per 0.5 point of score, plus the full depth) "
                        "or a comma list such as 1,2,4,8")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17: TensorRT 8.5 on JetPack 5 parses <= 17)")
    p.add_argument("--no-segments", action="store_true", help="do not write the segment chain")
    p.add_argument("--shared-weights", action="store_true",
                   help="store the depth graphs' weights once, in onnx/family.fp32.bin shared by all of them, and "
                        "write the family graph onnx/family.fp32.onnx (every depth in one graph: "
                        "Runtime.open(share_weights=True))")
    p.add_argument("--data", metavar="SPEC", default=None,
                   help="data set to reload the held-out split from, when the path in RUN/config.json is not on "
                        "this machine (same seed and split as training)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_json_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..export.bundle import REPORT_NAME, export_bundle
    from ..export.select import parse_depths
    from ..fileio import read_json

    common = dict(depths=parse_depths(args.depths), opset=args.opset, segments=not args.no_segments,
                  progress=not (args.no_progress or args.json), shared_weights=args.shared_weights)
    if args.module is None:
        _check_run_flags(args)
        manifest = export_bundle(args.run, args.out, dataset=args.data, **common)
    else:
        model, origin = _own_model(args)
        manifest = export_bundle(model, args.out, val=args.val, metric=args.metric, image_size=args.image_size,
                                 origin=origin, **common)
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


def _check_run_flags(args: argparse.Namespace) -> None:
    from ..errors import ConfigError

    if args.run is None:
        raise ConfigError("give a checkpoint directory RUN, or your own model with --module PKG.MOD:FN --val DATA")
    given = [f"--{n.replace('_', '-')}" for n in ("weights", "val", "image_size", "metric") if getattr(args, n) is not None]
    if given:
        raise ConfigError(f"{', '.join(given)}: only with --module; a checkpoint RUN brings its own weights and data")


def _own_model(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """The model --module builds with --weights loaded into it, and where it came from (for the manifest)."""
    from pathlib import Path

    from ..errors import ConfigError
    from ..export.source import build_from_module
    from ..train.checkpoint import load_weights

    if args.run is not None or args.data is not None:
        raise ConfigError("--module replaces RUN and --data: give the model with --module and its held-out data with --val")
    if args.val is None:
        raise ConfigError("--module needs --val DATA: an .npz with X and y or an image folder to check every graph on")
    model = build_from_module(args.module)
    origin = {"from": "module", "module": args.module}
    if args.weights is not None:
        origin.update(weights=str(Path(args.weights).resolve()), weights_sha256=load_weights(model, args.weights))
    return model, origin
