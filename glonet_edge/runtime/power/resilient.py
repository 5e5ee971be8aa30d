"""Keep serving when a sensor fails: ResilientSource, MergedSource and NullSource.

A sensor that vanishes (driver reload, unplugged USB battery, NVML losing the GPU) or starts
returning garbage must never stop inference. ResilientSource catches every error, logs ONE
warning for the life of the source (recoveries and later failures go to INFO/DEBUG so a
flapping sensor cannot flood the log), repeats the last good state marked `stale` for up to
`max_stale_s`, then reports "unknown" (which the policy treats as "no constraint known").
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Sequence

from .base import Clock, PowerSource, PowerState, SensorError

logger = logging.getLogger("glonet_edge.runtime.power")


class NullSource(PowerSource):
    """Always "unknown" (spec `none`, and what `auto` falls back to)."""

    name = "unknown"

    def __init__(self, root: str | Path = "/", clock: Clock = time.time, reason: str = "") -> None:
        super().__init__(root, clock)
        self.reason = reason

    def read(self) -> PowerState:
        return PowerState.unknown(self.name, self.reason, timestamp=self.clock())

    def probe(self) -> bool:
        return True


class MergedSource(PowerSource):
    """Several sources read together; each field comes from the first source that knows it.

    Used by `auto`: e.g. a Jetson on a robot gives power/mode/temperature from the Jetson
    sensors and battery level from power_supply. A member that fails is skipped for that read
    (its error lands in details); only if every member fails does the read fail.
    """

    def __init__(self, sources: Sequence[PowerSource], clock: Clock = time.time) -> None:
        if not sources:
            raise ValueError("MergedSource needs at least one source")
        super().__init__(sources[0].root, clock)
        self.sources = list(sources)
        self.name = "+".join(s.name for s in self.sources)

    def read(self) -> PowerState:
        merged: PowerState | None = None
        errors: list[str] = []
        for source in self.sources:
            try:
                state = source.read().validated()
            except Exception as exc:  # noqa: BLE001 - one broken member must not hide the others
                errors.append(f"{source.name}: {exc}")
                continue
            merged = state if merged is None else merged.merged_with(state)
        if merged is None:
            raise SensorError("; ".join(errors))
        details = dict(merged.details)
        if errors:
            details["errors"] = details.get("errors", []) + errors
        return replace(merged, source=self.name, details=details)

    def close(self) -> None:
        for source in self.sources:
            source.close()


class ResilientSource(PowerSource):
    """Wraps a source so `read()` never raises (thread-safe)."""

    def __init__(self, inner: PowerSource, max_stale_s: float = 30.0, monotonic: Clock = time.monotonic) -> None:
        super().__init__(inner.root, inner.clock)
        self.inner = inner
        self.name = inner.name
        self.max_stale_s = max_stale_s
        self.monotonic = monotonic
        self.failures = 0  # total failed reads, for `glonet run` diagnostics
        self._lock = threading.Lock()
        self._warned = False
        self._failing = False
        self._last_good: tuple[float, PowerState] | None = None

    def read(self) -> PowerState:
        with self._lock:
            try:
                state = self.inner.read().validated()
            except Exception as exc:  # noqa: BLE001 - the whole point: nothing escapes
                return self._failed(exc)
            if self._failing:
                logger.info("power source %s recovered", self.name)
                self._failing = False
            self._last_good = (self.monotonic(), state)
            return state

    def _failed(self, exc: BaseException) -> PowerState:
        self.failures += 1
        message = f"{type(exc).__name__}: {exc}" if not isinstance(exc, SensorError) else str(exc)
        if not self._warned:
            self._warned = True
            logger.warning("power source %s failed (%s); serving continues with the last good or an "
                           "unknown state. Further failures of this source are logged at DEBUG.",
                           self.name, message)
        elif not self._failing:
            logger.info("power source %s failing again: %s", self.name, message)
        else:
            logger.debug("power source %s still failing: %s", self.name, message)
        self._failing = True
        now = self.monotonic()
        if self._last_good is not None and now - self._last_good[0] <= self.max_stale_s:
            age, state = now - self._last_good[0], self._last_good[1]
            return replace(state, stale=True, details={**state.details, "error": message, "age_s": round(age, 3)})
        return PowerState.unknown(self.name, f"sensor failed: {message}", timestamp=self.clock())

    def probe(self) -> bool:
        return self.inner.probe()

    def close(self) -> None:
        self.inner.close()
