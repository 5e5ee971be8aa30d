"""Runtime-level p50 per depth, per-depth graphs vs `Runtime.open(..., share_weights=True)`.

    PYTHONPATH=. python benchmarks/cpu-2026-12-01/runtime_share_weights_latency.py BUNDLE TARGET

BUNDLE: exported with `glonet export --shared-weights` (and, for TARGET openvino, compiled
with `glonet compile BUNDLE --target openvino`). Batch 1, one engine thread, both runtimes
in one process, alternated per depth, 3 rounds of 200 calls; the best round's p50 per depth.
Prints depth: [per-depth p50 ms, share_weights p50 ms, ratio].
"""

import json
import sys
import time

import numpy as np

from glonet_edge.runtime import Runtime


def p50(rt: Runtime, depth: int, x: np.ndarray) -> float:
    rt.set_depth(depth)
    for _ in range(20):
        rt.infer(x)
    times = []
    for _ in range(200):
        t0 = time.perf_counter()
        rt.infer(x)
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) * 1e3


def main(bundle: str, target: str) -> None:
    rts = {k: Runtime.open(bundle, target=target, power="none", anytime=False, threads=1, share_weights=k)
           for k in (False, True)}
    x = np.random.default_rng(0).random((1, *rts[False].manifest.input_shape), dtype=np.float32)
    rounds = {d: [(p50(rts[False], d, x), p50(rts[True], d, x)) for _ in range(3)] for d in rts[False].depths}
    best = {d: (min(a for a, _ in r), min(b for _, b in r)) for d, r in rounds.items()}
    print(target, json.dumps({d: [round(a, 4), round(b, 4), round(b / a, 2)] for d, (a, b) in best.items()}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
