"""Rewrites of QDQ graphs: NNCF's UINT8 pairs made TensorRT-safe (signed symmetric INT8), and
chosen layers put back in float; plus the questions accuracy control asks of a QDQ graph
(which layers read quantized values)."""

from __future__ import annotations

import copy
from typing import Any, Iterable

import numpy as np

from .settings import TRT_OP_TYPES

QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


def _keep_initializers(graph: Any, used: set[str]) -> None:
    keep = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)


# ---------------------------------------------------------------------------------------------
# TensorRT-safe Q/DQ
# ---------------------------------------------------------------------------------------------
def _asymmetric_zero_point(node: Any, inits: dict[str, Any]) -> Any:
    """The zero-point initializer of a Q/DQ node TensorRT would refuse (UINT8, or INT8 with a
    non-zero zero point), else None."""
    import onnx
    from onnx import numpy_helper

    if node.op_type not in QDQ_OPS or len(node.input) < 3:
        return None
    zp_t, s_t = inits.get(node.input[2]), inits.get(node.input[1])
    if zp_t is None or s_t is None:
        return None
    if zp_t.data_type == onnx.TensorProto.INT8 and not np.any(numpy_helper.to_array(zp_t)):
        return None
    if zp_t.data_type not in (onnx.TensorProto.UINT8, onnx.TensorProto.INT8):
        return None
    return zp_t


def _symmetric_pair(model: Any, s_t: Any, zp_t: Any) -> tuple[str, str, float, float]:
    """Add the INT8 zero-point-0 scale covering [s(qmin-zp), s(qmax-zp)]; returns the new
    (scale, zero point) names and the old range (low NaN when per-channel)."""
    import onnx
    from onnx import numpy_helper

    scale = numpy_helper.to_array(s_t)
    zp = numpy_helper.to_array(zp_t).astype(np.float64)
    qmin, qmax = (0, 255) if zp_t.data_type == onnx.TensorProto.UINT8 else (-128, 127)
    lo, hi = scale.astype(np.float64) * (qmin - zp), scale.astype(np.float64) * (qmax - zp)
    new_scale = (np.maximum(np.abs(lo), np.abs(hi)) / 127.0).astype(scale.dtype)
    s_name, z_name = f"{s_t.name}__s8", f"{zp_t.name}__s8"
    model.graph.initializer.append(numpy_helper.from_array(new_scale, s_name))
    model.graph.initializer.append(numpy_helper.from_array(np.zeros(zp.shape, dtype=np.int8), z_name))
    return s_name, z_name, float(np.min(lo)) if lo.size == 1 else np.nan, float(np.max(hi))


def _clamp_before(model: Any, q: Any, index: int, lo: float, hi: float, dtype: np.dtype) -> Any:
    """The clamp the old pair applied (a UINT8 zp-0 Q is a ReLU), as a node reading q's input;
    q is rewired to read it. None for constants and per-channel ranges."""
    from onnx import helper, numpy_helper

    src, clamped = q.input[0], f"{q.input[0]}__clamp_{index}"
    if lo == 0.0:
        node = helper.make_node("Relu", [src], [clamped], name=f"{q.name or src}__relu")
    else:
        lo_n, hi_n = f"{clamped}_lo", f"{clamped}_hi"
        model.graph.initializer.append(numpy_helper.from_array(np.array(lo, dtype), lo_n))
        model.graph.initializer.append(numpy_helper.from_array(np.array(hi, dtype), hi_n))
        node = helper.make_node("Clip", [src, lo_n, hi_n], [clamped], name=f"{q.name or src}__clip")
    q.input[0] = clamped
    return node


def _insert_before(graph: Any, inserts: list[tuple[Any, Any]]) -> None:
    """Insert each (node, new) pair's new node just before its node."""
    before = {id(n): new for n, new in inserts}
    nodes = []
    for n in graph.node:
        if id(n) in before:
            nodes.append(before[id(n)])
        nodes.append(n)
    nodes = [copy.deepcopy(n) for n in nodes]
    del graph.node[:]
    graph.node.extend(nodes)


