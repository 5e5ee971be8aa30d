"""`glonet quantize BUNDLE`: INT8 QDQ graphs for every depth, calibrated on training data."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from ._output import add_json_flag, depth_list, emit

if TYPE_CHECKING:
    from ..quantize import QuantizeSettings


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "quantize", help="post-training INT8 (QDQ ONNX, TensorRT-safe) of every depth",
        description="Quantize each depth's fp32 ONNX graph to a QDQ graph that TensorRT accepts (signed symmetric "
                    "INT8, zero points 0, per-channel weights, float bias), calibrated on the TRAINING split. "
                    "Each depth's int8 graph is checked on held-out data on every engine that will run it "
                    "(onnxruntime, and OpenVINO where installed): it may lose at most --max-drop and must predict "
                    "the fp32 top-1 class on at least --min-agreement of the samples. Otherwise the most sensitive "
                    "layers go back to float one at a time (at most --max-float-fraction of them); a depth that "
                    "still fails is recorded as rejected in the manifest and not shipped. Writes onnx/depth_XXX.int8.onnx and "
                    "BUNDLE/quantize.json; the bundle is replaced only if everything succeeds.")
    p.add_argument("bundle", metavar="BUNDLE", help="bundle directory written by `glonet export`")
    # Settings flags are absent from args unless given (SUPPRESS), so QuantizeSettings keeps the
    # one copy of their defaults; each dest is a QuantizeSettings field.
    setting = {"default": argparse.SUPPRESS}
    p.add_argument("--method", choices=("ort", "nncf"), **setting,
                   help="ort: onnxruntime quantize_static with the TensorRT recipe (default); nncf: "
                        "nncf.quantize_with_accuracy_control (plain nncf.quantize as further candidates), made "
                        "TensorRT-safe afterwards. Both then go through the same accuracy control (--max-drop, "
                        "--min-agreement, --max-float-fraction)")
    p.add_argument("--calib-size", type=int, metavar="N", **setting,
                   help="training samples used for calibration (512)")
    p.add_argument("--max-drop", type=float, **setting,
                   help="largest allowed absolute score drop vs fp32 on held-out data (0.005 = 0.5 points)")
    p.add_argument("--min-agreement", type=float, metavar="FRACTION", **setting,
                   help="smallest allowed top-1 agreement of int8 with fp32 predictions on held-out data, on every "
                        "checked engine (0.99 = 99 %%; classification only)")
    p.add_argument("--max-float-fraction", type=float, metavar="FRACTION", **setting,
                   help="accuracy control: at most this fraction of a depth's quantized layers (the most sensitive "
                        "first) may go back to float before the depth is rejected (0.5; 0 = no fallback)")
    p.add_argument("--check-engines", dest="engines", metavar="LIST", **setting,
                   help="engines every int8 graph is checked on: auto (onnxruntime, plus openvino if installed) or "
                        "a list such as onnxruntime,openvino")
    p.add_argument("--no-range-search", dest="range_search", action="store_false", **setting,
                   help="accuracy control: do not try other activation range estimators (ort: percentiles 99.9, "
                        "99.95, 99.999 and min/max; nncf: plain NNCF with its HISTOGRAM and MINMAX estimators) "
                        "when the first recipe fails")
    p.add_argument("--depths", type=depth_list, default=None, metavar="LIST", help="only these depths (default: all)")
    p.add_argument("--segments", action="store_true", **setting, help="also quantize the segment chain")
    p.add_argument("--no-share-calibration", dest="share_calibration", action="store_false", **setting,
                   help="calibrate every graph separately instead of once for the whole family")
    p.add_argument("--data", dest="dataset", metavar="SPEC", **setting,
                   help="data set to load when the path recorded at training is not on this machine")
    p.add_argument("--ort-flavour", metavar="NAME", **setting,
                   help="ONNX Runtime's own int8 graph per depth: auto (default), none, or a flavour name "
                        "(docs/quantize.md, INT8 flavours)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_json_flag(p)
    p.set_defaults(func=run)


def settings_from_args(args: argparse.Namespace) -> QuantizeSettings:
    """The settings flags given on the command line; QuantizeSettings' defaults for the rest."""
    from ..quantize import QuantizeSettings

    return QuantizeSettings(**{k: getattr(args, k) for k in QuantizeSettings.field_names() if hasattr(args, k)})


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..quantize import quantize_bundle

    result = quantize_bundle(args.bundle, settings_from_args(args), depths=args.depths,
                             progress=not (args.no_progress or args.json))
    rows = [{"depth": r["depth"], "fp32": r["fp32"], "int8": r["int8"], "drop": r["drop"], "agreement": r["agreement"],
             "float": f"{r['float_layers']}/{r['layers']}", "recipe": r["recipe"], "status": r["status"],
             "seconds": r["seconds"]} for r in result["depths"]]
    rows += [{"depth": f"seg{r['segment']}->{r['end_depth']}", "fp32": r["fp32"], "int8": r["int8"],
              "drop": r["drop"], "status": "chain", "seconds": r["seconds"]} for r in result["segments"]]
    cal = result["timing"].get("calibration_s")
    title = (f"int8 ({result['method']}), {result['metric']} on held-out data, calibrated on {result['calib_size']} "
             f"training samples" + (f", calibration {cal:.2f} s in {result['timing'].get('calibration_passes')} pass(es)"
                                    if cal is not None else "")
             + f"; checked on {', '.join(result['checked_engines'])}")
    # quantize.json is already inside the bundle (written in the staged copy)
    emit(args, result, rows, title=title)
    if not args.json:
        for d, why in result["rejected"].items():
            print(f"depth {d}: int8 REJECTED: {why}")
        if result["removed_stale"]:  # built from or measured on the graphs this run replaced
            print(f"removed stale engines and results: {', '.join(result['removed_stale'])}")
        print(f"results written to {Path(args.bundle) / 'quantize.json'}")
    return 0
