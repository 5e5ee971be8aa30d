"""The interleaved timing the adaptive and int8-flavours suites share."""

from __future__ import annotations

import time

import pytest

from glonet_edge.bench import timing


def test_rounds_alternate_order_warm_each_turn_and_report_the_median(monkeypatch):
    ticks = iter(range(1000))
    monkeypatch.setattr(time, "perf_counter", lambda: next(ticks) * 1e-3)  # every clock read: +1 ms
    log = []
    calls = {"a": lambda: log.append("a"), "b": lambda: log.append("b")}
    ms = timing.interleaved_ms(calls, rounds=3, iterations=2, warmup=1)
    # warm-up then timed calls per turn; the second round runs b first
    assert "".join(log) == "aaabbb" + "bbbaaa" + "aaabbb"
    assert ms == pytest.approx({"a": 1.0, "b": 1.0})


def test_one_timed_call_per_round_by_default():
    log = []
    ms = timing.interleaved_ms({0: lambda: log.append(0), 1: lambda: log.append(1)}, rounds=4)
    assert log == [0, 1, 1, 0, 0, 1, 1, 0]
    assert set(ms) == {0, 1} and all(v >= 0 for v in ms.values())
