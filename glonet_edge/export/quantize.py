"""`glonet quantize`: post-training INT8 of every depth's fp32 ONNX graph into a QDQ graph
TensorRT accepts (signed symmetric INT8, zero points 0, per-channel weights, float bias).

Two methods:

* ``ort`` (default): onnxruntime ``quantize_static`` with the TensorRT recipe (targets.md §4):
  QDQ format, per_channel, QInt8 activations and weights, ActivationSymmetric, WeightSymmetric,
  AddQDQPairToWeight (float weights + Q->DQ: TensorRT 8.5 rejects int8 initializers),
  DedicatedQDQPair, QuantizeBias=False; activation ranges from the 0.01-99.99th percentiles
  (default; ``minmax`` on request), which beat plain min/max by 0.5-5 points of int8/fp32
  top-1 agreement on the CNN family. Only the inputs of Conv / Gemm /
  MatMul are quantized (TensorRT's explicit-quantization placement); the running sum stays
  float, which is what keeps deep truncations accurate. A depth that loses more than
  ``max_drop`` on held-out data is rejected (see below).
* ``nncf``: ``nncf.quantize_with_accuracy_control`` (ONNX backend, PERFORMANCE preset,
  COMPRESS_WEIGHTS=False): NNCF reverts the most harmful quantizers to float until the drop is
  within ``max_drop``. NNCF emits UINT8 Q/DQ after ReLU, which TensorRT rejects, so the result
  is made TensorRT-safe (``make_trt_safe``: UINT8 zp 0 range [0, 255 s] -> INT8 zp 0 with scale
  255 s / 127) and re-validated. If only the unconverted graph meets ``max_drop`` it is shipped
  with ``extra.tensorrt_compatible = False`` (OpenVINO / ORT only; `compile --target tensorrt`
  refuses it).

Calibration uses the TRAINING split only (a deterministic subset of ``calib_size`` samples);
metrics are measured on the held-out validation split with onnxruntime, for fp32 and int8.
A depth whose int8 score is more than ``max_drop`` below fp32 gets
``rejected["int8"] = reason`` in the manifest and its int8 graph is NOT listed: never shipped
silently.

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


def family_ranges(graphs: list[tuple[Any, dict[str, str]]], cal: Calibration, input_name: str = "x",
                  method: str = "percentile", percentile: float = 99.99, bins: int = 2048) -> dict[str, tuple[float, float]]:
    """Calibration ranges {key: (low, high)} for every distinct float tensor of the merged family.

    minmax: exact min / max (ORT MinMax semantics, one pass).
    percentile: a second pass builds a `bins`-bin histogram of |v| per tensor and takes the
    (1 - (100 - p) / 200) quantile as the range (ORT Percentile semantics, CalibPercentile=p), so
    a few outliers no longer set the int8 step for the bulk of the values."""
    if method not in CALIBRATION_METHODS:
        raise ConfigError(f"unknown calibration method {method!r}; use one of {', '.join(CALIBRATION_METHODS)}")
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
    if method == "minmax":
        return {k: (lo[k], hi[k]) for k in valid}
    amax = {k: max(abs(lo[k]), abs(hi[k])) for k in valid}
    hist = {k: np.zeros(bins, np.int64) for k in valid}
    for xb in cal.batches():
        for k, r in zip(all_keys, outputs(xb)):
            if k in hist and amax[k] > 0:
                hist[k] += np.histogram(np.abs(r), bins=bins, range=(0.0, amax[k]))[0]
    out = {}
    cut = (100.0 - percentile) / 200.0  # as ORT's Percentile calibrator: a histogram of |v|, cut on both ends
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
    return out


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


def nncf_quantize(src: Path, cal: Calibration, max_drop: float, calib_size: int, input_name: str = "x") -> Any:
    """quantize_with_accuracy_control on the ONNX backend; returns the (uint8-capable) ModelProto."""
    import onnx

    nncf = require("nncf", "quantize")
    from nncf.onnx.quantization.backend_parameters import BackendParameters
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters

    from ..data import score

    logging.getLogger("nncf").setLevel(logging.ERROR)
    model = onnx.load(str(src))
    calib_items = [cal.x_calib[i:i + 1] for i in range(len(cal.x_calib))]
    calibration = nncf.Dataset(calib_items, lambda a: {input_name: a})
    vb = 32
    val_items = [(cal.x_val[i:i + vb], cal.y_val[i:i + vb]) for i in range(0, len(cal.x_val), vb)]
    validation = nncf.Dataset(val_items, lambda t: {input_name: t[0]})

    def validation_fn(m, items):
        sess = _session(m)
        preds, ys, per_item = [], [], []
        for xb, yb in items:
            p = sess.run(None, {input_name: xb})[-1]
            preds.append(p)
            ys.append(yb)
            per_item.append(score(cal.task, p, yb) if cal.task == "classification"
                            else -float(np.mean((p.reshape(yb.shape) - yb) ** 2)))
        return float(score(cal.task, np.concatenate(preds), np.concatenate(ys))), per_item

    adv = AdvancedQuantizationParameters(backend_params={BackendParameters.COMPRESS_WEIGHTS: False})
    return nncf.quantize_with_accuracy_control(
        model, calibration, validation, validation_fn, max_drop=max_drop, drop_type=nncf.DropType.ABSOLUTE,
        preset=nncf.QuantizationPreset.PERFORMANCE, subset_size=min(calib_size, len(calib_items)),
        advanced_quantization_parameters=adv)


def quantizable_nodes(model: Any, op_types: tuple[str, ...] = TRT_OP_TYPES) -> list[str]:
    return [n.name for n in model.graph.node if n.op_type in op_types and n.name]


def restore_accuracy(qfn, src: Path, dst: Path, fp32: float, cal: Calibration, max_drop: float,
                     input_name: str = "x", max_float_fraction: float = 0.25) -> list[str]:
    """Quantize with `qfn(excluded)`; while the held-out drop exceeds max_drop, keep the most
    sensitive Conv/Gemm/MatMul in float (greedy, like NNCF's accuracy restorer): nodes are ranked
    by the score (then logit error) of the graph with only that node left in float. At most
    `max_float_fraction` of them go back to float; the caller rejects the depth if that is not
    enough. Returns the nodes left in float (dst holds the last graph)."""
    import onnx

    qfn([])
    if fp32 - evaluate(dst, cal, input_name) <= max_drop + 1e-12 or max_float_fraction <= 0:
        return []
    nodes = quantizable_nodes(onnx.load(str(src)))
    budget = min(len(nodes), max(2, int(round(len(nodes) * max_float_fraction))))
    ref = predict(src, {input_name: cal.x_val})[-1]
    from ..data import score

    ranked = []
    for n in nodes:
        qfn([n])
        y = predict(dst, {input_name: cal.x_val})[-1]
        ranked.append((-score(cal.task, y, cal.y_val), float(np.mean((y - ref) ** 2)), n))
    ranked.sort()
    excluded: list[str] = []
    for _, _, n in ranked[:budget]:
        excluded.append(n)
        qfn(excluded)
        if fp32 - evaluate(dst, cal, input_name) <= max_drop + 1e-12:
            break
    return excluded


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
                    max_float_fraction: float = 0.25, dataset: str | None = None,
                    calibration_method: str = "percentile", percentile: float = 99.99) -> dict[str, Any]:
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
    require("onnxruntime", "onnxruntime")
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
        family: dict[str, tuple[float, float]] | None = None
        keys: dict[str, dict[str, str]] = {}
        models: dict[str, Any] = {}
        per_graph: dict[str, dict[str, tuple[float, float]]] = {}
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
                    family = family_ranges([(m, keys[k]) for k, m in graphs], cal, input_name, calibration_method,
                                           percentile)
                    for k, m in graphs:
                        per_graph[k] = ranges_for(m, keys[k], family)
                    timing["calibration_passes"] = 1
                    timing["distinct_tensors"] = len(family)
                else:
                    for k, m in graphs:  # the same MinMax pass, once per depth graph
                        if k.startswith("d"):  # (segments calibrate on the chain's inputs below)
                            per_graph[k] = ranges_for(m, keys[k], family_ranges([(m, keys[k])], cal, input_name,
                                                                                calibration_method, percentile))
                    timing["calibration_passes"] = len(per_graph)
                timing["calibration_s"] = time.perf_counter() - t0
                timing["graph_tensors"] = sum(len(r) for r in per_graph.values())
            except NotShareable as exc:
                shared, use_cache, share_note = False, False, f"calibration ranges not precomputed: {exc}"

        # ---- depths -----------------------------------------------------------------------------
        bar = progress_bar(len(selected) + len(seg_sources), f"quantize ({method})", "graph", progress)
        feeds = [{input_name: xb} for xb in cal.batches(equal=True)]
        for d in selected:
            entry = manifest.depth(d)
            src = sources[d]
            dst = stage / "onnx" / f"depth_{d:03d}.int8.onnx"
            t0 = time.perf_counter()
            extra: dict[str, Any] = {"method": method, "calib_size": len(cal.x_calib), "calibration": "training split",
                                     "symmetric": True, "per_channel": True}
            if method == "ort":
                extra["calibration_method"] = (f"percentile {percentile}" if calibration_method == "percentile"
                                               else "minmax")
            fp32 = evaluate(src, cal, input_name)
            candidates: list[tuple[str, Any]] = []
            if method == "ort":
                ranges = per_graph.get(f"d{d}") if use_cache else None

                def qfn(excl, src=src, dst=dst, ranges=ranges):
                    if ranges is not None:
                        ort_quantize(src, dst, ranges=ranges, nodes_to_exclude=excl)
                    else:
                        ort_quantize(src, dst, feeds=list(feeds), nodes_to_exclude=excl,
                                     calibration=calibration_method, percentile=percentile)

                excluded = restore_accuracy(qfn, src, dst, fp32, cal, max_drop, input_name,
                                            max_float_fraction=max_float_fraction)
                extra["shared_calibration"] = bool(shared)
                extra["op_types"] = list(TRT_OP_TYPES)
                if excluded:
                    extra["float_nodes"] = excluded
                candidates.append(("trt", None))
            else:
                qm = nncf_quantize(src, cal, max_drop, len(cal.x_calib), input_name)
                safe, changed = make_trt_safe(qm)
                extra["uint8_pairs_converted"] = changed
                onnx.save(safe, str(dst))
                candidates.append(("trt", None))
                candidates.append(("nncf", qm))
            seconds = time.perf_counter() - t0
            from ..targets import qdq_lint

            chosen, int8, lint_issues = None, None, []
            for kind, alt in candidates:
                if kind == "nncf":
                    onnx.save(alt, str(dst))
                score8 = evaluate(dst, cal, input_name)
                issues = qdq_lint.lint(dst, "8.5")
                if fp32 - score8 <= max_drop + 1e-12:
                    chosen, int8, lint_issues = kind, score8, issues
                    break
                int8, lint_issues = (score8 if int8 is None else int8), issues
            lint_errors = [str(i) for i in qdq_lint.errors(lint_issues)]
            entry.metrics.setdefault("fp32", {})[manifest.metric_name] = fp32
            entry.metrics["int8"] = {manifest.metric_name: int8}
            row = {"depth": d, "fp32": fp32, "int8": int8, "drop": fp32 - int8, "seconds": seconds, "status": "ok"}
            if chosen is None:
                reason = (f"int8 {manifest.metric_name} {int8:.4f} is {fp32 - int8:.4f} below fp32 {fp32:.4f} "
                          f"(max drop {max_drop}) with method {method}")
                if method == "ort":
                    reason += "; try --method nncf (accuracy control) or a larger --calib-size"
                entry.rejected["int8"] = reason
                entry.artifacts = [a for a in entry.artifacts if not (a.format == "onnx" and a.precision == "int8")]
                dst.unlink(missing_ok=True)
                row["status"] = "rejected"
            else:
                entry.rejected.pop("int8", None)
                extra["tensorrt_compatible"] = not lint_errors
                extra["lint"] = "ok" if not lint_errors else lint_errors[:8]
                if chosen == "nncf":
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
                    ort_quantize(src, dst, ranges=per_graph[key])
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
            "bundle": str(bundle_dir), "method": method, "max_drop": max_drop, "metric": manifest.metric_name,
            "calib_size": len(cal.x_calib), "calibration_data": "training split (never the validation split)",
            "calibration_method": calibration_method if method == "ort" else "nncf",
            "shared_calibration": bool(shared), "calibration_note": share_note, "timing": timing,
            "seconds": time.perf_counter() - t_start, "depths": rows, "segments": seg_rows,
            "rejected": {str(r["depth"]): manifest.depth(r["depth"]).rejected["int8"] for r in rows
                         if r["status"] == "rejected"},
        }
        timing["quantize_total_s"] = result["seconds"]
        manifest.save(stage)
        from ..fileio import atomic_write_json

        atomic_write_json(stage / "quantize.json", result)
    return result


def _next_inputs(manifest: BundleManifest, seg) -> list[str]:
    nxt = [s for s in manifest.segments if s.index == seg.index + 1]
    return list(nxt[0].inputs) if nxt else [o for o in seg.outputs[:-1]]
