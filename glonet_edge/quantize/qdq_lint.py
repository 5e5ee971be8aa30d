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


def lint(model: Any, trt_version: str = "8.5", supported_ops: frozenset[str] = TRT_SUPPORTED_OPS,
         max_opset: int | None = None) -> list[LintIssue]:
    """Check a QDQ ONNX graph (path or ModelProto) against TensorRT's parser rules for `trt_version`."""
    import onnx
    from onnx import numpy_helper

    if isinstance(model, (str, Path)):
        model = onnx.load(str(model))
    graph = model.graph
    issues: list[LintIssue] = []

    def add(rule: str, node: str, msg: str, severity: str = "error") -> None:
        issues.append(LintIssue(rule, severity, node, msg))

    # ---- opset / domains --------------------------------------------------------------------
    limit = max_opset if max_opset is not None else max_opset_for(trt_version)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None:
        add("opset", "<model>", "no default-domain opset_import")
    elif opset > limit:
        add("opset", "<model>", f"opset {opset} > {limit}, the highest TensorRT {trt_version} parses; "
                                f"export with opset_version={limit}")

    inits = {t.name: t for t in graph.initializer}
    consts = {}
    for n in graph.node:  # Constant nodes count as initializers
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            consts[n.output[0]] = n.attribute[0].t
    tensors = {**consts, **inits}
    producers = {o: n for n in graph.node for o in n.output}
    consumers: dict[str, list[Any]] = {}
    for n in graph.node:
        for i, name in enumerate(n.input):
            consumers.setdefault(name, []).append((n, i))
    graph_outputs = {o.name for o in graph.output}

    def array(name: str) -> np.ndarray | None:
        t = tensors.get(name)
        return None if t is None else numpy_helper.to_array(t)

    def attr(node, name: str, default: Any) -> Any:
        for a in node.attribute:
            if a.name == name:
                return onnx.helper.get_attribute_value(a)
        return default

    # ---- ops ---------------------------------------------------------------------------------
    for n in graph.node:
        label = n.name or f"{n.op_type}->{n.output[0] if n.output else ''}"
        if n.domain not in ("", "ai.onnx"):
            add("ops", label, f"custom-domain op {n.domain}::{n.op_type} is unknown to TensorRT's ONNX parser")
        elif n.op_type not in supported_ops:
            add("ops", label, f"op {n.op_type} is not in TensorRT's supported operator list")

    # ---- Q / DQ nodes ------------------------------------------------------------------------
    trt_ver = _version_tuple(trt_version)
    for n in graph.node:
        if n.op_type not in QDQ_OPS:
            continue
        label = n.name or f"{n.op_type}({n.input[0]})"
        axis = attr(n, "axis", 1)
        scale = array(n.input[1]) if len(n.input) > 1 else None
        if len(n.input) < 3 or not n.input[2]:
            add("int8", label, "no zero point: ONNX then defaults to UINT8, which TensorRT rejects; add an INT8 zero point of 0")
        else:
            zp_t = tensors.get(n.input[2])
            if zp_t is None:
                add("zero_point", label, f"zero point {n.input[2]} is computed at run time; TensorRT needs a constant 0")
            else:
                dtype = onnx.TensorProto.DataType.Name(zp_t.data_type)
                if dtype != "INT8":
                    # DQ of an INT32 bias is reported by the bias rule
                    if not (n.op_type == "DequantizeLinear" and dtype == "INT32"):
                        add("int8", label, f"zero point dtype {dtype}: TensorRT accepts signed INT8 Q/DQ only "
                                           "(quantize with activation_type=QInt8, symmetric)")
                zp = numpy_helper.to_array(zp_t)
                if np.any(zp != 0):
                    add("zero_point", label, f"non-zero zero point (e.g. {zp.reshape(-1)[np.nonzero(zp.reshape(-1))[0][0]]}): "
                                             "TensorRT only supports symmetric quantization")
        if scale is None:
            add("scale", label, f"scale {n.input[1] if len(n.input) > 1 else '?'} is not a constant")
        else:
            if not np.all(np.isfinite(scale)) or np.any(scale <= 0):
                add("scale", label, "scales must be finite and > 0")
            if scale.ndim > 1:
                add("scale", label, f"scale has rank {scale.ndim}; TensorRT takes a scalar or a 1-D per-channel scale")
        # the quantized tensor's shape when known (weights)
        src = array(n.input[0])
        if scale is not None and scale.ndim == 1 and scale.size > 1 and src is not None:
            ax = axis if axis >= 0 else axis + src.ndim
            if not 0 <= ax < src.ndim or src.shape[ax] != scale.size:
                add("scale", label, f"per-channel scale of length {scale.size} does not match axis {axis} of {src.shape} "
                                    "(TensorRT: 'K == scale.count()')")
        if n.op_type == "QuantizeLinear":
            outs = consumers.get(n.output[0], [])
            bad = [c.op_type for c, _ in outs if c.op_type != "DequantizeLinear"]
            if bad or n.output[0] in graph_outputs:
                add("q_then_dq", label, f"QuantizeLinear output feeds {bad or ['a graph output']}; TensorRT needs Q -> DQ")
        if n.op_type == "DequantizeLinear":
            if n.input[0] in tensors and tensors[n.input[0]].data_type == onnx.TensorProto.INT8 and trt_ver[0] < 10:
                add("weights", label, f"pre-quantized INT8 initializer + DQ needs TensorRT >= 10; for TensorRT {trt_version} "
                                      "keep float weights with a Q -> DQ pair (AddQDQPairToWeight / COMPRESS_WEIGHTS=False)")
            heavy = [c for c, _ in consumers.get(n.output[0], []) if c.op_type in ("Conv", "ConvTranspose", "Gemm", "MatMul")]
            if len(heavy) > 1:
                add("dedicated", label, f"DQ output feeds {len(heavy)} quantized ops; TensorRT prefers "
                                        "dedicated Q/DQ pairs (DedicatedQDQPair=True)", "warning")

    # ---- weight axes and biases of Conv / Gemm / MatMul ----------------------------------------
    def weight_dq(name: str):
        """The DQ producing a weight input, if the weight is quantized (DQ <- Q <- const, or DQ <- const)."""
        dq = producers.get(name)
        if dq is None or dq.op_type != "DequantizeLinear":
            return None, None
        src = dq.input[0]
        q = producers.get(src)
        if q is not None and q.op_type == "QuantizeLinear":
            src = q.input[0]
        w = array(src)
        return dq, w

    for n in graph.node:
        label = n.name or f"{n.op_type}->{n.output[0]}"
        if n.op_type in ("Conv", "ConvTranspose", "Gemm", "MatMul") and len(n.input) > 1:
            dq, w = weight_dq(n.input[1])
            if dq is not None and w is not None:
                scale = array(dq.input[1])
                if n.op_type == "Conv":
                    want = 0
                elif n.op_type == "ConvTranspose":
                    want = 1
                elif n.op_type == "Gemm":
                    want = 0 if attr(n, "transB", 0) else 1
                else:
                    want = w.ndim - 1
                if scale is not None and scale.size > 1:
                    ax = attr(dq, "axis", 1)
                    ax = ax if ax >= 0 else ax + w.ndim
                    if ax != want:
                        add("weight_axis", label, f"weight quantized per-channel along axis {ax}, {n.op_type} needs axis {want} "
                                                  "(output channels)")
                elif scale is not None and w.ndim > 1:
                    add("per_channel", label, "weights quantized per-tensor; per-channel is more accurate", "warning")
        if n.op_type in ("Conv", "ConvTranspose", "Gemm") and len(n.input) > 2 and n.input[2]:
            prod = producers.get(n.input[2])
            if prod is not None and prod.op_type == "DequantizeLinear":
                add("bias", label, "bias is quantized (DequantizeLinear on the bias); TensorRT needs a float bias "
                                   "(QuantizeBias=False)")
    return issues


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
