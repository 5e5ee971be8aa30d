"""Sensors that vanish or return garbage mid-run, and the `auto` probe order."""

from __future__ import annotations

import logging
import shutil
import sys
import threading

import pytest

import fake_sysfs
from glonet_edge.runtime.power import (
    AUTO_ORDER, MergedSource, NullSource, PowerSource, PowerState, ResilientSource, SensorError, auto_source,
    open_power_source,
)

LOGGER = "glonet_edge.runtime.power"


@pytest.fixture(autouse=True)
def no_real_gpu(monkeypatch):
    """`auto` probes NVML; keep a real GPU on the test machine out of the fake trees."""
    monkeypatch.setitem(sys.modules, "pynvml", None)


def _warnings(caplog):
    return [r for r in caplog.records if r.name == LOGGER and r.levelno >= logging.WARNING]


def test_vanishing_battery_serves_stale_then_unknown_and_warns_once(tmp_path, caplog):
    root = fake_sysfs.laptop(tmp_path, capacity=42)
    now = [0.0]
    source = open_power_source("battery", root=root, max_stale_s=30.0)
    source.monotonic = lambda: now[0]
    assert source.read().battery_pct == pytest.approx(42.0)

    shutil.rmtree(root / "sys/class/power_supply")  # the battery driver is unloaded
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    for _ in range(5):
        now[0] += 5.0
        state = source.read()
        assert state.stale and state.battery_pct == pytest.approx(42.0) and "error" in state.details
    now[0] += 60.0
    state = source.read()
    assert state.is_unknown and not state.stale  # too old to trust: unknown, never an exception
    assert len(_warnings(caplog)) == 1 and source.failures == 6

    fake_sysfs.laptop(root, capacity=41)  # the driver comes back
    state = source.read()
    assert not state.stale and state.battery_pct == pytest.approx(41.0)
    assert len(_warnings(caplog)) == 1


def test_garbage_value_mid_run_is_a_sensor_fault(tmp_path, caplog):
    root = fake_sysfs.laptop(tmp_path, capacity=50)
    source = open_power_source("battery", root=root)
    source.read()
    fake_sysfs.write(root, "sys/class/power_supply/BAT0/capacity", "\x00\xff garbage")
    assert source.read().stale
    fake_sysfs.write(root, "sys/class/power_supply/BAT0/capacity", 250)  # parses, but impossible
    state = source.read()
    assert state.stale and "battery_pct" in state.details["error"]
    assert len(_warnings(caplog)) == 1


class _Flaky(PowerSource):
    name = "flaky"

    def __init__(self):
        super().__init__("/")
        self.calls = 0

    def read(self):
        self.calls += 1
        if self.calls % 3 == 0:
            raise OSError(5, "Input/output error")
        return PowerState(self.name, on_battery=True, battery_pct=50.0)


def test_flapping_sensor_warns_once_and_never_raises_across_threads(caplog):
    source = ResilientSource(_Flaky())
    errors = []

    def worker():
        try:
            for _ in range(200):
                assert source.read().battery_pct == 50.0  # fresh or stale, always served
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and source.failures > 100
    assert len(_warnings(caplog)) == 1


def test_first_read_failing_is_unknown():
    class Dead(PowerSource):
        name = "dead"

        def read(self):
            raise SensorError("no such device")

    state = ResilientSource(Dead()).read()
    assert state.is_unknown and "no such device" in state.details["reason"]


def test_auto_on_nothing_readable_is_unknown(tmp_path):
    root = fake_sysfs.bare_machine(tmp_path)
    source = open_power_source("auto", root=root, environ={})
    state = source.read()
    assert isinstance(source.inner, NullSource) and state.is_unknown
    assert "nothing readable" in state.details["reason"]


def test_auto_on_empty_root_directory(tmp_path):
    assert open_power_source("auto", root=tmp_path / "does-not-exist", environ={}).read().is_unknown


def test_auto_on_laptop_merges_battery_rapl_thermal(tmp_path):
    root = fake_sysfs.laptop(tmp_path, capacity=33)
    source = auto_source(root, environ={})
    assert isinstance(source, MergedSource)
    assert [s.name for s in source.sources] == ["power_supply", "rapl", "thermal"]
    state = source.read()
    assert state.on_battery is True and state.battery_pct == pytest.approx(33.0)
    assert state.power_w == pytest.approx(7.5)  # from power_supply, earlier in the order than RAPL
    assert state.temp_c == pytest.approx(52.0) and state.details["filled_from"]["temp_c"] == "thermal"


def test_auto_on_jetson_prefers_jetson_then_fills_battery(tmp_path):
    root = fake_sysfs.orin_nano_jp6(tmp_path)
    fake_sysfs.write(root, "sys/class/power_supply/bq40z50/type", "Battery")  # a robot's smart battery
    fake_sysfs.write(root, "sys/class/power_supply/bq40z50/status", "Discharging")
    fake_sysfs.write(root, "sys/class/power_supply/bq40z50/capacity", 64)
    state = open_power_source("auto", root=root, environ={}).read()
    assert state.source == "jetson+power_supply+thermal"
    assert state.power_mode == "15W" and state.power_w == pytest.approx(6.0)
    assert state.on_battery is True and state.battery_pct == pytest.approx(64.0)


def test_env_override_comes_first_and_pins_only_what_it_names(tmp_path):
    root = fake_sysfs.laptop(tmp_path, capacity=90)
    state = open_power_source("auto", root=root, environ={"GLONET_POWER": "battery_pct=15"}).read()
    assert state.battery_pct == 15.0 and state.on_battery is True  # on_battery still from the sensor


def test_auto_override_file(tmp_path):
    root = fake_sysfs.bare_machine(tmp_path / "root")
    f = tmp_path / "override.txt"
    f.write_text("on_battery=1\nbattery_pct=12\n")
    state = open_power_source("auto", root=root, environ={"GLONET_POWER_FILE": str(f)}).read()
    assert state.on_battery is True and state.battery_pct == 12.0


def test_auto_skips_malformed_env_with_a_warning(tmp_path, caplog):
    root = fake_sysfs.laptop(tmp_path)
    state = open_power_source("auto", root=root, environ={"GLONET_POWER": "on_battery=perhaps"}).read()
    assert state.on_battery is True  # the sensors still answer
    assert any("on_battery must be 0 or 1" in r.getMessage() for r in _warnings(caplog))


def test_auto_order_is_documented():
    assert AUTO_ORDER == ("env", "file", "jetson", "nvml", "battery", "rapl", "thermal")
