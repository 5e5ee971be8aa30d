"""The embeddable runtime: every depth of a bundle loaded once, the depth picked per call.

    rt = Runtime.open("BUNDLE", target="openvino", precision="int8", power="auto")
    pred = rt.infer(x)                       # pred.outputs, pred.depth, pred.latency_ms, pred.reason
    rt.set_depth(8)                          # pin; rt.set_depth(None) hands it back to the policy
    pred = rt.infer_anytime(x, deadline_ms=5.0)

    rt = Runtime.open("BUNDLE", adaptive=True)  # each row stops when it is sure (exits.py)
    pred = rt.infer(x)                       # pred.depths: the depth each row stopped at

    rt = Runtime.open("BUNDLE", share_weights=True)  # every depth from one graph that stops there: close to
                                             # one model's memory, 1.1-2.3x slower calls (BENCHMARKS.md, "Memory")

Imports numpy, the standard library and one engine library (through targets/): never torch,
onnx or nncf. The hot path is a dict lookup and one engine call; the power source is read by
at most one thread at a time, at most every `poll_interval_s`, so sensors never sit on the
request path of more than one call per interval.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from pathlib import Path
from typing import Any, Mapping, NamedTuple, Sequence

import numpy as np

from ..errors import ArtifactError, ConfigError
from ..exits import ExitCalibration
from ..manifest import FAMILY_FORMAT, MAX_FAMILY_DEPTHS, Artifact, BundleManifest, family_depth_feed
from ..provenance import stale_exits
from ..targets import CompiledModel, Target, get_target, list_targets, load_artifact
from ..targets.base import FixedFeeds
from .adaptive import ChainResult, SegmentChain
from .int8_speed import choose_precision, slower_int8
from .policy import (COST_MODELS, DEFAULT_COST_MODEL, Decision, DepthPolicy, PolicyConfig, estimate_costs, exit_budget,
                     family_table)
from .power import PowerSource, PowerState, open_power_source

logger = logging.getLogger("glonet_edge.runtime")

# What `resources()` reports as the memory layout of the loaded depths.
PER_DEPTH_LAYOUT = "per-depth graphs"  # one compiled model per depth, each with its own weights
FAMILY_GRAPH_LAYOUT = "family graph"  # one compiled model that stops at the depth fed


class Prediction(NamedTuple):
    """One answer. Immutable; a NamedTuple rather than a frozen dataclass because it is built
    on every call and costs a third as much to make."""

    outputs: np.ndarray  # (batch, outputs): logits for classification, values for regression
    depth: int  # the depth that produced `outputs`
    latency_ms: float  # wall time of this call, validation included
    reason: str  # why this depth: the policy's reason, "pinned", or the anytime outcome
    deadline_met: bool | None = None  # infer_anytime only
    segments_run: int | None = None  # infer_anytime, and adaptive calls that ran the chain
    depths: np.ndarray | None = None  # adaptive only: the depth each row stopped at (`depth` is the deepest)


class Runtime:
    """A loaded depth family. Thread-safe: `infer` may be called from many threads while the
    policy (or `set_depth`) switches depth; each call reads the depth once and reports it.

    Adaptive (`exits` given): the policy's depth is the cap and its tier the allowed drop;
    each row runs the segment chain until its exit rule fires at a check, with thresholds
    certified for that cap and drop (glonet_edge/exits.py). Where none is certified the
    rows all run to the cap, as without adaptive."""

    precision_reason = ""  # why this precision: precision="auto"'s choice, or int8's slower-than-fp32 warning

    def __init__(self, bundle: Path, manifest: BundleManifest, target: str, precision: str,
                 models: dict[int, CompiledModel], segments: list[tuple[int, CompiledModel]],
                 segment_precision: str | None, policy: DepthPolicy, power: PowerSource | None,
                 poll_interval_s: float, exits: ExitCalibration | None = None,
                 layout: str = PER_DEPTH_LAYOUT, *, loaded: Sequence[tuple[Artifact, CompiledModel]],
                 segment_artifacts: Sequence[Artifact]) -> None:
        self.bundle = bundle
        self.layout = layout
        # What open loaded, model by model, and from which artifact: a model per depth, or one family
        # graph under every depth's view. resources() sizes them, close() closes them.
        self._loaded = list(loaded)
        self._segment_artifacts = list(segment_artifacts)
        self.manifest = manifest
        self.target = target
        self.precision = precision
        self._models = models
        self._chain = SegmentChain(segments, [self._next_inputs(manifest, i) for i in range(len(segments))],
                                   manifest.input_name) if segments else None
        self.segment_precision = segment_precision
        self.exits = exits
        self._exit_rules: dict[tuple, tuple | None] = {}  # (cap, tier) -> certified rule; the policy is fixed at open
        self.policy = policy
        self.power = power
        self.poll_interval_s = poll_interval_s
        self._input_shape = tuple(manifest.input_shape)
        self._input_rank = len(self._input_shape) + 1
        self._input_name = manifest.input_name
        self._pinned: int | None = None
        self._decision: Decision = policy.update(self._read_power())
        self._last_poll = time.perf_counter()  # perf_counter is monotonic too, and infer reads it anyway
        self._poll_lock = threading.Lock()

    # ---- construction ------------------------------------------------------------------------
    @classmethod
    def open(cls, bundle: str | Path, target: str = "onnxruntime", precision: str = "fp32",
             power: str | PowerSource | None = "auto", policy: PolicyConfig | str | Path | Mapping | None = None,
             device: str | None = None, verify: bool = True, warmup: bool = True, anytime: bool = True,
             poll_interval_s: float = 1.0, power_root: str | Path = "/", cost_model: str = DEFAULT_COST_MODEL,
             adaptive: bool = False, share_weights: bool = False, **target_options: Any) -> "Runtime":
        """Load every servable depth of `bundle` for target/precision (sha256-checked).

        power: "auto" | "none" | a spec for open_power_source ("jetson", "battery", "file:PATH",
        "trace:CSV", ...) | a PowerSource. policy: PolicyConfig, a TOML/JSON path, a dict, or None
        for the defaults. Depths whose precision is rejected in the manifest are not served.
        precision="auto": int8 when it passed accuracy and profiled faster than fp32, else fp32
        (`precision_reason` says why); int8 that profiled slower than fp32 is logged as a warning.
        adaptive: `infer` and `infer_anytime` stop each row when it is sure (the segment chain and
        the bundle's exit thresholds for `precision` are loaded).
        share_weights: serve every depth from the family graph (one graph that stops at the depth
        it is fed, from `glonet export --shared-weights`): close to one model's memory for the whole
        family, but each call passes one `If` per shallower depth, so it is slower than the
        depth's own graph (fp32, onnxruntime and openvino; BENCHMARKS.md, "Memory"). Off by
        default for that reason.
        """
        bundle = Path(bundle)
        manifest = BundleManifest.load(bundle)
        engine = get_target(target)
        precision, precision_reason = _resolve_precision(bundle, manifest, engine, precision)
        engine.check_precision(precision)
        options = dict(target_options)
        if device is not None:
            options["device"] = engine.check_device(device)

        models, loaded = (_family_views(bundle, manifest, engine, precision, verify, options) if share_weights
                          else _depth_models(bundle, manifest, engine, precision, verify, options))
        if not models:
            for _, model in loaded:  # a family graph none of whose depths is servable
                model.close()
            raise ArtifactError(
                f"bundle {bundle} has no {engine.artifact_format!r} {precision} artifacts for target {target!r}; "
                + ("run `glonet quantize` first" if precision == "int8" and engine.name == "onnxruntime"
                   else f"run `glonet compile {bundle} --target {target} --precision {precision}`"))

        segments, segment_precision, segment_artifacts = [], None, []
        if (anytime or adaptive) and manifest.segments:
            segments, segment_precision, segment_artifacts = _segment_models(bundle, manifest, engine, precision,
                                                                             verify, options)
            if segment_precision is not None and segment_precision != precision:
                logger.warning("no %s segments for %s in %s: infer_anytime runs the %s segment chain",
                               precision, target, bundle, segment_precision)

        table = [row for row in family_table(manifest, target, precision) if row.depth in models]
        if not table:
            raise ArtifactError(f"bundle {bundle}: no depth has a {precision} score in the manifest, so the policy "
                                "cannot choose; re-run `glonet export` (fp32) or `glonet quantize` (int8)")
        if cost_model not in COST_MODELS:
            raise ConfigError(f"unknown cost model {cost_model!r}; choose one of {', '.join(COST_MODELS)}")
        depth_policy = DepthPolicy(estimate_costs(table, COST_MODELS[cost_model]), _policy_config(policy))
        source = None
        if power is not None and power != "none":
            source = power if isinstance(power, PowerSource) else open_power_source(power, root=power_root)
        exits = _exit_thresholds(bundle, manifest, precision, segment_precision) if adaptive else None
        rt = cls(bundle, manifest, target, precision, models, segments, segment_precision, depth_policy, source,
                 poll_interval_s, exits, FAMILY_GRAPH_LAYOUT if share_weights else PER_DEPTH_LAYOUT,
                 loaded=loaded, segment_artifacts=segment_artifacts)
        rt.precision_reason = precision_reason
        if warmup:
            rt._warmup()
        return rt

    def _warmup(self) -> None:
        # First calls allocate and tune; pay that at open so a later depth switch costs nothing.
        x = np.zeros((1, *self._input_shape), dtype=np.float32)
        for model in self._models.values():
            model.run({self._input_name: x})
        if self._chain is not None:
            self._chain.run(x)

    # ---- depth selection -----------------------------------------------------------------------
    @property
    def depths(self) -> list[int]:
        """Depths this runtime can serve (loaded, not rejected)."""
        return sorted(self._models)

    @property
    def depth(self) -> int:
        """The depth the next `infer` will use."""
        pinned = self._pinned
        return pinned if pinned is not None else self._decision.depth

    @property
    def decision(self) -> Decision:
        """The policy's latest decision (depth and human-readable reason)."""
        return self._decision

    def set_depth(self, depth: int | None) -> None:
        """Pin a depth (must be one of `depths`), or None to hand the choice back to the policy."""
        if depth is not None and (isinstance(depth, bool) or depth not in self._models):
            raise ConfigError(f"depth {depth!r} is not servable here; choose one of {self.depths} or None")
        self._pinned = depth

    def _read_power(self) -> PowerState:
        if self.power is None:
            return PowerState.unknown("none", "power='none'")
        try:
            return self.power.read()
        except Exception as exc:  # ResilientSource never raises; a user's own source might
            logger.warning("power source %r failed (%s); serving as if nothing were known", self.power, exc)
            return PowerState.unknown("error", str(exc))

    def _maybe_poll(self, now: float | None = None) -> None:
        now = time.perf_counter() if now is None else now
        if now - self._last_poll < self.poll_interval_s or not self._poll_lock.acquire(blocking=False):
            return
        try:
            self._last_poll = now
            decision = self.policy.update(self._read_power())
            if decision.depth != self._decision.depth:
                logger.info("depth %d -> %d: %s", self._decision.depth, decision.depth, decision.reason)
            self._decision = decision
        finally:
            self._poll_lock.release()

    def refresh(self) -> Decision:
        """Read the power source and re-run the policy now (otherwise done every poll interval)."""
        self._last_poll = -float("inf")
        self._maybe_poll()
        return self._decision

    # ---- inference ---------------------------------------------------------------------------
    def check_input(self, x: Any) -> np.ndarray:
        """float32, C-contiguous (batch, *input_shape), finite; anything else is refused clearly.

        Documented conversions: lists and other numeric dtypes are converted to float32, and
        non-contiguous arrays are copied. A single sample without a batch axis is refused
        rather than guessed (input shapes like (1, 8, 8) make that ambiguous)."""
        # Fast path, a few µs on the request path matter for small cuts: a well-formed float32
        # batch needs one BLAS dot product. A finite sum of squares proves every element finite
        # (NaN and Inf propagate through it and squares cannot cancel); one that overflows
        # (|x| > 1.8e19) falls through to the exact check below.
        if (type(x) is np.ndarray and x.dtype == np.float32 and x.shape[1:] == self._input_shape
                and x.ndim == self._input_rank and x.shape[0] and x.flags.c_contiguous
                and math.isfinite(np.vdot(x, x))):
            return x
        if not (type(x) is np.ndarray and x.dtype == np.float32):
            if not isinstance(x, np.ndarray):
                try:
                    x = np.asarray(x)
                except Exception as exc:
                    raise ConfigError(f"input cannot be converted to a numpy array: {exc}") from exc
            if x.dtype.kind not in "biuf":  # complex, timedelta, strings, objects would cast lossily
                raise ConfigError(f"input must be real numbers (bool, int or float), got dtype {x.dtype}")
        if x.ndim != self._input_rank or tuple(x.shape[1:]) != self._input_shape:
            raise ConfigError(f"input has shape {x.shape}, this bundle expects (batch, "
                              f"{', '.join(map(str, self._input_shape))}); add a batch axis or reshape")
        if x.shape[0] == 0:
            raise ConfigError("input batch is empty")
        x = np.ascontiguousarray(x, dtype=np.float32)
        if not np.isfinite(x).all():
            raise ConfigError(f"input contains {int(np.size(x) - np.isfinite(x).sum())} NaN/Inf values; "
                              "clean the input (the graphs would return garbage)")
        return x

    def infer(self, x: Any) -> Prediction:
        """Run the depth chosen by the policy (or pinned) on a batch; adaptive: up to that depth."""
        start = time.perf_counter()
        x = self.check_input(x)
        pinned = self._pinned  # read once: another thread may unpin between two reads
        decision = self._decision
        if pinned is None:
            if start - self._last_poll >= self.poll_interval_s:
                self._maybe_poll(start)
                decision = self._decision  # one read: depth and reason from the same decision
            depth, reason = decision.depth, decision.reason
        else:
            depth, reason = pinned, "pinned with set_depth"
        if self.exits is not None:
            return self._infer_adaptive(x, depth, decision.tier, reason, start)
        (y,) = self._models[depth].run_validated({self._input_name: x})
        return Prediction(y, depth, (time.perf_counter() - start) * 1e3, reason)

    def infer_anytime(self, x: Any, deadline_ms: float, max_depth: int | None = None) -> Prediction:
        """Run the segment chain until the next segment would miss the deadline.

        Returns the prediction of the deepest finished segment, never a partial one: the first
        segment always runs, so a deadline shorter than it still gets its (valid) answer with
        deadline_met=False. max_depth defaults to the current policy/pinned depth. Adaptive:
        each row also stops at its certified exit."""
        if self._chain is None:
            raise ConfigError(f"bundle {self.bundle} has no segment chain for {self.target}; "
                              "re-export without --no-segments (and compile the segments)")
        if isinstance(deadline_ms, bool) or not (isinstance(deadline_ms, (int, float)) and deadline_ms > 0):
            raise ConfigError(f"deadline_ms must be a positive number, got {deadline_ms!r}")
        if max_depth is not None and (isinstance(max_depth, bool) or not isinstance(max_depth, int) or max_depth < 1):
            raise ConfigError(f"max_depth must be a positive int or None, got {max_depth!r}")
        start = time.perf_counter()
        x = self.check_input(x)
        if self._pinned is None:
            self._maybe_poll()
        cap = self.depth if max_depth is None else max_depth
        rule, why = self._exit_rule(cap, self._decision.tier) if self.exits is not None else (None, "")
        result = self._chain.run(x, cap, deadline_ms, rule, start)
        met = result.elapsed_ms <= deadline_ms
        reason = (f"anytime: {result.segments_run} of {len(self._chain.segments)} segments in "
                  f"{result.elapsed_ms:.3f} ms (deadline {deadline_ms} ms "
                  f"{'met' if met else 'missed: a segment ran slower than its estimate'})")
        return self._chain_prediction(result, reason + (f"; {why}" if why else ""), met)

    def _infer_adaptive(self, x: np.ndarray, cap: int, tier: str, reason: str, start: float) -> Prediction:
        rule, why = self._exit_rule(cap, tier)
        if rule is None:  # nothing certified: the depth-`cap` graph is the cheapest way to the same answer
            (y,) = self._models[cap].run_validated({self._input_name: x})
            return Prediction(y, cap, (time.perf_counter() - start) * 1e3, f"{reason}; {why}",
                              depths=np.full(len(x), cap))
        return self._chain_prediction(self._chain.run(x, cap, None, rule, start), f"{reason}; {why}", None)

    def _exit_rule(self, cap: int, tier: str) -> tuple[tuple | None, str]:
        """(rule for SegmentChain.run or None, why) for this cap and tier, cached: hashing the policy
        config on every call would cost more than the lookup saves, and it never changes after open."""
        key = (cap, tier)
        found = self._exit_rules.get(key)
        if found is None:
            budget = exit_budget(self.policy.table, self.policy.config, tier, cap)
            point = self.exits.point_for(cap, budget)
            if point is None:
                found = (None, f"adaptive: no exit certified within {budget * 100:.2f} pt of depth {cap}, "
                               "every row runs to it")
            else:
                found = ((self.exits.rule, point.threshold, frozenset(self.exits.checks)),
                         f"adaptive: exits certified for a {point.max_drop * 100:g} pt drop from depth {cap} "
                         f"at {self.exits.confidence:.0%} confidence")
            self._exit_rules[key] = found
        return found

    def _chain_prediction(self, result: ChainResult, reason: str, met: bool | None) -> Prediction:
        depths = result.depths if self.exits is not None else None
        return Prediction(result.outputs, int(result.depths.max()), result.elapsed_ms, reason, met,
                          result.segments_run, depths)

    @staticmethod
    def _next_inputs(manifest: BundleManifest, i: int) -> list[str]:
        return manifest.segments[i + 1].inputs if i + 1 < len(manifest.segments) else []

    # ---- introspection -------------------------------------------------------------------------
    def resources(self) -> dict[str, Any]:
        """What the loaded family holds: its memory layout, models, bytes of their artifacts, process RSS."""
        return {"target": self.target, "precision": self.precision, "memory_layout": self.layout,
                "depths_loaded": len(self._models), "depth_models": len(self._loaded),
                "segments_loaded": len(self._chain.segments) if self._chain is not None else 0,
                "artifact_bytes": sum(a.total_bytes for a, _ in self._loaded),
                "segment_bytes": sum(a.total_bytes for a in self._segment_artifacts),
                "rss_bytes": _rss_bytes()}

    def close(self) -> None:
        for _, model in self._loaded + (self._chain.segments if self._chain else []):
            model.close()
        if self.power is not None and hasattr(self.power, "close"):
            self.power.close()

    def __enter__(self) -> "Runtime":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"<Runtime {self.bundle} {self.target}/{self.precision} depths={self.depths} "
                f"depth={self.depth} segments={len(self._chain.segments) if self._chain else 0}"
                f"{' adaptive' if self.exits is not None else ''}>")


