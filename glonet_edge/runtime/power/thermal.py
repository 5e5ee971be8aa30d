"""Linux thermal zones: /sys/class/thermal/thermal_zone*/{type,temp,mode,trip_point_*,cdev*_trip_point}.

Kernel ABI (Documentation/ABI/testing/sysfs-class-thermal, Documentation/driver-api/thermal/
sysfs-api.rst; docs/power.md has the details):

- `temp` and `trip_point_N_temp` are in millidegrees Celsius.
- `trip_point_N_type` is critical, hot, passive or active; at a *passive* trip the kernel slows
  the devices bound to it, so "temp >= a passive trip" is our throttling indicator.
- The kernel acts on a trip only through the cooling devices bound to it (`cdevK_trip_point`
  holds the trip index, -1 for none) and only while `mode` is "enabled" (absent: enabled).
- An unset trip reads THERMAL_TEMP_INVALID (-274000, below absolute zero, include/linux/
  thermal.h); older kernels print 0 for the x86_pkg_temp trips nobody set, or fail the read.
  None of those is a threshold, so such trips are ignored.
- Jetson (Tegra) zones whose sensor is powered down read -256 °C (jetson-stats treats -256 as
  "offline" too); any reading at or below that is "no reading", not a temperature.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .base import PowerSource, PowerState, SensorError, first_error, read_number, read_text

# Zones that do not measure silicon: on Jetson Nano/TX2 "PMIC-Die" is a fixed 100 °C placeholder
# (jetson-stats skips it too), and "thermal-fan-est" is an estimate computed from the other zones,
# so it adds nothing to their maximum.
IGNORED_ZONES = ("PMIC-Die", "thermal-fan-est")
# On Jetson Orin "tj-thermal" is the junction temperature, the max over CPU/GPU/SoC zones,
# which is the one the throttling thresholds refer to.
PREFERRED_ZONES = ("tj-thermal",)
OFFLINE_C = -256.0


@dataclass
class ZoneReading:
    name: str
    temp_c: float
    passive_trip_c: float | None  # the lowest passive trip the kernel acts on in this zone

    @property
    def at_passive_trip(self) -> bool:
        return self.passive_trip_c is not None and self.temp_c >= self.passive_trip_c


def _bound_trips(zone_dir: Path) -> set[int]:
    """Indices of the trips that have a cooling device bound (cdevK_trip_point; -1 = none)."""
    bound: set[int] = set()
    for link in zone_dir.glob("cdev*_trip_point"):
        try:
            index = read_number(link)
        except SensorError:
            continue
        if index >= 0 and index == int(index):
            bound.add(int(index))
    return bound


def zone_mode(zone_dir: Path) -> str:
    """"enabled" or "disabled". Absent, or unreadable (older kernels answer EPERM for zones
    whose driver has no mode callback), it is "enabled": such zones are always managed."""
    try:
        return read_text(zone_dir / "mode") if (zone_dir / "mode").exists() else "enabled"
    except SensorError:
        return "enabled"


def passive_trip_c(zone_dir: Path) -> float | None:
    """The lowest passive trip (°C) that is set and bound to a cooling device, if any."""
    if zone_mode(zone_dir) == "disabled":
        return None  # the kernel does not act on this zone's trips
    bound = _bound_trips(zone_dir)
    trips = []
    for type_file in zone_dir.glob("trip_point_*_type"):
        index = type_file.name[len("trip_point_"):-len("_type")]
        if not index.isdigit() or int(index) not in bound:
            continue
        try:
            if read_text(type_file) != "passive":
                continue
            millideg = read_number(zone_dir / f"trip_point_{index}_temp")
        except SensorError:  # older kernels fail the read of an unset trip
            continue
        if millideg > 0:  # 0 and THERMAL_TEMP_INVALID both mean "not set"
            trips.append(millideg / 1000.0)
    return min(trips) if trips else None


def _read_zone(zone_dir: Path) -> ZoneReading | None:
    """One zone, or None when it is ignored or its sensor is offline; raises SensorError if broken."""
    name = read_text(zone_dir / "type")
    if name in IGNORED_ZONES:
        return None
    temp_c = read_number(zone_dir / "temp") / 1000.0
    if temp_c <= OFFLINE_C:  # powered down (Orin's cv*-thermal while DLA/PVA idle) or invalid
        return None
    if not -60.0 <= temp_c <= 200.0:
        raise SensorError(f"{zone_dir.name} ({name}) reports {temp_c:.1f} °C")
    return ZoneReading(name, temp_c, passive_trip_c(zone_dir))


def read_zones(source: PowerSource) -> tuple[list[ZoneReading], list[str]]:
    """Every readable zone under source.root, and a message per zone that failed."""
    zones: list[ZoneReading] = []
    errors: list[str] = []
    for zone_dir in source.glob("sys/class/thermal/thermal_zone*"):
        try:
            zone = _read_zone(zone_dir)
        except SensorError as exc:
            errors.append(str(exc))
            continue
        if zone is not None:
            zones.append(zone)
    return zones, errors


def summarize_zones(zones: list[ZoneReading]) -> tuple[float | None, bool | None, dict[str, float]]:
    """(temperature to report, throttled-by-trip-point or None if no trip is known, all temps)."""
    if not zones:
        return None, None, {}
    preferred = [z for z in zones if z.name in PREFERRED_ZONES]
    temp = max(z.temp_c for z in (preferred or zones))
    with_trip = [z for z in zones if z.passive_trip_c is not None]
    throttled = any(z.at_passive_trip for z in with_trip) if with_trip else None
    return temp, throttled, {z.name: round(z.temp_c, 2) for z in zones}


class ThermalSource(PowerSource):
    """Temperature (and trip-point throttling) only; says nothing about battery or watts."""

    name = "thermal"

    def read(self) -> PowerState:
        zones, errors = read_zones(self)
        if not zones:
            raise SensorError(first_error(errors) if errors else f"no thermal zones under {self.path('sys/class/thermal')}")
        temp, throttled, temps = summarize_zones(zones)
        details: dict = {"zones_c": temps}
        if errors:
            details["errors"] = errors
        return PowerState(source=self.name, temp_c=temp, throttled=throttled, timestamp=self.clock(), details=details)

    def probe(self) -> bool:
        return bool(read_zones(self)[0])
