"""An fp16 ONNX graph for TensorRT 11, which has no FP16 builder flag (precision lives in the graph).

NVIDIA ModelOpt's AutoCast is used when installed; otherwise the small converter here rewrites
every float constant and float-typed attribute to fp16 and keeps the graph's inputs and outputs
float32 with a Cast at each end. docs/targets.md (TensorRT, "fp16 on TensorRT 11") has the rules.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Callable, Optional, Tuple, Union

import numpy as np

from ...errors import ConfigError

FP16_MAX = 65504.0
_FLOAT_DTYPE_OPS = ("RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "EyeLike")


def _fp16_array(arr: np.ndarray) -> Tuple[np.ndarray, int]:
    """float32 -> float16 clipped to +-65504 (a plain astype would turn large weights into inf)."""
    a = np.asarray(arr, np.float32)
    over = int(np.count_nonzero(np.abs(a) > FP16_MAX))
    return np.clip(a, -FP16_MAX, FP16_MAX).astype(np.float16), over


def _modelopt_autocast() -> Optional[Callable[..., Any]]:
    try:
        from modelopt.onnx.autocast import convert_to_mixed_precision  # type: ignore
    except ImportError:
        return None
    return convert_to_mixed_precision


def _refuse_subgraphs(graph: Any, src: Path) -> None:
    import onnx

    with_subgraphs = sorted({n.op_type for n in graph.node for a in n.attribute
                             if a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)})
    if with_subgraphs:
        raise ConfigError(f"{src.name} has control-flow subgraphs ({', '.join(with_subgraphs)}) that the built-in "
                          "fp16 converter does not rewrite; TensorRT 11 needs an fp16 graph for --precision fp16: "
                          "install NVIDIA ModelOpt (`pip install nvidia-modelopt[onnx]`, AutoCast) and compile again")


def _convert_initializers(graph: Any) -> int:
    from onnx import TensorProto, numpy_helper

    clipped = 0
    for i, t in enumerate(list(graph.initializer)):
        if t.data_type == TensorProto.FLOAT:
            arr, over = _fp16_array(numpy_helper.to_array(t))
            clipped += over
            graph.initializer[i].CopyFrom(numpy_helper.from_array(arr, t.name))
    return clipped


def _convert_attribute(node: Any, k: int) -> int:
    """One attribute of one node to fp16 (a tensor value, a Constant's floats, a float dtype)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    a = node.attribute[k]
    if a.name == "value" and a.type == onnx.AttributeProto.TENSOR and a.t.data_type == TensorProto.FLOAT:
        arr, over = _fp16_array(numpy_helper.to_array(a.t))
        a.t.CopyFrom(numpy_helper.from_array(arr, a.t.name))
        return over
    if node.op_type == "Constant" and a.name in ("value_float", "value_floats"):
        arr, over = _fp16_array(np.array(a.f if a.name == "value_float" else list(a.floats), np.float32))
        node.attribute[k].CopyFrom(helper.make_attribute("value", numpy_helper.from_array(arr)))
        return over
    if a.i == TensorProto.FLOAT and a.type == onnx.AttributeProto.INT and (
            (node.op_type == "Cast" and a.name == "to") or (node.op_type in _FLOAT_DTYPE_OPS and a.name == "dtype")):
        a.i = TensorProto.FLOAT16
    return 0


def _rename_tensor(graph: Any, old: str, new: str, producers: bool) -> None:
    """Point every node that reads `old` (and, with producers, the node that writes it) at `new`."""
    for n in graph.node:
        fields = (n.input, n.output) if producers else (n.input,)
        for names in fields:
            for k, name in enumerate(names):
                if name == old:
                    names[k] = new


def _keep_float32_io(graph: Any) -> None:
    """A Cast at each float32 input and output, the fp16 body renamed between them."""
    from onnx import TensorProto, helper

    casts_in, casts_out = [], []
    for inp in graph.input:
        if inp.type.tensor_type.elem_type == TensorProto.FLOAT:
            _rename_tensor(graph, inp.name, f"{inp.name}__fp16", producers=False)
            casts_in.append(helper.make_node("Cast", [inp.name], [f"{inp.name}__fp16"], to=TensorProto.FLOAT16,
                                             name=f"cast_in_{inp.name}"))
    for out in graph.output:
        if out.type.tensor_type.elem_type == TensorProto.FLOAT:
            _rename_tensor(graph, out.name, f"{out.name}__fp16", producers=True)
            casts_out.append(helper.make_node("Cast", [f"{out.name}__fp16"], [out.name], to=TensorProto.FLOAT,
                                              name=f"cast_out_{out.name}"))
    nodes = casts_in + list(graph.node) + casts_out
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.value_info[:]


def convert_fp16(src: Union[str, Path], dst: Union[str, Path]) -> str:
    """fp32 ONNX -> fp16 ONNX with fp32 inputs/outputs; returns which converter ran.

    The built-in converter clips constants to +-65504 (with a warning) and refuses graphs with
    If / Loop / Scan subgraphs: install NVIDIA ModelOpt for those."""
    import onnx

    src = Path(src)
    autocast = _modelopt_autocast()
    if autocast is not None:
        onnx.save(autocast(onnx_path=str(src), low_precision_type="fp16", keep_io_types=True), str(dst))
        return "modelopt-autocast"
    model = onnx.load(str(src))
    _refuse_subgraphs(model.graph, src)
    clipped = _convert_initializers(model.graph)
    clipped += sum(_convert_attribute(n, k) for n in model.graph.node for k in range(len(n.attribute)))
    if clipped:
        warnings.warn(f"fp16 conversion of {src.name}: {clipped} constant value(s) beyond +-65504 were clipped "
                      "to the fp16 range; check accuracy (or use NVIDIA ModelOpt AutoCast, which keeps such "
                      "layers fp32)", RuntimeWarning, stacklevel=2)
    _keep_float32_io(model.graph)
    onnx.save(model, str(dst))
    return "glonet-edge"
