"""The family graph: every exported depth as one ONNX graph that stops at the depth asked for.

Why: each truncated graph loaded on its own session (ONNX Runtime) or compiled model
(OpenVINO) holds its own copy of every weight it uses, packed for the engine, even when the
files share one weights file (BENCHMARKS.md, "Memory"). One graph holds each trunk weight
once (only the shared head's small weights are repeated, once per depth's branch), so the
whole family costs close to one model's memory: 1.06-1.36x measured.

Built in two steps from the truncated graphs themselves, not re-traced:
1. merge: identical nodes (same op, attributes and merged inputs) and identical initializers
   (same bytes, or the same place in a shared weights file) are kept once, one output per
   depth, so each depth's output is computed by exactly the nodes of its own graph;
2. stop early: neither engine skips the nodes a requested output does not need, so the merged
   graph becomes nested `If` nodes with a second input `depth` (int64 scalar). Each level runs
   the trunk nodes the deeper depths need, then `If(depth <= d)` runs depth d's head and
   answers, or goes on into the next level. Each (sub)graph holds the weights its own nodes
   read: with the weights in the main graph, read from the outer scope, ONNX Runtime ran the
   branches' convolutions about twice as slow (BENCHMARKS.md, "Memory").
Answers are those of the truncated graphs (bitwise as written; engines' fusions may differ in
the last bits, see check_family_graph). The price is each `If` passed: 1.1-2.3x the truncated
graph's latency (measured in BENCHMARKS.md); the runtime loads it only when asked
(`share_weights=True`).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..manifest import FAMILY_DEPTH_INPUT, MAX_FAMILY_DEPTHS, family_depth_feed

FAMILY_GRAPH = "family.fp32.onnx"


def _depth_output(depth: int) -> str:
    """The merged graph's output name for one depth (before the early-stop rewrite)."""
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
        self._name_output(names[out.name], _depth_output(depth))
        info = onnx.ValueInfoProto()
        info.CopyFrom(out)
        info.name = _depth_output(depth)
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
    """Write the graphs (one output each, one common input) as the family graph at `out`.

    Graphs sharing a weights file keep pointing at it, so `out` must sit in their directory.
    A depth that is not one of the graphs' is answered by the next deeper one (the deepest
    beyond it): callers feed the depths they merged."""
    import onnx
    from onnx import helper

    if len(graphs) > MAX_FAMILY_DEPTHS:
        raise ConfigError(f"a family graph answers at most {MAX_FAMILY_DEPTHS} depths (its nested Ifs reach "
                          f"protobuf's nesting limit), got {len(graphs)}; export fewer depths (--depths)")

    merger, first = _Merger(), None
    for depth in sorted(graphs):
        model = onnx.load(str(graphs[depth]), load_external_data=False)
        if first is None:
            first = model
        merger.add(depth, model.graph)
    graph = helper.make_graph(merger.nodes, "glonet_family", list(first.graph.input), merger.outputs,
                              initializer=merger.initializers)
    merged = helper.make_model(graph, opset_imports=list(first.opset_import), ir_version=first.ir_version)
    onnx.save_model(_stop_early(merged, first.graph.output[0].name), str(out))
    return out


def _upstream(tensor: str, producers: dict[str, Any]) -> set[int]:
    """ids of the nodes `tensor` is computed from."""
    seen, stack = set(), [tensor]
    while stack:
        node = producers.get(stack.pop())
        if node is not None and id(node) not in seen:
            seen.add(id(node))
            stack.extend(node.input)
    return seen


class _EarlyStop:
    """Rewrites a merged graph (an output per depth) as nested If levels (module docstring)."""

    def __init__(self, merged: Any):
        graph = merged.graph
        producers = {out: node for node in graph.node for out in node.output}
        self.nodes = list(graph.node)  # topological order, kept in every level
        self.outputs = sorted((o.name for o in graph.output), key=lambda name: int(name.split("_")[1]))
        self.needs = [_upstream(name, producers) for name in self.outputs]
        self.weights = {t.name: t for t in graph.initializer}
        self.answer_type = graph.output[0].type  # every depth answers the same (batch, outputs) type
        self.done: set[int] = set()

    def _graph(self, nodes: list[Any], name: str, output: str, outer: set[str], extra: list[Any] = ()) -> Any:
        """A (sub)graph holding the weights its nodes read, except those an enclosing graph holds
        (a subgraph may read an outer name but must not define it again)."""
        from onnx import helper

        read = dict.fromkeys(i for n in nodes for i in n.input if i in self.weights and i not in outer)
        return helper.make_graph(nodes, name, [], [helper.make_value_info(output, self.answer_type)],
                                 initializer=[self.weights[i] for i in read] + list(extra))

    def level(self, i: int, answer: str, outer: frozenset[str] = frozenset()) -> Any:
        """The graph answering every depth from the i-th on, its answer named `answer`."""
        from onnx import helper, numpy_helper

        pick = lambda ids: [n for n in self.nodes if id(n) in ids]  # noqa: E731
        if i == len(self.outputs) - 1:
            rest = pick(self.needs[i] - self.done) + [helper.make_node("Identity", [self.outputs[i]], [answer])]
            return self._graph(rest, answer, answer, outer)
        deeper = set().union(*self.needs[i + 1:])
        trunk, head = pick((self.needs[i] & deeper) - self.done), pick(self.needs[i] - deeper - self.done)
        self.done |= {id(n) for n in trunk}
        held = outer | {w for n in trunk for w in n.input if w in self.weights}
        depth = int(self.outputs[i].split("_")[1])
        then = self._graph(head + [helper.make_node("Identity", [self.outputs[i]], [f"then_{depth}"])],
                           f"then_{depth}", f"then_{depth}", held)
        other = self.level(i + 1, f"else_{depth}", frozenset(held))
        stop = [helper.make_node("LessOrEqual", [FAMILY_DEPTH_INPUT, f"depth_{depth}"], [f"stop_{depth}"]),
                helper.make_node("If", [f"stop_{depth}"], [answer], then_branch=then, else_branch=other)]
        return self._graph(trunk + stop, answer, answer, outer,
                           [numpy_helper.from_array(family_depth_feed(depth), f"depth_{depth}")])


def _stop_early(merged: Any, answer: str) -> Any:
    from onnx import TensorProto, helper

    body = _EarlyStop(merged).level(0, answer)
    graph = helper.make_graph(list(body.node), "glonet_family", [*merged.graph.input,
                              helper.make_tensor_value_info(FAMILY_DEPTH_INPUT, TensorProto.INT64, [])],
                              list(body.output), initializer=list(body.initializer))
    return helper.make_model(graph, opset_imports=list(merged.opset_import), ir_version=merged.ir_version)


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
        name = next(i.name for i in family.get_inputs() if i.name != FAMILY_DEPTH_INPUT)
        for depth, graph in sorted(graphs.items()):
            (answer,) = family.run(None, {name: x, FAMILY_DEPTH_INPUT: family_depth_feed(depth)})
            (own,) = cpu_session(graph, threads=1, optimize=optimize).run(None, {name: x})
            err = max_abs_error(answer, own)
            limit = tolerance * max(1.0, float(np.abs(own).max())) if optimize else 0.0
            if not err <= limit:
                raise ArtifactError(f"the family graph's depth-{depth} answer differs from {graph.name} by {err:.3g} "
                                    f"({'optimized' if optimize else 'as written'}; limit {limit:.3g}); please report "
                                    "this (the merge must keep every depth's nodes as they are)")
