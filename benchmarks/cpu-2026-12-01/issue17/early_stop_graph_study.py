"""A family graph where the engine stops at the requested depth: nested ONNX `If` nodes.

    PYTHONPATH=. python benchmarks/cpu-2026-12-01/issue17/early_stop_graph_study.py BUNDLE DEPTHS

BUNDLE: exported with `glonet export --depths all --shared-weights` by glonet-edge at commit
959b294 or earlier, whose onnx/family.fp32.onnx is the merged graph with an output per depth
(every depth's output computed by the nodes of its own graph); since then export writes the
early-stop graph itself (export/family_graph.py, the "weights in the (sub)graph" layout). This
script rewrites it as one graph with a second input `depth` (int64 scalar): the nodes the next
depth needs run, then `If(depth <= d)` either runs depth d's head and returns its answer or goes
on into the next level (the else branch). Each weight stays one initializer of the main graph,
read by the branches from the outer scope; then again with each weight held by the (sub)graph
whose nodes read it (a first try showed ONNX Runtime's branches running much faster on weights
of their own). For each layout it checks the answers against each depth's own graph (ONNX
Runtime and OpenVINO), times each DEPTHS entry against its own truncated graph
(both loaded in one process, alternated, p50 of 600 calls at batch 1, one thread), and measures
the RSS a fresh process adds by loading the graph and running every depth once, against the
deepest truncated graph alone (median of 3 processes, ONNX Runtime).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from glonet_edge.export.family_graph import _upstream as _needs  # the same walk as the product's


def _read_by(nodes: list, weights: dict) -> list:
    """The weights these nodes (not their branches) read: each (sub)graph holds its own."""
    names = dict.fromkeys(name for node in nodes for name in node.input if name in weights)
    return [weights[name] for name in names]


def early_stop_graph(family: Path, dst: Path, local: bool = False) -> list[int]:
    """Write the nested-If graph next to `family` (its external weights stay where they are).
    local=False: every weight is an initializer of the main graph, read by the branches from the
    outer scope; local=True: each (sub)graph holds the weights its own nodes read (a weight read at
    two levels, like the shared head's, is then held twice)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(family), load_external_data=False)
    graph = model.graph
    producers = {out: node for node in graph.node for out in node.output}
    outputs = sorted((o.name for o in graph.output), key=lambda name: int(name.split("_")[1]))
    depths = [int(name.split("_")[1]) for name in outputs]
    needs = [_needs(name, producers) for name in outputs]
    done: set[int] = set()
    consts = []
    weights = {t.name: t for t in graph.initializer}

    def level(i: int) -> tuple[list, str]:
        if i == len(outputs) - 1:  # the deepest depth: whatever is left
            return [n for n in graph.node if id(n) in needs[i] and id(n) not in done], outputs[i]
        deeper = set().union(*needs[i + 1:])
        trunk = (needs[i] & deeper) - done
        head = needs[i] - deeper - done
        done.update(trunk)
        d = depths[i]
        consts.append(numpy_helper.from_array(np.array(d, np.int64), f"depth_{d}"))
        head_nodes = [n for n in graph.node if id(n) in head]
        then = helper.make_graph(head_nodes + [helper.make_node("Identity", [outputs[i]], [f"then_{d}"])],
                                 f"then_{d}", [], [helper.make_tensor_value_info(f"then_{d}", TensorProto.FLOAT, None)],
                                 initializer=_read_by(head_nodes, weights) if local else [])
        body, out = level(i + 1)
        other = helper.make_graph(body + [helper.make_node("Identity", [out], [f"else_{d}"])], f"else_{d}", [],
                                  [helper.make_tensor_value_info(f"else_{d}", TensorProto.FLOAT, None)],
                                  initializer=_read_by(body, weights) if local else [])
        return ([n for n in graph.node if id(n) in trunk]
                + [helper.make_node("LessOrEqual", ["depth", f"depth_{d}"], [f"stop_{d}"]),
                   helper.make_node("If", [f"stop_{d}"], [f"y_{d}_on"], then_branch=then, else_branch=other)],
                f"y_{d}_on")

    body, out = level(0)
    new = helper.make_graph(body + [helper.make_node("Identity", [out], ["y"])], "family_early_stop",
                            [*graph.input, helper.make_tensor_value_info("depth", TensorProto.INT64, [])],
                            [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                            initializer=[*(_read_by(body, weights) if local else graph.initializer), *consts])
    onnx.save(helper.make_model(new, opset_imports=model.opset_import, ir_version=model.ir_version), str(dst))
    return depths


def _ort(path: Path):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads, so.log_severity_level = 1, 1, 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _ov(path: Path):
    import openvino as ov

    compiled = ov.Core().compile_model(str(path), "CPU", {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": 1,
                                                           "INFERENCE_PRECISION_HINT": "f32"})
    request = compiled.create_infer_request()
    return lambda feeds: request.infer(feeds)[0]


def _callables(engine: str, path: Path):
    if engine == "onnxruntime":
        session = _ort(path)
        return lambda feeds: session.run(None, feeds)[0]
    return _ov(path)


def p50_pair(a, b, calls: int = 600) -> tuple[float, float]:
    for _ in range(50):
        a(), b()
    ta, tb = [], []
    for i in range(calls):
        for f, t in ((a, ta), (b, tb)) if i % 2 else ((b, tb), (a, ta)):
            start = time.perf_counter()
            f()
            t.append(time.perf_counter() - start)
    return float(np.median(ta)), float(np.median(tb))


def rss_child(onnx_dir: Path, which: str, depths: list[int], shape: list[int]) -> None:
    import onnxruntime  # noqa: F401  imported before measuring: the library is not what a layout costs

    before = _rss()
    x = np.random.default_rng(0).random((1, *shape), dtype=np.float32)
    if which == "early-stop":
        session = _ort(onnx_dir / "family_early_stop.onnx")
        for d in depths:
            session.run(None, {"x": x, "depth": np.array(d, np.int64)})
    else:
        _ort(onnx_dir / f"depth_{max(depths):03d}.onnx").run(None, {"x": x})
    print(json.dumps((_rss() - before) / 2**20))


def _rss() -> int:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmRSS:"))


def main(bundle: Path, timed: list[int]) -> None:
    from glonet_edge.manifest import BundleManifest

    onnx_dir, shape = bundle / "onnx", BundleManifest.load(bundle).input_shape
    for local in (False, True):
        print(f"## weights {'in the (sub)graph that reads them' if local else 'in the main graph (outer scope)'}")
        depths = early_stop_graph(onnx_dir / "family.fp32.onnx", onnx_dir / "family_early_stop.onnx", local)
        measure(onnx_dir, shape, depths, timed)


def measure(onnx_dir: Path, shape: list[int], depths: list[int], timed: list[int]) -> None:
    x = np.random.default_rng(1).random((4, *shape), dtype=np.float32)
    for engine in ("onnxruntime", "openvino"):
        stop = _callables(engine, onnx_dir / "family_early_stop.onnx")
        worst = max(float(np.abs(stop({"x": x, "depth": np.array(d, np.int64)})
                                 - _callables(engine, onnx_dir / f"depth_{d:03d}.onnx")({"x": x})).max()) for d in depths)
        print(f"{engine}: max |answer - depth graph's| over {len(depths)} depths: {worst:.3g}", flush=True)
        x1 = x[:1].copy()
        for d in timed:
            own = _callables(engine, onnx_dir / f"depth_{d:03d}.onnx")
            dv = np.array(d, np.int64)
            t_own, t_stop = p50_pair(lambda: own({"x": x1}), lambda: stop({"x": x1, "depth": dv}))
            print(f"{engine} depth {d}: truncated graph {t_own * 1e6:.1f} us, early-stop family {t_stop * 1e6:.1f} us,"
                  f" ratio {t_stop / t_own:.2f}", flush=True)
    for which in ("early-stop", "deepest graph alone"):
        runs = [json.loads(subprocess.run([sys.executable, __file__, "--rss", str(onnx_dir), which,
                                           json.dumps(depths), json.dumps(shape)], check=True, capture_output=True,
                                          text=True).stdout) for _ in range(3)]
        print(f"onnxruntime RSS added, {which}: +{np.median(runs):.1f} MB (median of 3 processes)", flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "--rss":
        rss_child(Path(sys.argv[2]), sys.argv[3], json.loads(sys.argv[4]), json.loads(sys.argv[5]))
    else:
        main(Path(sys.argv[1]), [int(v) for v in sys.argv[2].split(",")])