def make_trt_safe(model: Any) -> tuple[Any, int]:
    """Rewrite UINT8 / asymmetric Q-DQ pairs as signed symmetric INT8 covering the same range:
    [s(qmin-zp), s(qmax-zp)] -> zp 0, scale max(|lo|, |hi|) / 127 (one bit of resolution lost on
    non-negative tensors). The old pair also saturated at lo (a UINT8 zp-0 Q is a ReLU: ORT drops
    the Relu node when activations are asymmetric), so that clamp is kept explicitly: a Relu
    before the Q when lo == 0, a Clip(lo, hi) otherwise. Returns (model, Q/DQ nodes changed)."""
    import onnx
    from onnx import numpy_helper

    model = copy.deepcopy(model)
    inits = {t.name: t for t in model.graph.initializer}
    remap: dict[tuple[str, str], tuple[str, str, float, float]] = {}
    retyped: set[str] = set()
    clamps: list[tuple[Any, Any]] = []  # (Q node, clamp node to insert before it)
    changed = 0
    for n in model.graph.node:
        zp_t = _asymmetric_zero_point(n, inits)
        if zp_t is None:
            continue
        s_t = inits[n.input[1]]
        key = (n.input[1], n.input[2])
        if key not in remap:
            remap[key] = _symmetric_pair(model, s_t, zp_t)
        n.input[1], n.input[2], lo, hi = remap[key]
        changed += 1
        if n.op_type == "QuantizeLinear":
            retyped.add(n.output[0])
            if n.input[0] not in inits and not np.isnan(lo):
                dtype = numpy_helper.to_array(s_t).dtype
                clamps.append((n, _clamp_before(model, n, len(clamps), lo, hi, dtype)))
    if clamps:
        _insert_before(model.graph, clamps)
    for vi in [*model.graph.value_info, *model.graph.output]:  # Q outputs are INT8 now
        if vi.name in retyped and vi.type.HasField("tensor_type"):
            vi.type.tensor_type.elem_type = onnx.TensorProto.INT8
    _keep_initializers(model.graph, {i for n in model.graph.node for i in n.input})
    return model, changed


# ---------------------------------------------------------------------------------------------
# which layers read quantized values, and putting them back in float
# ---------------------------------------------------------------------------------------------
def quantizable_nodes(model: Any, op_types: tuple[str, ...] = TRT_OP_TYPES) -> list[str]:
    return [n.name for n in model.graph.node if n.op_type in op_types and n.name]


def _clamp_source(prod: dict[str, Any], tensor: str) -> str:
    """The tensor a make_trt_safe clamp (Relu / Clip inserted before a Q) reads, else `tensor`."""
    node = prod.get(tensor)
    if node is not None and node.op_type in ("Relu", "Clip") and "__clamp_" in tensor:
        return node.input[0]
    return tensor


def quantized_consumers(model: Any) -> list[str]:
    """Names of the nodes (other than Q/DQ and make_trt_safe's clamps) that read a DequantizeLinear
    output: the places a QDQ graph computes on quantized values, in graph order."""
    prod = {o: n for n in model.graph.node for o in n.output if o}
    out = []
    for n in model.graph.node:
        if n.op_type in QDQ_OPS or not n.name or "__clamp_" in "".join(n.output):
            continue
        if any(i in prod and prod[i].op_type == "DequantizeLinear" for i in n.input):
            out.append(n.name)
    return out


def float_layers(model: Any, layers: list[str]) -> list[str]:
    """The quantizable layers (of the fp32 graph) that read no quantized input in `model`."""
    q = set(quantized_consumers(model))
    return [n for n in layers if n not in q]


def _dequantized_constant(dq: Any, inits: dict[str, Any], name: str) -> Any:
    """The float initializer `name` holding DequantizeLinear(constant) (per-tensor or per-axis)."""
    from onnx import numpy_helper

    w = numpy_helper.to_array(inits[dq.input[0]]).astype(np.float32)
    scale = numpy_helper.to_array(inits[dq.input[1]]).astype(np.float32)
    zp = (numpy_helper.to_array(inits[dq.input[2]]).astype(np.float32)
          if len(dq.input) > 2 and dq.input[2] else np.zeros_like(scale))
    if scale.ndim == 1 and w.ndim > 1:
        axis = next((a.i for a in dq.attribute if a.name == "axis"), 1) % w.ndim
        shape = [1] * w.ndim
        shape[axis] = -1
        scale, zp = scale.reshape(shape), zp.reshape(shape)
    return numpy_helper.from_array(((w - zp) * scale).astype(np.float32), name)


