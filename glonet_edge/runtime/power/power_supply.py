"""Linux power_supply class: /sys/class/power_supply/<name>/...

Kernel ABI (Documentation/ABI/testing/sysfs-class-power): `type` is Battery, UPS, Mains,
USB or Wireless; `online` 0/1 for external supplies; batteries have `present`, `status`
(Charging, Discharging, Not charging, Full, Unknown), `capacity` (%), and in micro-units
`power_now` (µW), `current_now` (µA), `voltage_now` (µV), `energy_now`/`energy_full` (µWh),
`charge_now`/`charge_full` (µAh), and `scope` (System/Device: peripherals' batteries are
"Device"). Drivers expose different subsets, so every one is optional.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .base import PowerSource, PowerState, SensorError, optional_number, read_text

EXTERNAL_TYPES = ("Mains", "USB", "Wireless")


def _battery_power_w(d: Path) -> float | None:
    power = optional_number(d / "power_now")
    if power is not None:
        return abs(power) / 1e6
    current, voltage = optional_number(d / "current_now"), optional_number(d / "voltage_now")
    if current is not None and voltage is not None:
        # Some drivers report a negative current while discharging: the magnitude is the draw.
        return abs(current) * voltage / 1e12
    return None


def _battery_fill(d: Path) -> tuple[float | None, float | None]:
    """(stored, full) in a consistent unit (µWh, else µAh), for capacity-weighted averaging."""
    for now, full in (("energy_now", "energy_full"), ("charge_now", "charge_full")):
        a, b = optional_number(d / now), optional_number(d / full)
        if a is not None and b is not None and b > 0:  # a zero/negative "full" is a broken gauge
            return a, b
    return None, None


class PowerSupplySource(PowerSource):
    """AC/battery state and battery discharge power from the power_supply class."""

    name = "power_supply"

    def read(self) -> PowerState:
        supplies = self.glob("sys/class/power_supply/*")
        if not supplies:
            raise SensorError(f"no power supplies under {self.path('sys/class/power_supply')}")
        external_online: list[bool] = []
        batteries: list[dict[str, Any]] = []
        for d in supplies:
            kind = read_text(d / "type")
            if kind in EXTERNAL_TYPES and (d / "online").exists():
                external_online.append(optional_number(d / "online") == 1)
            elif kind == "Battery":
                if optional_number(d / "present") == 0:  # empty battery bay
                    continue
                # A wireless mouse or headset battery (scope "Device") says nothing about the host.
                if (d / "scope").exists() and read_text(d / "scope") == "Device":
                    continue
                status = read_text(d / "status") if (d / "status").exists() else "Unknown"
                stored, full = _battery_fill(d)
                capacity = optional_number(d / "capacity")
                if capacity is None and stored is not None:
                    capacity = 100.0 * stored / full
                batteries.append({"name": d.name, "status": status, "capacity": capacity,
                                  "stored": stored, "full": full, "power_w": _battery_power_w(d)})
        if not external_online and not batteries:
            raise SensorError("power_supply lists no battery and no AC/USB supply with an 'online' attribute")

        on_battery = self._on_battery(external_online, batteries)
        pct = self._battery_pct(batteries)
        powers = [b["power_w"] for b in batteries if b["power_w"] is not None]
        # Battery power_now is the whole system's draw only while the battery feeds it.
        power_w = sum(powers) if on_battery and powers else None
        details: dict[str, Any] = {"batteries": [{k: b[k] for k in ("name", "status", "capacity", "power_w")}
                                                 for b in batteries],
                                   "external_online": external_online}
        return PowerState(source=self.name, on_battery=on_battery, battery_pct=pct, power_w=power_w,
                          timestamp=self.clock(), details=details)

    @staticmethod
    def _on_battery(external_online: list[bool], batteries: list[dict[str, Any]]) -> bool | None:
        if any(external_online):
            return False
        statuses = {b["status"] for b in batteries}
        if "Discharging" in statuses:
            return True
        if external_online:  # supplies exist and none is online: running from the battery
            return bool(batteries)
        if statuses & {"Charging", "Full"}:
            return False
        return None  # e.g. a battery reporting "Unknown" with no AC supply listed

    @staticmethod
    def _battery_pct(batteries: list[dict[str, Any]]) -> float | None:
        known = [b for b in batteries if b["capacity"] is not None]
        if not known:
            return None
        # Two batteries (ThinkPads) of different size: weight by their full capacity when known.
        if all(b["full"] for b in known):
            total = sum(b["full"] for b in known)
            return sum(b["capacity"] * b["full"] for b in known) / total
        return sum(b["capacity"] for b in known) / len(known)
