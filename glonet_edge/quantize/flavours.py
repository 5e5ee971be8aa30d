"""INT8 flavours: one quantized graph per engine family, because no single QDQ layout is fast everywhere.

The TensorRT graph (recipes.TRT_LAYOUT: signed symmetric s8/s8 QDQ, only the INPUTS of
Conv/Gemm/MatMul quantized) is what TensorRT's explicit quantization and OpenVINO want. ONNX
Runtime's x86 CPU kernels do not run it fast: with no QuantizeLinear after a Conv, ORT cannot
fuse DQ -> Conv -> Q into QLinearConv and runs a float Conv on dequantized tensors, slower than
fp32 (BENCHMARKS.md). ORT's own flavour quantizes the outputs too, with u8 activations and s8
weights (the u8s8 kernels MLAS has for VNNI and plain AVX2). `glonet bench int8-flavours`
measures the candidates; docs/quantize.md has the table of what each engine gets and why.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..manifest import ORT_FORMAT, Artifact, BundleManifest, DepthEntry
from ..provenance import source_extra
from .accuracy import AccuracyCheck, Candidate, control_accuracy
from .calibration import Calibration, Estimator, estimator_name, estimators, load_calibration
from .qdq_rewrite import quantizable_nodes
from .recipes import OrtCandidate, OrtLayout
from .settings import QuantizeSettings

EXTRA_KEY = "flavour"  # Artifact.extra key naming the flavour of an int8 graph
TENSORRT_FLAVOUR = "trt-s8s8-qdq"  # the graph quantize has always made (recipes.TRT_LAYOUT)
ORT_REJECTED = "onnxruntime/int8"  # DepthEntry.rejected key when the ORT flavour failed accuracy control


@dataclass(frozen=True, kw_only=True)
class Flavour(OrtLayout):
    """One way to lay out an INT8 graph for onnxruntime: every op it can quantize, outputs
    included, so its graph optimizer fuses QLinearConv & co.; u8 activations unless said."""

    name: str
    activation: str = "QUInt8"
    measured: bool = True  # False: picked from documentation, not measured on that platform


# Every candidate `glonet bench int8-flavours` measures. ORT_X86 / ORT_ARM below are the choices.
CANDIDATES: tuple[Flavour, ...] = (
    Flavour(name="ort-s8s8-qdq", activation="QInt8"),
    Flavour(name="ort-u8s8-qdq"),
    Flavour(name="ort-u8s8-qdq-rr", reduce_range=True),
    Flavour(name="ort-u8s8-qoperator", quant_format="QOperator"),
    Flavour(name="ort-u8s8-qoperator-rr", quant_format="QOperator", reduce_range=True),
    Flavour(name="ort-u8s8-qdq-pt", per_channel=False),
)
FLAVOURS = {f.name: f for f in CANDIDATES}
ORT_X86 = FLAVOURS["ort-u8s8-qdq"]  # QOperator: as fast, but broke accuracy (docs/quantize.md)
# Not measured (no ARM machine here): ORT's quantization guide makes U8S8 the layout of choice
# on ARM64 too (faster than U8U8 on low-end cores, same elsewhere); QDQ, ORT's recommended format.
ORT_ARM = Flavour(name="ort-u8s8-qdq-arm64", measured=False)


def ort_flavour_for(machine: str) -> Flavour:
    """The flavour `glonet quantize` makes for onnxruntime on a machine (platform.machine())."""
    return ORT_ARM if machine.lower() in ("aarch64", "arm64") else ORT_X86


def resolve_flavour(name: str) -> Flavour | None:
    """QuantizeSettings.ort_flavour -> the Flavour to make, None for "none"."""
    import platform

    if name == "none":
        return None
    return ort_flavour_for(platform.machine()) if name == "auto" else FLAVOURS[name]


class FlavourCandidate(OrtCandidate):
    """An accuracy-control candidate in an ORT flavour, calibrating on feeds. A QOperator graph
    has no Q/DQ pairs for keep_float's ranking, so its layers are ranked on its QDQ twin (`base`:
    same ranges and types, QDQ layout); a QDQ flavour is its own base, made once."""

    def __init__(self, src: Path, dst: Path, flavour: Flavour, estimator: Estimator,
                 feeds: list[dict[str, np.ndarray]]):
        super().__init__(src, dst, estimator, feeds=feeds, layout=flavour,
                         name=f"{flavour.name} {estimator_name(estimator)}")
        self.flavour = flavour

    def make(self) -> Any:
        import onnx

        twin = self.dst.with_name(self.dst.stem + ".twin.onnx")
        try:
            self._quantize([], twin, replace(self.flavour, quant_format="QDQ"))
            return onnx.load(str(twin))
        finally:
            twin.unlink(missing_ok=True)

    def write(self, excluded: list[str]) -> None:
        if self.flavour.quant_format == "QDQ":
            super().write(excluded)
            return
        if self.base is None:
            self.base = self.make()
        self._quantize(excluded)


def flavour_candidates(src: Path, dst: Path, flavour: Flavour, range_estimators: list[Estimator],
                       feeds: list[dict[str, np.ndarray]]) -> list[Candidate]:
    """One candidate per range estimator, in order."""
    return [FlavourCandidate(src, dst, flavour, e, feeds) for e in range_estimators]


def flavour_extra(flavour: Flavour, outcome: Any, settings: QuantizeSettings, data: Calibration) -> dict[str, Any]:
    """What the manifest records about a shipped flavour graph."""
    extra: dict[str, Any] = {EXTRA_KEY: flavour.name, "engine": "onnxruntime", "format": flavour.quant_format,
                             "activations": flavour.activation, "weights": flavour.weight,
                             "per_channel": flavour.per_channel, "reduce_range": flavour.reduce_range,
                             "measured": flavour.measured, "recipe": outcome.candidate.name, "calib_size": len(data.x_calib),
                             "calibration": data.calibration_data, "accuracy_checks": outcome.check.engines,
                             "max_drop": settings.max_drop, "min_agreement": settings.min_agreement}
    if outcome.float_layers:
        extra["float_nodes"] = outcome.float_layers
    return extra


def quantize_flavour_depth(stage: Path, entry: DepthEntry, src: Path, flavour: Flavour, data: Calibration,
                           settings: QuantizeSettings, input_name: str = "x",
                           judge: AccuracyCheck | None = None) -> dict[str, Any]:
    """One depth's graph in `flavour` under accuracy control on onnxruntime (the only engine that
    serves it): shipped as an ORT_FORMAT int8 artifact, or recorded under rejected[ORT_REJECTED]
    (the TensorRT graph then stays what onnxruntime serves). `judge`: the depth's accuracy check
    from quantizing its TensorRT graph on `data`, whose fp32 reference is reused."""
    import onnx

    dst = stage / "onnx" / f"depth_{entry.depth:03d}.int8.{flavour.name}.onnx"
    if judge is None:
        judge = AccuracyCheck(src, data, settings.max_drop, settings.min_agreement, [], input_name)
    judge = judge.on(["onnxruntime"])  # the only engine that serves this graph
    feeds = [{input_name: xb} for xb in data.batches(equal=True)]
    ests = estimators(settings.calibration_method, settings.percentile, search=settings.range_search)
    # Every op may go back to float, not only Conv/Gemm/MatMul: the flavour also quantizes the
    # Adds of the GloNet running sum, and on the digits CNN those cost the agreement.
    graph = onnx.load(str(src))
    layers = quantizable_nodes(graph, tuple({n.op_type for n in graph.graph.node}))
    outcome = control_accuracy(flavour_candidates(src, dst, flavour, ests, feeds), judge, layers,
                               settings.max_float_fraction)
    entry.artifacts = [a for a in entry.artifacts if not (a.format == ORT_FORMAT and a.precision == "int8")]
    row = {"depth": entry.depth, "flavour": flavour.name, "fp32": judge.fp32, "int8": outcome.check.score,
           "agreement": outcome.check.agreement, "float_layers": len(outcome.float_layers), "status": "ok"}
    if outcome.ok:
        entry.rejected.pop(ORT_REJECTED, None)
        extra = flavour_extra(flavour, outcome, settings, data)
        extra.update(source_extra(entry.artifact("onnx", "fp32"), {"onnxruntime": _ort_version()}))
        entry.set_artifact(Artifact.from_file(stage, dst, ORT_FORMAT, "int8", extra=extra))
    else:
        dst.unlink(missing_ok=True)
        entry.rejected[ORT_REJECTED] = (f"{flavour.name}: " + "; ".join(outcome.check.failures)
                                        + "; onnxruntime serves the TensorRT int8 graph instead")
        row["status"] = "rejected"
    return row


def _ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


def add_ort_flavours(stage: Path, manifest: BundleManifest, depths: list[int], settings: QuantizeSettings,
                     data: Calibration | None = None,
                     judges: dict[int, AccuracyCheck] | None = None) -> list[dict[str, Any]]:
    """ONNX Runtime's int8 graph for each of `depths` whose TensorRT int8 graph shipped (quantize
    and `glonet compile --target onnxruntime --precision int8` both call this). `judges`: quantize's
    accuracy check of each depth, on `data`."""
    flavour = resolve_flavour(settings.ort_flavour)
    todo = [manifest.depth(d) for d in depths if "int8" not in manifest.depth(d).rejected]
    if flavour is None or not todo:
        return []
    if data is None:
        data = load_calibration(manifest, settings.calib_size, settings.seed, settings.dataset)
    judges = judges or {}
    return [quantize_flavour_depth(stage, e, e.artifact("onnx", "fp32").resolve(stage), flavour, data, settings,
                                   manifest.input_name, judges.get(e.depth)) for e in todo]