def _drop_dead_nodes(graph: Any) -> None:
    """Remove the nodes and initializers no graph output depends on."""
    needed = {o.name for o in graph.output}
    live = []
    for n in reversed(list(graph.node)):
        if any(o in needed for o in n.output):
            live.append(n)
            needed.update(i for i in n.input if i)
    live.reverse()
    del graph.node[:]
    graph.node.extend(live)
    _keep_initializers(graph, needed)


def keep_float(model: Any, node_names: Iterable[str]) -> Any:
    """A copy of a QDQ graph in which the named nodes read float inputs again: every input that
    comes from DequantizeLinear(QuantizeLinear(t)) reads t (before a make_trt_safe clamp), a
    DequantizeLinear of a constant reads the dequantized float constant. Q/DQ nodes nothing reads
    any more are dropped. For onnxruntime's QDQ graphs this is exactly quantize_static's
    nodes_to_exclude (tested); it also works on NNCF's graphs, which have no such option after
    the fact."""
    model = copy.deepcopy(model)
    g = model.graph
    names = set(node_names)
    prod = {o: n for n in g.node for o in n.output if o}
    inits = {t.name: t for t in g.initializer}
    added: dict[str, Any] = {}
    for n in g.node:
        if n.name not in names:
            continue
        for i, t in enumerate(n.input):
            dq = prod.get(t)
            if dq is None or dq.op_type != "DequantizeLinear":
                continue
            q = prod.get(dq.input[0])
            if q is not None and q.op_type == "QuantizeLinear":
                n.input[i] = _clamp_source(prod, q.input[0])
            elif dq.input[0] in inits:  # pre-quantized constant: store its float value
                name = f"{dq.output[0]}__float"
                if name not in added:
                    added[name] = _dequantized_constant(dq, inits, name)
                n.input[i] = name
    g.initializer.extend(added.values())
    _drop_dead_nodes(g)
    return model


# ---------------------------------------------------------------------------------------------
# Weight storage: float weight -> Q -> DQ  <->  integer initializer -> DQ
# ---------------------------------------------------------------------------------------------
def _integer_types() -> dict[int, Any]:
    import onnx

    P = onnx.TensorProto
    return {P.INT8: np.int8, P.UINT8: np.uint8, P.INT16: np.int16, P.UINT16: np.uint16}


def _attr_int(node: Any, name: str, default: int) -> int:
    return next((a.i for a in node.attribute if a.name == name), default)


def _qparams(node: Any, inits: dict[str, Any], ndim: int) -> tuple[np.ndarray, np.ndarray | None]:
    """(scale, zero point or None), reshaped to broadcast against a rank-`ndim` tensor."""
    from onnx import numpy_helper

    scale = numpy_helper.to_array(inits[node.input[1]])
    zp = numpy_helper.to_array(inits[node.input[2]]) if len(node.input) > 2 and node.input[2] else None
    if scale.ndim == 1 and ndim > 1:
        shape = [1] * ndim
        shape[_attr_int(node, "axis", 1) % ndim] = -1
        scale = scale.reshape(shape)
        zp = zp.reshape(shape) if zp is not None else None
    return scale, zp


def quantize_array(x: np.ndarray, scale: np.ndarray, zp: np.ndarray | None, dtype: Any) -> np.ndarray:
    """QuantizeLinear exactly as onnxruntime computes it: x / scale in x's float type, rounded
    half to even, plus the zero point, saturated to `dtype`."""
    info = np.iinfo(dtype)
    y = np.rint(x / scale.astype(x.dtype))
    if zp is not None:
        y = y + zp.astype(np.float64)
    return np.clip(y, info.min, info.max).astype(dtype)


