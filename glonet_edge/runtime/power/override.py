"""Power state set by hand: the GLONET_POWER environment variable or an override file.

Formats (fields: on_battery, throttled as 0/1; battery_pct, power_w, power_budget_w,
temp_c as numbers; power_mode, device as text):
- environment: GLONET_POWER="on_battery=1,battery_pct=20"
- file: a JSON object {"on_battery": true, "battery_pct": 20}, or key=value pairs, one per
  line or comma-separated, with '#' comments.
Only the fields given are set, so under `auto` an override pins what it names and the
sensors still fill in the rest. The file is re-read on every read, so an operator (or a
test harness) can change the state of a running service by editing it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Mapping

from ...errors import ConfigError
from ...fileio import parse_json
from .base import Clock, PowerSource, PowerState, SensorError, parse_field, read_bounded

ENV_VAR = "GLONET_POWER"
FILE_ENV_VAR = "GLONET_POWER_FILE"


def parse_override(text: str, where: str) -> dict[str, Any]:
    """Fields from an override text (JSON object or key=value list); ConfigError names `where`."""
    stripped = text.strip()
    if stripped.startswith("{"):
        raw = parse_json(stripped, where)
        if not isinstance(raw, dict):
            raise ConfigError(f"{where}: the JSON must be an object of fields")
        pairs = list(raw.items())
    else:
        pairs = []
        for line in stripped.splitlines():
            line = line.split("#", 1)[0]
            for item in filter(None, (p.strip() for p in line.split(","))):
                key, sep, value = item.partition("=")
                if not sep:
                    raise ConfigError(f"{where}: {item[:40]!r} is not key=value "
                                      "(example: on_battery=1,battery_pct=20)")
                pairs.append((key.strip(), value.strip()))
    fields: dict[str, Any] = {}
    for key, value in pairs:
        if key in fields:
            raise ConfigError(f"{where}: {key!r} is given twice")
        try:
            fields[key] = parse_field(key, value)
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    return fields


class OverrideSource(PowerSource):
    """A fixed state from a file or an environment variable (exactly one of the two)."""

    def __init__(self, root: str | Path = "/", clock: Clock = time.time, *, path: str | Path | None = None,
                 env_var: str | None = None, environ: Mapping[str, str] | None = None) -> None:
        super().__init__(root, clock)
        if (path is None) == (env_var is None):
            raise ValueError("OverrideSource takes exactly one of path= or env_var=")
        self.file = Path(path) if path is not None else None
        self.env_var = env_var
        self.environ = os.environ if environ is None else environ
        self.name = f"file:{self.file}" if self.file else f"env:{env_var}"

    def fields(self) -> dict[str, Any]:
        """Parse the override now; ConfigError when it is malformed, SensorError when absent."""
        if self.file is not None:
            try:
                text = read_bounded(self.file).decode("utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise SensorError(f"cannot read power override file {self.file}: {exc}") from exc
            return parse_override(text, str(self.file))
        text = self.environ.get(self.env_var or "", "")
        if not text.strip():
            raise SensorError(f"${self.env_var} is not set")
        return parse_override(text, f"${self.env_var}")

    def read(self) -> PowerState:
        try:
            fields = self.fields()
        except ConfigError as exc:  # edited into garbage mid-run: a sensor fault, not a crash
            raise SensorError(str(exc)) from exc
        return PowerState(source=self.name, timestamp=self.clock(), **fields)

    def probe(self) -> bool:
        try:
            return bool(self.fields())
        except SensorError:
            return False
