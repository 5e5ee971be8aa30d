"""`glonet quantize`: post-training INT8 of every depth's fp32 ONNX graph into a QDQ graph
TensorRT accepts (signed symmetric INT8, zero points 0, per-channel weights, float bias).

Two methods:

* ``ort`` (default): onnxruntime ``quantize_static`` with the TensorRT recipe (targets.md §4):
  QDQ format, per_channel, QInt8 activations and weights, ActivationSymmetric, WeightSymmetric,
  AddQDQPairToWeight (float weights + Q->DQ: TensorRT 8.5 rejects int8 initializers),
  DedicatedQDQPair, QuantizeBias=False; activation ranges from the 0.01-99.99th percentiles
  (default; ``minmax`` on request), which beat plain min/max by 0.5-5 points of int8/fp32
  top-1 agreement on the CNN family. Only the inputs of Conv / Gemm /
  MatMul are quantized (TensorRT's explicit-quantization placement); no Add output is
  quantized, so the running sum is accumulated in float.
* ``nncf``: ``nncf.quantize_with_accuracy_control`` (ONNX backend, PERFORMANCE preset,
  COMPRESS_WEIGHTS=False, the same Conv / Gemm / MatMul placement through NNCF's ignored scope),
  whose metric is the held-out score minus a penalty for top-1 agreement below
  ``min_agreement``, so NNCF's restorer reverts quantizers for both criteria. NNCF emits UINT8
  Q/DQ after ReLU, which TensorRT rejects, so the result is made TensorRT-safe
  (``make_trt_safe``: UINT8 zp 0 range [0, 255 s] -> INT8 zp 0 with scale 255 s / 127) and
  re-validated. Further candidates: plain ``nncf.quantize`` with NNCF's HISTOGRAM and MINMAX
  activation range estimators (made TensorRT-safe); last, the unconverted NNCF graph, shipped
  with ``extra.tensorrt_compatible = False`` (OpenVINO / ORT only; `compile --target tensorrt`
  refuses it).

Accuracy control (both methods; ``control_accuracy``). A depth's int8 graph is accepted only if,
on held-out data and on EVERY checked engine (onnxruntime, plus OpenVINO where installed: the
engines `glonet compile` builds for; ``engines``), its score is at most ``max_drop`` below fp32
AND its top-1 prediction equals fp32's on at least ``min_agreement`` of the samples
(classification; default 0.99). Otherwise, in order:
  1. the other recipes as made (ort: activation ranges from the 99.9 / 99.95 / 99.999th
     percentiles and min/max, all read off the same calibration histogram, so no extra pass;
     nncf: the candidates above) -- the best range differs from graph to graph on low-margin
     classifiers (``range_search``);
  2. per recipe, the layers that hurt most go back to float one at a time (``restore_accuracy``):
     each Conv / Gemm / MatMul is ranked by the error of the graph in which only it is
     quantized (on the digits CNN: the stem, whose input has per-pixel-normalised outliers, the
     first block and the head), kept float with ORT's ``nodes_to_exclude`` (ort) or by graph
     surgery (``keep_float``; nncf), at most ``max_float_fraction`` of the layers (default 0.5,
     at least 2, never all).
Only when nothing passes is the depth rejected. The manifest records, per depth, the int8 score
and ``agreement`` (the lowest over the engines) in ``metrics["int8"]``; the artifact's extra
records the recipe, ``accuracy_checks`` per engine, and ``float_nodes`` / ``float_fraction``.
The held-out split decides acceptance (as NNCF's own accuracy control does); calibration data
comes from the training split only.

Calibration uses the TRAINING split only (a deterministic subset of ``calib_size`` samples);
metrics are measured on the held-out validation split, for fp32 and int8.
A depth that fails the accuracy control gets ``rejected["int8"] = reason`` in the manifest and
its int8 graph is NOT listed: never shipped silently.

Calibration sharing (ORT method). The blocks of a depth-k graph are the blocks of the full graph,
so most activation ranges are the same tensors. Tensor *names* are not a safe key (e.g. the CNN
head applies ``sum_proj.3`` to s_k in a depth-2 graph and to s_3 in the full one under the same
name), so every tensor is keyed structurally (a Merkle hash of op, attributes, initializer bytes
and input keys). All depth graphs (and the segment chain, whose state inputs are keyed by the
previous segment's outputs) are merged into one deduplicated "family" graph; one ORT pass over
the calibration data gives min/max for every distinct tensor, and each graph's quantize_static
reads them through ORT's calibration cache instead of calibrating again. A tensor's range depends
only on its own values, so the result is identical to calibrating each graph with the same
method (tests check the scales are equal).
Needs onnxruntime >= 1.32 (``calibration_cache_path``); older versions calibrate per graph.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import contextlib
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from ..progress import progress_bar
from ..errors import ArtifactError, ConfigError, require
from ..exit_calibration import calibrate_bundle
from ..fileio import staged_directory
from ..manifest import Artifact, BundleManifest

TRT_OP_TYPES = ("Conv", "Gemm", "MatMul")
TRT_EXTRA_OPTIONS = {
    "ActivationSymmetric": True,
    "WeightSymmetric": True,
    "AddQDQPairToWeight": True,
    "DedicatedQDQPair": True,
    "QuantizeBias": False,
    "QDQOpTypePerChannelSupportToAxis": {"MatMul": 1},
    # Quantize the INPUTS of Conv/Gemm/MatMul only: their outputs feed the GloNet running sum,
    # and re-rounding every block output there cost 0.5-1 point of int8/fp32 agreement.
    "OpTypesToExcludeOutputQuantization": list(TRT_OP_TYPES),
}
METHODS = ("ort", "nncf")
CALIBRATION_METHODS = ("percentile", "minmax")


@dataclass
class Calibration:
    x_calib: np.ndarray  # training split subset
    x_val: np.ndarray
    y_val: np.ndarray
    task: str
    metric_name: str
    batch: int = 64

    def batches(self, equal: bool = False) -> Iterable[np.ndarray]:
        """Calibration batches; equal=True drops a short last batch (ORT's histogram calibrators
        stack per-batch outputs and need equal shapes) unless it is the only one."""
        n = len(self.x_calib)
        stop = n - n % self.batch if (equal and n > self.batch) else n
        for i in range(0, stop, self.batch):
            yield self.x_calib[i:i + self.batch]


# ---------------------------------------------------------------------------------------------
# onnxruntime helpers
# ---------------------------------------------------------------------------------------------
def _session(model: Any, optimize: bool = True):
    ort = require("onnxruntime", "onnxruntime")
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize
                                   else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    src = model.SerializeToString() if hasattr(model, "SerializeToString") else str(model)
    return ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])


def predict(model: Any, feeds: dict[str, np.ndarray], batch: int = 256) -> list[np.ndarray]:
    """Run an ONNX graph (path or ModelProto) over a dataset in batches; all outputs."""
    sess = _session(model)
    n = len(next(iter(feeds.values())))
    outs: list[list[np.ndarray]] = []
    for i in range(0, n, batch):
        res = sess.run(None, {k: v[i:i + batch] for k, v in feeds.items()})
        if not outs:
            outs = [[] for _ in res]
        for acc, r in zip(outs, res):
            acc.append(r)
    return [np.concatenate(o) for o in outs]


def evaluate(model: Any, cal: Calibration, input_name: str = "x") -> float:
    from ..data import score

    y = predict(model, {input_name: cal.x_val})[-1]
    return float(score(cal.task, y, cal.y_val))


class _Reader:
    """CalibrationDataReader over a list of feed dicts (re-created per graph: readers are consumed once)."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]):
        self._it = iter(feeds)

    def get_next(self):
        return next(self._it, None)

    def __len__(self) -> int:  # pragma: no cover - used by strided calibration only
        return 0


