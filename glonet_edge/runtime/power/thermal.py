"""Linux thermal zones: /sys/class/thermal/thermal_zone*/{type,temp,trip_point_*}.

Kernel ABI (Documentation/driver-api/thermal/sysfs-api.rst): `temp` is in millidegrees
Celsius; `trip_point_N_type` is one of active/passive/hot/critical, and at or above a
*passive* trip the kernel caps clocks, so "temp >= a passive trip" is our documented
throttling indicator on any Linux device.
"""

from __future__ import annotations

from dataclasses import dataclass

from .base import PowerSource, PowerState, SensorError, first_error, read_number, read_text

# Zones that do not measure silicon: on Jetson Nano/TX2 "PMIC-Die" is a fixed 100 °C
# placeholder and "thermal-fan-est" is an estimate built from the others (jetson-stats
# hides both for the same reason).
IGNORED_ZONES = ("PMIC-Die", "thermal-fan-est")
# On Jetson Orin "tj-thermal" is the junction temperature, the max over CPU/GPU/SoC zones,
# which is the one the throttling thresholds refer to.
PREFERRED_ZONES = ("tj-thermal",)
# Tegra reports -256 °C for a zone whose sensor is powered down (jetson-stats treats it the same).
OFFLINE_C = -256.0


@dataclass
class ZoneReading:
    name: str
    temp_c: float
    passive_trip_c: float | None

    @property
    def at_passive_trip(self) -> bool:
        return self.passive_trip_c is not None and self.temp_c >= self.passive_trip_c


def read_zones(source: PowerSource) -> tuple[list[ZoneReading], list[str]]:
    """Every readable zone under source.root, and a message per zone that failed."""
    zones: list[ZoneReading] = []
    errors: list[str] = []
    for zone_dir in source.glob("sys/class/thermal/thermal_zone*"):
        try:
            name = read_text(zone_dir / "type")
            if name in IGNORED_ZONES:
                continue
            temp_c = read_number(zone_dir / "temp") / 1000.0
            if temp_c <= OFFLINE_C:  # a powered-down zone (Orin's cv*-thermal while DLA/PVA idle)
                continue
            if not -60.0 <= temp_c <= 200.0:
                raise SensorError(f"{zone_dir.name} ({name}) reports {temp_c:.1f} °C")
            passive = [read_number(t.with_name(t.name.replace("_type", "_temp"))) / 1000.0
                       for t in sorted(zone_dir.glob("trip_point_*_type")) if read_text(t) == "passive"]
            zones.append(ZoneReading(name, temp_c, min(passive) if passive else None))
        except SensorError as exc:
            errors.append(str(exc))
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
