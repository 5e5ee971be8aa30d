"""`glonet compile BUNDLE --target T`: engines / IRs for every depth (and the segment chain)."""

from __future__ import annotations

import argparse

from ._output import add_json_flag, depth_list, emit


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "compile", help="compile the depth family for openvino / onnxruntime / tensorrt",
        description="Build every depth (and segment) for a target and precision(s), record the artifacts with "
                    "sha256 and target metadata in the manifest, and check each against onnxruntime fp32. "
                    "The bundle is replaced only if every build succeeds. Results: manifest.targets[TARGET] and "
                    "BUNDLE/compile_TARGET.json.")
    p.add_argument("bundle", metavar="BUNDLE")
    p.add_argument("--target", required=True, help="onnxruntime | openvino | tensorrt")
    p.add_argument("--precision", default="fp32", help="comma list of fp32, fp16, int8 (default fp32)")
    p.add_argument("--device", default=None,
                   help="openvino: CPU|GPU|NPU|AUTO; onnxruntime: CPU|GPU|TENSORRT|OPENVINO|AUTO; tensorrt: GPU|DLA[:n]")
    p.add_argument("--depths", type=depth_list, default=None, metavar="LIST", help="only these depths (comma list)")
    p.add_argument("--no-segments", action="store_true", help="skip the segment chain")
    p.add_argument("--no-verify", action="store_true", help="do not run each artifact against onnxruntime fp32")
    p.add_argument("--max-batch", type=int, default=None, help="tensorrt: largest batch of the optimization profile (32)")
    p.add_argument("--opt-batch", type=int, default=None, help="tensorrt: batch the profile is tuned for (8)")
    p.add_argument("--workspace-mib", type=int, default=None, help="tensorrt: builder workspace (1024 MiB)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_json_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..targets.compile import compile_bundle, parse_precisions

    options = {k: v for k, v in (("max_batch", args.max_batch), ("opt_batch", args.opt_batch),
                                 ("workspace_mib", args.workspace_mib)) if v is not None}
    result = compile_bundle(args.bundle, args.target, parse_precisions(args.precision), device=args.device,
                            depths=args.depths, segments=not args.no_segments, verify=not args.no_verify,
                            progress=not (args.no_progress or args.json), **options)
    rows = [{"graph": f"depth {r['depth']}" if "depth" in r else f"segment {r['segment']}", "precision": r["precision"],
             "status": r["status"], "bytes": r.get("bytes"), "build_s": r.get("build_s"),
             "max_abs_err": r.get("max_abs_err"), "top1_agree": r.get("top1_agreement")} for r in result["rows"]]
    emit(args, result, rows, title=f"compiled for {result['target']} on {result['device']} in {result['seconds']:.1f} s")
    if not args.json:
        for r in result["rows"]:
            if r["status"] == "skipped":
                print(f"skipped {r.get('depth', r.get('segment'))}/{r['precision']}: {r['reason']}")
        print(f"results written to {Path(args.bundle) / ('compile_' + result['target'] + '.json')}")
    return 0
