"""ONNX-level checks that a QDQ graph is one TensorRT's ONNX parser accepts (docs/quantize.md).

TensorRT is not installable everywhere (not here), so what its parser would refuse is checked
on the ONNX graph instead:

  opset          default-domain opset <= 17 for TensorRT 8.5/8.6 (JetPack 5 / 6.0), <= 20 for 10.0
  zero_point     every Q/DQ has an explicit zero point, all zeros (symmetric only)
  int8           zero point dtype INT8: UINT8 Q/DQ are rejected (and a missing zero point means UINT8)
  scale          positive, finite; scalar (per-tensor) or 1-D of the axis' length (per-channel)
  weight_axis    per-channel weight axis: Conv W axis 0, ConvTranspose axis 1, Gemm B axis 0 if
                 transB else 1, MatMul B axis = last
  weights        float weight -> Q -> DQ; a pre-quantized INT8 initializer + DQ needs TensorRT >= 10
  bias           Conv/Gemm bias stays float (an INT32 DQ on bias is rejected)
  q_then_dq      a QuantizeLinear output feeds DequantizeLinear nodes only
  ops            every op is in TensorRT's supported list (onnx-tensorrt docs/operators.md); no custom
                 domains (com.microsoft, ...)
  dedicated      (warning) a DQ output shared by several consumers: TensorRT prefers dedicated pairs
  per_channel    (warning) weights quantized per-tensor: allowed, but less accurate

Only onnx and numpy are needed. `lint(path_or_model, trt_version="8.5")` returns the issues;
`lint_as_parsed` lints what the TensorRT target parses (integer weights unfolded for < 10);
`check(...)` raises ConfigError listing the errors.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError

# onnx-tensorrt docs/operators.md (release/8.5 .. 10.x), the ops a GloNet family and common CNN/ViT
# graphs use, plus the rest of the supported list. Not exhaustive of version differences.
TRT_SUPPORTED_OPS = frozenset("""
Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization Cast Ceil Celu Clip
Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum DepthToSpace DequantizeLinear Div Dropout
Einsum Elu Equal Erf Exp Expand EyeLike Flatten Floor Gather GatherElements GatherND Gemm GlobalAveragePool
GlobalLpPool GlobalMaxPool Greater GreaterOrEqual GridSample GroupNormalization HardSigmoid HardSwish Identity
If InstanceNormalization IsInf IsNaN LayerNormalization LeakyRelu Less LessOrEqual Log LogSoftmax Loop LRN LSTM
LpNormalization LpPool MatMul Max MaxPool Mean Min Mod Mul Neg NonMaxSuppression NonZero Not OneHot Or Pad Pow
PRelu QuantizeLinear RandomNormal RandomNormalLike RandomUniform RandomUniformLike Range Reciprocal ReduceL1
ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu
Reshape Resize ReverseSequence RNN RoiAlign Round ScatterElements ScatterND Selu Shape Shrink Sigmoid Sign Sin
Sinh Size Slice Softmax Softplus Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh ThresholdedRelu Tile
TopK Transpose Trilu Unsqueeze Upsample Where Xor GRU Gelu
""".split())

QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


@dataclass
class LintIssue:
    rule: str
    severity: str  # "error": TensorRT will refuse the graph; "warning": accepted but not ideal
    node: str
    message: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        return f"[{self.severity}] {self.rule} at {self.node}: {self.message}"


def max_opset_for(trt_version: str) -> int:
    major, minor = (int(p) for p in (trt_version.split(".") + ["0"])[:2])
    if major < 10:
        return 17  # TRT 8.5 / 8.6 parse up to opset 17 (JetPack 5, 6.0)
    if major == 10 and minor < 3:
        return 20
    return 22


def _version_tuple(v: str) -> tuple[int, int]:
    parts = (v.split(".") + ["0"])[:2]
    return int(parts[0]), int(parts[1])


class _Graph:
    """What the rules look up in one graph: constants (initializers and Constant nodes),
    producers and consumers of every tensor, and where issues go."""

    def __init__(self, model: Any):
        graph = model.graph
        consts = {n.output[0]: n.attribute[0].t for n in graph.node  # Constant nodes count as initializers
                  if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value"}
        self.model = model
        self.tensors = {**consts, **{t.name: t for t in graph.initializer}}
        self.producers = {o: n for n in graph.node for o in n.output}
        self.consumers: dict[str, list[Any]] = {}
        for n in graph.node:
            for name in n.input:
                self.consumers.setdefault(name, []).append(n)
        self.outputs = {o.name for o in graph.output}
        self.issues: list[LintIssue] = []

    def add(self, rule: str, node: str, msg: str, severity: str = "error") -> None:
        self.issues.append(LintIssue(rule, severity, node, msg))

    def array(self, name: str) -> np.ndarray | None:
        from onnx import numpy_helper

        t = self.tensors.get(name)
        return None if t is None else numpy_helper.to_array(t)

    @staticmethod
    def attr(node: Any, name: str, default: Any) -> Any:
        import onnx

        for a in node.attribute:
            if a.name == name:
                return onnx.helper.get_attribute_value(a)
        return default

    def weight_dq(self, name: str) -> tuple[Any, np.ndarray | None]:
        """The DQ producing a weight input, if the weight is quantized (DQ <- Q <- const, or
        DQ <- const), and the constant; (None, None) otherwise."""
        dq = self.producers.get(name)
        if dq is None or dq.op_type != "DequantizeLinear":
            return None, None
        src = dq.input[0]
        q = self.producers.get(src)
        if q is not None and q.op_type == "QuantizeLinear":
            src = q.input[0]
        return dq, self.array(src)


def _label(n: Any) -> str:
    return n.name or f"{n.op_type}->{n.output[0] if n.output else ''}"


def _check_opset(g: _Graph, trt_version: str, limit: int) -> None:
    opset = next((o.version for o in g.model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None:
        g.add("opset", "<model>", "no default-domain opset_import")
    elif opset > limit:
        g.add("opset", "<model>", f"opset {opset} > {limit}, the highest TensorRT {trt_version} parses; "
                                  f"export with opset_version={limit}")


def _check_ops(g: _Graph, supported_ops: frozenset[str]) -> None:
    for n in g.model.graph.node:
        if n.domain not in ("", "ai.onnx"):
            g.add("ops", _label(n), f"custom-domain op {n.domain}::{n.op_type} is unknown to TensorRT's ONNX parser")
        elif n.op_type not in supported_ops:
            g.add("ops", _label(n), f"op {n.op_type} is not in TensorRT's supported operator list")


def _check_zero_point(g: _Graph, n: Any, label: str) -> None:
    import onnx

    if len(n.input) < 3 or not n.input[2]:
        g.add("int8", label, "no zero point: ONNX then defaults to UINT8, which TensorRT rejects; add an INT8 zero "
                             "point of 0")
        return
    zp_t = g.tensors.get(n.input[2])
    if zp_t is None:
        g.add("zero_point", label, f"zero point {n.input[2]} is computed at run time; TensorRT needs a constant 0")
        return
    dtype = onnx.TensorProto.DataType.Name(zp_t.data_type)
    if dtype != "INT8" and not (n.op_type == "DequantizeLinear" and dtype == "INT32"):  # INT32: the bias rule
        g.add("int8", label, f"zero point dtype {dtype}: TensorRT accepts signed INT8 Q/DQ only "
                             "(quantize with activation_type=QInt8, symmetric)")
    zp = g.array(n.input[2]).reshape(-1)
    if np.any(zp != 0):
        g.add("zero_point", label, f"non-zero zero point (e.g. {zp[np.nonzero(zp)[0][0]]}): "
                                   "TensorRT only supports symmetric quantization")


def _check_scale(g: _Graph, n: Any, label: str) -> None:
    scale = g.array(n.input[1]) if len(n.input) > 1 else None
    if scale is None:
        g.add("scale", label, f"scale {n.input[1] if len(n.input) > 1 else '?'} is not a constant")
        return
    if not np.all(np.isfinite(scale)) or np.any(scale <= 0):
        g.add("scale", label, "scales must be finite and > 0")
    if scale.ndim > 1:
        g.add("scale", label, f"scale has rank {scale.ndim}; TensorRT takes a scalar or a 1-D per-channel scale")
    src = g.array(n.input[0])  # the quantized tensor's shape when known (weights)
    if scale.ndim == 1 and scale.size > 1 and src is not None:
        axis = g.attr(n, "axis", 1)
        ax = axis if axis >= 0 else axis + src.ndim
        if not 0 <= ax < src.ndim or src.shape[ax] != scale.size:
            g.add("scale", label, f"per-channel scale of length {scale.size} does not match axis {axis} of "
                                  f"{src.shape} (TensorRT: 'K == scale.count()')")


def _check_links(g: _Graph, n: Any, label: str, trt_version: str) -> None:
    """Q feeds DQ only; DQ of a pre-quantized INT8 constant needs TensorRT 10; dedicated pairs."""
    import onnx

    if n.op_type == "QuantizeLinear":
        bad = [c.op_type for c in g.consumers.get(n.output[0], []) if c.op_type != "DequantizeLinear"]
        if bad or n.output[0] in g.outputs:
            g.add("q_then_dq", label, f"QuantizeLinear output feeds {bad or ['a graph output']}; TensorRT needs Q -> DQ")
        return
    src = g.tensors.get(n.input[0])
    if src is not None and src.data_type == onnx.TensorProto.INT8 and _version_tuple(trt_version)[0] < 10:
        g.add("weights", label, f"pre-quantized INT8 initializer + DQ needs TensorRT >= 10; for TensorRT {trt_version} "
                                "keep float weights with a Q -> DQ pair (AddQDQPairToWeight / COMPRESS_WEIGHTS=False)")
    heavy = [c for c in g.consumers.get(n.output[0], []) if c.op_type in WEIGHTED_OPS]
    if len(heavy) > 1:
        g.add("dedicated", label, f"DQ output feeds {len(heavy)} quantized ops; TensorRT prefers "
                                  "dedicated Q/DQ pairs (DedicatedQDQPair=True)", "warning")


def _weight_axis(g: _Graph, n: Any, w: np.ndarray) -> int:
    """The output-channel axis TensorRT wants a per-channel weight scale on."""
    if n.op_type == "Conv":
        return 0
    if n.op_type == "ConvTranspose":
        return 1
    if n.op_type == "Gemm":
        return 0 if g.attr(n, "transB", 0) else 1
    return w.ndim - 1  # MatMul B


def _check_weights_and_bias(g: _Graph, n: Any) -> None:
    label = _label(n)
    dq, w = g.weight_dq(n.input[1]) if len(n.input) > 1 else (None, None)
    scale = g.array(dq.input[1]) if dq is not None and w is not None else None
    if scale is not None and scale.size > 1:
        ax = g.attr(dq, "axis", 1)
        ax = ax if ax >= 0 else ax + w.ndim
        want = _weight_axis(g, n, w)
        if ax != want:
            g.add("weight_axis", label, f"weight quantized per-channel along axis {ax}, {n.op_type} needs axis "
                                        f"{want} (output channels)")
    elif scale is not None and w.ndim > 1:
        g.add("per_channel", label, "weights quantized per-tensor; per-channel is more accurate", "warning")
    bias = g.producers.get(n.input[2]) if n.op_type != "MatMul" and len(n.input) > 2 and n.input[2] else None
    if bias is not None and bias.op_type == "DequantizeLinear":
        g.add("bias", label, "bias is quantized (DequantizeLinear on the bias); TensorRT needs a float bias "
                             "(QuantizeBias=False)")


def lint(model: Any, trt_version: str = "8.5", supported_ops: frozenset[str] = TRT_SUPPORTED_OPS,
         max_opset: int | None = None) -> list[LintIssue]:
    """Check a QDQ ONNX graph (path or ModelProto) against TensorRT's parser rules for `trt_version`."""
    import onnx

    if isinstance(model, (str, Path)):
        model = onnx.load(str(model))
    g = _Graph(model)
    _check_opset(g, trt_version, max_opset if max_opset is not None else max_opset_for(trt_version))
    _check_ops(g, supported_ops)
    for n in model.graph.node:
        if n.op_type in QDQ_OPS:
            label = n.name or f"{n.op_type}({n.input[0]})"
            _check_zero_point(g, n, label)
            _check_scale(g, n, label)
            _check_links(g, n, label, trt_version)
    for n in model.graph.node:
        if n.op_type in WEIGHTED_OPS:
            _check_weights_and_bias(g, n)
    return g.issues


