"""Where ONNX Runtime's early-stopping family graph loses time: the same comparison at three
graph optimisation levels.

Usage: python early_stop_ort_levels.py BUNDLE DEPTHS [CALLS]   (DEPTHS e.g. 1,2,5,9)

The family graph is the one `glonet export --shared-weights` writes (bench memory's
`family_graph` makes it for a bundle exported without it). For each level, each depth's own
truncated graph and the family graph fed that depth run in one process, 1 thread, batch 1;
p50 of CALLS calls after 100 warm-up calls. ORT_ENABLE_ALL is what the runtime uses (it adds
the NCHWc layout transform on x86); ORT_ENABLE_EXTENDED and ORT_ENABLE_BASIC do not.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from glonet_edge.bench.memory import family_graph
from glonet_edge.manifest import FAMILY_DEPTH_INPUT, family_depth_feed
from glonet_edge.manifest import BundleManifest

LEVELS = ("ORT_ENABLE_ALL", "ORT_ENABLE_EXTENDED", "ORT_ENABLE_BASIC")


def session(path: Path, level: str) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def p50_us(sess: ort.InferenceSession, feeds: dict, calls: int) -> float:
    for _ in range(100):
        sess.run(None, feeds)
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        sess.run(None, feeds)
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1e6


def main() -> None:
    bundle, depths = Path(sys.argv[1]), [int(d) for d in sys.argv[2].split(",")]
    calls = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
    manifest = BundleManifest.load(bundle)
    graphs = {e.depth: bundle / e.artifact("onnx", "fp32").path for e in manifest.depths}
    x = np.random.default_rng(0).random((1, *manifest.input_shape), dtype=np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        family, _ = family_graph(bundle, manifest, graphs, Path(tmp))
        for level in LEVELS:
            whole = session(family, level)
            for d in depths:
                own = p50_us(session(graphs[d], level), {manifest.input_name: x}, calls)
                fed = p50_us(whole, {manifest.input_name: x, FAMILY_DEPTH_INPUT: family_depth_feed(d)}, calls)
                print(f"{level} depth {d}: truncated graph {own:.1f} us, family graph {fed:.1f} us, "
                      f"ratio {fed / own:.3f}", flush=True)


if __name__ == "__main__":
    main()
