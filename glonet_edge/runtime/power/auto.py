"""`open_power_source(spec)`: build the source a runtime reads, from a short spec string.

Specs: "auto", "jetson", "battery" (alias "power_supply"), "thermal", "rapl", "nvml", "jtop",
"file:PATH", "trace:CSV" (a path, or the name of a trace shipped in glonet_edge/traces),
"env", "none". Whatever the spec, the result is wrapped in ResilientSource, so reading it
never raises. An explicit spec that finds nothing fails at open time with a ConfigError
(misconfiguration should be loud); only "auto" is silent about what it does not find.

`auto` probes, in this fixed order, and MERGES every source that answers (a field comes from
the first source in the order that knows it):

  1. env      $GLONET_POWER (e.g. "on_battery=1,battery_pct=20"): pins the fields it names
  2. file     the override file named by $GLONET_POWER_FILE
  3. jetson   /proc/device-tree/model, nvpmodel, INA3221 rails, thermal zones, throttling
  4. nvml     an NVIDIA GPU through pynvml
  5. battery  /sys/class/power_supply (AC online, battery %, discharge power)
  6. rapl     /sys/class/powercap/intel-rapl:* package energy
  7. thermal  /sys/class/thermal zones
  8. unknown  nothing readable: a state with every field None (the policy then serves the
              best-scoring depth, i.e. behaves as if on AC)

Merging matters on real machines: a Jetson on a robot gets its watts and mode from the
Jetson sensors and its battery level from power_supply; a laptop gets battery state from
power_supply and package power from RAPL while on AC.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Callable, Mapping

from ...errors import ConfigError
from .base import Clock, PowerSource
from .jetson import JetsonSource
from .jtop import JtopSource
from .nvml import NvmlSource
from .override import ENV_VAR, FILE_ENV_VAR, OverrideSource
from .power_supply import PowerSupplySource
from .rapl import RaplSource
from .resilient import MergedSource, NullSource, ResilientSource
from .thermal import ThermalSource
from .trace import TraceSource, load_trace, resolve_trace

logger = logging.getLogger("glonet_edge.runtime.power")

AUTO_ORDER = ("env", "file", "jetson", "nvml", "battery", "rapl", "thermal")
SPECS = ("auto", "jetson", "battery", "power_supply", "thermal", "rapl", "nvml", "jtop", "file:PATH",
         "trace:CSV", "env", "none")

_SENSORS: dict[str, Callable[..., PowerSource]] = {
    "jetson": JetsonSource, "battery": PowerSupplySource, "power_supply": PowerSupplySource,
    "thermal": ThermalSource, "rapl": RaplSource, "nvml": NvmlSource, "jtop": JtopSource,
}


def open_power_source(spec: str | PowerSource = "auto", root: str | Path = "/", *,
                      environ: Mapping[str, str] | None = None, clock: Clock = time.time,
                      max_stale_s: float = 30.0) -> ResilientSource:
    """Build the power source named by `spec` (see module docstring); reading it never raises."""
    if isinstance(spec, ResilientSource):
        return spec
    if isinstance(spec, PowerSource):
        return ResilientSource(spec, max_stale_s=max_stale_s)
    if not isinstance(spec, str):
        raise ConfigError(f"power source spec must be a string such as 'auto', got {type(spec).__name__}")
    environ = os.environ if environ is None else environ
    return ResilientSource(_build(spec.strip(), Path(root), environ, clock), max_stale_s=max_stale_s)


def _build(spec: str, root: Path, environ: Mapping[str, str], clock: Clock) -> PowerSource:
    kind, _, arg = spec.partition(":")
    if spec == "auto":
        return auto_source(root, environ, clock)
    if spec == "none":
        return NullSource(root, clock, reason="power source disabled (spec 'none')")
    if spec == "env":
        source = OverrideSource(root, clock, env_var=ENV_VAR, environ=environ)
        if not environ.get(ENV_VAR, "").strip():
            raise ConfigError(f"power source 'env' needs ${ENV_VAR}, e.g. {ENV_VAR}=on_battery=1,battery_pct=20")
        source.fields()  # malformed → ConfigError now, not a warning later
        return source
    if kind == "file" and arg:
        source = OverrideSource(root, clock, path=arg)
        if not Path(arg).is_file():
            raise ConfigError(f"power override file {arg} not found")
        source.fields()
        return source
    if kind == "trace" and arg:
        return TraceSource(load_trace(resolve_trace(arg)), root)
    if spec in _SENSORS:
        source = _SENSORS[spec](root, clock)
        if not source.probe():
            raise ConfigError(f"power source '{spec}' found nothing readable under {root}; "
                              f"use 'auto' to take whatever this machine offers")
        return source
    raise ConfigError(f"unknown power source spec {spec!r}; use one of: {', '.join(SPECS)}")


def auto_source(root: str | Path = "/", environ: Mapping[str, str] | None = None,
                clock: Clock = time.time) -> PowerSource:
    """Probe AUTO_ORDER and merge what answers; NullSource when nothing does. Never raises."""
    environ = os.environ if environ is None else environ
    root = Path(root)
    found: list[PowerSource] = []
    for kind in AUTO_ORDER:
        try:
            if kind == "env":
                candidate: PowerSource = OverrideSource(root, clock, env_var=ENV_VAR, environ=environ)
            elif kind == "file":
                if not environ.get(FILE_ENV_VAR):
                    continue
                candidate = OverrideSource(root, clock, path=environ[FILE_ENV_VAR])
            else:
                candidate = _SENSORS[kind](root, clock)
            if candidate.probe():
                found.append(candidate)
        except Exception as exc:  # noqa: BLE001 - e.g. a malformed $GLONET_POWER: say so, keep probing
            logger.warning("power source probe '%s' skipped: %s", kind, exc)
    if not found:
        return NullSource(root, clock, reason=f"nothing readable (probed {', '.join(AUTO_ORDER)} under {root})")
    return found[0] if len(found) == 1 else MergedSource(found, clock)
