"""Power traces (contract: docs/architecture.md, "Power sources"): load, check, and replay them.

Format: CSV, one row per line, a header row first. `t_s` (seconds, strictly increasing) is
required; optional columns are `on_battery` (0/1), `battery_pct`, `power_w`,
`power_budget_w`, `power_mode`, `temp_c`. An empty cell means "not known at that time".
Lines starting with '#' are comments; they carry the trace's provenance (recorded on which
device, or synthetic from which documented figures) and are kept in `Trace.provenance`.
Columns outside the contract are ignored (a recorder may log more), except names that look
like a misspelt contract column ("battery_pc"), which are refused rather than silently lost.
"""

from __future__ import annotations

import bisect
import csv
import difflib
import time
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import ConfigError
from ...fileio import read_text
from .base import Clock, PowerSource, PowerState, parse_field

TIME_COLUMN = "t_s"
TRACES_DIR = Path(__file__).resolve().parents[2] / "traces"  # glonet_edge/traces, shipped as package data
STATE_COLUMNS = ("on_battery", "battery_pct", "power_w", "power_budget_w", "power_mode", "temp_c")


class TraceError(ConfigError):
    """A trace file is malformed; the message names the file, line and column."""


@dataclass
class Trace:
    name: str
    times: list[float]
    states: list[PowerState]
    columns: list[str]  # the contract columns present, in file order
    provenance: list[str] = field(default_factory=list)
    ignored_columns: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.times)

    @property
    def start_s(self) -> float:
        return self.times[0]

    @property
    def duration_s(self) -> float:
        return self.times[-1] - self.times[0]

    def index_at(self, t: float) -> int:
        """Row in force at trace time t: the last row with t_s <= t (the first row before it)."""
        return max(0, bisect.bisect_right(self.times, t) - 1)

    def state_at(self, t: float) -> PowerState:
        return self.states[self.index_at(t)]


def parse_trace(text: str, name: str = "<trace>") -> Trace:
    """Parse trace text; every problem raises TraceError naming `name`, the line and column."""
    provenance: list[str] = []
    header: list[str] | None = None
    times: list[float] = []
    states: list[PowerState] = []
    source = f"trace:{Path(name).stem}"
    text = text.removeprefix("\ufeff")  # spreadsheets save CSV with a byte-order mark
    for lineno, line in enumerate(text.splitlines(), start=1):
        where = f"{name} line {lineno}"
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("#"):
            provenance.append(stripped.lstrip("#").strip())
            continue
        cells = _split(line, where)
        if header is None:
            header = _check_header(cells, where)
            continue
        if len(cells) != len(header):
            raise TraceError(f"{where}: expected {len(header)} comma-separated fields "
                             f"({', '.join(header)}), got {len(cells)}")
        row = dict(zip(header, cells))
        t = _time(row[TIME_COLUMN], where)
        if times and t <= times[-1]:
            raise TraceError(f"{where}, column '{TIME_COLUMN}': {t:g} is not after the previous row's "
                             f"{times[-1]:g}; times must strictly increase")
        fields = {}
        for col in STATE_COLUMNS:
            raw = row.get(col, "")
            if raw == "":
                continue
            try:
                fields[col] = parse_field(col, raw)
            except ValueError as exc:
                raise TraceError(f"{where}, column '{col}': {exc}") from None
        times.append(t)
        states.append(PowerState(source=source, timestamp=t, **fields))
    if header is None:
        raise TraceError(f"{name}: no header row; the first non-comment line must name the columns, "
                         f"e.g. 't_s,on_battery,battery_pct,power_w'")
    if not times:
        raise TraceError(f"{name}: the header is there but no data rows follow")
    return Trace(name=name, times=times, states=states, columns=[c for c in header if c in STATE_COLUMNS],
                 provenance=provenance, ignored_columns=[c for c in header if c not in STATE_COLUMNS + (TIME_COLUMN,)])


def load_trace(path: str | Path) -> Trace:
    return parse_trace(read_text(path, "power trace", TraceError), str(path))


