"""Check an exported family against eager torch with onnxruntime, and measure its scores.

Every depth graph runs on the whole held-out split: its outputs give the manifest's fp32
metrics and are compared with torch. The segment chain runs on the first
`segment_samples` rows: after every segment its prediction must match torch at that depth
and the truncated graph of the same depth, which is what lets a runtime swap one layout
for the other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ..compare import cpu_session, max_abs_error, tolerance
from ..data import score
from ..errors import ArtifactError
from ..manifest import SegmentEntry
from ..progress import progress_bar


@dataclass
class FamilyCheck:
    """What verification measured: the numbers export records and reports."""

    samples: int
    scores: dict[int, float] = field(default_factory=dict)  # ORT score of each depth graph
    graph_err: dict[int, float] = field(default_factory=dict)  # max |ORT - torch| per depth graph
    segment_err: dict[int, float] = field(default_factory=dict)  # max |chain - torch| by end depth
    tolerance: dict[int, float] = field(default_factory=dict)


def verify_family(task: str, x: np.ndarray, y: np.ndarray, reference: Sequence[np.ndarray],
                  graphs: dict[int, Path], segments: Sequence[tuple[SegmentEntry, Path]],
                  batch: int = 256, segment_samples: int = 512, progress: bool = False) -> FamilyCheck:
    """`reference[d - 1]` holds torch's output at depth d for every row of `x`.

    Raises ArtifactError naming every graph or segment whose output is off by more than the
    tolerance; returns the measured scores and errors otherwise.
    """
    depth_sessions = {d: cpu_session(p) for d, p in sorted(graphs.items())}
    chain = [(entry, cpu_session(p)) for entry, p in segments]
    tol = {d: tolerance(task, reference[d - 1]) for d in {*graphs, *(e.end_depth for e, _ in segments)}}
    check = FamilyCheck(samples=len(x), tolerance=tol)
    outputs: dict[int, list[np.ndarray]] = {d: [] for d in depth_sessions}
    chain_vs_graph: dict[int, float] = {}
    starts = range(0, len(x), batch)
    bar = progress_bar(len(starts), "verify", "batch", enabled=progress)
    for lo in starts:
        if bar is not None:
            bar.update(1)
        xb = x[lo:lo + batch]
        for d, sess in depth_sessions.items():
            out = sess.run(None, {"x": xb})[0]
            outputs[d].append(out)
            _track(check.graph_err, d, out, reference[d - 1][lo:lo + batch])
        if lo >= segment_samples:
            continue
        feeds = {"x": xb}
        for j, (entry, sess) in enumerate(chain):
            outs = sess.run(None, feeds)
            d = entry.end_depth
            _track(check.segment_err, d, outs[-1], reference[d - 1][lo:lo + batch])
            if d in outputs:
                _track(chain_vs_graph, d, outs[-1], outputs[d][-1])
            if j + 1 < len(chain):  # the carried state, in order, feeds the next segment
                feeds = dict(zip(chain[j + 1][0].inputs, outs[:-1]))
    failures = [f"depth graph {d}: max |onnxruntime - torch| = {e:.3g} > {tol[d]:.3g}"
                for d, e in check.graph_err.items() if not e <= tol[d]]
    failures += [f"segment chain to depth {d}: max |chain - torch| = {e:.3g} > {tol[d]:.3g}"
                 for d, e in check.segment_err.items() if not e <= tol[d]]
    failures += [f"segment chain to depth {d} differs from the depth-{d} graph by {e:.3g} > {tol[d]:.3g}"
                 for d, e in chain_vs_graph.items() if not e <= tol[d]]
    if bar is not None:
        bar.close()
    if failures:
        raise ArtifactError("exported ONNX does not reproduce the checkpoint on held-out data "
                            "(an exporter bug or an unsupported op): " + "; ".join(failures))
    check.scores = {d: score(task, np.concatenate(o), y) for d, o in outputs.items()}
    return check


def _track(worst: dict[int, float], d: int, got: np.ndarray, want: np.ndarray) -> None:
    """worst[d] = max |got - want| so far; NaN sticks (max() would drop it), and
    `not e <= tol` above then reports it."""
    err = max_abs_error(got, want)
    prev = worst.get(d, 0.0)
    worst[d] = float("nan") if math.isnan(prev) or math.isnan(err) else max(prev, err)