def _depth_models(bundle: Path, manifest: BundleManifest, engine: Target, precision: str, verify: bool,
                  options: dict[str, Any]) -> tuple[dict[int, CompiledModel], list[tuple[Artifact, CompiledModel]]]:
    """One compiled model per servable depth, from that depth's own artifact; and (artifact, model) pairs."""
    models: dict[int, CompiledModel] = {}
    loaded = []
    for entry in manifest.depths:
        artifact = engine.serving_artifact(entry, precision)
        if artifact is None or precision in entry.rejected:
            continue
        models[entry.depth] = load_artifact(bundle, artifact, engine, verify=verify, holder=entry, **options)
        loaded.append((artifact, models[entry.depth]))
    return models, loaded


def _family_views(bundle: Path, manifest: BundleManifest, engine: Target, precision: str, verify: bool,
                  options: dict[str, Any]) -> tuple[dict[int, CompiledModel], list[tuple[Artifact, CompiledModel]]]:
    """Every servable depth as a view of one loaded family graph (export/family_graph.py):
    the engine holds each trunk weight once; and [(the family graph's artifact, its model)]."""
    if not engine.serves_format(FAMILY_FORMAT) or precision != "fp32":
        readers = [n for n in list_targets() if get_target(n).serves_format(FAMILY_FORMAT)]
        raise ConfigError(f"share_weights serves the fp32 family graph on {' or '.join(readers)}; "
                          f"{engine.name}/{precision} loads one artifact per depth (share_weights=False)")
    deepest = max(manifest.depths, key=lambda e: e.depth)
    artifact = deepest.artifact(FAMILY_FORMAT, "fp32")
    if artifact is None:
        raise ArtifactError(f"bundle {bundle} has no family graph; re-export it with `glonet export --shared-weights` "
                            f"and at most {MAX_FAMILY_DEPTHS} depths")
    depth_input, answered = artifact.extra.get("depth_input"), artifact.extra.get("depths", [])
    if not depth_input:  # the multi-output family graph of glonet-edge before the early-stop rewrite
        raise ArtifactError(f"bundle {bundle}'s family graph has no depth input (an older export); re-export it "
                            "with `glonet export --shared-weights`")
    if engine.family_graph_depths is not None and len(answered) > engine.family_graph_depths:
        raise ConfigError(f"{engine.name} compiles a family graph of {len(answered)} depths too slowly (about twice as "
                          f"long per depth, BENCHMARKS.md \"Memory\"); serve share_weights on onnxruntime, or export "
                          f"at most {engine.family_graph_depths} depths")
    # Through load_artifact like every other artifact: provenance, sha256 of the graph and its weights file
    family = load_artifact(bundle, artifact, engine, verify=verify, holder=deepest, **options)
    # Said once at open: each call passes one If per shallower depth (BENCHMARKS.md, "Memory").
    logger.info("share_weights: every depth of %s is served by one early-stopping family graph", bundle)
    views = {e.depth: FixedFeeds(family, {depth_input: family_depth_feed(e.depth)}) for e in manifest.depths
             if e.depth in answered and "fp32" not in e.rejected}
    return views, [(artifact, family)]