@contextlib.contextmanager
def _quiet_ort_logging():
    """onnxruntime's quantizer logs through the root logger: quiet it for the call only."""
    root = logging.getLogger()
    before = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(before)


def ort_quantize(src: Any, dst: Path, feeds: list[dict[str, np.ndarray]] | None = None,
                 ranges: dict[str, tuple[float, float]] | None = None,
                 op_types: tuple[str, ...] = TRT_OP_TYPES, nodes_to_exclude: list[str] | None = None,
                 calibration: str = "percentile", percentile: float = 99.99) -> None:
    """quantize_static with the TensorRT recipe; calibrates on `feeds`, or uses precomputed
    min/max `ranges` ({tensor name: (min, max)}) through the calibration cache."""
    q = require("onnxruntime.quantization", "onnxruntime")
    kwargs: dict[str, Any] = {}
    with _quiet_ort_logging(), tempfile.TemporaryDirectory(prefix="glonet-quant.") as tmp:
        if ranges is not None:
            from onnxruntime.quantization.calibrate import TensorData, TensorsData, save_tensors_data

            data = {name: TensorData(lowest=np.array([lo], np.float32), highest=np.array([hi], np.float32))
                    for name, (lo, hi) in ranges.items()}
            cache = Path(tmp) / "ranges.json"
            save_tensors_data(TensorsData(q.CalibrationMethod.MinMax, data), cache)
            kwargs["calibration_cache_path"] = cache
            reader = None
        else:
            reader = _Reader(feeds or [])
        extra = dict(TRT_EXTRA_OPTIONS)
        method = q.CalibrationMethod.MinMax
        if ranges is None and calibration == "percentile":
            method = q.CalibrationMethod.Percentile
            extra["CalibPercentile"] = percentile
        q.quantize_static(
            src, str(dst), reader, quant_format=q.QuantFormat.QDQ, op_types_to_quantize=list(op_types),
            per_channel=True, reduce_range=False, activation_type=q.QuantType.QInt8, weight_type=q.QuantType.QInt8,
            nodes_to_exclude=list(nodes_to_exclude or []), calibrate_method=method, extra_options=extra, **kwargs)
    _tidy(dst)


def supports_range_cache() -> bool:
    q = require("onnxruntime.quantization", "onnxruntime")
    return "calibration_cache_path" in inspect.signature(q.quantize_static).parameters


def _tidy(path: Path) -> None:
    """Drop opset imports of domains no node uses (ORT adds com.microsoft & co.; parsers dislike them)."""
    import onnx

    m = onnx.load(str(path))
    used = {n.domain or "" for n in m.graph.node}
    keep = [o for o in m.opset_import if (o.domain or "") in used or o.domain in ("", "ai.onnx")]
    if len(keep) != len(m.opset_import):
        del m.opset_import[:]
        m.opset_import.extend(keep)
        onnx.save(m, str(path))


# ---------------------------------------------------------------------------------------------
# structural keys and the family graph (calibration sharing)
# ---------------------------------------------------------------------------------------------
class NotShareable(Exception):
    pass


def structural_keys(model: Any, input_keys: dict[str, str]) -> dict[str, str]:
    """{tensor name: key}; equal keys <=> the same computation on the same graph input."""
    from onnx import numpy_helper

    keys = dict(input_keys)
    for init in model.graph.initializer:
        arr = numpy_helper.to_array(init)
        keys[init.name] = "i" + hashlib.sha1(f"{arr.dtype}{arr.shape}".encode() + arr.tobytes()).hexdigest()[:24]
    for node in model.graph.node:
        h = hashlib.sha1(f"{node.domain}::{node.op_type}".encode())
        for a in sorted(node.attribute, key=lambda a: a.name):
            if a.g.node or a.graphs:
                raise NotShareable(f"{node.op_type} has a subgraph")
            b = copy.deepcopy(a)
            b.ClearField("doc_string")
            h.update(b.SerializeToString())
        for i in node.input:
            if i and i not in keys:
                raise NotShareable(f"input {i} of {node.name} is not produced before use")
            h.update((keys[i] if i else "-").encode() + b"|")
        base = h.hexdigest()[:24]
        for j, o in enumerate(node.output):
            if o:
                keys[o] = f"n{base}_{j}"
    return keys


def _float_types(model: Any) -> dict[str, int]:
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    g = inferred.graph
    out = {}
    for vi in [*g.value_info, *g.output, *g.input]:
        if vi.type.HasField("tensor_type"):
            out[vi.name] = vi.type.tensor_type.elem_type
    return out


def family_graph(graphs: list[tuple[Any, dict[str, str]]], input_name: str = "x",
                 op_types: tuple[str, ...] | None = TRT_OP_TYPES):
    """Merge graphs [(model, keys)] into one deduplicated graph whose outputs are the distinct
    float tensors that are inputs or outputs of `op_types` nodes (all float tensors if None),
    named by key -- the tensors ORT's calibrator would look at. Returns (model, [output keys])."""
    from onnx import TensorProto, helper

    name = lambda k: k if k == input_name else f"t_{k}"  # noqa: E731
    nodes, inits, float_outs = [], {}, {}
    seen: set[str] = set()
    wanted_keys: set[str] = set()
    first = graphs[0][0]
    x_vi = next(i for i in first.graph.input if i.name == input_name)
    for model, keys in graphs:
        types = _float_types(model)
        init_names = {i.name for i in model.graph.initializer}
        # keys, not names: a segment's state input is the previous segment's output tensor
        wanted_keys.update(keys[t] for n in model.graph.node if op_types is None or n.op_type in op_types
                           for t in [*n.input, *n.output] if t and t in keys)
        for init in model.graph.initializer:
            k = keys[init.name]
            if k not in inits:
                t = copy.deepcopy(init)
                t.name = name(k)
                inits[k] = t
        for node in model.graph.node:
            outs = [keys[o] for o in node.output if o]
            if outs and all(k in seen for k in outs):
                continue
            new = copy.deepcopy(node)
            new.name = f"n{len(nodes)}"
            del new.input[:]
            new.input.extend(name(keys[i]) if i else "" for i in node.input)
            del new.output[:]
            new.output.extend(name(keys[o]) if o else "" for o in node.output)
            nodes.append(new)
            seen.update(outs)
        for node in model.graph.node:
            for o in node.output:
                if o and o not in init_names and types.get(o) in (TensorProto.FLOAT, TensorProto.FLOAT16):
                    float_outs[keys[o]] = types[o]
    outputs = {k: t for k, t in float_outs.items() if k in wanted_keys}
    graph = helper.make_graph(nodes, "glonet_family", [copy.deepcopy(x_vi)],
                              [helper.make_tensor_value_info(name(k), t, None) for k, t in outputs.items()],
                              list(inits.values()))
    model = helper.make_model(graph, opset_imports=list(first.opset_import), ir_version=first.ir_version)
    return model, list(outputs)  # (outputs carry no shapes, which ORT accepts and the checker does not)


