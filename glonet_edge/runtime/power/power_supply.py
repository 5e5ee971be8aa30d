"""Linux power_supply class: /sys/class/power_supply/<name>/...

Every attribute is read with the meaning and unit the kernel documents
(Documentation/ABI/testing/sysfs-class-power; units in Documentation/power/power_supply_class.rst;
the exact strings from drivers/power/supply/power_supply_sysfs.c). docs/power.md lists each one
with its source. In short:

- `type`: Battery, UPS, Mains, USB, Wireless; older USB charger drivers print the charger kind
  as the type (USB_DCP, USB_CDP, USB_ACA, USB_C, USB_PD, USB_PD_DRP, BrickID); "Unknown" is skipped.
- `scope`: System, Device or Unknown (absent: not said). A "Device" supply powers a peripheral
  only (a wireless mouse's battery, a discrete GPU's USB-C port) and says nothing about this machine.
- `online` (external supplies): 0 offline, 1 online with a fixed voltage, 2 online programmable
  (USB PD PPS): any value >= 1 is online.
- `present` (batteries): 0 absent, 1 present; a battery without the attribute is present.
- `status` (batteries and UPSes): Unknown, Charging, Discharging, Not charging, Full. Only
  Discharging means the battery powers the system; Charging, Not charging and Full mean an
  external supply does. A USB-C port's own `status` (UCSI: Discharging while it powers a phone)
  is about that port, so it is not read.
- `capacity` percent 0-100; `energy_*` µWh; `charge_*` µAh; `power_now` µW; `current_now` µA
  (negative while discharging); `voltage_now` µV.
- `usb_type` (USB supplies): the kinds the port supports, the active one in brackets ("C [PD] PD_PPS").

Drivers expose different subsets, so each attribute is optional; one that exists but cannot be
read or parsed fails the whole read (the ResilientSource around it then serves the last good
state, then "unknown"), because skipping it could silently turn "on battery" into "on AC".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .base import PowerSource, PowerState, SensorError, optional_number, read_number, read_text

EXTERNAL_TYPES = ("Mains", "USB", "Wireless", "BrickID")  # and every "USB_*" charger kind
STORAGE_TYPES = ("Battery", "UPS")  # a UPS is the system's battery when the mains fails
BATTERY_STATUSES = ("Unknown", "Charging", "Discharging", "Not charging", "Full")
EXTERNAL_POWER_STATUSES = ("Charging", "Not charging", "Full")  # the battery is not feeding the load
ONLINE_VALUES = (0, 1, 2)  # offline, online fixed, online programmable
_ACTIVE_USB_TYPE = re.compile(r"\[([^\]]*)\]")


@dataclass
class External:
    """A Mains/USB/Wireless supply: whether it feeds the system now."""

    name: str
    kind: str
    online: int
    usb_type: str | None


@dataclass
class Battery:
    """A system battery or UPS; `stored`/`full` share `unit` ("µWh" or "µAh")."""

    name: str
    status: str
    capacity: float | None
    stored: float | None
    full: float | None
    unit: str | None
    power_w: float | None


def is_external(kind: str) -> bool:
    return kind in EXTERNAL_TYPES or kind.startswith("USB_")


def _text(d: Path, name: str) -> str | None:
    return read_text(d / name) if (d / name).exists() else None


def _read_external(d: Path, kind: str) -> External | None:
    if not (d / "online").exists():
        return None
    online = read_number(d / "online")
    if online not in ONLINE_VALUES:
        raise SensorError(f"{d / 'online'} holds {online:g}; the power_supply ABI defines 0 (offline), "
                          f"1 (online, fixed) and 2 (online, programmable)")
    usb_type = _text(d, "usb_type")
    active = _ACTIVE_USB_TYPE.search(usb_type) if usb_type else None
    return External(d.name, kind, int(online), active.group(1) if active else None)


def _battery_power_w(d: Path) -> float | None:
    power_uw = optional_number(d / "power_now")
    if power_uw is not None:
        return abs(power_uw) / 1e6
    current_ua, voltage_uv = optional_number(d / "current_now"), optional_number(d / "voltage_now")
    if current_ua is not None and voltage_uv is not None:
        # The ABI has current_now negative while discharging: the magnitude is the draw.
        return abs(current_ua) * voltage_uv / 1e12
    return None


def _battery_fill(d: Path) -> tuple[float | None, float | None, str | None]:
    """(stored, full, unit): energy in µWh when the driver has it, else charge in µAh."""
    for now, full, unit in (("energy_now", "energy_full", "µWh"), ("charge_now", "charge_full", "µAh")):
        a, b = optional_number(d / now), optional_number(d / full)
        if a is not None and b is not None and b > 0:  # a zero/negative "full" is a broken gauge
            return a, b, unit
    return None, None, None


def _read_battery(d: Path) -> Battery | None:
    if optional_number(d / "present") == 0:  # an empty battery bay
        return None
    status = _text(d, "status") or "Unknown"
    if status not in BATTERY_STATUSES:  # a value the ABI does not define tells nothing
        status = "Unknown"
    stored, full, unit = _battery_fill(d)
    capacity = optional_number(d / "capacity")
    if capacity is None and stored is not None and full:
        # energy_full is the *last remembered* full level, so energy_now may pass it: that is 100 %.
        capacity = min(100.0, 100.0 * stored / full)
    return Battery(d.name, status, capacity, stored, full, unit, _battery_power_w(d))


def on_battery(externals: list[External], batteries: list[Battery]) -> bool | None:
    """Whether a battery feeds the system, from what the supplies say (None: they cannot tell)."""
    if any(e.online for e in externals):
        return False
    statuses = {b.status for b in batteries}
    if "Discharging" in statuses:
        return True
    if statuses & set(EXTERNAL_POWER_STATUSES):
        return False
    if externals and batteries:  # every external supply offline, and a battery present
        return True
    return None  # e.g. a battery reporting "Unknown" and no external supply listed


def battery_pct(batteries: list[Battery]) -> float | None:
    known = [b for b in batteries if b.capacity is not None]
    if not known:
        return None
    # Two batteries of different size (ThinkPads): weight by full capacity, if all share a unit.
    if all(b.full for b in known) and len({b.unit for b in known}) == 1:
        total = sum(b.full for b in known)
        return sum(b.capacity * b.full for b in known) / total
    return sum(b.capacity for b in known) / len(known)


class PowerSupplySource(PowerSource):
    """AC/battery state and battery discharge power from the power_supply class."""

    name = "power_supply"

    def _supplies(self) -> tuple[list[External], list[Battery], list[str]]:
        externals: list[External] = []
        batteries: list[Battery] = []
        peripherals: list[str] = []
        for d in self.glob("sys/class/power_supply/*"):
            kind = read_text(d / "type")
            if not (is_external(kind) or kind in STORAGE_TYPES):
                continue
            if _text(d, "scope") == "Device":
                peripherals.append(d.name)
            elif kind in STORAGE_TYPES:
                battery = _read_battery(d)
                batteries.extend([battery] if battery else [])
            else:
                external = _read_external(d, kind)
                externals.extend([external] if external else [])
        return externals, batteries, peripherals

    def read(self) -> PowerState:
        if not self.glob("sys/class/power_supply/*"):
            raise SensorError(f"no power supplies under {self.path('sys/class/power_supply')}")
        externals, batteries, peripherals = self._supplies()
        if not externals and not batteries:
            raise SensorError("power_supply lists no system battery and no AC/USB supply with an 'online' attribute")
        state_on_battery = on_battery(externals, batteries)
        powers = [b.power_w for b in batteries if b.power_w is not None]
        # A battery's power_now is the whole system's draw only while the battery feeds it.
        power_w = sum(powers) if state_on_battery and powers else None
        details: dict[str, Any] = {
            "batteries": [{"name": b.name, "status": b.status, "capacity": b.capacity, "power_w": b.power_w}
                          for b in batteries],
            "external": [{"name": e.name, "type": e.kind, "online": e.online, "usb_type": e.usb_type}
                         for e in externals],
        }
        if peripherals:
            details["peripherals"] = peripherals
        return PowerState(source=self.name, on_battery=state_on_battery, battery_pct=battery_pct(batteries),
                          power_w=power_w, timestamp=self.clock(), details=details)
