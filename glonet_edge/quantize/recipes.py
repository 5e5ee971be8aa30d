"""The recipes that make a depth's int8 graph, as accuracy-control candidates.

ort:  onnxruntime quantize_static with the TensorRT recipe (QDQ, signed symmetric INT8,
      per-channel weights as float + Q -> DQ, float bias), one candidate per range estimator.
nncf: NNCF's quantize_with_accuracy_control, then plain nncf.quantize with its HISTOGRAM and
      MINMAX estimators, each made TensorRT-safe; last, NNCF's own UINT8 graph (OpenVINO and
      onnxruntime only). docs/quantize.md says why each setting is what it is.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from ..compare import cpu_session, top1_agreement
from ..data import score
from ..errors import require
from .accuracy import Candidate, reference_outputs
from .calibration import Calibration, Estimator, Ranges, estimator_name
from .qdq_rewrite import make_trt_safe
from .settings import TRT_OP_TYPES

TRT_EXTRA_OPTIONS = {
    "AddQDQPairToWeight": True,
    "DedicatedQDQPair": True,
    "QuantizeBias": False,
    "QDQOpTypePerChannelSupportToAxis": {"MatMul": 1},
    # Quantize the INPUTS of Conv/Gemm/MatMul only: their outputs feed the GloNet running sum,
    # and re-rounding every block output there costs agreement with fp32.
    "OpTypesToExcludeOutputQuantization": list(TRT_OP_TYPES),
}
NNCF_RANGE_ESTIMATORS = ("HISTOGRAM", "MINMAX")  # plain nncf.quantize candidates after the accuracy-control one


@dataclass(frozen=True, kw_only=True)
class OrtLayout:
    """How onnxruntime's quantize_static lays out an INT8 graph: the options in which the TensorRT
    recipe (TRT_LAYOUT) and ONNX Runtime's own flavours (flavours.py) differ."""

    quant_format: str = "QDQ"  # "QDQ" | "QOperator"
    activation: str = "QInt8"  # onnxruntime QuantType of activations
    weight: str = "QInt8"  # onnxruntime QuantType of weights
    per_channel: bool = True
    reduce_range: bool = False  # 7-bit weights: avoids u8s8 overflow on non-VNNI AVX2 (vpmaddubsw)
    op_types: tuple[str, ...] | None = None  # None: every op onnxruntime can quantize
    extra: Mapping[str, Any] = field(default_factory=dict, hash=False)  # more extra_options

    def options(self, q: Any) -> dict[str, Any]:
        """The quantize_static keyword arguments of this layout (`q`: onnxruntime.quantization)."""
        return {"quant_format": getattr(q.QuantFormat, self.quant_format),
                "activation_type": getattr(q.QuantType, self.activation),
                "weight_type": getattr(q.QuantType, self.weight),
                "op_types_to_quantize": None if self.op_types is None else list(self.op_types),
                "per_channel": self.per_channel, "reduce_range": self.reduce_range}

    def extra_options(self) -> dict[str, Any]:
        # Signed types are quantized symmetrically (zero point 0, what TensorRT requires); unsigned
        # activations keep their own range: a symmetric one would leave the u8 codes below 128
        # unused on the non-negative outputs of ReLU.
        return {"WeightSymmetric": True, "ActivationSymmetric": self.activation == "QInt8", **self.extra}


TRT_LAYOUT = OrtLayout(op_types=TRT_OP_TYPES, extra=TRT_EXTRA_OPTIONS)


# ---------------------------------------------------------------------------------------------
# onnxruntime
# ---------------------------------------------------------------------------------------------
class FeedReader:
    """onnxruntime CalibrationDataReader over a list of feed dicts (one per graph: readers are
    consumed once)."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]):
        self._it = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)

    def __len__(self) -> int:  # pragma: no cover - used by strided calibration only
        return 0


@contextlib.contextmanager
def _quiet_ort_logging() -> Iterator[None]:
    """onnxruntime's quantizer logs through the root logger: quiet it for the call only."""
    root = logging.getLogger()
    before = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(before)


def supports_range_cache() -> bool:
    q = require("onnxruntime.quantization", "onnxruntime")
    return "calibration_cache_path" in inspect.signature(q.quantize_static).parameters


def _write_range_cache(ranges: Ranges, path: Path) -> None:
    """Precomputed min/max ranges in the file format of ORT's calibration cache."""
    from onnxruntime.quantization import CalibrationMethod
    from onnxruntime.quantization.calibrate import TensorData, TensorsData, save_tensors_data

    data = {name: TensorData(lowest=np.array([lo], np.float32), highest=np.array([hi], np.float32))
            for name, (lo, hi) in ranges.items()}
    save_tensors_data(TensorsData(CalibrationMethod.MinMax, data), path)


def _drop_unused_opsets(path: Path) -> None:
    """Drop opset imports of domains no node uses (ORT adds com.microsoft & co.; parsers dislike them)."""
    import onnx

    m = onnx.load(str(path))
    used = {n.domain or "" for n in m.graph.node}
    keep = [o for o in m.opset_import if (o.domain or "") in used or o.domain in ("", "ai.onnx")]
    if len(keep) != len(m.opset_import):
        del m.opset_import[:]
        m.opset_import.extend(keep)
        onnx.save(m, str(path))


