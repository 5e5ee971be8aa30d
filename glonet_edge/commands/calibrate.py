"""`glonet calibrate BUNDLE`: certify the early-exit thresholds of adaptive serving again.

`glonet export` (fp32) and `glonet quantize` (int8) already do this with the defaults; run it
to choose other drops, confidence, rule or stride, or after the graphs changed.
"""

from __future__ import annotations

import argparse

from ._output import add_json_flag, emit


def _fractions(text: str) -> list[float]:
    """argparse type for --max-drops: a comma list of fractions such as 0.005,0.01."""
    try:
        values = sorted({float(v) for v in text.split(",") if v.strip()})
    except ValueError:
        values = []
    if not values:
        raise argparse.ArgumentTypeError(f"expected a comma list of fractions such as 0.005,0.01 (0.01 = 1 point), "
                                         f"got {text!r}")
    return values


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "calibrate", help="certify the early-exit thresholds for adaptive serving (fp32 / int8)",
        description="Run the bundle's segment chain over the validation split; on 2/3 of it choose, for every "
                    "deepest segment and allowed drop, the exit threshold that keeps the accuracy within that drop "
                    "of the deepest segment with the given confidence (Learn-then-Test fixed-sequence testing, "
                    "Hoeffding-Bentkus p-values, exchangeable data assumed); measure it on the other third. "
                    "Results go to the manifest's 'exits', per precision.")
    p.add_argument("bundle", metavar="BUNDLE", help="bundle directory with a segment chain")
    p.add_argument("--precision", default=None, metavar="LIST",
                   help="fp32, int8 or both (default: fp32, plus int8 when the bundle has int8 graphs)")
    p.add_argument("--max-drops", type=_fractions, default=None, metavar="LIST",
                   help="allowed drops to certify, e.g. 0.005,0.01 (default: those of 0.005,0.01,0.02,0.05 the "
                        "validation split is large enough for); each must be certifiable")
    p.add_argument("--confidence", type=float, default=0.9, help="probability the guarantee holds (default 0.9)")
    p.add_argument("--rule", choices=("max-prob", "margin", "delta"), default=None,
                   help="exit rule (default: max-prob for classification, delta for regression)")
    p.add_argument("--stride", type=int, default=None, metavar="S",
                   help="check every S segments (default: chosen from measured segment and check latency)")
    p.add_argument("--data", metavar="SPEC", default=None,
                   help="data set to load when the path recorded at training is not on this machine")
    add_json_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from ..exit_calibration import calibrate_bundle, validation_split
    from ..manifest import BundleManifest

    manifest = BundleManifest.load(args.bundle)
    has_int8 = any(e.artifact("onnx", "int8") is not None for e in manifest.depths)
    precisions = (args.precision.split(",") if args.precision else ["fp32"] + (["int8"] if has_int8 else []))
    for precision in precisions:
        if precision not in ("fp32", "int8"):
            raise ConfigError(f"--precision takes fp32 and/or int8, got {precision!r}")
        if precision == "int8" and not has_int8:
            raise ConfigError(f"bundle {args.bundle} has no int8 graphs; run `glonet quantize {args.bundle}` first")
    x, y = validation_split(manifest, args.data)
    result = {p: calibrate_bundle(args.bundle, manifest, p, x, y, max_drops=args.max_drops,
                                  confidence_level=args.confidence, rule=args.rule, stride=args.stride)
              for p in precisions}
    manifest.save(args.bundle)
    rows = [{"precision": p, "max_drop": r["max_drop"], "threshold": r["threshold"], "score": r["score"],
             "full_depth_score": r["reference_score"], "drop": r["drop"], "mean_depth": r["mean_depth"],
             "mean_macs": r["mean_macs"]} for p, s in result.items() for r in s.get("at_full_depth", [])]
    emit(args, result, rows, title=f"exit thresholds at the deepest segment, measured on the held-out third "
                                   f"({args.bundle}/manifest.json updated)")
    if not args.json:
        for p, s in result.items():
            for note in s.get("notes", []) + ([s["skipped"]] if "skipped" in s else []):
                print(f"{p}: {note}")
    return 0
