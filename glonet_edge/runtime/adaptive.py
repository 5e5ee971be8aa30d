"""The segment chain, run with per-row early exit and an optional deadline.

One runner serves `infer_anytime` (no threshold: every row goes as deep as the cap and the
deadline allow) and the adaptive mode (a threshold: each row also stops at the first check
where its exit rule fires, glonet_edge/exits.py). Batches are compacted: after a check only
the rows still running are fed to the next segment; every row's answer is written back at
its own position, with the depth it stopped at.

Stateless apart from the per-segment latency estimates (floats updated without a lock: a
lost update only delays the estimate), so one runner is shared by every calling thread.
"""

from __future__ import annotations

import time
from typing import List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from ..exits import exit_rows
from ..targets import CompiledModel


__all__ = ["ChainResult", "SegmentChain", "exit_rows"]


class ChainResult(NamedTuple):
    outputs: np.ndarray  # (batch, outputs), in the caller's row order
    depths: np.ndarray  # (batch,) the depth each row's answer comes from
    segments_run: int
    elapsed_ms: float


class SegmentChain:
    """The loaded chain: [(end_depth, model)] in order, and the input names of each next segment."""

    def __init__(self, segments: Sequence[Tuple[int, CompiledModel]], next_inputs: Sequence[List[str]],
                 input_name: str) -> None:
        self.segments = list(segments)
        self.next_inputs = list(next_inputs)
        self.input_name = input_name
        self.end_depths = [end for end, _ in self.segments]
        # Per-segment latency estimates (ms) for the deadline, refined as calls run.
        self.segment_ms = [0.0] * len(self.segments)

    def run(self, x: np.ndarray, max_depth: Optional[int] = None, deadline_ms: Optional[float] = None,
            exit_rule: Optional[Tuple[str, float, frozenset]] = None, start: Optional[float] = None) -> ChainResult:
        """Run until the cap (`max_depth`), the deadline, or (with exit_rule = (rule, threshold,
        check depths)) until every row has exited. The first segment always runs."""
        start = time.perf_counter() if start is None else start
        n = len(x)
        out: Optional[np.ndarray] = None
        depths = np.zeros(n, dtype=np.int64)
        rows = np.arange(n)  # the caller's positions of the rows still running
        feeds = {self.input_name: x}
        y = previous = None
        ran = last_end = 0
        for i, (end, model) in enumerate(self.segments):
            if ran and self._must_stop(i, end, max_depth, deadline_ms, start):
                break
            *state, y = self._timed_run(i, model, feeds)
            ran, last_end = ran + 1, end
            if out is None:
                out = np.empty((n,) + y.shape[1:], dtype=y.dtype)
            if exit_rule is not None and end in exit_rule[2] and not self._is_cap(i, max_depth):
                done = exit_rows(exit_rule[0], exit_rule[1], y, previous)
                if done.any():
                    out[rows[done]] = y[done]
                    depths[rows[done]] = end
                    keep = ~done
                    rows, y = rows[keep], y[keep]
                    state = [s[keep] for s in state]
                    if not len(rows):
                        break
            previous = y
            feeds = dict(zip(self.next_inputs[i], state))
        if len(rows):
            out[rows] = y
            depths[rows] = last_end
        return ChainResult(out, depths, ran, (time.perf_counter() - start) * 1e3)

    def _must_stop(self, i: int, end: int, max_depth: Optional[int], deadline_ms: Optional[float],
                   start: float) -> bool:
        if max_depth is not None and end > max_depth:
            return True
        return deadline_ms is not None and (time.perf_counter() - start) * 1e3 + self.segment_ms[i] > deadline_ms

    def _is_cap(self, i: int, max_depth: Optional[int]) -> bool:
        """Segment i is the deepest this call may run: every row still running stops there."""
        return i + 1 == len(self.segments) or (max_depth is not None and self.end_depths[i + 1] > max_depth)

    def _timed_run(self, i: int, model: CompiledModel, feeds: dict) -> List[np.ndarray]:
        t0 = time.perf_counter()
        outs = model.run_validated(feeds)
        took = (time.perf_counter() - t0) * 1e3
        # Exponential moving average: adapts to load without one slow call dominating.
        self.segment_ms[i] = took if self.segment_ms[i] == 0 else 0.8 * self.segment_ms[i] + 0.2 * took
        return outs