Estimator = tuple[str, float]  # ("percentile", p) or ("minmax", 100.0)
# Tried, in this order after the configured one, when a depth fails the accuracy check (--range-search):
# on low-margin classifiers the best activation range differs from graph to graph.
SEARCH_ESTIMATORS: tuple[Estimator, ...] = (("percentile", 99.9), ("percentile", 99.95), ("minmax", 100.0),
                                            ("percentile", 99.999))


def estimator_name(est: Estimator) -> str:
    return "minmax" if est[0] == "minmax" else f"percentile {est[1]:g}"


def estimators(method: str = "percentile", percentile: float = 99.99, search: bool = False) -> list[Estimator]:
    """The configured range estimator first, then (search=True) the others of SEARCH_ESTIMATORS."""
    first: Estimator = ("minmax", 100.0) if method == "minmax" else ("percentile", float(percentile))
    out = [first]
    if search:
        out += [e for e in SEARCH_ESTIMATORS if e != first]
    return out


def family_range_sets(graphs: list[tuple[Any, dict[str, str]]], cal: Calibration, input_name: str = "x",
                      ests: list[Estimator] | None = None, bins: int = 2048) -> dict[Estimator, dict[str, tuple[float, float]]]:
    """Calibration ranges {estimator: {key: (low, high)}} for every distinct float tensor of the
    merged family, for several estimators from the same passes.
    Every percentile is read off one histogram per tensor, so searching estimators costs no
    extra pass over the calibration data."""
    ests = list(ests or [("percentile", 99.99)])
    model, keys = family_graph(graphs, input_name)
    sess = _session(model, optimize=False)  # ORT's calibrator runs with ORT_DISABLE_ALL too
    names = [o.name for o in sess.get_outputs()]
    all_keys = [*keys, input_name]
    lo = {k: np.inf for k in all_keys}
    hi = {k: -np.inf for k in all_keys}

    def outputs(xb):
        return [*sess.run(names, {input_name: xb}), xb]

    for xb in cal.batches():
        for k, r in zip(all_keys, outputs(xb)):
            if r.size:
                lo[k] = min(lo[k], float(np.nanmin(r)))
                hi[k] = max(hi[k], float(np.nanmax(r)))
    valid = [k for k in all_keys if np.isfinite(lo[k])]
    result: dict[Estimator, dict[str, tuple[float, float]]] = {}
    for e in ests:
        if e[0] == "minmax":
            result[e] = {k: (lo[k], hi[k]) for k in valid}
    pcts = [e for e in ests if e[0] == "percentile"]
    if not pcts:
        return result
    amax = {k: max(abs(lo[k]), abs(hi[k])) for k in valid}
    hist = {k: np.zeros(bins, np.int64) for k in valid}
    for xb in cal.batches():
        for k, r in zip(all_keys, outputs(xb)):
            if k in hist and amax[k] > 0:
                hist[k] += np.histogram(np.abs(r), bins=bins, range=(0.0, amax[k]))[0]
    for e in pcts:
        out = {}
        cut = (100.0 - e[1]) / 200.0  # as ORT's Percentile calibrator: a histogram of |v|, cut on both ends
        for k in valid:
            total = hist[k].sum()
            if total == 0 or amax[k] <= 0:
                out[k] = (lo[k], hi[k])
                continue
            edges = np.linspace(0.0, amax[k], bins + 1)
            cdf = np.cumsum(hist[k]) / total
            left = float(edges[min(int(np.searchsorted(cdf, cut)), bins)])
            right = float(edges[min(int(np.searchsorted(cdf, 1.0 - cut)) + 1, bins)])
            out[k] = (max(left, lo[k]), min(right, hi[k]))
        result[e] = out
    return result


