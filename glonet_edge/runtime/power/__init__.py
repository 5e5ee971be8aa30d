"""Power sources for the power-aware runtime (numpy-free, standard library only).

    from glonet_edge.runtime.power import open_power_source
    source = open_power_source("auto")      # never raises on read()
    state = source.read()                   # PowerState(on_battery=..., battery_pct=..., ...)

See auto.py for the probe order of "auto" and the spec strings, trace.py for the trace CSV
contract, and each source module for the exact sysfs files it reads and where their formats
are documented.
"""

from .auto import AUTO_ORDER, SPECS, auto_source, open_power_source
from .base import PowerSource, PowerState, SensorError
from .jetson import JetsonSource
from .jtop import JtopSource
from .nvml import NvmlSource
from .override import ENV_VAR, FILE_ENV_VAR, OverrideSource, parse_override
from .power_supply import PowerSupplySource
from .rapl import RaplSource
from .resilient import MergedSource, NullSource, ResilientSource
from .thermal import ThermalSource
from .trace import (
    STATE_COLUMNS, TIME_COLUMN, Trace, TraceError, TraceSource, load_trace, parse_trace, resolve_trace,
    shipped_traces,
)

__all__ = [
    "AUTO_ORDER", "SPECS", "auto_source", "open_power_source",
    "PowerSource", "PowerState", "SensorError",
    "JetsonSource", "JtopSource", "NvmlSource", "OverrideSource", "PowerSupplySource", "RaplSource",
    "ThermalSource", "TraceSource", "MergedSource", "NullSource", "ResilientSource",
    "ENV_VAR", "FILE_ENV_VAR", "parse_override",
    "STATE_COLUMNS", "TIME_COLUMN", "Trace", "TraceError", "load_trace", "parse_trace", "resolve_trace",
    "shipped_traces",
]