def ort_quantize(src: Any, dst: Path, feeds: list[dict[str, np.ndarray]] | None = None, ranges: Ranges | None = None,
                 nodes_to_exclude: list[str] | None = None, calibration: str = "percentile", percentile: float = 99.99,
                 layout: OrtLayout = TRT_LAYOUT) -> None:
    """quantize_static in `layout` (the TensorRT recipe unless given); calibrates on `feeds` with
    the `calibration` estimator, or uses precomputed min/max `ranges` ({tensor name: (min, max)})
    through the calibration cache."""
    q = require("onnxruntime.quantization", "onnxruntime")
    kwargs = layout.options(q)
    extra = layout.extra_options()
    method = q.CalibrationMethod.MinMax
    # ORT's percentile calibrator prints its progress to stdout: keep the CLI's output clean
    with _quiet_ort_logging(), contextlib.redirect_stdout(io.StringIO()), \
            tempfile.TemporaryDirectory(prefix="glonet-quant.") as tmp:
        reader = None
        if ranges is not None:
            kwargs["calibration_cache_path"] = Path(tmp) / "ranges.json"
            _write_range_cache(ranges, kwargs["calibration_cache_path"])
        else:
            reader = FeedReader(feeds or [])
            if calibration == "percentile":
                method = q.CalibrationMethod.Percentile
                extra["CalibPercentile"] = percentile
        q.quantize_static(src, str(dst), reader, nodes_to_exclude=list(nodes_to_exclude or []),
                          calibrate_method=method, extra_options=extra, **kwargs)
    _drop_unused_opsets(dst)


class OrtCandidate(Candidate):
    """quantize_static in `layout` with one range estimator, from precomputed ranges or by
    calibrating on feeds; layers go back to float through quantize_static's own
    nodes_to_exclude (onnxruntime writes dst itself). A QDQ graph is its own `base`."""

    def __init__(self, src: Path, dst: Path, estimator: Estimator, ranges: Ranges | None = None,
                 feeds: list[dict[str, np.ndarray]] | None = None, layout: OrtLayout = TRT_LAYOUT,
                 name: str | None = None):
        super().__init__(name or f"ort {estimator_name(estimator)}", dst, tensorrt=layout is TRT_LAYOUT)
        self.src, self.estimator, self.ranges, self.feeds, self.layout = src, estimator, ranges, feeds, layout

    def _quantize(self, excluded: list[str], dst: Path | None = None, layout: OrtLayout | None = None) -> None:
        common = {"nodes_to_exclude": excluded, "layout": layout or self.layout}
        if self.ranges is not None:
            ort_quantize(self.src, dst or self.dst, ranges=self.ranges, **common)
        else:
            ort_quantize(self.src, dst or self.dst, feeds=list(self.feeds or []), calibration=self.estimator[0],
                         percentile=self.estimator[1], **common)

    def write(self, excluded: list[str]) -> None:
        import onnx

        if self.base is None:
            self._quantize([])
            self.base = onnx.load(str(self.dst))
            if not excluded:
                return
        self._quantize(excluded)


def ort_candidates(src: Path, dst: Path, range_estimators: list[Estimator], ranges: dict[Estimator, Ranges] | None,
                   feeds: list[dict[str, np.ndarray]]) -> list[Candidate]:
    """One candidate per estimator, in order; `ranges` None: each calibrates on `feeds`."""
    return [OrtCandidate(src, dst, e, ranges=None if ranges is None else ranges[e], feeds=feeds)
            for e in range_estimators]


# ---------------------------------------------------------------------------------------------
# NNCF
# ---------------------------------------------------------------------------------------------
def _nncf_inputs(nncf: Any, model: Any, data: Calibration, input_name: str,
                 range_estimator: str | None) -> tuple[Any, dict[str, Any], Any]:
    """NNCF's calibration data set, the options every recipe shares, and the advanced parameters."""
    from nncf.onnx.quantization.backend_parameters import BackendParameters
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters

    calib_items = [data.x_calib[i:i + 1] for i in range(len(data.x_calib))]
    options: dict[str, Any] = {"preset": nncf.QuantizationPreset.PERFORMANCE, "subset_size": len(calib_items)}
    # Only the inputs of Conv / Gemm / MatMul, as the onnxruntime recipe: NNCF would otherwise
    # also quantize the GloNet running sum at every Add.
    other = sorted({n.op_type for n in model.graph.node} - set(TRT_OP_TYPES))
    if other:
        options["ignored_scope"] = nncf.IgnoredScope(types=other, validate=False)
    estimator: dict[str, Any] = {}
    if range_estimator:
        from nncf.quantization.range_estimator import RangeEstimatorParametersSet

        estimator["activations_range_estimator_params"] = getattr(RangeEstimatorParametersSet, range_estimator)
    advanced = AdvancedQuantizationParameters(backend_params={BackendParameters.COMPRESS_WEIGHTS: False}, **estimator)
    return nncf.Dataset(calib_items, lambda a: {input_name: a}), options, advanced


