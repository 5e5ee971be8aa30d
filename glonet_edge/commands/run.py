"""glonet run: serve one input file through the power-aware runtime (torch-free)."""

from __future__ import annotations

import argparse

from ._output import add_json_flag, emit


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run inference on an .npy input with the power-aware runtime",
                       description="Load every depth of BUNDLE for one target/precision, pick the depth from the "
                                   "power state (or --depth / --deadline-ms) and run the input.")
    p.add_argument("bundle")
    p.add_argument("--input", required=True, help=".npy file with a batch (N, *input_shape)")
    p.add_argument("--target", default="onnxruntime", help="onnxruntime | openvino | tensorrt")
    p.add_argument("--precision", default="fp32", help="fp32 | fp16 | int8 | auto (the faster of int8/fp32 that passed accuracy, by profile)")
    p.add_argument("--device", default=None, help="target device, e.g. CPU, GPU, NPU, AUTO")
    p.add_argument("--power", default="auto",
                   help="auto | none | jetson | battery | thermal | rapl | nvml | jtop | env | file:PATH | trace:CSV")
    p.add_argument("--policy", default=None, help="policy TOML (accuracy floor, budgets, hysteresis, dwell)")
    p.add_argument("--depth", type=int, default=None, help="pin a depth instead of asking the policy")
    p.add_argument("--deadline-ms", type=float, default=None, help="anytime mode: deepest segment answer within D ms")
    p.add_argument("--adaptive", action="store_true",
                   help="each sample stops at the first check where it is sure, with the bundle's certified exit "
                        "thresholds (docs/adaptive.md); the policy's depth is the deepest it may go")
    p.add_argument("--output", default=None, help="write the outputs to this .npy file")
    add_json_flag(p)
    p.set_defaults(func=run)


TABLE_ROWS = 10  # samples printed in the table; --json and --output carry all of them
NPY_MAGIC = b"\x93NUMPY"  # the first bytes of every .npy file (numpy's format spec, NEP 1)


def _load_input(path):
    """The input batch, or one clear line about why the file is not a numeric .npy array."""
    import numpy as np

    from ..errors import ConfigError

    if not path.is_file():
        raise ConfigError(f"input file {path} not found")
    with open(path, "rb") as fh:
        magic = fh.read(len(NPY_MAGIC))
    if magic != NPY_MAGIC:
        raise ConfigError(f"{path} is not a .npy file (it does not start with the .npy magic bytes); "
                          "save the batch with numpy.save")
    try:
        return np.load(path, allow_pickle=False)
    except Exception as exc:  # object arrays, truncated files
        raise ConfigError(f"{path} is not a readable numeric .npy array ({exc.__class__.__name__}); save a "
                          "numeric array with numpy.save") from exc


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import numpy as np

    from ..errors import ConfigError
    from ..fileio import atomic_write_bytes
    from ..runtime import Runtime

    x = _load_input(Path(args.input))
    # Segments serve only --deadline-ms: without one, loading them would cost memory and warn
    # about their precision for nothing.
    with Runtime.open(args.bundle, target=args.target, precision=args.precision, power=args.power,
                      policy=args.policy, device=args.device, anytime=args.deadline_ms is not None,
                      adaptive=args.adaptive) as rt:
        if args.depth is not None:
            if args.depth not in rt.depths:
                raise ConfigError(f"--depth {args.depth} is not served by {args.bundle} for {args.target} "
                                  f"{args.precision}; choose one of {rt.depths}, or leave --depth out to let "
                                  "the power policy choose")
            rt.set_depth(args.depth)
        pred = rt.infer_anytime(x, args.deadline_ms) if args.deadline_ms is not None else rt.infer(x)
        decision = rt.decision
    if args.output:
        import io

        buf = io.BytesIO()
        np.save(buf, pred.outputs)
        atomic_write_bytes(args.output, buf.getvalue())
    result = {"depth": pred.depth, "latency_ms": pred.latency_ms, "reason": pred.reason,
              "deadline_met": pred.deadline_met, "segments_run": pred.segments_run,
              "power_tier": decision.tier, "batch": int(pred.outputs.shape[0]),
              "outputs": pred.outputs.tolist()}
    if pred.depths is not None:
        result["exit_depths"] = pred.depths.tolist()
    manifest_task = rt.manifest.task
    if manifest_task == "classification":
        result["predictions"] = pred.outputs.argmax(axis=1).tolist()
    shown = min(len(pred.outputs), TABLE_ROWS)
    rows = [{"sample": i, "prediction": (result["predictions"][i] if "predictions" in result else pred.outputs[i].tolist()),
             **({"exit depth": result["exit_depths"][i]} if "exit_depths" in result else {})} for i in range(shown)]
    more = (f"; the first {shown} of {len(pred.outputs)} samples shown, all with --json or --output"
            if shown < len(pred.outputs) else "")
    emit(args, result, rows, title=f"depth {pred.depth} ({pred.reason}), {pred.latency_ms:.3f} ms for batch "
                                   f"{result['batch']}{more}")
    return 0
