"""Make the bundle and the reference answers that the serving-compatibility tests check.

    python3 tests/compat/make_reference.py DIR

Run with the main (training) Python: trains a small glonet-fc on digits, exports every depth
with the segment chain, compiles OpenVINO fp32, and writes DIR/bundle and DIR/reference.npz
(held-out inputs and this Python's answers per target and depth). tests/compat then serves
the same bundle on another Python (3.8, 3.10 in CI) and compares.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

TARGETS = ("onnxruntime", "openvino")


def answers(bundle: Path, x: np.ndarray) -> dict:
    """{"target/depthD": outputs, "target/anytime": outputs} from the Runtime on this Python."""
    from glonet_edge.runtime import Runtime

    out = {}
    for target in TARGETS:
        with Runtime.open(bundle, target=target, power="none") as rt:
            for depth in rt.depths:
                rt.set_depth(depth)
                out[f"{target}/depth{depth}"] = rt.infer(x).outputs
            rt.set_depth(None)
            out[f"{target}/anytime"] = rt.infer_anytime(x, deadline_ms=1e6, max_depth=max(rt.depths)).outputs
    return out


def make_reference(out: Path) -> Path:
    from glonet_edge.data import load_dataset
    from glonet_edge.export import export_bundle
    from glonet_edge.targets.compile import compile_bundle
    from glonet_edge.train.trainer import TrainSettings, train_run

    train_run("glonet-fc", 8, "digits", out / "run", settings=TrainSettings(epochs=3), progress=False)
    export_bundle(out / "run", out / "bundle", depths="all", progress=False)
    compile_bundle(out / "bundle", "openvino", ["fp32"], progress=False)
    x = np.ascontiguousarray(load_dataset("digits").x_val[:32])
    np.savez(out / "reference.npz", x=x, **answers(out / "bundle", x))
    return out


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__.strip().splitlines()[2].strip())
    print(make_reference(Path(sys.argv[1])))
