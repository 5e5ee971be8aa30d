"""How many depths one early-stopping family graph can hold: protobuf's nesting limit, and
OpenVINO's compile time of the nested Ifs.

Usage: python family_graph_limits.py N [N ...]

For each N: N depth graphs of a tiny GloNet-shaped chain (block k: 4x4 MatMul -> Relu, summed;
one shared 4x3 head), merged by export/family_graph.merge_family; then onnx.load and an ONNX
Runtime session of the result, and for N <= 20 the OpenVINO CPU compile time (1 thread).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def chain_graphs(n: int, folder: Path) -> dict[int, Path]:
    rng = np.random.default_rng(0)
    weights = [rng.normal(size=(4, 4)).astype(np.float32) * 0.3 for _ in range(n + 1)]
    head = rng.normal(size=(4, 3)).astype(np.float32)
    graphs = {}
    for d in range(1, n + 1):
        nodes, inits, h, acc = [], [numpy_helper.from_array(head, "head.weight")], "x", None
        for k in range(1, d + 1):
            inits.append(numpy_helper.from_array(weights[k], f"blocks.{k}.weight"))
            nodes += [helper.make_node("MatMul", [h, f"blocks.{k}.weight"], [f"mm{k}"], name=f"/b{k}/MatMul"),
                      helper.make_node("Relu", [f"mm{k}"], [f"h{k}"], name=f"/b{k}/Relu")]
            h = f"h{k}"
            if acc is not None:
                nodes.append(helper.make_node("Add", [acc, h], [f"s{k}"], name=f"/s{k}/Add"))
            acc = h if acc is None else f"s{k}"
        nodes.append(helper.make_node("MatMul", [acc, "head.weight"], ["y"], name="/head/MatMul"))
        graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])], initializer=inits)
        graphs[d] = folder / f"depth_{d:03d}.onnx"
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(graphs[d]))
    return graphs


def main() -> None:
    import onnxruntime
    import openvino

    from glonet_edge.export import family_graph

    family_graph.MAX_FAMILY_DEPTHS = 10**6  # measure past the cap merge_family enforces
    for n in (int(a) for a in sys.argv[1:]):
        folder = Path(tempfile.mkdtemp())
        try:
            path = family_graph.merge_family(chain_graphs(n, folder), folder / "family.onnx")
            onnx.load(str(path))
            onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001  the limit is what is measured
            print(f"{n} depths: FAIL {type(exc).__name__}: {str(exc)[:100]}", flush=True)
            continue
        line = f"{n} depths: onnx.load and ONNX Runtime load"
        if n <= 20:
            start = time.perf_counter()
            openvino.Core().compile_model(str(path), "CPU", {"INFERENCE_NUM_THREADS": 1})
            line += f"; OpenVINO compile {time.perf_counter() - start:.2f} s"
        print(line, flush=True)


if __name__ == "__main__":
    main()