def ranges_for(model: Any, keys: dict[str, str], family: dict[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
    init_names = {i.name for i in model.graph.initializer}
    names = {i.name for i in model.graph.input} | {o for n in model.graph.node for o in n.output if o}
    return {n: family[keys[n]] for n in names if n not in init_names and keys.get(n) in family}


# ---------------------------------------------------------------------------------------------
# NNCF path
# ---------------------------------------------------------------------------------------------
def make_trt_safe(model: Any) -> tuple[Any, int]:
    """Rewrite UINT8 / asymmetric Q-DQ pairs as signed symmetric INT8 covering the same range:
    [s(qmin-zp), s(qmax-zp)] -> zp 0, scale max(|lo|, |hi|) / 127 (one bit of resolution lost on
    non-negative tensors). The old pair also saturated at lo (a UINT8 zp-0 Q is a ReLU: ORT drops
    the Relu node when activations are asymmetric), so that clamp is kept explicitly: a Relu
    before the Q when lo == 0, a Clip(lo, hi) otherwise. Returns (model, Q/DQ nodes changed)."""
    import onnx
    from onnx import helper, numpy_helper

    model = copy.deepcopy(model)
    inits = {t.name: t for t in model.graph.initializer}
    remap: dict[tuple[str, str], tuple[str, str, float, float]] = {}
    retyped: set[str] = set()
    clamps: list[tuple[Any, Any]] = []  # (Q node, clamp node to insert before it)
    changed = 0
    for n in model.graph.node:
        if n.op_type not in ("QuantizeLinear", "DequantizeLinear") or len(n.input) < 3:
            continue
        zp_t, s_t = inits.get(n.input[2]), inits.get(n.input[1])
        if zp_t is None or s_t is None:
            continue
        zp = numpy_helper.to_array(zp_t)
        if zp_t.data_type == onnx.TensorProto.INT8 and not np.any(zp):
            continue
        if zp_t.data_type not in (onnx.TensorProto.UINT8, onnx.TensorProto.INT8):
            continue
        key = (n.input[1], n.input[2])
        if key not in remap:
            s = numpy_helper.to_array(s_t).astype(np.float64)
            qmin, qmax = (0, 255) if zp_t.data_type == onnx.TensorProto.UINT8 else (-128, 127)
            lo, hi = s * (qmin - zp.astype(np.float64)), s * (qmax - zp.astype(np.float64))
            amax = np.maximum(np.abs(lo), np.abs(hi))
            new_s = (amax / 127.0).astype(numpy_helper.to_array(s_t).dtype)
            s_name, z_name = f"{n.input[1]}__s8", f"{n.input[2]}__s8"
            model.graph.initializer.append(numpy_helper.from_array(new_s, s_name))
            model.graph.initializer.append(numpy_helper.from_array(np.zeros_like(zp, dtype=np.int8), z_name))
            remap[key] = (s_name, z_name, float(np.min(lo)) if lo.size == 1 else np.nan, float(np.max(hi)))
        s_name, z_name, lo_v, hi_v = remap[key]
        n.input[1], n.input[2] = s_name, z_name
        changed += 1
        if n.op_type == "QuantizeLinear":
            retyped.add(n.output[0])
            if n.input[0] not in inits and not np.isnan(lo_v):
                src, clamped = n.input[0], f"{n.input[0]}__clamp_{len(clamps)}"
                if lo_v == 0.0:
                    node = helper.make_node("Relu", [src], [clamped], name=f"{n.name or src}__relu")
                else:
                    lo_n, hi_n = f"{clamped}_lo", f"{clamped}_hi"
                    dtype = numpy_helper.to_array(s_t).dtype
                    model.graph.initializer.append(numpy_helper.from_array(np.array(lo_v, dtype), lo_n))
                    model.graph.initializer.append(numpy_helper.from_array(np.array(hi_v, dtype), hi_n))
                    node = helper.make_node("Clip", [src, lo_n, hi_n], [clamped], name=f"{n.name or src}__clip")
                n.input[0] = clamped
                clamps.append((n, node))
    if clamps:
        before = {id(q): c for q, c in clamps}
        nodes = []
        for n in model.graph.node:
            if id(n) in before:
                nodes.append(before[id(n)])
            nodes.append(n)
        nodes = [copy.deepcopy(n) for n in nodes]
        del model.graph.node[:]
        model.graph.node.extend(nodes)
    for vi in [*model.graph.value_info, *model.graph.output]:  # Q outputs are INT8 now
        if vi.name in retyped and vi.type.HasField("tensor_type"):
            vi.type.tensor_type.elem_type = onnx.TensorProto.INT8
    # drop initializers nothing uses any more
    used = {i for n in model.graph.node for i in n.input}
    keep = [t for t in model.graph.initializer if t.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)
    return model, changed


NNCF_RANGE_ESTIMATORS = ("HISTOGRAM", "MINMAX")  # plain nncf.quantize candidates after the accuracy-control one


def nncf_quantize(src: Path, cal: Calibration, max_drop: float, calib_size: int, input_name: str = "x",
                  accuracy_control: bool = True, range_estimator: str | None = None,
                  min_agreement: float | None = None, trt_placement: bool = True) -> Any:
    """NNCF on the ONNX backend (PERFORMANCE preset, COMPRESS_WEIGHTS=False); returns the
    (uint8-capable) ModelProto.

    accuracy_control: nncf.quantize_with_accuracy_control, whose metric is the held-out score
    minus 10 x the shortfall of top-1 agreement with fp32 below `min_agreement` (so NNCF's
    restorer enforces both criteria); otherwise plain nncf.quantize with the named
    RangeEstimatorParametersSet for activations (HISTOGRAM, MINMAX, ...).
    trt_placement: only the inputs of Conv / Gemm / MatMul are quantized (every other op type is
    in NNCF's ignored scope), as in the onnxruntime recipe and TensorRT's explicit quantization;
    NNCF would otherwise also quantize the GloNet running sum at every Add."""
    import onnx

    nncf = require("nncf", "quantize")
    from nncf.onnx.quantization.backend_parameters import BackendParameters
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters

    from ..data import score

    logging.getLogger("nncf").setLevel(logging.ERROR)
    model = onnx.load(str(src))
    calib_items = [cal.x_calib[i:i + 1] for i in range(len(cal.x_calib))]
    calibration = nncf.Dataset(calib_items, lambda a: {input_name: a})
    kwargs: dict[str, Any] = {}
    if trt_placement:
        other = sorted({n.op_type for n in model.graph.node} - set(TRT_OP_TYPES))
        if other:
            kwargs["ignored_scope"] = nncf.IgnoredScope(types=other, validate=False)
    adv_kw: dict[str, Any] = {}
    if range_estimator:
        from nncf.quantization.range_estimator import RangeEstimatorParametersSet

        adv_kw["activations_range_estimator_params"] = getattr(RangeEstimatorParametersSet, range_estimator)
    adv = AdvancedQuantizationParameters(backend_params={BackendParameters.COMPRESS_WEIGHTS: False}, **adv_kw)
    subset = min(calib_size, len(calib_items))
    if not accuracy_control:
        return nncf.quantize(model, calibration, preset=nncf.QuantizationPreset.PERFORMANCE, subset_size=subset,
                             advanced_parameters=adv, **kwargs)

    ref = predict(src, {input_name: cal.x_val})[-1]
    agree = (min_agreement is not None and cal.task == "classification" and ref.ndim == 2 and ref.shape[1] > 1)
    vb = 32
    val_items = [(cal.x_val[i:i + vb], cal.y_val[i:i + vb], ref[i:i + vb]) for i in range(0, len(cal.x_val), vb)]
    validation = nncf.Dataset(val_items, lambda t: {input_name: t[0]})

    def validation_fn(m, items):
        sess = _session(m)
        preds, ys, refs, per_item = [], [], [], []
        for xb, yb, rb in items:
            p = sess.run(None, {input_name: xb})[-1]
            preds.append(p)
            ys.append(yb)
            refs.append(rb)
            if cal.task == "classification":
                per_item.append(score(cal.task, p, yb) + (float(np.mean(np.argmax(p, 1) == np.argmax(rb, 1)))
                                                          if agree else 0.0))
            else:
                per_item.append(-float(np.mean((p.reshape(yb.shape) - yb) ** 2)))
        pred, y, r = np.concatenate(preds), np.concatenate(ys), np.concatenate(refs)
        metric = float(score(cal.task, pred, y))
        if agree:
            metric -= 10.0 * max(0.0, float(min_agreement) - float(np.mean(np.argmax(pred, 1) == np.argmax(r, 1))))
        return metric, per_item

    return nncf.quantize_with_accuracy_control(
        model, calibration, validation, validation_fn, max_drop=max_drop, drop_type=nncf.DropType.ABSOLUTE,
        preset=nncf.QuantizationPreset.PERFORMANCE, subset_size=subset, advanced_quantization_parameters=adv,
        **kwargs)


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
        if n.op_type in ("QuantizeLinear", "DequantizeLinear") or not n.name or "__clamp_" in "".join(n.output):
            continue
        if any(i in prod and prod[i].op_type == "DequantizeLinear" for i in n.input):
            out.append(n.name)
    return out


def keep_float(model: Any, node_names: Iterable[str]) -> Any:
    """A copy of a QDQ graph in which the named nodes read float inputs again: every input that
    comes from DequantizeLinear(QuantizeLinear(t)) reads t (before a make_trt_safe clamp), a
    DequantizeLinear of a constant reads the dequantized float constant. Q/DQ nodes nothing reads
    any more are dropped. For onnxruntime's QDQ graphs this is exactly quantize_static's
    nodes_to_exclude (tested); it also works on NNCF's graphs, which have no such option after
    the fact."""
    from onnx import numpy_helper

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
                    w = numpy_helper.to_array(inits[dq.input[0]]).astype(np.float32)
                    scale = numpy_helper.to_array(inits[dq.input[1]]).astype(np.float32)
                    zp = (numpy_helper.to_array(inits[dq.input[2]]).astype(np.float32)
                          if len(dq.input) > 2 and dq.input[2] else np.zeros_like(scale))
                    if scale.ndim == 1 and w.ndim > 1:
                        axis = next((a.i for a in dq.attribute if a.name == "axis"), 1) % w.ndim
                        shape = [1] * w.ndim
                        shape[axis] = -1
                        scale, zp = scale.reshape(shape), zp.reshape(shape)
                    added[name] = numpy_helper.from_array(((w - zp) * scale).astype(np.float32), name)
                n.input[i] = name
    g.initializer.extend(added.values())
    needed = {o.name for o in g.output}
    live = []
    for n in reversed(list(g.node)):
        if any(o in needed for o in n.output):
            live.append(n)
            needed.update(i for i in n.input if i)
    live.reverse()
    del g.node[:]
    g.node.extend(live)
    used = [t for t in g.initializer if t.name in needed]
    del g.initializer[:]
    g.initializer.extend(used)
    return model


# ---------------------------------------------------------------------------------------------
# accuracy control: score drop AND top-1 agreement with fp32, on every engine that will run it
# ---------------------------------------------------------------------------------------------
ENGINES = ("onnxruntime", "openvino")


def resolve_engines(engines: str | Iterable[str] | None) -> list[str]:
    """'auto' (default): onnxruntime, plus openvino where it is installed."""
    import importlib.util

    if engines is None or engines == "auto":
        return ["onnxruntime"] + (["openvino"] if importlib.util.find_spec("openvino") is not None else [])
    names = [e.strip() for e in (engines.split(",") if isinstance(engines, str) else engines) if e.strip()]
    for e in names:
        if e not in ENGINES:
            raise ConfigError(f"unknown engine {e!r} to check int8 graphs on; use auto or any of {', '.join(ENGINES)}")
    if not names:
        raise ConfigError("no engine to check int8 graphs on; use auto or any of " + ", ".join(ENGINES))
    if "openvino" in names:
        require("openvino", "openvino")
    return ["onnxruntime"] + [e for e in dict.fromkeys(names) if e != "onnxruntime"]


def _openvino_outputs(model: Any, x: np.ndarray, input_name: str = "x") -> np.ndarray:
    """Last output of the graph compiled by OpenVINO on CPU the way `glonet compile` loads int8
    (targets.openvino: INFERENCE_PRECISION_HINT=f32 for the float parts), no model cache."""
    from ..targets import get_target
    from ..targets.openvino import core

    config = get_target("openvino").compile_config("int8", "CPU", cache_dir=False)
    c = core()
    ov_model = (c.read_model(str(model)) if not hasattr(model, "SerializeToString")
                else c.read_model(model.SerializeToString(), b""))
    compiled = c.compile_model(ov_model, "CPU", config)
    request = compiled.create_infer_request()
    outs = []
    for i in range(0, len(x), 256):
        res = request.infer({input_name: x[i:i + 256]})
        outs.append(np.array(res[compiled.outputs[-1]]))
    return np.concatenate(outs)


@dataclass
class Check:
    """One int8 graph measured on held-out data: {engine: {"score", "agreement"}}, what failed and
    by how much (`violation`: summed excess drop and agreement shortfall, 0 when it passes)."""
    engines: dict[str, dict[str, float | None]]
    failures: list[str]
    violation: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def score(self) -> float:
        return float(self.engines["onnxruntime"]["score"])

    @property
    def agreement(self) -> float | None:
        vals = [v["agreement"] for v in self.engines.values() if v["agreement"] is not None]
        return min(vals) if vals else None


class AccuracyCheck:
    """Judges an int8 graph against its fp32 source on the held-out split: on every engine in
    `engines` its score may lose at most `max_drop` and (classification) its top-1 prediction
    must equal fp32's on at least `min_agreement` of the samples."""

    def __init__(self, src: Any, fp32: float, cal: Calibration, max_drop: float, min_agreement: float,
                 engines: list[str], input_name: str = "x"):
        self.fp32, self.cal, self.max_drop, self.min_agreement = fp32, cal, max_drop, min_agreement
        self.engines, self.input_name = engines, input_name
        self.ref = predict(src, {input_name: cal.x_val})[-1]
        self.classification = cal.task == "classification" and self.ref.ndim == 2 and self.ref.shape[1] > 1

    def agreement(self, y: np.ndarray) -> float | None:
        if not self.classification:
            return None
        return float(np.mean(np.argmax(y, 1) == np.argmax(self.ref, 1)))

    def check(self, path: Path) -> Check:
        from ..data import score

        results: dict[str, dict[str, float | None]] = {}
        failures: list[str] = []
        violation = 0.0
        for engine in self.engines:
            try:
                if engine == "onnxruntime":
                    s = evaluate(path, self.cal, self.input_name)
                    y = predict(path, {self.input_name: self.cal.x_val})[-1]
                else:
                    y = _openvino_outputs(path, self.cal.x_val, self.input_name)
                    s = float(score(self.cal.task, y, self.cal.y_val))
            except Exception as exc:  # one candidate an engine cannot load fails, not the whole run
                results[engine] = {"score": None, "agreement": None}
                failures.append(f"{engine}: cannot run this graph ({type(exc).__name__}: {str(exc)[:200]})")
                violation += 1.0
                continue
            a = self.agreement(y)
            results[engine] = {"score": s, "agreement": a}
            if self.fp32 - s > self.max_drop + 1e-12:
                failures.append(f"{engine}: int8 score {s:.4f} is {self.fp32 - s:.4f} below fp32 {self.fp32:.4f} "
                                f"(max drop {self.max_drop})")
                violation += self.fp32 - s - self.max_drop
            if a is not None and a < self.min_agreement - 1e-12:
                failures.append(f"{engine}: top-1 agreement with fp32 {a:.4f} < {self.min_agreement}")
                violation += self.min_agreement - a
        return Check(results, failures, violation)

    def harm(self, model: Any) -> tuple[float, ...]:
        """How far a (partly quantized) graph is from fp32 on the held-out inputs, with
        onnxruntime: (1 - agreement, logit MSE) for classifiers, (MSE,) otherwise. Larger = worse."""
        y = predict(model, {self.input_name: self.cal.x_val})[-1]
        mse = float(np.mean((y.reshape(self.ref.shape) - self.ref) ** 2))
        a = self.agreement(y)
        return (mse,) if a is None else (1.0 - a, mse)

    def rank(self, qdq: Any, nodes: list[str]) -> list[str]:
        """Nodes ordered most harmful first: each node is measured with ONLY its inputs quantized
        (every other listed node kept float), which isolates its own error; on low-margin
        classifiers the leave-one-out order is dominated by the other nodes' noise."""
        harm = {n: self.harm(keep_float(qdq, [k for k in nodes if k != n])) for n in nodes}
        return sorted(nodes, key=lambda n: tuple(-v for v in harm[n]))


def float_budget(n_layers: int, max_float_fraction: float) -> int:
    """How many of a graph's n quantizable layers may stay float: round(n * fraction), at least 2
    (a first and a last layer), and never all of them (the graph must stay an int8 graph)."""
    if max_float_fraction <= 0 or n_layers <= 1:
        return 0
    return min(n_layers - 1, max(2, round(n_layers * max_float_fraction)))


def restore_accuracy(build, dst: Path, judge: AccuracyCheck, nodes: list[str], budget: int,
                     base: Any = None, first: Check | None = None) -> tuple[list[str], Check]:
    """Greedy float fallback: `build(excluded)` writes the int8 graph to `dst` with the
    `excluded` nodes left in float. While `judge` rejects it (score drop above max_drop, or top-1
    agreement with fp32 below min_agreement, on any engine), the next most harmful node goes back
    to float (ranked once by judge.rank on `base`, the graph with none excluded), at most `budget`
    of them. Returns (nodes left in float, the last check); dst holds the last graph."""
    import onnx

    if first is None:
        build([])
        first = judge.check(dst)
    check = first
    if check.ok or budget <= 0 or not nodes:
        return [], check
    if base is None:
        build([])
        base = onnx.load(str(dst))
    excluded: list[str] = []
    for n in judge.rank(base, nodes)[:budget]:
        excluded.append(n)
        build(excluded)
        check = judge.check(dst)
        if check.ok:
            break
    return excluded, check


@dataclass
class Candidate:
    """One way to make a depth's int8 graph: `make()` returns the QDQ ModelProto with every node
    it quantizes quantized; `build(base, excluded)` writes dst with `excluded` back in float
    (default: keep_float on the ModelProto). A `build` recipe's make() writes dst itself."""
    name: str
    make: Any
    dst: Path
    build: Any = None
    tensorrt: bool = True
    base: Any = None

    def write(self, excluded: list[str]) -> None:
        import onnx

        made = self.base is None
        if made:
            self.base = self.make()
        if self.build is not None:
            if made and not excluded:
                return  # make() already wrote dst (onnxruntime writes the file itself)
            self.build(self.base, excluded)
        else:
            onnx.save(keep_float(self.base, excluded) if excluded else self.base, str(self.dst))


@dataclass
class Outcome:
    candidate: Candidate | None
    check: Check
    float_layers: list[str]
    excluded: list[str]
    layers: int
    tried: list[dict[str, Any]]

    @property
    def ok(self) -> bool:
        return self.candidate is not None


def float_layers(model: Any, layers: list[str]) -> list[str]:
    """The quantizable layers (of the fp32 graph) that read no quantized input in `model`."""
    q = set(quantized_consumers(model))
    return [n for n in layers if n not in q]


def control_accuracy(candidates: list[Candidate], judge: AccuracyCheck, layers: list[str],
                     max_float_fraction: float) -> Outcome:
    """Accuracy control over candidate recipes, TensorRT-safe candidates first (both passes), then
    the others. Pass 1: each candidate as made (in order); the first that the judge accepts with
    at most float_budget(...) layers in float wins. Pass 2: the candidates still within the
    budget, least violating first, each with restore_accuracy (the most harmful layers back to
    float, up to the budget). Nothing accepted: an Outcome without a
    candidate, carrying the least violating attempt; the caller rejects the depth."""
    budget = float_budget(len(layers), max_float_fraction)
    tried: list[dict[str, Any]] = []
    best: tuple[float, int, Check, list[str], list[str]] | None = None

    def note(c: Candidate, check: Check, excluded: list[str], fl: list[str]) -> None:
        nonlocal best
        tried.append({"candidate": c.name, "float_layers": len(fl), "ok": check.ok and len(fl) <= budget,
                      "agreement": check.agreement, "score": check.score})
        key = (check.violation + (1.0 if len(fl) > budget else 0.0), len(fl))
        if best is None or key < best[:2]:
            best = (key[0], key[1], check, excluded, fl)

    # TensorRT-safe recipes first, both passes; the others (OpenVINO / onnxruntime only) after them
    for group in ([c for c in candidates if c.tensorrt], [c for c in candidates if not c.tensorrt]):
        firsts: list[tuple[Candidate, Check, list[str]]] = []
        for c in group:
            c.write([])
            check = judge.check(c.dst)
            fl = float_layers(c.base, layers)
            note(c, check, [], fl)
            if check.ok and len(fl) <= budget:
                return Outcome(c, check, fl, [], len(layers), tried)
            firsts.append((c, check, fl))
        for c, check, fl in sorted(firsts, key=lambda t: t[1].violation):
            room = budget - len(fl)
            nodes = [n for n in quantized_consumers(c.base) if n in set(layers)]
            if room <= 0 or not nodes:
                continue
            excluded, check = restore_accuracy(c.write, c.dst, judge, nodes, room, base=c.base, first=check)
            fl2 = fl + excluded
            note(c, check, excluded, fl2)
            if check.ok:
                return Outcome(c, check, fl2, excluded, len(layers), tried)
    assert best is not None
    return Outcome(None, best[2], best[4], best[3], len(layers), tried)


# ---------------------------------------------------------------------------------------------
# the bundle driver
# ---------------------------------------------------------------------------------------------
def load_calibration(manifest: BundleManifest, calib_size: int, seed: int = 0, dataset: str | None = None) -> Calibration:
    """Calibration = a deterministic subset of the TRAINING split; evaluation = validation split.
    `dataset` overrides the path recorded at training time (same seed and split)."""
    from ..data import load_dataset

    data_cfg = manifest.model.get("data") or {}
    spec = dataset or data_cfg.get("dataset")
    if not spec:
        raise ConfigError("the bundle's model config has no data.dataset; cannot find calibration data "
                          "(re-export from a checkpoint made by `glonet train`)")
    data = load_dataset(spec, seed=int(data_cfg.get("seed", 0)), val_fraction=float(data_cfg.get("val_fraction", 0.2)))
    if list(data.x_train.shape[1:]) != list(manifest.input_shape):
        raise ConfigError(f"data set {spec} gives samples of shape {list(data.x_train.shape[1:])}, the bundle expects "
                          f"{manifest.input_shape}")
    n = min(int(calib_size), len(data.x_train))
    if n < 1:
        raise ConfigError(f"--calib-size must be >= 1, got {calib_size}")
    idx = np.sort(np.random.default_rng(seed).permutation(len(data.x_train))[:n])
    return Calibration(np.ascontiguousarray(data.x_train[idx]), data.x_val, data.y_val, data.task, data.metric_name)


def _segment_input_keys(seg, prev_seg, prev_keys: dict[str, str], prev_model, input_name: str) -> dict[str, str]:
    if prev_seg is None:
        return {input_name: input_name}
    prev_out = [o.name for o in prev_model.graph.output]
    out = {}
    for pos, name in enumerate(seg.inputs):
        src = name if name in prev_out else (prev_out[pos] if pos < len(prev_out) else None)
        if src is None:
            raise NotShareable(f"segment {seg.index} input {name} has no matching output in segment {seg.index - 1}")
        out[name] = prev_keys[src]
    return out


def quantize_bundle(bundle_dir: str | Path, method: str = "ort", calib_size: int = 512, max_drop: float = 0.005,
                    depths: list[int] | None = None, segments: bool = False, share_calibration: bool = True,
                    progress: bool = True, calibration: Calibration | None = None, seed: int = 0,
                    max_float_fraction: float = 0.5, dataset: str | None = None,
                    calibration_method: str = "percentile", percentile: float = 99.99,
                    min_agreement: float = 0.99, engines: str | Iterable[str] | None = "auto",
                    range_search: bool = True) -> dict[str, Any]:
    """Quantize the bundle in place (staged: a failure leaves the previous bundle intact)."""
    import onnx

    if method not in METHODS:
        raise ConfigError(f"unknown quantization method {method!r}; use one of {', '.join(METHODS)}")
    if calibration_method not in CALIBRATION_METHODS:
        raise ConfigError(f"unknown calibration method {calibration_method!r}; use one of {', '.join(CALIBRATION_METHODS)}")
    if not 50.0 < percentile <= 100.0:
        raise ConfigError(f"percentile must be in (50, 100], got {percentile}")
    if not (0 <= max_drop <= 1):
        raise ConfigError(f"--max-drop must be in [0, 1] (absolute, e.g. 0.005 = 0.5 points), got {max_drop}")
    if not (0 <= min_agreement <= 1):
        raise ConfigError(f"--min-agreement must be in [0, 1] (a fraction, e.g. 0.99), got {min_agreement}")
    if not (0 <= max_float_fraction <= 1):
        raise ConfigError(f"--max-float-fraction must be in [0, 1], got {max_float_fraction}")
    require("onnxruntime", "onnxruntime")
    check_engines = resolve_engines(engines)
    if method == "nncf":
        require("nncf", "quantize")
    bundle_dir = Path(bundle_dir)
    manifest = BundleManifest.load(bundle_dir)
    selected = manifest.depth_values() if not depths else list(depths)
    for d in selected:
        manifest.depth(d)  # ConfigError naming the available depths
    if segments and not manifest.segments:
        raise ConfigError("--segments given but the bundle has no segment chain; export it with segments")
    cal = calibration or load_calibration(manifest, calib_size, seed, dataset)
    input_name = manifest.input_name
    t_start = time.perf_counter()
    rows: list[dict[str, Any]] = []
    seg_rows: list[dict[str, Any]] = []
    timing: dict[str, Any] = {}

    with staged_directory(bundle_dir) as stage:
        # ---- sources ------------------------------------------------------------------------
        sources: dict[int, Path] = {}
        for d in selected:
            art = manifest.depth(d).artifact("onnx", "fp32")
            if art is None:
                raise ArtifactError(f"depth {d} has no fp32 ONNX graph in the manifest; re-run `glonet export`")
            sources[d] = art.resolve(stage)
        seg_sources: list[Path] = []
        if segments:
            for s in manifest.segments:
                art = s.artifact("onnx", "fp32")
                if art is None:
                    raise ArtifactError(f"segment {s.index} has no fp32 ONNX graph; re-run `glonet export`")
                seg_sources.append(art.resolve(stage))

        # ---- calibration ranges (ORT): one pass over the merged family, or one pass per graph ----
        # (every estimator of the search is read off the same passes)
        ests = estimators(calibration_method, percentile, search=range_search)
        family: dict[Estimator, dict[str, tuple[float, float]]] | None = None
        keys: dict[str, dict[str, str]] = {}
        models: dict[str, Any] = {}
        per_graph: dict[str, dict[Estimator, dict[str, tuple[float, float]]]] = {}
        use_cache = method == "ort" and supports_range_cache()
        shared = use_cache and share_calibration
        share_note = None
        if method == "ort" and share_calibration and not use_cache:
            share_note = "calibration not shared: this onnxruntime has no calibration_cache_path (needs >= 1.32)"
        if use_cache:
            try:
                graphs = []
                for d in selected:
                    m = onnx.load(str(sources[d]))
                    models[f"d{d}"] = m
                    keys[f"d{d}"] = structural_keys(m, {input_name: input_name})
                    graphs.append((f"d{d}", m))
                prev = None
                for seg, path in zip(manifest.segments if segments else [], seg_sources):
                    m = onnx.load(str(path))
                    k = f"s{seg.index}"
                    models[k] = m
                    keys[k] = structural_keys(m, _segment_input_keys(seg, prev, keys.get(f"s{seg.index - 1}", {}),
                                                                     models.get(f"s{seg.index - 1}"), input_name))
                    graphs.append((k, m))
                    prev = seg
                t0 = time.perf_counter()
                if shared:
                    family = family_range_sets([(m, keys[k]) for k, m in graphs], cal, input_name, ests)
                    for k, m in graphs:
                        per_graph[k] = {e: ranges_for(m, keys[k], family[e]) for e in ests}
                    timing["calibration_passes"] = 1
                    timing["distinct_tensors"] = len(family[ests[0]])
                else:
                    for k, m in graphs:  # the same passes, once per depth graph
                        if k.startswith("d"):  # (segments calibrate on the chain's inputs below)
                            own = family_range_sets([(m, keys[k])], cal, input_name, ests)
                            per_graph[k] = {e: ranges_for(m, keys[k], own[e]) for e in ests}
                    timing["calibration_passes"] = len(per_graph)
                timing["calibration_s"] = time.perf_counter() - t0
                timing["graph_tensors"] = sum(len(r[ests[0]]) for r in per_graph.values())
            except NotShareable as exc:
                shared, use_cache, share_note = False, False, f"calibration ranges not precomputed: {exc}"

        # ---- depths -----------------------------------------------------------------------------
        bar = progress_bar(len(selected) + len(seg_sources), f"quantize ({method})", "graph", progress)
        feeds = [{input_name: xb} for xb in cal.batches(equal=True)]
        from ..targets import qdq_lint

        for d in selected:
            entry = manifest.depth(d)
            src = sources[d]
            dst = stage / "onnx" / f"depth_{d:03d}.int8.onnx"
            t0 = time.perf_counter()
            extra: dict[str, Any] = {"method": method, "calib_size": len(cal.x_calib), "calibration": "training split",
                                     "symmetric": True, "per_channel": True}
            fp32 = evaluate(src, cal, input_name)
            judge = AccuracyCheck(src, fp32, cal, max_drop, min_agreement, check_engines, input_name)
            layers = quantizable_nodes(onnx.load(str(src)))
            candidates: list[Candidate] = []
            if method == "ort":
                graph_ranges = per_graph.get(f"d{d}") if use_cache else None
                for est in ests:
                    def qfn(excl, src=src, dst=dst, est=est, ranges=graph_ranges):
                        if ranges is not None:
                            ort_quantize(src, dst, ranges=ranges[est], nodes_to_exclude=excl)
                        else:
                            ort_quantize(src, dst, feeds=list(feeds), nodes_to_exclude=excl, calibration=est[0],
                                         percentile=est[1])

                    def make(qfn=qfn, dst=dst):
                        qfn([])
                        return onnx.load(str(dst))

                    candidates.append(Candidate(f"ort {estimator_name(est)}", make, dst,
                                                build=lambda base, excl, qfn=qfn: qfn(excl)))
                extra["shared_calibration"] = bool(shared)
                extra["op_types"] = list(TRT_OP_TYPES)
            else:
                raw: dict[str, Any] = {}

                def nncf_make(label, safe, src=src, raw=raw, extra=extra, **kw):
                    def make():
                        if label not in raw:
                            raw[label] = nncf_quantize(src, cal, max_drop, len(cal.x_calib), input_name,
                                                       min_agreement=min_agreement, **kw)
                        if not safe:
                            return raw[label]
                        model, changed = make_trt_safe(raw[label])
                        extra.setdefault("uint8_pairs_converted", {})[label] = changed
                        return model
                    return make

                candidates.append(Candidate("nncf accuracy control", nncf_make("ac", True), dst))
                if range_search:
                    for rest in NNCF_RANGE_ESTIMATORS:
                        candidates.append(Candidate(f"nncf {rest.lower()}", nncf_make(
                            rest, True, accuracy_control=False, range_estimator=rest), dst))
                # last resort, as NNCF made it (UINT8 activations): OpenVINO / onnxruntime only
                candidates.append(Candidate("nncf accuracy control (uint8)", nncf_make("ac", False), dst,
                                            tensorrt=False))
            outcome = control_accuracy(candidates, judge, layers, max_float_fraction)
            check = outcome.check
            lint_issues = qdq_lint.lint(dst, "8.5") if outcome.ok else []
            seconds = time.perf_counter() - t0
            int8, agreement = check.score, check.agreement
            lint_errors = [str(i) for i in qdq_lint.errors(lint_issues)]
            entry.metrics.setdefault("fp32", {})[manifest.metric_name] = fp32
            entry.metrics["int8"] = {manifest.metric_name: int8}
            if agreement is not None:
                entry.metrics["int8"]["agreement"] = agreement
            row = {"depth": d, "fp32": fp32, "int8": int8, "drop": fp32 - int8, "agreement": agreement,
                   "engines": check.engines, "float_layers": len(outcome.float_layers), "layers": len(layers),
                   "recipe": outcome.candidate.name if outcome.ok else None, "attempts": outcome.tried,
                   "seconds": seconds, "status": "ok"}
            if not outcome.ok:
                too_many = (f"{len(outcome.float_layers)} of {len(layers)} layers would stay float (more than "
                            f"{max_float_fraction:.0%})")
                reason = "; ".join(check.failures or [too_many])
                reason += (f" (method {method}, best of {len(outcome.tried)} attempts, "
                           f"{len(outcome.float_layers)} of {len(layers)} layers in float)")
                if method == "ort":
                    reason += "; try --method nncf (accuracy control) or a larger --calib-size"
                entry.rejected["int8"] = reason
                entry.artifacts = [a for a in entry.artifacts if not (a.format == "onnx" and a.precision == "int8")]
                dst.unlink(missing_ok=True)
                row["status"] = "rejected"
            else:
                entry.rejected.pop("int8", None)
                extra["recipe"] = outcome.candidate.name
                if method == "ort":
                    extra["calibration_method"] = outcome.candidate.name[len("ort "):]
                extra["accuracy_checks"] = check.engines
                extra["min_agreement"] = min_agreement
                extra["max_drop"] = max_drop
                if outcome.float_layers:
                    extra["float_nodes"] = outcome.float_layers
                    extra["float_fraction"] = round(len(outcome.float_layers) / max(1, len(layers)), 4)
                extra["tensorrt_compatible"] = not lint_errors
                extra["lint"] = "ok" if not lint_errors else lint_errors[:8]
                if not outcome.candidate.tensorrt:
                    extra["note"] = ("NNCF graph with UINT8 activations: for OpenVINO / onnxruntime only; the "
                                     "TensorRT-safe conversion lost too much accuracy")
                entry.set_artifact(Artifact.from_file(stage, dst, "onnx", "int8", extra=extra))
                row["tensorrt_compatible"] = not lint_errors
                if lint_errors:
                    row["status"] = "ok (not TensorRT-safe)"
            rows.append(row)
            if bar is not None:
                bar.set_postfix(depth=d, drop=f"{fp32 - int8:+.4f}")
                bar.update(1)

        # ---- segments (ORT recipe; chain inputs from the fp32 chain on the calibration data) ---
        if segments:
            chain_x = [{input_name: xb} for xb in cal.batches(equal=True)]
            val_feed = {input_name: cal.x_val}
            val_feed8 = {input_name: cal.x_val}
            for seg, src in zip(manifest.segments, seg_sources):
                dst = stage / "segments" / f"{src.name[:-len('.onnx')]}.int8.onnx"
                t0 = time.perf_counter()
                key = f"s{seg.index}"
                if key in per_graph:
                    ort_quantize(src, dst, ranges=per_graph[key][ests[0]])
                else:
                    ort_quantize(src, dst, feeds=list(chain_x), calibration=calibration_method, percentile=percentile)
                seconds = time.perf_counter() - t0
                # next segment's calibration inputs = this segment's fp32 state outputs
                sess = _session(src)
                out_names = [o.name for o in sess.get_outputs()]
                nxt = []
                for f in chain_x:
                    res = dict(zip(out_names, sess.run(None, f)))
                    nxt.append({n: res[n] for n in out_names[:-1]})
                chain_x = [{n: f[o] for n, o in zip(_next_inputs(manifest, seg), out_names[:-1])} for f in nxt]
                # chain accuracy at this segment's end, fp32 vs int8 chain
                r32 = predict(src, val_feed)
                r8 = predict(dst, val_feed8)
                from ..data import score

                s32, s8 = score(cal.task, r32[-1], cal.y_val), score(cal.task, r8[-1], cal.y_val)
                nin = _next_inputs(manifest, seg)
                val_feed = {n: r for n, r in zip(nin, r32[:-1])}
                val_feed8 = {n: r for n, r in zip(nin, r8[:-1])}
                issues = qdq_lint.errors(qdq_lint.lint(dst, "8.5"))
                seg.set_artifact(Artifact.from_file(stage, dst, "onnx", "int8", extra={
                    "method": "ort", "shared_calibration": bool(shared and key in per_graph), "chain_fp32": s32,
                    "chain_int8": s8, "tensorrt_compatible": not issues}))
                seg_rows.append({"segment": seg.index, "end_depth": seg.end_depth, "fp32": s32, "int8": s8,
                                 "drop": s32 - s8, "seconds": seconds})
                if bar is not None:
                    bar.update(1)
        if bar is not None:
            bar.close()

        result = {
            "bundle": str(bundle_dir), "method": method, "max_drop": max_drop, "min_agreement": min_agreement,
            "max_float_fraction": max_float_fraction, "checked_engines": check_engines, "metric": manifest.metric_name,
            "calib_size": len(cal.x_calib), "calibration_data": "training split (never the validation split)",
            "calibration_method": calibration_method if method == "ort" else "nncf", "range_search": range_search,
            "shared_calibration": bool(shared), "calibration_note": share_note, "timing": timing,
            "seconds": time.perf_counter() - t_start, "depths": rows, "segments": seg_rows,
            "rejected": {str(r["depth"]): manifest.depth(r["depth"]).rejected["int8"] for r in rows
                         if r["status"] == "rejected"},
        }
        timing["quantize_total_s"] = result["seconds"]
        result["exits"] = calibrate_bundle(stage, manifest, "int8", cal.x_val, cal.y_val)
        manifest.save(stage)
        from ..fileio import atomic_write_json

        atomic_write_json(stage / "quantize.json", result)
    return result


def _next_inputs(manifest: BundleManifest, seg) -> list[str]:
    nxt = [s for s in manifest.segments if s.index == seg.index + 1]
    return list(nxt[0].inputs) if nxt else [o for o in seg.outputs[:-1]]
