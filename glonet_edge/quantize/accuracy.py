"""Accuracy control: an int8 graph ships only if, on held-out data and on every engine that will
run it, it loses at most max_drop against fp32 AND predicts fp32's top-1 class on at least
min_agreement of the samples. Candidates (recipes) are tried as made, then with their most
harmful layers back in float, within a budget (docs/quantize.md)."""

from __future__ import annotations

import copy
import importlib.util
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..compare import cpu_session, predict, session_runner, top1_agreement
from ..data import score
from ..errors import ConfigError, require
from .calibration import Calibration
from .qdq_rewrite import float_layers, keep_float, quantized_consumers

ENGINES = ("onnxruntime", "openvino")


def reference_outputs(model: Any, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Every output of a graph (path or ModelProto) over a data set, on the CPU reference session."""
    return predict(session_runner(cpu_session(model)), feeds)


def resolve_engines(engines: str) -> list[str]:
    """'auto': onnxruntime, plus openvino where it is installed; else a comma list."""
    if engines == "auto":
        return ["onnxruntime"] + (["openvino"] if importlib.util.find_spec("openvino") is not None else [])
    names = [e.strip() for e in engines.split(",") if e.strip()]
    for e in names:
        if e not in ENGINES:
            raise ConfigError(f"unknown engine {e!r} to check int8 graphs on; use auto or any of {', '.join(ENGINES)}")
    if not names:
        raise ConfigError("no engine to check int8 graphs on; use auto or any of " + ", ".join(ENGINES))
    if "openvino" in names:
        require("openvino", "openvino")
    return ["onnxruntime"] + [e for e in dict.fromkeys(names) if e != "onnxruntime"]


def engine_outputs(engine: str, path: Path, x: np.ndarray, input_name: str = "x") -> np.ndarray:
    """Last output of the int8 graph at `path`, built and loaded on the CPU the way `glonet
    compile` does (no model cache)."""
    # Quantize comes before targets in the stage order; this is its one reach forward, made
    # lazily: the check must run each engine exactly as compile will (docs/quantize.md).
    from ..targets import get_target

    target = get_target(engine)
    with tempfile.TemporaryDirectory(prefix="glonet-check.") as tmp:
        model = target.load(target.build(path, tmp, "int8")[0], "int8", cache_dir=False)
        try:
            return predict(model.run, {input_name: x})[-1]
        finally:
            model.close()


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

    def __init__(self, src: Any, data: Calibration, max_drop: float, min_agreement: float, engines: list[str],
                 input_name: str = "x"):
        self.data, self.max_drop, self.min_agreement = data, max_drop, min_agreement
        self.engines, self.input_name = engines, input_name
        self.ref = reference_outputs(src, {input_name: data.x_val})[-1]
        self.fp32 = self.score(self.ref)

    def on(self, engines: list[str]) -> AccuracyCheck:
        """This check on other engines, with the same data and fp32 reference (not computed again)."""
        other = copy.copy(self)
        other.engines = list(engines)
        return other

    def score(self, y: np.ndarray) -> float:
        return float(score(self.data.task, y, self.data.y_val))

    def agreement(self, y: np.ndarray) -> float | None:
        if self.data.task != "classification":
            return None
        return top1_agreement(y, self.ref)

    def _shortfalls(self, engine: str, s: float, a: float | None, failures: list[str]) -> float:
        """Append what `engine`'s score s and agreement a fail; returns by how much."""
        violation = 0.0
        if self.fp32 - s > self.max_drop + 1e-12:
            failures.append(f"{engine}: int8 score {s:.4f} is {self.fp32 - s:.4f} below fp32 {self.fp32:.4f} "
                            f"(max drop {self.max_drop})")
            violation += self.fp32 - s - self.max_drop
        if a is not None and a < self.min_agreement - 1e-12:
            failures.append(f"{engine}: top-1 agreement with fp32 {a:.4f} < {self.min_agreement}")
            violation += self.min_agreement - a
        return violation

    def check(self, path: Path) -> Check:
        results: dict[str, dict[str, float | None]] = {}
        failures: list[str] = []
        violation = 0.0
        for engine in self.engines:
            try:
                y = engine_outputs(engine, path, self.data.x_val, self.input_name)
                s = self.score(y)
            except Exception as exc:  # one candidate an engine cannot load fails, not the whole run
                results[engine] = {"score": None, "agreement": None}
                failures.append(f"{engine}: cannot run this graph ({type(exc).__name__}: {str(exc)[:200]})")
                violation += 1.0
                continue
            a = self.agreement(y)
            results[engine] = {"score": s, "agreement": a}
            violation += self._shortfalls(engine, s, a, failures)
        return Check(results, failures, violation)

    def harm(self, model: Any) -> tuple[float, ...]:
        """How far a (partly quantized) graph is from fp32 on the held-out inputs, with
        onnxruntime: (1 - agreement, logit MSE) for classifiers, (MSE,) otherwise. Larger = worse."""
        y = reference_outputs(model, {self.input_name: self.data.x_val})[-1]
        mse = float(np.mean((y.reshape(self.ref.shape) - self.ref) ** 2))
        a = self.agreement(y)
        return (mse,) if a is None else (1.0 - a, mse)

    def rank(self, qdq: Any, nodes: list[str]) -> list[str]:
        """Nodes ordered most harmful first: each node is measured with ONLY its inputs quantized
        (every other listed node kept float), which isolates its own error; on low-margin
        classifiers the leave-one-out order is dominated by the other nodes' noise."""
        harm = {n: self.harm(keep_float(qdq, [k for k in nodes if k != n])) for n in nodes}
        return sorted(nodes, key=lambda n: tuple(-v for v in harm[n]))


class Candidate:
    """One recipe for a depth's int8 graph. make() returns the QDQ graph with every node it
    quantizes quantized (kept as `base`); write(excluded) writes dst with the `excluded` nodes
    back in float, by default by graph surgery on the base (keep_float)."""

    def __init__(self, name: str, dst: Path, tensorrt: bool = True):
        self.name, self.dst, self.tensorrt = name, Path(dst), tensorrt
        self.base: Any = None

    def make(self) -> Any:
        raise NotImplementedError

    def write(self, excluded: list[str]) -> None:
        import onnx

        if self.base is None:
            self.base = self.make()
        onnx.save(keep_float(self.base, excluded) if excluded else self.base, str(self.dst))


def float_budget(n_layers: int, max_float_fraction: float) -> int:
    """How many of a graph's n quantizable layers may stay float: round(n * fraction), at least 2
    (a first and a last layer), and never all of them (the graph must stay an int8 graph)."""
    if max_float_fraction <= 0 or n_layers <= 1:
        return 0
    return min(n_layers - 1, max(2, round(n_layers * max_float_fraction)))


def restore_accuracy(candidate: Candidate, judge: AccuracyCheck, nodes: list[str], budget: int,
                     first: Check) -> tuple[list[str], Check]:
    """Float fallback. While `judge` rejects the candidate's graph (`first`: as made), the most
    harmful nodes (ranked once by judge.rank on the base graph) go back to float: the shortest
    prefix of that ranking that passes, at most `budget` long. Found by doubling the prefix and
    then bisecting, so a graph with n nodes costs about 2 log2(n) quantize-and-check rounds
    instead of n (the same prefix a one-by-one search finds when more float never hurts).
    Returns (nodes left in float, the check of that graph); dst holds that graph."""
    if first.ok or budget <= 0 or not nodes:
        return [], first
    ranked = judge.rank(candidate.base, nodes)[:budget]

    def attempt(k: int) -> Check:
        candidate.write(ranked[:k])
        return judge.check(candidate.dst)

    failed, k = 0, 1
    while True:  # doubling: the first passing prefix length, or the whole budget failing
        check = attempt(k)
        if check.ok or k == len(ranked):
            break
        failed, k = k, min(2 * k, len(ranked))
    if not check.ok:
        return ranked, check
    passed, passed_check = k, check
    while passed - failed > 1:  # bisect between the longest failing and the shortest passing prefix
        mid = (failed + passed) // 2
        check = attempt(mid)
        if check.ok:
            passed, passed_check = mid, check
        else:
            failed = mid
    if check is not passed_check:
        candidate.write(ranked[:passed])  # dst holds the graph that passed
    return ranked[:passed], passed_check


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


class _Attempts:
    """Every attempt (recorded in the manifest) and the least violating one, which a rejected
    depth reports."""

    def __init__(self, layers: list[str], max_float_fraction: float):
        self.layers = layers
        self.budget = float_budget(len(layers), max_float_fraction)
        self.tried: list[dict[str, Any]] = []
        self.best: tuple[tuple[float, int], Check, list[str], list[str]] | None = None

    def note(self, c: Candidate, check: Check, excluded: list[str], in_float: list[str]) -> Outcome | None:
        """Record an attempt; the Outcome when it is accepted."""
        ok = check.ok and len(in_float) <= self.budget
        self.tried.append({"candidate": c.name, "float_layers": len(in_float), "ok": ok,
                           "agreement": check.agreement, "score": check.score})
        key = (check.violation + (1.0 if len(in_float) > self.budget else 0.0), len(in_float))
        if self.best is None or key < self.best[0]:
            self.best = (key, check, excluded, in_float)
        return Outcome(c, check, in_float, excluded, len(self.layers), self.tried) if ok else None

    def rejection(self) -> Outcome:
        assert self.best is not None
        _, check, excluded, in_float = self.best
        return Outcome(None, check, in_float, excluded, len(self.layers), self.tried)


def _fall_back(firsts: list[tuple[Candidate, Check, list[str]]], judge: AccuracyCheck,
               attempts: _Attempts) -> Outcome | None:
    """Pass 2: the candidates still within the budget, least violating first, each with its most
    harmful layers back in float (restore_accuracy)."""
    layers = set(attempts.layers)
    for c, check, in_float in sorted(firsts, key=lambda t: t[1].violation):
        room = attempts.budget - len(in_float)
        nodes = [n for n in quantized_consumers(c.base) if n in layers]
        if room <= 0 or not nodes:
            continue
        excluded, check = restore_accuracy(c, judge, nodes, room, check)
        accepted = attempts.note(c, check, excluded, in_float + excluded)
        if accepted:
            return accepted
    return None


def control_accuracy(candidates: list[Candidate], judge: AccuracyCheck, layers: list[str],
                     max_float_fraction: float) -> Outcome:
    """Accuracy control over candidate recipes, TensorRT-safe candidates first (both passes), then
    the others. Pass 1: each candidate as made (in order); the first that the judge accepts with
    at most float_budget(...) layers in float wins. Pass 2: _fall_back. Nothing accepted: an
    Outcome without a candidate, carrying the least violating attempt; the caller rejects the depth."""
    attempts = _Attempts(layers, max_float_fraction)
    for group in ([c for c in candidates if c.tensorrt], [c for c in candidates if not c.tensorrt]):
        firsts: list[tuple[Candidate, Check, list[str]]] = []
        for c in group:
            c.write([])
            check = judge.check(c.dst)
            in_float = float_layers(c.base, layers)
            accepted = attempts.note(c, check, [], in_float)
            if accepted:
                return accepted
            firsts.append((c, check, in_float))
        accepted = _fall_back(firsts, judge, attempts)
        if accepted:
            return accepted
    return attempts.rejection()