def lint_as_parsed(model: Any, trt_version: str = "8.5", **kw: Any) -> list[LintIssue]:
    """lint() of the graph the TensorRT target gives TensorRT `trt_version`: a shipped int8 graph
    stores INT8 weight initializers -> DQ (qdq_rewrite.fold_weight_quantizers), which TensorRT < 10
    cannot parse, so the target unfolds them to float weight -> Q -> DQ first
    (unfold_weight_quantizers); that unfolded graph is what is linted for < 10."""
    import onnx

    from .qdq_rewrite import unfold_weight_quantizers

    if _version_tuple(trt_version)[0] < 10:
        model = unfold_weight_quantizers(model if isinstance(model, onnx.ModelProto) else onnx.load(str(model)))
    return lint(model, trt_version, **kw)


def errors(issues: list[LintIssue]) -> list[LintIssue]:
    return [i for i in issues if i.severity == "error"]


def check(model: Any, trt_version: str = "8.5", **kw: Any) -> list[LintIssue]:
    """lint() and raise ConfigError listing the errors; returns the warnings."""
    issues = lint(model, trt_version, **kw)
    errs = errors(issues)
    if errs:
        shown = "\n  ".join(str(i) for i in errs[:12])
        more = f"\n  ... and {len(errs) - 12} more" if len(errs) > 12 else ""
        raise ConfigError(f"QDQ graph is not TensorRT {trt_version}-compatible ({len(errs)} errors):\n  {shown}{more}")
    return issues