def _foldable(q: Any, inits: dict[str, Any], consumers: dict[str, list[Any]], outputs: set[str]) -> bool:
    if q.op_type != "QuantizeLinear" or q.input[0] not in inits or len(q.input) < 2 or q.input[1] not in inits:
        return False
    if len(q.input) > 2 and q.input[2] and q.input[2] not in inits:
        return False
    if any(a.name == "block_size" and a.i for a in q.attribute) or q.output[0] in outputs:
        return False
    zp_type = inits[q.input[2]].data_type if len(q.input) > 2 and q.input[2] else None
    if zp_type is not None and zp_type not in _integer_types():
        return False
    users = consumers.get(q.output[0], [])
    return bool(users) and all(u.op_type == "DequantizeLinear" and u.input[0] == q.output[0] for u in users)


def fold_weight_quantizers(model: Any) -> Any:
    """A copy of `model` in which every QuantizeLinear of a float initializer that feeds only
    DequantizeLinear nodes is replaced by its result, stored as an integer initializer (the Q's
    zero-point dtype, UINT8 without one) that those DQ nodes read: an INT8 weight takes a quarter
    of the bytes of its float32 original. Exact: the integers are what QuantizeLinear computes
    (quantize_array), so the DQ outputs are unchanged bit for bit. Float initializers nothing
    reads any more are dropped. unfold_weight_quantizers is the inverse (for TensorRT < 10)."""
    import onnx
    from onnx import numpy_helper

    model = copy.deepcopy(model)
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    consumers: dict[str, list[Any]] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    outputs = {o.name for o in g.output}
    types = _integer_types()
    keep, added = [], []
    for n in g.node:
        if not _foldable(n, inits, consumers, outputs):
            keep.append(n)
            continue
        w = numpy_helper.to_array(inits[n.input[0]])
        scale, zp = _qparams(n, inits, w.ndim)
        zp_type = inits[n.input[2]].data_type if len(n.input) > 2 and n.input[2] else onnx.TensorProto.UINT8
        added.append(numpy_helper.from_array(quantize_array(w, scale, zp, types[zp_type]), n.output[0]))
    del g.node[:]
    g.node.extend(keep)
    g.initializer.extend(added)
    used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
    _keep_initializers(g, used)
    return model


def unfold_weight_quantizers(model: Any) -> Any:
    """A copy of `model` in which each DequantizeLinear of an integer initializer reads
    QuantizeLinear(float initializer) instead, the float being (q - zp) * scale in float32 and the
    Q taking the DQ's scale, zero point and axis: the layout TensorRT < 10 parses (float weight ->
    Q -> DQ). QuantizeLinear gives q back exactly, so the DQ outputs are unchanged bit for bit."""
    import onnx
    from onnx import helper, numpy_helper

    model = copy.deepcopy(model)
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    types = _integer_types()
    nodes, added, done = [], [], {}
    for n in g.node:
        src = inits.get(n.input[0]) if n.op_type == "DequantizeLinear" else None
        if src is None or src.data_type not in types or n.input[1] not in inits:
            nodes.append(n)
            continue
        q = numpy_helper.to_array(src)
        scale, zp = _qparams(n, inits, q.ndim)
        key = (src.name, tuple(n.input[1:]), _attr_int(n, "axis", 1))
        if key not in done:
            value = q.astype(np.float32) - (zp.astype(np.float32) if zp is not None else np.float32(0))
            fname, qname = f"{src.name}__float", f"{src.name}__q{len(done)}"
            added.append(numpy_helper.from_array((value * scale.astype(np.float32)).astype(np.float32), fname))
            attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute if a.name == "axis"}
            nodes.append(helper.make_node("QuantizeLinear", [fname, *n.input[1:]], [qname],
                                          name=f"{src.name}_QuantizeLinear", **attrs))
            done[key] = qname
        n.input[0] = done[key]
        nodes.append(n)
    del g.node[:]
    g.node.extend(nodes)
    g.initializer.extend(added)
    _keep_initializers(g, {i for n in g.node for i in n.input} | {o.name for o in g.output})
    return model
