"""ThermalSource (and the zones JetsonSource reads) against trees built from the thermal documents.

ABI = Documentation/ABI/testing/sysfs-class-thermal; API = Documentation/driver-api/thermal/sysfs-api.rst;
THERMAL_H = include/linux/thermal.h; SYSFS_C = drivers/thermal/thermal_sysfs.c (the strings it prints);
PKG = drivers/thermal/intel/x86_pkg_temp_thermal.c; JTOP = jetson-stats jtop/core/temperature.py.
"""

from __future__ import annotations

import pytest

import fake_sysfs
from fake_sysfs import THERMAL_TEMP_INVALID, bind_cooling_device, thermal_zone, write, write_all, x86_pkg_temp
from glonet_edge.runtime.power import JetsonSource, SensorError, ThermalSource
from glonet_edge.runtime.power import thermal

TZ = "sys/class/thermal/thermal_zone0"


def test_temperatures_are_millidegrees(tmp_path):
    thermal_zone(tmp_path, 0, "acpitz", 37000)  # API section 3: temp 37000 is 37 °C
    thermal_zone(tmp_path, 1, "soc_thermal", 48312)
    state = ThermalSource(tmp_path).read()
    assert state.temp_c == pytest.approx(48.312) and state.details["zones_c"] == {"acpitz": 37.0, "soc_thermal": 48.31}


def test_acpi_zone_of_the_document_throttles_at_its_passive_trip(tmp_path):
    # API section 3: acpitz with trip 0 critical 100000, trip 1 passive 80000 (cdev0_trip_point 1,
    # a Processor), trips 2 and 3 active. ABI, trip_point_Y_temp: "The temperature above which trip
    # point will be fired", millidegrees.
    write_all(tmp_path, TZ, {"type": "acpitz", "temp": 79999, "mode": "enabled", "policy": "step_wise",
                             "trip_point_0_temp": 100000, "trip_point_0_type": "critical",
                             "trip_point_1_temp": 80000, "trip_point_1_type": "passive",
                             "trip_point_2_temp": 70000, "trip_point_2_type": "active",
                             "trip_point_3_temp": 60000, "trip_point_3_type": "active"})
    bind_cooling_device(tmp_path, zone=0, cdev=0, trip=1)
    assert ThermalSource(tmp_path).read().throttled is False  # past both active trips: fans, not throttling
    write(tmp_path, f"{TZ}/temp", 80000)
    assert ThermalSource(tmp_path).read().throttled is True


@pytest.mark.parametrize("kind", ["critical", "hot", "active", "unknown", "cold", "critical_cold"])
def test_only_passive_trips_mean_throttling(tmp_path, kind):
    # SYSFS_C, trip_point_type_show prints these; only "passive" slows the bound devices down.
    write_all(tmp_path, TZ, {"type": "soc_thermal", "temp": 90000, "trip_point_0_type": kind,
                             "trip_point_0_temp": 60000})
    bind_cooling_device(tmp_path, zone=0, cdev=0, trip=0)
    assert ThermalSource(tmp_path).read().throttled is None


@pytest.mark.parametrize("unset", [THERMAL_TEMP_INVALID, 0])
def test_unset_passive_trip_is_not_a_threshold(tmp_path, unset):
    # THERMAL_H: THERMAL_TEMP_INVALID -274000 marks an invalid/uninitialized trip; older kernels
    # print 0 for unset x86_pkg_temp trips (PKG: writing 0 means "no longer interested").
    thermal_zone(tmp_path, 0, "acpitz", 45000, passive_trip=unset)
    assert ThermalSource(tmp_path).read().throttled is None  # not "always throttled"


def test_unreadable_trip_is_skipped_and_the_zone_still_read(tmp_path):
    thermal_zone(tmp_path, 0, "acpitz", 45000, passive_trip=95000)
    write(tmp_path, f"{TZ}/trip_point_1_temp", "")  # older kernels fail the read of an invalid trip
    state = ThermalSource(tmp_path).read()
    assert state.temp_c == pytest.approx(45.0) and state.throttled is None and "errors" not in state.details