def _segment_models(bundle: Path, manifest: BundleManifest, engine: Target, precision: str, verify: bool,
                    options: dict[str, Any]) -> tuple[list[tuple[int, CompiledModel]], str | None, list[Artifact]]:
    """The segment chain at `precision`, else at fp32: ([(end depth, model)], the precision loaded,
    the artifacts), or ([], None, []) when neither precision has every segment."""
    for prec in dict.fromkeys((precision, "fp32")):
        arts = [engine.serving_artifact(s, prec) for s in manifest.segments]
        if all(a is not None for a in arts):
            segments = [(s.end_depth, load_artifact(bundle, a, engine, verify=verify, holder=s, **options))
                        for s, a in zip(manifest.segments, arts)]
            return segments, prec, arts
    return [], None, []


def _exit_thresholds(bundle: Path, manifest: BundleManifest, precision: str,
                     segment_precision: str | None) -> ExitCalibration:
    """The certified thresholds adaptive serving needs, or a refusal that says how to get them."""
    fix = f"re-run the calibration: `glonet calibrate {bundle} --precision {precision}`"
    if segment_precision is None:
        raise ArtifactError(f"adaptive serving runs the segment chain and bundle {bundle} has none for this target; "
                            "re-export without --no-segments (and compile the segments)")
    record = manifest.exits.get(precision)
    if record is None:
        raise ArtifactError(f"bundle {bundle} has no {precision} exit thresholds, so it cannot serve adaptively; {fix}")
    if record.chain_precision != segment_precision:
        raise ArtifactError(f"the {precision} exit thresholds of {bundle} were calibrated on the "
                            f"{record.chain_precision} segment chain, but this target serves the {segment_precision} "
                            f"chain; {fix}")
    if precision in stale_exits(manifest):
        raise ArtifactError(f"the {precision} exit thresholds of {bundle} were calibrated on older segment graphs "
                            f"than the bundle's; {fix}")
    return record


