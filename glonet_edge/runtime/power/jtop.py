"""Jetson readings through jetson-stats (`pip install jetson-stats`, module `jtop`).

An alternative to the sysfs JetsonSource for containers where /sys is not mounted but the
jtop service socket is. jtop 4.x API: `jtop()` then `.start()`; `.power` is
{"rail": {...}, "tot": {"power": mW, ...}}; `.temperature` is {zone: {"temp": °C,
"online": bool}} (offline zones read -256); `.nvpmodel` is None or an object with `.name`.
Explicit spec only (`jtop`): `auto` reads the same sensors through sysfs without a daemon.
"""

from __future__ import annotations

import importlib
import time
from pathlib import Path
from typing import Any

from .base import Clock, PowerSource, PowerState, SensorError
from .jetson import budget_from_mode_name


class JtopSource(PowerSource):
    name = "jtop"

    def __init__(self, root: str | Path = "/", clock: Clock = time.time) -> None:
        super().__init__(root, clock)
        self._jetson: Any = None

    def _open(self) -> Any:
        if self._jetson is None:
            try:
                module = importlib.import_module("jtop")
            except ImportError as exc:
                raise SensorError("jetson-stats is not installed (pip install jetson-stats)") from exc
            try:
                jetson = module.jtop()
                jetson.start()
            except Exception as exc:  # JtopException when the jtop.service is not running
                raise SensorError(f"cannot connect to the jtop service: {exc}") from exc
            self._jetson = jetson
        return self._jetson

    def probe(self) -> bool:
        try:
            return bool(self._open().ok())
        except SensorError:
            return False

    def read(self) -> PowerState:
        jetson = self._open()
        try:
            power = jetson.power or {}
            temps = jetson.temperature or {}
            nvp = jetson.nvpmodel
        except Exception as exc:
            self.close()  # the service went away: reconnect on the next read
            raise SensorError(f"jtop read failed: {exc}") from exc
        try:  # jtop hands back whatever the service sent: anything malformed is a sensor fault
            total_mw = (power.get("tot") or {}).get("power")
            online = [float(t["temp"]) for t in temps.values()
                      if isinstance(t, dict) and t.get("online", True) and float(t.get("temp", -256)) > -60]
            mode = getattr(nvp, "name", None) if nvp is not None else None
            mode = str(mode) if mode is not None else None
            return PowerState(
                source=self.name, power_w=float(total_mw) / 1000.0 if total_mw is not None else None,
                power_budget_w=budget_from_mode_name(mode) if mode else None, power_mode=mode,
                temp_c=max(online) if online else None, timestamp=self.clock(),
                details={"rails_w": {k: float(v.get("power", 0)) / 1000.0
                                     for k, v in (power.get("rail") or {}).items()}},
            )
        except (TypeError, ValueError, AttributeError, KeyError, OverflowError) as exc:
            raise SensorError(f"jtop returned a malformed reading: {exc}") from exc

    def close(self) -> None:
        if self._jetson is not None:
            try:
                self._jetson.close()
            except Exception:  # noqa: BLE001 - closing a dead connection is harmless
                pass
        self._jetson = None
