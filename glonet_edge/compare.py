"""One way to run an ONNX graph on the CPU as a reference, and one way to compare outputs.

Export's verification, quantize's accuracy control, compile's engine check and the
benchmarks all ask the same two questions: "what does this graph answer on this data?" and
"how far is that from the reference?". Both are answered here, so a tolerance, a top-1
coding or a NaN rule means the same thing everywhere.

Imports numpy only; onnxruntime is imported when a session is made, so the runtime (which
never builds reference sessions) stays free of it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

from .errors import require

ABS_TOL = 1e-4

Runner = Callable[[Dict[str, np.ndarray]], Sequence[np.ndarray]]


def session_options(*, threads: Optional[int] = 0, optimize: bool = True, spin: bool = True,
                    optimized_model_path: Optional[str] = None) -> Any:
    """SessionOptions for every CPU session the package makes.

    threads: intra-op threads, 0 = one per physical core. optimize: ORT_ENABLE_ALL, else no
    graph rewrites (quantize compares a graph as written). spin: False when the session shares
    the machine with other work (export, quantize), so idle threads do not burn a core."""
    ort = require("onnxruntime", "onnxruntime")
    so = ort.SessionOptions()
    so.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize
                                   else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.intra_op_num_threads = int(threads or 0)
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    if not spin:
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if optimized_model_path:
        so.optimized_model_filepath = optimized_model_path
    return so


def cpu_session(model: Any, *, threads: Optional[int] = 0, optimize: bool = True, spin: bool = False) -> Any:
    """An onnxruntime CPU session for a graph given as a path, serialized bytes or a ModelProto."""
    ort = require("onnxruntime", "onnxruntime")
    if hasattr(model, "SerializeToString"):
        model = model.SerializeToString()
    elif not isinstance(model, (bytes, bytearray)):
        model = str(model)
    so = session_options(threads=threads, optimize=optimize, spin=spin)
    return ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])


def session_runner(session: Any) -> Runner:
    """A Runner (feeds -> list of outputs, in graph order) over an onnxruntime session."""
    return lambda feeds: session.run(None, feeds)


def predict(run: Runner, feeds: Dict[str, np.ndarray], batch: int = 256) -> List[np.ndarray]:
    """Every output of `run` over a whole data set, fed `batch` rows at a time."""
    n = len(next(iter(feeds.values())))
    collected: List[List[np.ndarray]] = []
    for lo in range(0, n, batch):
        outs = run({k: v[lo:lo + batch] for k, v in feeds.items()})
        if not collected:
            collected = [[] for _ in outs]
        for acc, out in zip(collected, outs):
            acc.append(np.asarray(out))
    return [np.concatenate(parts) for parts in collected]


def top1(outputs: np.ndarray) -> np.ndarray:
    """The predicted class of each row of a logits (or probabilities) matrix."""
    return np.argmax(outputs, axis=1)


def top1_agreement(got: np.ndarray, want: np.ndarray) -> Optional[float]:
    """Fraction of rows whose predicted class is the same; None when the outputs are not
    (N, classes) matrices, i.e. for regression."""
    if got.ndim != 2 or want.ndim != 2 or got.shape[1] < 2 or len(got) == 0:
        return None
    return float(np.mean(top1(got) == top1(want)))


def max_abs_error(got: np.ndarray, want: np.ndarray) -> float:
    """max |got - want| in float64; NaN when either side has a NaN (max() would drop it)."""
    diff = np.abs(np.asarray(got, np.float64) - np.asarray(want, np.float64))
    if np.isnan(diff).any():
        return float("nan")
    return float(diff.max(initial=0.0))


def tolerance(task: str, reference: np.ndarray) -> float:
    """1e-4 absolute on logits. Regression graphs answer in the target's own units (diabetes
    progression is ~25..350), where float32 rounding alone exceeds 1e-4: there the bound is
    1e-4 relative to the largest reference magnitude (never below 1e-4)."""
    if task == "regression" and reference.size:
        return ABS_TOL * max(1.0, float(np.max(np.abs(reference))))
    return ABS_TOL


@dataclass(frozen=True)
class Comparison:
    """How far one output is from its reference."""

    max_abs_err: float
    tolerance: Optional[float]  # None: only agreement is judged (quantized graphs)
    top1_agreement: Optional[float]  # None for regression
    min_agreement: Optional[float] = None

    @property
    def ok(self) -> bool:
        """Within tolerance (when one is set) and agreeing enough (when a floor is set);
        a NaN error is never ok."""
        if math.isnan(self.max_abs_err):
            return False
        if self.tolerance is not None and not self.max_abs_err <= self.tolerance:
            return False
        if self.min_agreement is not None and self.top1_agreement is not None:
            return self.top1_agreement >= self.min_agreement
        return True


def compare(got: np.ndarray, want: np.ndarray, *, tolerance: Optional[float] = None,
            min_agreement: Optional[float] = None) -> Comparison:
    """Compare one output array with its reference."""
    return Comparison(max_abs_error(got, want), tolerance, top1_agreement(got, want), min_agreement)