def _resolve_precision(bundle: Path, manifest: BundleManifest, engine: Any, precision: str) -> tuple[str, str]:
    """precision="auto": the faster of int8 / fp32 that passed accuracy (by profile); int8 asked
    for explicitly but profiled slower than fp32: served, with a warning that says so."""
    if precision == "auto":
        servable = {p: any(engine.serving_artifact(e, p) is not None and p not in e.rejected for e in manifest.depths)
                    for p in ("int8", "fp32") if p in engine.precisions}
        precision, why = choose_precision(manifest, bundle, engine.name, servable)
        logger.info("%s: %s", bundle, why)
        return precision, why
    if precision != "int8":
        return precision, ""
    slow = slower_int8(manifest, bundle, engine.name)
    if not slow:
        return precision, ""
    why = (f"{len(slow)} profiled depth/batch cuts run slower in int8 than in fp32, e.g. {slow[0].describe()}; "
           "serve precision='auto' or fp32, or re-quantize for this engine (docs/quantize.md, INT8 flavours)")
    logger.warning("%s: %s", bundle, why)
    return precision, why


def _policy_config(policy: PolicyConfig | str | Path | Mapping | None) -> PolicyConfig:
    if policy is None:
        return PolicyConfig()
    if isinstance(policy, PolicyConfig):
        return policy
    if isinstance(policy, Mapping):
        return PolicyConfig.from_json(dict(policy))
    return PolicyConfig.from_file(policy)


def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None