def _agreement_metric(nncf: Any, src: Path, data: Calibration, min_agreement: float, input_name: str):
    """NNCF's validation data set and metric: the held-out score minus 10 x the shortfall of top-1
    agreement with fp32 below min_agreement, so NNCF's restorer enforces both criteria."""
    ref = reference_outputs(src, {input_name: data.x_val})[-1]
    agree = data.task == "classification" and ref.ndim == 2 and ref.shape[1] > 1
    vb = 32
    items = [(data.x_val[i:i + vb], data.y_val[i:i + vb], ref[i:i + vb]) for i in range(0, len(data.x_val), vb)]

    def item_metric(p: np.ndarray, yb: np.ndarray, rb: np.ndarray) -> float:
        if data.task != "classification":
            return -float(np.mean((p.reshape(yb.shape) - yb) ** 2))
        return score(data.task, p, yb) + (top1_agreement(p, rb) if agree else 0.0)

    def validation_fn(model: Any, batches: Any) -> tuple[float, list[float]]:
        sess = cpu_session(model)
        preds, ys, refs, per_item = [], [], [], []
        for xb, yb, rb in batches:
            p = sess.run(None, {input_name: xb})[-1]
            preds.append(p)
            ys.append(yb)
            refs.append(rb)
            per_item.append(item_metric(p, yb, rb))
        pred, r = np.concatenate(preds), np.concatenate(refs)
        metric = float(score(data.task, pred, np.concatenate(ys)))
        if agree:
            metric -= 10.0 * max(0.0, float(min_agreement) - top1_agreement(pred, r))
        return metric, per_item

    return nncf.Dataset(items, lambda t: {input_name: t[0]}), validation_fn


def nncf_quantize(src: Path, data: Calibration, max_drop: float, min_agreement: float, input_name: str = "x",
                  range_estimator: str | None = None) -> Any:
    """NNCF on the ONNX backend (PERFORMANCE preset, COMPRESS_WEIGHTS=False, only the inputs of
    Conv / Gemm / MatMul); returns NNCF's (uint8-capable) ModelProto. No range_estimator:
    nncf.quantize_with_accuracy_control with _agreement_metric; else plain nncf.quantize with
    that RangeEstimatorParametersSet (HISTOGRAM, MINMAX, ...) for activations."""
    import onnx

    nncf = require("nncf", "quantize")
    logging.getLogger("nncf").setLevel(logging.ERROR)
    model = onnx.load(str(src))
    calibration, options, advanced = _nncf_inputs(nncf, model, data, input_name, range_estimator)
    if range_estimator:
        return nncf.quantize(model, calibration, advanced_parameters=advanced, **options)
    validation, validation_fn = _agreement_metric(nncf, src, data, min_agreement, input_name)
    return nncf.quantize_with_accuracy_control(
        model, calibration, validation, validation_fn, max_drop=max_drop, drop_type=nncf.DropType.ABSOLUTE,
        advanced_quantization_parameters=advanced, **options)


class NncfGraphs:
    """NNCF's own graphs, each made once: "ac" (accuracy control) or a range estimator's name.
    The uint8 last resort reuses the accuracy-control graph."""

    def __init__(self, src: Path, data: Calibration, max_drop: float, min_agreement: float, input_name: str = "x"):
        self.src, self.data, self.input_name = src, data, input_name
        self.max_drop, self.min_agreement = max_drop, min_agreement
        self._made: dict[str, Any] = {}

    def get(self, recipe: str) -> Any:
        if recipe not in self._made:
            self._made[recipe] = nncf_quantize(self.src, self.data, self.max_drop, self.min_agreement, self.input_name,
                                               range_estimator=None if recipe == "ac" else recipe)
        return self._made[recipe]


class NncfCandidate(Candidate):
    """One of NNCF's graphs; made TensorRT-safe (make_trt_safe) unless tensorrt=False."""

    def __init__(self, name: str, dst: Path, graphs: NncfGraphs, recipe: str, tensorrt: bool = True):
        super().__init__(name, dst, tensorrt)
        self.graphs, self.recipe = graphs, recipe
        self.converted: int | None = None  # Q/DQ nodes make_trt_safe changed, once made

    def make(self) -> Any:
        raw = self.graphs.get(self.recipe)
        if not self.tensorrt:
            return raw
        model, self.converted = make_trt_safe(raw)
        return model


def nncf_candidates(dst: Path, graphs: NncfGraphs, range_search: bool) -> list[NncfCandidate]:
    candidates = [NncfCandidate("nncf accuracy control", dst, graphs, "ac")]
    if range_search:
        candidates += [NncfCandidate(f"nncf {r.lower()}", dst, graphs, r) for r in NNCF_RANGE_ESTIMATORS]
    # last resort, as NNCF made it (UINT8 activations): OpenVINO / onnxruntime only
    candidates.append(NncfCandidate("nncf accuracy control (uint8)", dst, graphs, "ac", tensorrt=False))
    return candidates
