"""fp16 ONNX graphs for TensorRT, whose precision lives in the graph when the network is strongly
typed: the fp16 engine on TensorRT 11 (no FP16 builder flag) and, on every strongly typed build,
the int8 engine's layers outside Q/DQ pairs, which would otherwise run in fp32.

The converter is driven by the ONNX operator schemas (onnx.defs) of the graph's opset: every
float tensor becomes float16 except where a schema allows float but not float16 (Resize
`scales`, QuantizeLinear's `y_scale` before opset 19, ...): constants feeding only such inputs
stay float32 and a Cast is placed in front of such an input otherwise. Inputs and outputs stay
float32 with a Cast at each end. docs/targets.md (TensorRT, "fp16 graphs") has the rules.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Callable, Dict, FrozenSet, List, Optional, Tuple, Union

import numpy as np

from ...errors import ConfigError

FP16_MAX = 65504.0
QDQ_OPSET = 19  # QuantizeLinear / DequantizeLinear take and give float16 from opset 19
_FLOAT_DTYPE_OPS = ("RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "EyeLike")
_FLOAT, _HALF = 1, 10  # onnx.TensorProto.FLOAT, FLOAT16


def _fp16_array(arr: np.ndarray) -> Tuple[np.ndarray, int]:
    """float32 -> float16 clipped to +-65504 (a plain astype would turn large weights into inf)."""
    a = np.asarray(arr, np.float32)
    over = int(np.count_nonzero(np.abs(a) > FP16_MAX))
    return np.clip(a, -FP16_MAX, FP16_MAX).astype(np.float16), over


def _allowed_floats(schema: Any, index: int) -> FrozenSet[int]:
    """Which of float32 / float16 input `index` of an operator schema accepts."""
    formal = schema.inputs[min(index, len(schema.inputs) - 1)]  # a variadic last input repeats
    constraints = {c.type_param_str: set(c.allowed_type_strs) for c in schema.type_constraints}
    allowed = constraints.get(formal.type_str, {formal.type_str})
    return frozenset(t for s, t in (("tensor(float)", _FLOAT), ("tensor(float16)", _HALF)) if s in allowed)


def float32_only_inputs(opset: int) -> Dict[str, List[str]]:
    """{operator: [input names]} of the default-domain operators at `opset` whose input may be
    float32 but not float16, read from onnx.defs (what the converter keeps in float32)."""
    from onnx import defs

    found: Dict[str, List[str]] = {}
    for name in sorted({s.name for s in defs.get_all_schemas() if s.domain in ("", "ai.onnx")}):
        try:
            schema = defs.get_schema(name, opset, "")
        except Exception:  # the operator is newer than `opset`
            continue
        names = [f.name for i, f in enumerate(schema.inputs) if _allowed_floats(schema, i) == {_FLOAT}]
        if names:
            found[name] = names
    return found


def _opset(model: Any) -> int:
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def _refuse_subgraphs(graph: Any, src: str) -> None:
    import onnx

    with_subgraphs = sorted({n.op_type for n in graph.node for a in n.attribute
                             if a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)})
    if with_subgraphs:
        raise ConfigError(f"{src} has control-flow subgraphs ({', '.join(with_subgraphs)}) that the built-in fp16 "
                          "converter does not rewrite; install NVIDIA ModelOpt (`pip install nvidia-modelopt[onnx]`) "
                          "for fp16 on TensorRT 11, or build this graph with --precision fp32")


class _Retyper:
    """Rewrites one graph (in place) so its float tensors are float16 wherever the schemas allow."""

    def __init__(self, model: Any, source: str):
        from onnx import defs

        self.graph, self.opset, self.source = model.graph, _opset(model), source
        self.schemas: Dict[str, Any] = {}
        for n in self.graph.node:
            if n.op_type not in self.schemas:
                try:
                    self.schemas[n.op_type] = defs.get_schema(n.op_type, self.opset, n.domain)
                except Exception:  # a custom domain, or an op this onnx does not know
                    raise ConfigError(f"{source}: the fp16 converter has no ONNX schema for {n.domain or 'ai.onnx'}::"
                                      f"{n.op_type}; install NVIDIA ModelOpt (`pip install nvidia-modelopt[onnx]`) "
                                      "or build this graph with --precision fp32") from None
        self.consumers: Dict[str, List[Tuple[Any, int]]] = {}
        for n in self.graph.node:
            for i, name in enumerate(n.input):
                self.consumers.setdefault(name, []).append((n, i))
        self.float32_only_names = float32_only_inputs(self.opset)
        self.types: Dict[str, int] = {}
        self.nodes: List[Any] = []  # the rewritten node list, Casts included
        self.casts: Dict[Tuple[str, int], str] = {}
        self.clipped = 0

    def float32_only(self, node: Any, index: int) -> bool:
        """Input `index` of `node` may be float32 but not float16 (its schema says so)."""
        formals = self.schemas[node.op_type].inputs
        return formals[min(index, len(formals) - 1)].name in self.float32_only_names.get(node.op_type, ())

    def keeps_float32(self, tensor: str) -> bool:
        """Every reader of `tensor` accepts float32 only (and something reads it)."""
        readers = self.consumers.get(tensor, [])
        return bool(readers) and all(self.float32_only(n, i) for n, i in readers)

    def convert_initializers(self) -> None:
        from onnx import numpy_helper

        for k, t in enumerate(list(self.graph.initializer)):
            if t.data_type == _FLOAT and not self.keeps_float32(t.name):
                arr, over = _fp16_array(numpy_helper.to_array(t))
                self.clipped += over
                self.graph.initializer[k].CopyFrom(numpy_helper.from_array(arr, t.name))
            self.types[t.name] = self.graph.initializer[k].data_type

    def convert_attributes(self, node: Any) -> None:
        """Attributes that fix a float output type (a Constant's value, Cast's `to`, a dtype)."""
        if any(self.keeps_float32(o) for o in node.output):
            return
        for k in range(len(node.attribute)):
            self.clipped += _attribute_to_fp16(node, k)

    def cast(self, tensor: str, to: int) -> str:
        """A name holding `tensor` as type `to`: itself, or the output of one Cast placed for it."""
        if self.types.get(tensor) == to:
            return tensor
        key = (tensor, to)
        if key not in self.casts:
            from onnx import helper

            out = f"{tensor}__{'fp16' if to == _HALF else 'fp32'}"
            self.nodes.append(helper.make_node("Cast", [tensor], [out], to=to, name=f"cast_{out}"))
            self.casts[key] = out
            self.types[out] = to
        return self.casts[key]

    def retype(self, node: Any) -> None:
        """Cast the node's float inputs to what its schema takes (float16 where allowed, else
        float32), then record its output types as ONNX type inference gives them."""
        from onnx import helper, shape_inference

        self.convert_attributes(node)
        schema = self.schemas[node.op_type]
        for i, name in enumerate(node.input):
            if node.op_type == "Cast" or self.types.get(name) not in (_FLOAT, _HALF):
                continue  # a Cast reads any type; non-float inputs are left alone
            node.input[i] = self.cast(name, _FLOAT if self.float32_only(node, i) else _HALF)
        known = {n: helper.make_tensor_type_proto(self.types[n], None) for n in node.input if n in self.types}
        try:
            outputs = shape_inference.infer_node_outputs(schema, node, known)
        except Exception as exc:  # onnx raises its own InferenceError / ValidationError types
            raise ConfigError(f"{self.source}: node {node.name or node.op_type} ({node.op_type}) has no valid types "
                              f"after the fp16 conversion ({exc}); install NVIDIA ModelOpt or build with --precision "
                              "fp32") from exc
        self.types.update({n: t.tensor_type.elem_type for n, t in outputs.items()})
        self.nodes.append(node)

    def float32_outputs(self) -> None:
        """Graph outputs declared float32 and made float16 by the body get a Cast back at the end."""
        from onnx import helper

        for out in self.graph.output:
            if out.type.tensor_type.elem_type == _FLOAT and self.types.get(out.name) == _HALF:
                body = f"{out.name}__fp16"
                for n in self.nodes:
                    n.output[:] = [body if o == out.name else o for o in n.output]
                    n.input[:] = [body if i == out.name else i for i in n.input]
                self.nodes.append(helper.make_node("Cast", [body], [out.name], to=_FLOAT, name=f"cast_{out.name}"))

    def run(self) -> int:
        """Rewrite the graph; returns how many constant values were clipped to the fp16 range."""
        for inp in self.graph.input:
            self.types[inp.name] = inp.type.tensor_type.elem_type
        self.convert_initializers()
        for node in list(self.graph.node):
            self.retype(node)
        self.float32_outputs()
        del self.graph.node[:]
        self.graph.node.extend(self.nodes)
        del self.graph.value_info[:]  # the old types are stale; consumers re-infer
        return self.clipped


def _attribute_to_fp16(node: Any, k: int) -> int:
    """One attribute of one node to fp16 (a tensor value, a Constant's floats, a float dtype);
    returns how many values were clipped."""
    import onnx
    from onnx import helper, numpy_helper

    a = node.attribute[k]
    if a.name == "value" and a.type == onnx.AttributeProto.TENSOR and a.t.data_type == _FLOAT:
        arr, over = _fp16_array(numpy_helper.to_array(a.t))
        a.t.CopyFrom(numpy_helper.from_array(arr, a.t.name))
        return over
    if node.op_type == "Constant" and a.name in ("value_float", "value_floats"):
        arr, over = _fp16_array(np.array(a.f if a.name == "value_float" else list(a.floats), np.float32))
        node.attribute[k].CopyFrom(helper.make_attribute("value", numpy_helper.from_array(arr)))
        return over
    if a.type == onnx.AttributeProto.INT and a.i == _FLOAT and (
            (node.op_type == "Cast" and a.name == "to") or (node.op_type in _FLOAT_DTYPE_OPS and a.name == "dtype")):
        a.i = _HALF
    return 0


def fp16_model(model: Any, source: str = "the graph") -> Any:
    """Rewrite a loaded ONNX model to float16 with float32 inputs and outputs (in place; returned)."""
    _refuse_subgraphs(model.graph, source)
    clipped = _Retyper(model, source).run()
    if clipped:
        warnings.warn(f"fp16 conversion of {source}: {clipped} constant value(s) beyond +-65504 were clipped to the "
                      "fp16 range; check accuracy (or use NVIDIA ModelOpt AutoCast, which keeps such layers fp32)",
                      RuntimeWarning, stacklevel=3)
    return model


def _modelopt_autocast() -> Optional[Callable[..., Any]]:
    try:
        from modelopt.onnx.autocast import convert_to_mixed_precision  # type: ignore
    except ImportError:
        return None
    return convert_to_mixed_precision


def convert_fp16(src: Union[str, Path], dst: Union[str, Path]) -> str:
    """An fp32 graph -> fp16 with fp32 inputs/outputs; returns which converter ran (NVIDIA
    ModelOpt AutoCast when installed: it keeps accuracy-sensitive layers fp32)."""
    import onnx

    src = Path(src)
    autocast = _modelopt_autocast()
    if autocast is not None:
        onnx.save(autocast(onnx_path=str(src), low_precision_type="fp16", keep_io_types=True), str(dst))
        return "modelopt-autocast"
    onnx.save(fp16_model(onnx.load(str(src)), src.name), str(dst))
    return "glonet-edge"


def convert_qdq_fp16(src: Union[str, Path], dst: Union[str, Path]) -> str:
    """A QDQ int8 graph -> the same with everything outside the quantized integer math in fp16,
    as NVIDIA ModelOpt emits with high_precision_dtype="fp16": the opset is raised to 19 so
    QuantizeLinear / DequantizeLinear read and write float16 (fp16 scales), inputs and outputs
    stay float32. Returns which converter ran."""
    import onnx
    from onnx import version_converter

    src = Path(src)
    model = onnx.load(str(src))
    if _opset(model) < QDQ_OPSET:
        model = version_converter.convert_version(model, QDQ_OPSET)
    onnx.save(fp16_model(model, src.name), str(dst))
    return "glonet-edge"
