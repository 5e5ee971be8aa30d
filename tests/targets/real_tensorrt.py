"""On a machine with an NVIDIA GPU, TensorRT and cuda-python: build every precision of a small
GloNet family with the real library, compare each engine with onnxruntime, and print per-depth
latency.

    python tests/targets/real_tensorrt.py [--bundle DIR] [--iterations 200] [--device GPU:0]

Without --bundle it trains, exports and quantizes a tiny family (glonet-fc, depth 16, digits)
in a temporary directory first. tests/targets/test_tensorrt.py runs the same check (quietly,
fewer iterations) when TensorRT is importable.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parent))  # targets_helpers, run as a script

PRECISIONS = ("fp32", "fp16", "int8")


def build_and_time(bundle: Path, iterations: int = 200, warmup: int = 20, device: str = "GPU:0") -> List[Dict[str, Any]]:
    """Compile every precision (each engine checked against onnxruntime fp32 by compile), then
    profile each; one row per (depth, precision) with the check and the latency at batch 1 and 8."""
    from glonet_edge.targets.compile import compile_bundle
    from glonet_edge.targets.profile import profile_bundle

    compiled = compile_bundle(bundle, "tensorrt", PRECISIONS, device=device, segments=False, progress=False)
    checks = {(r["depth"], r["precision"]): r for r in compiled["rows"] if r["status"] == "ok"}
    rows = []
    for precision in PRECISIONS:
        timed = profile_bundle(bundle, "tensorrt", precision, batches=(1, 8), iterations=iterations, warmup=warmup,
                               device=device, progress=False)
        for r in (r for r in timed["rows"] if r["batch"] == 1):
            p50_8 = next(t["p50"] for t in timed["rows"] if t["depth"] == r["depth"] and t["batch"] == 8)
            check = checks[(r["depth"], precision)]
            rows.append({"depth": r["depth"], "precision": precision, "max_abs_err": check["max_abs_err"],
                         "top1_agreement": check["top1_agreement"], "p50_ms_b1": r["p50"], "p50_ms_b8": p50_8})
    return rows


def tiny_bundle(root: Path) -> Path:
    from targets_helpers import CALIB, make_bundle

    from glonet_edge.quantize import QuantizeSettings, quantize_bundle

    bundle = make_bundle(root, "glonet-fc", 16, "digits", [1, 4, 8, 16], epochs=12)
    quantize_bundle(bundle, QuantizeSettings(method="ort", calib_size=CALIB), progress=False)
    return bundle


def main(argv: List[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", type=Path, default=None, help="a quantized bundle (default: a tiny one, made here)")
    p.add_argument("--iterations", type=int, default=200)
    p.add_argument("--device", default="GPU:0")
    args = p.parse_args(argv)
    import tensorrt

    with tempfile.TemporaryDirectory() as tmp:
        bundle = args.bundle or tiny_bundle(Path(tmp))
        rows = build_and_time(bundle, iterations=args.iterations, device=args.device)
    print(f"TensorRT {tensorrt.__version__}, {args.device}: per-depth latency (ms, p50) and agreement with onnxruntime fp32")
    print(f"{'depth':>5} {'precision':>9} {'max_abs_err':>11} {'top1':>6} {'batch 1':>8} {'batch 8':>8}")
    for r in rows:
        top1 = "-" if r["top1_agreement"] is None else f"{r['top1_agreement']:.3f}"
        print(f"{r['depth']:>5} {r['precision']:>9} {r['max_abs_err']:>11.2e} {top1:>6} {r['p50_ms_b1']:>8.3f} "
              f"{r['p50_ms_b8']:>8.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
