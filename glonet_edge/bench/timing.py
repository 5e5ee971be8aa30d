"""Interleaved timing for the suites that compare callables (adaptive, int8-flavours).

The callables take turns within every round, so machine drift (frequency, a neighbour's
load) hits each of them alike instead of whichever happened to run during it.
"""

from __future__ import annotations

import statistics
from typing import Any, Callable, Hashable, Mapping, TypeVar

K = TypeVar("K", bound=Hashable)


def interleaved_ms(calls: Mapping[K, Callable[[], Any]], rounds: int, iterations: int = 1,
                   warmup: int = 0) -> dict[K, float]:
    """Median wall time (ms) of one call of each callable. Each round runs every callable in
    turn, `warmup` untimed calls then `iterations` timed ones; every other round runs them in
    reverse order, so none always runs first."""
    from ..targets.profile import time_calls  # the one timing loop (warm-up, then timed calls)

    times: dict[K, list[float]] = {k: [] for k in calls}
    order = list(calls)
    for r in range(rounds):
        for k in (order if r % 2 == 0 else order[::-1]):
            times[k].extend(time_calls(calls[k], iterations, warmup).tolist())
    return {k: statistics.median(v) for k, v in times.items()}