def shipped_traces() -> list[str]:
    """Names of the traces shipped with the package (see glonet_edge/traces/README.md)."""
    return sorted(p.stem for p in TRACES_DIR.glob("*.csv"))


def resolve_trace(spec: str | Path) -> Path:
    """A trace path as given, or the name of a shipped trace ("laptop_discharge")."""
    path = Path(spec)
    if path.is_file():
        return path
    shipped = TRACES_DIR / f"{Path(spec).stem}.csv"
    if path.parent == Path(".") and shipped.is_file():
        return shipped
    raise TraceError(f"power trace {spec} not found; give a CSV path or a shipped trace name: "
                     f"{', '.join(shipped_traces()) or '(none shipped)'}")


def _split(line: str, where: str) -> list[str]:
    try:
        return [c.strip() for c in next(csv.reader([line], strict=True))]
    except (csv.Error, StopIteration) as exc:
        raise TraceError(f"{where}: not a CSV row ({exc})") from None


def _check_header(cells: list[str], where: str) -> list[str]:
    if any(not c for c in cells):
        raise TraceError(f"{where}: the header has an empty column name: {','.join(cells)[:80]!r}")
    dupes = sorted({c for c in cells if cells.count(c) > 1})
    if dupes:
        raise TraceError(f"{where}: column(s) {', '.join(dupes)} appear twice in the header")
    if TIME_COLUMN not in cells:
        raise TraceError(f"{where}: the header {','.join(cells)[:80]!r} has no '{TIME_COLUMN}' column "
                         f"(required: time in seconds); is the header row missing?")
    known = STATE_COLUMNS + (TIME_COLUMN,)
    for c in cells:
        close = difflib.get_close_matches(c, known, n=1, cutoff=0.8) if c not in known else []
        if close:
            raise TraceError(f"{where}: unknown column {c!r}; did you mean {close[0]!r}?")
    return cells


def _time(raw: str, where: str) -> float:
    try:
        t = float(raw)
    except ValueError:
        raise TraceError(f"{where}, column '{TIME_COLUMN}': {raw[:40]!r} is not a number of seconds") from None
    if t != t or t in (float("inf"), float("-inf")):
        raise TraceError(f"{where}, column '{TIME_COLUMN}': {raw[:40]!r} is not a finite number")
    return t


class TraceSource(PowerSource):
    """Replays a trace. By clock (default): the row in force `speed` × elapsed seconds after
    the first read. By step: each `step()` moves to the next row; after the last row the last
    state holds, or with loop=True the trace starts over."""

    def __init__(self, trace: Trace | str | Path, root: str | Path = "/", clock: Clock = time.monotonic,
                 speed: float = 1.0, loop: bool = False) -> None:
        super().__init__(root, clock)
        self.trace = trace if isinstance(trace, Trace) else load_trace(trace)
        if not speed > 0:
            raise ConfigError(f"trace replay speed must be > 0, got {speed}")
        self.speed, self.loop = speed, loop
        self.name = f"trace:{Path(self.trace.name).stem}"
        self._start: float | None = None
        self._cursor: int | None = None  # set once step() is used

    def _row(self) -> int:
        if self._cursor is not None:
            return self._cursor
        now = self.clock()
        if self._start is None:
            self._start = now
        t = self.trace.start_s + (now - self._start) * self.speed
        if self.loop and self.trace.duration_s > 0:
            t = self.trace.start_s + (t - self.trace.start_s) % (self.trace.duration_s + self._last_gap())
        return self.trace.index_at(t)

    def _last_gap(self) -> float:
        """How long the last row lasts before a loop restarts: the trace's final spacing."""
        return self.trace.times[-1] - self.trace.times[-2] if len(self.trace) > 1 else 1.0

    def read(self) -> PowerState:
        return self.trace.states[self._row()]

    def step(self) -> PowerState:
        n = len(self.trace)
        if self._cursor is None:
            self._cursor = 0
        elif self._cursor + 1 < n:
            self._cursor += 1
        elif self.loop:
            self._cursor = 0
        return self.trace.states[self._cursor]

    def probe(self) -> bool:
        return True
