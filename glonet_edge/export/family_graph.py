"""The family graph: every exported depth as one ONNX graph with an output per depth.

Why: each truncated graph loaded on its own session (ONNX Runtime) or compiled model
(OpenVINO) holds its own copy of every weight it uses, packed for the engine, even when the
files share one weights file (BENCHMARKS.md, "Memory"). One graph holds each weight once,
so the whole family costs about one model's memory. The price is latency: neither engine
skips the nodes a requested output does not need, so every call runs the deepest trunk
(measured in BENCHMARKS.md); the runtime loads it only when asked (`share_weights=True`).

The graph is built from the truncated graphs themselves, not re-traced: identical nodes
(same op, attributes and merged inputs) and identical initializers (same bytes, or the same
place in a shared weights file) are kept once, so each depth's output is computed by
exactly the nodes of its own graph: answers are bitwise those of the truncated graphs when
both run as written (engines' fusions may differ in the last bits; see check_family_graph).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

FAMILY_GRAPH = "family.fp32.onnx"


def family_output(depth: int) -> str:
    """The family graph's output name for one depth (the runtime requests it by name)."""
    return f"y_{depth:03d}"


def _initializer_key(tensor: Any) -> tuple:
    # External tensors are identified by where their bytes live, inline ones by their bytes:
    # two graphs' copies of one block weight then map to the same initializer.
    where = {e.key: e.value for e in tensor.external_data}
    body = ((where.get("location"), where.get("offset"), where.get("length")) if where
            else hashlib.sha256(tensor.SerializeToString()).hexdigest())
    return tensor.data_type, tuple(tensor.dims), body


class _Merger:
    """Accumulates graphs into one, keeping each distinct initializer and node once."""

    def __init__(self) -> None:
        self.initializers: list[Any] = []
        self.init_names: dict[tuple, str] = {}
        self.nodes: list[Any] = []
        self.node_outputs: dict[tuple, list[str]] = {}
        self.outputs: list[Any] = []
        self.graph_outputs: set[str] = set()
        self.producers: dict[str, tuple[Any, int, tuple]] = {}  # tensor -> (node, output index, node key)

    def add(self, depth: int, graph: Any) -> None:
        import onnx
        from onnx import helper

        names = {i.name: i.name for i in graph.input}
        taken = {t.name for t in self.initializers}
        for tensor in graph.initializer:
            key = _initializer_key(tensor)
            if key not in self.init_names:
                copy = onnx.TensorProto()
                copy.CopyFrom(tensor)
                copy.name = tensor.name if tensor.name not in taken else f"d{depth}/{tensor.name}"
                taken.add(copy.name)
                self.initializers.append(copy)
                self.init_names[key] = copy.name
            names[tensor.name] = self.init_names[key]
        for node in graph.node:  # ONNX graphs list nodes in topological order
            inputs = [names.get(i, i) for i in node.input]
            key = (node.domain, node.op_type, tuple(inputs), tuple(a.SerializeToString() for a in node.attribute))
            if key not in self.node_outputs:
                outs = [f"d{depth}/{o}" if o else "" for o in node.output]
                merged = helper.make_node(node.op_type, inputs, outs, name=f"d{depth}/{node.name}", domain=node.domain)
                merged.attribute.extend(node.attribute)
                self.nodes.append(merged)
                self.node_outputs[key] = outs
                self.producers.update((o, (merged, i, key)) for i, o in enumerate(outs) if o)
            names.update(zip(node.output, self.node_outputs[key]))
        (out,) = graph.output
        self._name_output(names[out.name], family_output(depth))
        info = onnx.ValueInfoProto()
        info.CopyFrom(out)
        info.name = family_output(depth)
        self.outputs.append(info)

    def _name_output(self, tensor: str, name: str) -> None:
        # Rename the producing node's output rather than adding an Identity: OpenVINO's ONNX
        # reader drops Identity nodes and would name the output after the tensor behind it.
        node, index, key = self.producers.get(tensor, (None, 0, None))
        if node is None or tensor in self.graph_outputs:  # an input, or already another depth's answer
            from onnx import helper

            self.nodes.append(helper.make_node("Identity", [tensor], [name]))
            return
        node.output[index] = name
        self.node_outputs[key][index] = name
        for other in self.nodes:
            other.input[:] = [name if i == tensor else i for i in other.input]
        self.graph_outputs.add(name)


def merge_family(graphs: dict[int, Path], out: Path) -> Path:
    """Write the graphs (one output each, one common input) as one graph at `out`.

    Graphs sharing a weights file keep pointing at it, so `out` must sit in their directory."""
    import onnx
    from onnx import helper

    merger, first = _Merger(), None
    for depth in sorted(graphs):
        model = onnx.load(str(graphs[depth]), load_external_data=False)
        if first is None:
            first = model
        merger.add(depth, model.graph)
    graph = helper.make_graph(merger.nodes, "glonet_family", list(first.graph.input), merger.outputs,
                              initializer=merger.initializers)
    model = helper.make_model(graph, opset_imports=list(first.opset_import), ir_version=first.ir_version)
    onnx.save_model(model, str(out))
    return out


def check_family_graph(path: Path, graphs: dict[int, Path], x: Any, tolerance: float = 1e-6) -> None:
    """Refuse a family graph that does not answer like each depth's own graph on `x`.

    Without graph rewrites the answers must be bitwise equal: that proves the merge kept
    every depth's computation. With them (as served), ONNX Runtime may fuse a node in one
    graph and not in the other (a tensor with more consumers blocks some fusions), which
    moves the last bits: there the limit is `tolerance`, relative to the output's scale."""
    import numpy as np

    from ..compare import cpu_session, max_abs_error
    from ..errors import ArtifactError

    for optimize in (False, True):
        family = cpu_session(path, threads=1, optimize=optimize)
        feeds = {family.get_inputs()[0].name: x}
        merged = dict(zip([o.name for o in family.get_outputs()], family.run(None, feeds)))
        for depth, graph in sorted(graphs.items()):
            (own,) = cpu_session(graph, threads=1, optimize=optimize).run(None, feeds)
            err = max_abs_error(merged[family_output(depth)], own)
            limit = tolerance * max(1.0, float(np.abs(own).max())) if optimize else 0.0
            if not err <= limit:
                raise ArtifactError(f"the family graph's depth-{depth} output differs from {graph.name} by {err:.3g} "
                                    f"({'optimized' if optimize else 'as written'}; limit {limit:.3g}); please report "
                                    "this (the merge must keep every depth's nodes as they are)")
