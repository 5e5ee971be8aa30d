"""`glonet profile BUNDLE --target T --precision P`: per-depth latency (and energy) into the manifest."""

from __future__ import annotations

import argparse

from ._output import add_json_flag, depth_list, emit


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "profile", help="measure per-depth latency p50/p90 (and energy) of compiled artifacts",
        description="Load every depth for a target/precision once, then time each (warm-up excluded) at batch 1 "
                    "and a batch sweep. Writes latency_ms['TARGET/PRECISION'] = {p50, p90, batch} and, where a "
                    "power meter is readable (Intel RAPL, NVML), energy_mj into the manifest; the sweep goes to "
                    "BUNDLE/profile_TARGET_PRECISION.json.")
    p.add_argument("bundle", metavar="BUNDLE")
    p.add_argument("--target", required=True, help="onnxruntime | openvino | tensorrt")
    p.add_argument("--precision", default="fp32", help="fp32 | fp16 | int8 (default fp32)")
    p.add_argument("--device", default=None, help="device for the target (default: its default)")
    p.add_argument("--batches", default="1,8,32", help="batch sizes to sweep (batch 1 always included)")
    p.add_argument("--iterations", type=int, default=100, help="timed calls per depth and batch (100)")
    p.add_argument("--warmup", type=int, default=10, help="untimed calls before timing (10)")
    p.add_argument("--depths", type=depth_list, default=None, metavar="LIST", help="only these depths (comma list)")
    p.add_argument("--threads", type=int, default=None, help="engine threads (default: the engine's choice)")
    p.add_argument("--energy", default="auto", help="energy meter: auto | rapl | nvml | none")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_json_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..targets.profile import parse_batches, profile_bundle

    result = profile_bundle(args.bundle, args.target, args.precision, batches=parse_batches(args.batches),
                            iterations=args.iterations, warmup=args.warmup, device=args.device, depths=args.depths,
                            energy=args.energy, threads=args.threads, progress=not (args.no_progress or args.json))
    cols = ["depth", "batch", "p50", "p90", "raw_p50", "per_sample_ms"]
    if any("energy_mj" in r for r in result["rows"]):
        cols.append("energy_mj")
    emit(args, result, result["rows"], columns=cols,
         title=f"latency (ms) of {result['target']}/{result['precision']} on {result['device']}, "
               f"{result['iterations']} iterations after {result['warmup']} warm-up; energy meter: {result['energy_meter']}")
    if not args.json:
        print(f"results written to {result['path']} and manifest.json latency_ms")
    return 0
