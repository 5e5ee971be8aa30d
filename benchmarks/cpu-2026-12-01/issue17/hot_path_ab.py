"""Where the runtime's batch-1 overhead goes: shuffled A/B of the pieces of Runtime.infer.

Usage: python hot_path_ab.py BUNDLE TARGET PRECISION DEPTH [ROUNDS]

Each round calls every variant once, in a new random order, on the same compiled model and
the same input; the p50 of each variant is compared with the raw engine call's p50:
  raw            CompiledModel.raw_callable() (what `glonet bench latency` compares with)
  run_validated  the target's call the runtime makes (OpenVINO: copy in, infer, copy out)
  blas16+run     one 16-element np.vdot (a BLAS call) before run_validated
  check+run      Runtime.check_input (type/shape checks + the vdot finiteness check) before it
  infer          Runtime.infer with the depth pinned (check, policy read, Prediction)
"""

from __future__ import annotations

import random
import sys
import time

import numpy as np

from glonet_edge.runtime import Runtime


def main() -> None:
    bundle, target, precision, depth = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    rounds = int(sys.argv[5]) if len(sys.argv) > 5 else 2000
    rt = Runtime.open(bundle, target=target, precision=precision, threads=1, power="none", anytime=False)
    rt.set_depth(depth)
    model, name = rt._models[depth], rt._input_name
    x = np.random.default_rng(0).random((1, *rt._input_shape), dtype=np.float32) * 255
    small = x.reshape(-1)[:16].copy()
    raw = model.raw_callable()
    variants = {
        "raw": lambda: raw({name: x}),
        "run_validated": lambda: model.run_validated({name: x}),
        "blas16+run": lambda: (np.vdot(small, small), model.run_validated({name: x})),
        "check+run": lambda: model.run_validated({name: rt.check_input(x)}),
        "infer": lambda: rt.infer(x),
    }
    for call in variants.values():
        for _ in range(200):
            call()
    times: dict[str, list[float]] = {k: [] for k in variants}
    order = list(variants)
    for _ in range(rounds):
        random.shuffle(order)
        for k in order:
            start = time.perf_counter()
            variants[k]()
            times[k].append(time.perf_counter() - start)
    base = float(np.median(times["raw"]))
    cells = [f"{k} {np.median(v) * 1e6:.1f} us ({(np.median(v) / base - 1) * 100:+.1f} %)" for k, v in times.items()]
    print(f"{target}/{precision} depth {depth}, {rounds} rounds: " + "; ".join(cells))


if __name__ == "__main__":
    main()