def test_passive_trip_without_a_bound_cooling_device_does_not_throttle(tmp_path):
    # ABI, cdevY_trip_point: "-1 means the cooling device is not associated with any trip point".
    thermal_zone(tmp_path, 0, "acpitz", 96000, passive_trip=95000)
    assert ThermalSource(tmp_path).read().throttled is True
    write(tmp_path, f"{TZ}/cdev0_trip_point", -1)
    assert ThermalSource(tmp_path).read().throttled is None
    thermal_zone(tmp_path / "unbound", 0, "acpitz", 96000, passive_trip=95000, cooled=False)
    assert ThermalSource(tmp_path / "unbound").read().throttled is None


def test_x86_pkg_temp_thresholds_are_notifications_not_throttling(tmp_path):
    # PKG: two passive trips user space (thermald) sets for notifications; no cooling device binds.
    x86_pkg_temp(tmp_path, 0, 91000, trips=(80000, 85000))
    state = ThermalSource(tmp_path).read()
    assert state.temp_c == pytest.approx(91.0) and state.throttled is None


def test_disabled_zone_trips_are_not_acted_on(tmp_path):
    # ABI, mode: "disabled: Preventing kernel thermal zone driver actions upon trip points".
    thermal_zone(tmp_path, 0, "acpitz", 96000, passive_trip=95000)
    write(tmp_path, f"{TZ}/mode", "disabled")
    state = ThermalSource(tmp_path).read()
    assert state.temp_c == pytest.approx(96.0) and state.throttled is None


def test_unreadable_mode_counts_as_enabled(tmp_path, monkeypatch):
    # SYSFS_C (older kernels), mode_show: -EPERM when the driver has no get_mode callback.
    thermal_zone(tmp_path, 0, "acpitz", 96000, passive_trip=95000)
    real = thermal.read_text

    def eperm_on_mode(path):
        if path.name == "mode":
            raise SensorError(f"cannot read {path}: Operation not permitted")
        return real(path)

    monkeypatch.setattr(thermal, "read_text", eperm_on_mode)
    assert ThermalSource(tmp_path).read().throttled is True


def test_offline_sensors_are_no_reading(tmp_path):
    # JTOP: TEMPERATURE_OFFLINE = -256 (a powered-down Tegra zone reads -256000); THERMAL_H: -274000
    # is below absolute zero. Neither is a temperature.
    thermal_zone(tmp_path, 0, "cv0-thermal", -256000)
    thermal_zone(tmp_path, 1, "cv1-thermal", THERMAL_TEMP_INVALID)
    thermal_zone(tmp_path, 2, "cpu-thermal", 51000)
    state = ThermalSource(tmp_path).read()
    assert state.details["zones_c"] == {"cpu-thermal": 51.0} and "errors" not in state.details
    write(tmp_path, "sys/class/thermal/thermal_zone2/temp", -256000)
    with pytest.raises(SensorError, match="no thermal zones"):
        ThermalSource(tmp_path).read()
    assert not ThermalSource(tmp_path).probe()


def test_orin_offline_zone_and_junction_temperature(tmp_path):
    root = fake_sysfs.orin_nano_jp6(tmp_path)  # cv0-thermal powered down (-256000)
    state = JetsonSource(root).read()
    assert "cv0-thermal" not in state.details["zones_c"] and state.temp_c == pytest.approx(49.5)


@pytest.mark.parametrize("content", [b"", b"9" * 3_000_000, b"\xff\xfe"])
def test_empty_or_huge_temp_fails_that_zone_only(tmp_path, content):
    thermal_zone(tmp_path, 0, "acpitz", 45000)
    thermal_zone(tmp_path, 1, "x86_pkg_temp", 52000)
    fake_sysfs.write_bytes(tmp_path, f"{TZ}/temp", content)
    state = ThermalSource(tmp_path).read()
    assert state.temp_c == pytest.approx(52.0) and len(state.details["errors"]) == 1
    assert "\n" not in state.details["errors"][0]
