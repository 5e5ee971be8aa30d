"""`quantize_bundle`: the selected depths (and the segment chain) of a bundle become int8 QDQ
graphs that passed accuracy control; a depth that fails is recorded as rejected, never shipped.
Calibration reads the training split only, the accept/reject decision the held-out split
(docs/quantize.md)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from ..compare import Runner, cpu_session, predict, session_runner
from ..data import score
from ..errors import ArtifactError, ConfigError, require
from ..exit_calibration import calibrate_bundle
from ..fileio import atomic_write_bytes, atomic_write_json, staged_directory
from ..manifest import Artifact, BundleManifest, DepthEntry, SegmentEntry
from ..progress import progress_bar
from ..provenance import changed_graphs, current_sha, graph_shas, metrics_key, prune_stale, stamp
from . import qdq_lint
from .accuracy import AccuracyCheck, Candidate, Outcome, control_accuracy, reference_outputs, resolve_engines
from .calibration import Calibration, RangeTable, estimators, load_calibration, precompute_ranges
from .flavours import EXTRA_KEY, TENSORRT_FLAVOUR, add_ort_flavours
from .qdq_rewrite import fold_weight_quantizers, quantizable_nodes
from .recipes import (NncfCandidate, NncfGraphs, nncf_candidates, ort_candidates, ort_quantize,
                      supports_range_cache)
from .settings import TRT_OP_TYPES, QuantizeSettings

TRT_LINT_VERSION = "8.5"  # the oldest TensorRT the graphs must parse on (JetPack 5)
UINT8_NOTE = ("NNCF graph with UINT8 activations: for OpenVINO / onnxruntime only; the TensorRT-safe conversion "
              "lost too much accuracy")


def quantize_bundle(bundle_dir: str | Path, settings: QuantizeSettings | None = None, *,
                    depths: list[int] | None = None, progress: bool = True) -> dict[str, Any]:
    """Quantize the bundle in place (staged: a failure leaves the previous bundle intact).

    Calibrate (once for the whole family where it can), then for each depth try the recipes
    under accuracy control and ship the first int8 graph that passes, or record the depth as
    rejected; then the segment chain. Returns what BUNDLE/quantize.json records."""
    settings = settings or QuantizeSettings()
    engines = _check_settings(settings)
    bundle_dir = Path(bundle_dir)
    manifest = BundleManifest.load(bundle_dir)
    selected = _selected_depths(manifest, depths, settings.segments)
    data = load_calibration(manifest, settings.calib_size, settings.seed, settings.dataset)
    started = time.perf_counter()
    graphs_before = graph_shas(manifest)
    with staged_directory(bundle_dir) as stage:
        job = _Job(stage, manifest, data, settings, engines)
        sources = {d: job.source(manifest.depth(d), f"depth {d}") for d in selected}
        chain = [(s, job.source(s, f"segment {s.index}")) for s in manifest.segments] if settings.segments else []
        ranges = job.ranges(sources, chain)
        bar = progress_bar(len(sources) + len(chain), f"quantize ({settings.method})", "graph", progress)
        rows = [job.quantize_depth(d, src, ranges, bar) for d, src in sources.items()]
        segment_rows = job.quantize_chain(chain, ranges, bar)
        if bar is not None:
            bar.close()
        result = job.summary(bundle_dir, rows, segment_rows, ranges, time.perf_counter() - started)
        # ONNX Runtime's own int8 graph (the TensorRT graph above runs slower than fp32 on its x86 kernels)
        result["ort_flavour"] = add_ort_flavours(stage, manifest, list(sources), settings, data, job.judges)
        result["exits"] = calibrate_bundle(stage, manifest, "int8", data.x_val, data.y_val)
        # Engines, latencies and thresholds of the graphs this run replaced go with them.
        result["removed_stale"] = prune_stale(stage, manifest, changed_graphs(graphs_before, manifest))
        manifest.save(stage)
        atomic_write_json(stage / "quantize.json", result)
    return result


def _check_settings(settings: QuantizeSettings) -> list[str]:
    """Validate the settings and the libraries they need; returns the engines to check on."""
    settings.validate()
    require("onnxruntime", "onnxruntime")
    engines = resolve_engines(settings.engines)
    if settings.method == "nncf":
        require("nncf", "quantize")
    return engines


def _selected_depths(manifest: BundleManifest, depths: list[int] | None, segments: bool) -> list[int]:
    selected = manifest.depth_values() if not depths else list(depths)
    for d in selected:
        manifest.depth(d)  # ConfigError naming the available depths
    if segments and not manifest.segments:
        raise ConfigError("--segments given but the bundle has no segment chain; export it with segments")
    return selected


def _state_feeds(run: Runner, feeds: list[dict[str, np.ndarray]], names: list[str]) -> list[dict[str, np.ndarray]]:
    """The next segment's feeds: this fp32 segment's state outputs (all but the last) on `feeds`."""
    return [dict(zip(names, run(f)[:-1])) for f in feeds]


class _Job:
    """One quantize run inside the staged bundle: what every graph of it shares."""

    def __init__(self, stage: Path, manifest: BundleManifest, data: Calibration, settings: QuantizeSettings,
                 engines: list[str]):
        self.stage, self.manifest, self.data, self.settings, self.engines = stage, manifest, data, settings, engines
        self.input_name = manifest.input_name
        self.range_estimators = estimators(settings.calibration_method, settings.percentile,
                                           search=settings.range_search)
        self.feeds = [{self.input_name: xb} for xb in data.batches(equal=True)]
        self.judges: dict[int, AccuracyCheck] = {}  # per depth: add_ort_flavours reuses their fp32 references

    def source(self, entry: DepthEntry | SegmentEntry, what: str) -> Path:
        art = entry.artifact("onnx", "fp32")
        if art is None:
            raise ArtifactError(f"{what} has no fp32 ONNX graph in the manifest; re-run `glonet export`")
        return art.resolve(self.stage)

    def ranges(self, sources: dict[int, Path], chain: list[tuple[SegmentEntry, Path]]) -> RangeTable:
        """ort: every estimator's activation ranges, before any graph is quantized."""
        s = self.settings
        if s.method != "ort":
            return RangeTable()
        if not supports_range_cache():
            return RangeTable(note="calibration not shared: this onnxruntime has no calibration_cache_path "
                                   "(needs >= 1.32)" if s.share_calibration else None)
        return precompute_ranges(sources, chain, self.data, self.range_estimators, s.share_calibration, self.input_name)

    # ---- depths -------------------------------------------------------------------------------
    def candidates(self, d: int, src: Path, dst: Path, ranges: RangeTable) -> list[Candidate]:
        s = self.settings
        if s.method == "ort":
            return ort_candidates(src, dst, self.range_estimators, ranges.per_graph.get(f"d{d}"), self.feeds)
        graphs = NncfGraphs(src, self.data, s.max_drop, s.min_agreement, self.input_name)
        return nncf_candidates(dst, graphs, s.range_search)

    def quantize_depth(self, d: int, src: Path, ranges: RangeTable, bar: Any) -> dict[str, Any]:
        import onnx

        entry = self.manifest.depth(d)
        dst = self.stage / "onnx" / f"depth_{d:03d}.int8.onnx"
        started = time.perf_counter()
        judge = self.judges[d] = AccuracyCheck(src, self.data, self.settings.max_drop, self.settings.min_agreement,
                                               self.engines, self.input_name)
        layers = quantizable_nodes(onnx.load(str(src)))
        candidates = self.candidates(d, src, dst, ranges)
        outcome = control_accuracy(candidates, judge, layers, self.settings.max_float_fraction)
        if outcome.ok:
            store_int8_weights(dst, {self.input_name: self.data.x_val})
        lint_errors = [str(i) for i in _trt_lint(dst)] if outcome.ok else []
        row = _depth_row(d, judge.fp32, outcome, time.perf_counter() - started)
        self._record_metrics(entry, judge.fp32, outcome)
        if outcome.ok:
            self._ship(entry, dst, outcome, self._extra(candidates, ranges), lint_errors, row)
        else:
            self._reject(entry, dst, outcome, row)
        if bar is not None:
            bar.set_postfix(depth=d, drop=f"{row['drop']:+.4f}")
            bar.update(1)
        return row

    def _record_metrics(self, entry: DepthEntry, fp32: float, outcome: Outcome) -> None:
        metric = self.manifest.metric_name
        entry.metrics.setdefault("fp32", {})[metric] = fp32
        stamp(entry, metrics_key("fp32"), current_sha(entry, "fp32"))
        entry.metrics["int8"] = {metric: outcome.check.score}
        if outcome.check.agreement is not None:
            entry.metrics["int8"]["agreement"] = outcome.check.agreement

    def _extra(self, candidates: list[Candidate], ranges: RangeTable) -> dict[str, Any]:
        """How the int8 graph was made, for the manifest (what it passed is added on shipping)."""
        extra: dict[str, Any] = {EXTRA_KEY: TENSORRT_FLAVOUR, "method": self.settings.method,
                                 "calib_size": len(self.data.x_calib),
                                 "calibration": self.data.calibration_data, "symmetric": True, "per_channel": True}
        if self.settings.method == "ort":
            extra.update(shared_calibration=ranges.shared, op_types=list(TRT_OP_TYPES))
        converted = {c.recipe: c.converted for c in candidates
                     if isinstance(c, NncfCandidate) and c.converted is not None}
        if converted:
            extra["uint8_pairs_converted"] = converted
        return extra

    def _ship(self, entry: DepthEntry, dst: Path, outcome: Outcome, extra: dict[str, Any], lint_errors: list[str],
              row: dict[str, Any]) -> None:
        s, recipe = self.settings, outcome.candidate
        extra["recipe"] = recipe.name
        if s.method == "ort":
            extra["calibration_method"] = recipe.name[len("ort "):]
        extra.update(accuracy_checks=outcome.check.engines, min_agreement=s.min_agreement, max_drop=s.max_drop)
        if outcome.float_layers:
            extra["float_nodes"] = outcome.float_layers
            extra["float_fraction"] = round(len(outcome.float_layers) / max(1, outcome.layers), 4)
        extra.update(tensorrt_compatible=not lint_errors, lint=lint_errors[:8] if lint_errors else "ok")
        if not recipe.tensorrt:
            extra.update(note=UINT8_NOTE, flavour="nncf-u8s8-qdq")
        entry.rejected.pop("int8", None)
        shipped = Artifact.from_file(self.stage, dst, "onnx", "int8", extra=extra)
        entry.set_artifact(shipped)
        stamp(entry, metrics_key("int8"), shipped.sha256)
        row["tensorrt_compatible"] = not lint_errors
        if lint_errors:
            row["status"] = "ok (not TensorRT-safe)"

    def _reject(self, entry: DepthEntry, dst: Path, outcome: Outcome, row: dict[str, Any]) -> None:
        s = self.settings
        in_float = f"{len(outcome.float_layers)} of {outcome.layers} layers"
        too_many = f"{in_float} would stay float (more than {s.max_float_fraction:.0%})"
        reason = "; ".join(outcome.check.failures or [too_many])
        reason += f" (method {s.method}, best of {len(outcome.tried)} attempts, {in_float} in float)"
        if s.method == "ort":
            reason += "; try --method nncf (accuracy control) or a larger --calib-size"
        entry.rejected["int8"] = reason
        stamp(entry, metrics_key("int8"), None)  # the score of a graph that is not shipped
        entry.artifacts = [a for a in entry.artifacts if not (a.format == "onnx" and a.precision == "int8")]
        dst.unlink(missing_ok=True)
        row["status"] = "rejected"

    # ---- the segment chain ----------------------------------------------------------------------
    def _next_inputs(self, seg: SegmentEntry) -> list[str]:
        nxt = [s for s in self.manifest.segments if s.index == seg.index + 1]
        return list(nxt[0].inputs) if nxt else list(seg.outputs[:-1])

    def _quantize_segment(self, seg: SegmentEntry, src: Path, dst: Path, feeds: list[dict[str, np.ndarray]],
                          ranges: RangeTable) -> bool:
        """ORT recipe from the precomputed ranges, else calibrated on `feeds`; True when shared."""
        graph_ranges = ranges.per_graph.get(f"s{seg.index}")
        if graph_ranges is not None:
            ort_quantize(src, dst, ranges=graph_ranges[self.range_estimators[0]])
            return ranges.shared
        ort_quantize(src, dst, feeds=list(feeds), calibration=self.settings.calibration_method,
                     percentile=self.settings.percentile)
        return False

    def quantize_chain(self, chain: list[tuple[SegmentEntry, Path]], ranges: RangeTable,
                       bar: Any) -> list[dict[str, Any]]:
        """Each segment calibrates on the fp32 chain's states before it; the chain is scored at
        every segment's end, fp32 chain against int8 chain."""
        feeds = self.feeds
        fp32_feeds = int8_feeds = {self.input_name: self.data.x_val}
        rows = []
        for seg, src in chain:
            dst = self.stage / "segments" / f"{src.name[:-len('.onnx')]}.int8.onnx"
            started = time.perf_counter()
            shared = self._quantize_segment(seg, src, dst, feeds, ranges)
            seconds = time.perf_counter() - started
            nxt = self._next_inputs(seg)
            fp32 = session_runner(cpu_session(src))  # one session for the calibration states and the score
            feeds = _state_feeds(fp32, feeds, nxt)
            int8_out = store_int8_weights(dst, int8_feeds)
            fp32_out = predict(fp32, fp32_feeds)
            fp32_score = score(self.data.task, fp32_out[-1], self.data.y_val)
            int8_score = score(self.data.task, int8_out[-1], self.data.y_val)
            fp32_feeds, int8_feeds = dict(zip(nxt, fp32_out[:-1])), dict(zip(nxt, int8_out[:-1]))
            issues = _trt_lint(dst)
            seg.set_artifact(Artifact.from_file(self.stage, dst, "onnx", "int8", extra={
                "method": "ort", "shared_calibration": shared, "chain_fp32": fp32_score, "chain_int8": int8_score,
                "tensorrt_compatible": not issues}))
            rows.append({"segment": seg.index, "end_depth": seg.end_depth, "fp32": fp32_score, "int8": int8_score,
                         "drop": fp32_score - int8_score, "seconds": seconds})
            if bar is not None:
                bar.update(1)
        return rows

    # ---- quantize.json -------------------------------------------------------------------------
    def summary(self, bundle_dir: Path, rows: list[dict[str, Any]], segment_rows: list[dict[str, Any]],
                ranges: RangeTable, seconds: float) -> dict[str, Any]:
        s = self.settings
        ranges.timing["quantize_total_s"] = seconds
        rejected = {str(r["depth"]): self.manifest.depth(r["depth"]).rejected["int8"] for r in rows
                    if r["status"] == "rejected"}
        return {
            "bundle": str(bundle_dir), "method": s.method, "max_drop": s.max_drop, "min_agreement": s.min_agreement,
            "max_float_fraction": s.max_float_fraction, "checked_engines": self.engines,
            "metric": self.manifest.metric_name, "calib_size": len(self.data.x_calib),
            "calibration_data": self.data.calibration_data, "validation_data": self.data.validation_data,
            "calibration_method": s.calibration_method if s.method == "ort" else "nncf",
            "range_search": s.range_search, "shared_calibration": ranges.shared, "calibration_note": ranges.note,
            "timing": ranges.timing, "seconds": seconds, "depths": rows, "segments": segment_rows,
            "rejected": rejected,
        }


def _trt_lint(path: Path) -> list[Any]:
    """The lint errors of a shipped int8 graph as the TensorRT target gives it to TensorRT
    TRT_LINT_VERSION (its INT8 weights unfolded to float -> Q -> DQ below TensorRT 10)."""
    return qdq_lint.errors(qdq_lint.lint_as_parsed(path, TRT_LINT_VERSION))


def store_int8_weights(path: Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Rewrite the accepted int8 graph at `path` with its weights stored as INT8 initializers ->
    DQ (fold_weight_quantizers: a quarter of the float bytes) instead of float -> Q -> DQ. The fold
    is exact; the outputs on `feeds` (the accuracy check's data) are compared bit for bit anyway,
    so the shipped graph is the one accuracy control accepted. Returns those outputs."""
    import onnx

    model = onnx.load(str(path))
    before = reference_outputs(model, feeds)
    folded = fold_weight_quantizers(model)
    if len(folded.graph.node) == len(model.graph.node):
        return before  # nothing to fold (already integer weights)
    after = reference_outputs(folded, feeds)
    if not all(np.array_equal(a, b) for a, b in zip(before, after)):
        raise ArtifactError(f"storing INT8 weights changed the outputs of {path.name}; this is a bug")
    atomic_write_bytes(path, folded.SerializeToString())
    return after


def _depth_row(d: int, fp32: float, outcome: Outcome, seconds: float) -> dict[str, Any]:
    check = outcome.check
    return {"depth": d, "fp32": fp32, "int8": check.score, "drop": fp32 - check.score, "agreement": check.agreement,
            "engines": check.engines, "float_layers": len(outcome.float_layers), "layers": outcome.layers,
            "recipe": outcome.candidate.name if outcome.ok else None, "attempts": outcome.tried,
            "seconds": seconds, "status": "ok"}
