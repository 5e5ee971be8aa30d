"""Each power source against a fake tree laid out like the real device."""

from __future__ import annotations

import sys
import types

import pytest

import fake_sysfs
from glonet_edge.errors import ConfigError
from glonet_edge.runtime.power import (
    JetsonSource, JtopSource, NvmlSource, OverrideSource, PowerState, PowerSupplySource, RaplSource, SensorError,
    ThermalSource, open_power_source, parse_override,
)
from glonet_edge.runtime.power.jetson import budget_from_mode_name, parse_nvpmodel_conf


# ---- Jetson ---------------------------------------------------------------------------------------
def test_orin_nano_jetpack6(tmp_path):
    root = fake_sysfs.orin_nano_jp6(tmp_path, pmode=0)
    state = JetsonSource(root).read().validated()
    assert state.device == "NVIDIA Jetson Orin Nano Developer Kit"  # the NUL is stripped
    assert state.power_mode == "15W" and state.power_budget_w == 15.0
    assert state.details["power_mode_id"] == 0
    assert state.power_w == pytest.approx(6.0)  # VDD_IN: 5000 mV x 1200 mA
    assert state.details["power_total"] == "VDD_IN"
    assert set(state.details["rails_w"]) == {"VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC"}  # not "sum of shunt voltages"
    assert state.temp_c == pytest.approx(49.5)  # tj-thermal, the junction maximum
    assert "cv0-thermal" not in state.details["zones_c"]  # offline zone (-256 C) skipped
    assert state.throttled is False  # trip points and alarms say no; OC counters need two reads
    assert state.on_battery is None and state.battery_pct is None


def test_orin_mode_ids_are_names_not_order(tmp_path):
    root = fake_sysfs.orin_nano_jp6(tmp_path, pmode=2)
    state = JetsonSource(root).read()
    assert state.power_mode == "MAXN_SUPER" and state.power_budget_w is None  # MAXN is uncapped


def test_nvpmodel_default_applies_without_status_file(tmp_path):
    root = fake_sysfs.orin_nano_jp6(tmp_path, pmode=None)
    assert JetsonSource(root).read().power_mode == "MAXN_SUPER"  # < PM_CONFIG DEFAULT=2 >


def test_orin_overcurrent_counter_rise_means_throttled(tmp_path):
    root = fake_sysfs.orin_nano_jp6(tmp_path, oc3_events=5)
    source = JetsonSource(root)
    assert source.read().throttled is False
    fake_sysfs.write(root, "sys/class/hwmon/hwmon0/oc3_event_cnt", 9)
    assert source.read().throttled is True
    assert source.read().throttled is False  # no new events since the last read


def test_orin_ina_alarm_and_passive_trip_mean_throttled(tmp_path):
    root = fake_sysfs.orin_nano_jp6(tmp_path)
    fake_sysfs.write(root, "sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon1/curr1_max_alarm", 1)
    assert JetsonSource(root).read().throttled is True
    root2 = fake_sysfs.orin_nano_jp6(tmp_path / "hot")
    fake_sysfs.write(root2, "sys/class/thermal/thermal_zone1/temp", 99500)  # gpu-thermal past its passive trip
    assert JetsonSource(root2).read().throttled is True


def test_jetson_nano_jetpack4_iio_layout(tmp_path):
    root = fake_sysfs.jetson_jp4(tmp_path, board="nano", pmode=1)
    state = JetsonSource(root).read().validated()
    assert state.device == "NVIDIA Jetson Nano Developer Kit"
    assert state.power_mode == "5W" and state.power_budget_w == 5.0
    assert state.power_w == pytest.approx(3.5)  # POM_5V_IN in_power0_input, mW
    assert state.details["power_total"] == "POM_5V_IN"
    assert "PMIC-Die" not in state.details["zones_c"]  # the fixed 100 C placeholder is ignored
    assert state.temp_c == pytest.approx(45.5)


def test_jetson_tx2_two_sensors_without_model_file(tmp_path):
    root = fake_sysfs.jetson_jp4(tmp_path, board="tx2")
    source = JetsonSource(root)
    assert source.probe()  # found through nv_tegra_release / ina3221x, not the model string
    state = source.read()
    assert state.power_w == pytest.approx(5.7) and state.details["power_total"] == "VDD_IN"
    assert len(state.details["rails_w"]) == 6 and state.power_mode is None and state.device is None


def test_iio_rail_without_power_file_uses_voltage_times_current(tmp_path):
    root = fake_sysfs.jetson_jp4(tmp_path, board="nano")
    (root / "sys/bus/i2c/drivers/ina3221x/6-0040/iio:device0/in_power0_input").unlink()
    assert JetsonSource(root).read().power_w == pytest.approx(3.5)  # 5000 mV x 700 mA


def test_board_without_total_rail_sums_rails(tmp_path):
    root = fake_sysfs.orin_nano_jp6(tmp_path)
    fake_sysfs.write(root, "sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon1/in1_label", "VDD_GPU_SOC")
    state = JetsonSource(root).read()
    assert state.details["power_total"] == "sum of rails" and state.power_w == pytest.approx(9.5)


def test_broken_rail_keeps_mode_and_temperature(tmp_path):
    root = fake_sysfs.orin_nano_jp6(tmp_path)
    fake_sysfs.write(root, "sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon1/curr1_input", "garbage")
    state = JetsonSource(root).read()
    assert state.power_w is None and state.power_mode == "15W" and state.temp_c is not None
    assert any("rails" in e for e in state.details["errors"])


def test_nvpmodel_parsing_helpers():
    modes, default = parse_nvpmodel_conf(fake_sysfs.ORIN_NANO_CONF)
    assert modes == {0: "15W", 1: "25W", 2: "MAXN_SUPER", 3: "7W"} and default == 2
    assert budget_from_mode_name("MODE_30W_4CORE") == 30.0
    assert budget_from_mode_name("MAXN") is None


def test_unknown_mode_id_is_reported_not_guessed(tmp_path):
    root = fake_sysfs.orin_nano_jp6(tmp_path, pmode=9)
    state = JetsonSource(root).read()
    assert state.power_mode is None and any("id 9" in e for e in state.details["errors"])


# ---- laptop: power_supply, RAPL, thermal ----------------------------------------------------------
def test_laptop_on_battery(tmp_path):
    root = fake_sysfs.laptop(tmp_path, capacity=57)
    state = PowerSupplySource(root).read().validated()
    assert state.on_battery is True
    assert state.battery_pct == pytest.approx(57.0)  # the mouse's 5% is ignored (scope=Device)
    assert state.power_w == pytest.approx(7.5)  # power_now in uW
    assert not JetsonSource(root).probe()


def test_laptop_on_ac(tmp_path):
    root = fake_sysfs.laptop(tmp_path, ac_online=True, status="Charging")
    state = PowerSupplySource(root).read()
    assert state.on_battery is False and state.power_w is None  # battery power_now is charge power on AC


def test_battery_power_from_current_and_voltage(tmp_path):
    root = fake_sysfs.laptop(tmp_path, power_uw=None)
    fake_sysfs.write(root, "sys/class/power_supply/BAT0/current_now", -500_000)  # negative while discharging
    assert PowerSupplySource(root).read().power_w == pytest.approx(7.7)  # 0.5 A x 15.4 V


def test_battery_capacity_from_energy(tmp_path):
    root = fake_sysfs.laptop(tmp_path, capacity=40)
    (root / "sys/class/power_supply/BAT0/capacity").unlink()
    assert PowerSupplySource(root).read().battery_pct == pytest.approx(40.0)


def test_rapl_power_from_energy_delta_with_wraparound(tmp_path):
    root = fake_sysfs.rapl(tmp_path, energy_uj=1_000_000, max_range_uj=10_000_000)
    now = [100.0]
    source = RaplSource(root, monotonic=lambda: now[0])
    assert source.read().power_w is None  # one sample: no rate yet
    now[0] += 2.0
    fake_sysfs.write(root, "sys/class/powercap/intel-rapl:0/energy_uj", 9_000_000)
    assert source.read().power_w == pytest.approx(4.0)  # 8 J / 2 s, sub-zone intel-rapl:0:0 not added
    now[0] += 1.0
    fake_sysfs.write(root, "sys/class/powercap/intel-rapl:0/energy_uj", 1_000_000)  # wrapped at 10 J
    assert source.read().power_w == pytest.approx(2.0)


def test_thermal_only(tmp_path):
    root = fake_sysfs.laptop(tmp_path)
    state = ThermalSource(root).read()
    assert state.temp_c == pytest.approx(52.0) and state.throttled is False
    fake_sysfs.write(root, "sys/class/thermal/thermal_zone0/temp", 96000)
    assert ThermalSource(root).read().throttled is True


def test_bare_machine_has_nothing(tmp_path):
    root = fake_sysfs.bare_machine(tmp_path)
    for cls in (JetsonSource, PowerSupplySource, RaplSource, ThermalSource):
        assert not cls(root).probe()
    with pytest.raises(SensorError):
        PowerSupplySource(root).read()


# ---- NVML and jtop through fake modules -------------------------------------------------------------
def _fake_pynvml(power_mw=71_000, fail=False):
    m = types.ModuleType("pynvml")
    m.NVML_TEMPERATURE_GPU = 0
    m.nvmlInit = lambda: None
    m.nvmlShutdown = lambda: None
    m.nvmlDeviceGetCount = lambda: 1
    m.nvmlDeviceGetHandleByIndex = lambda i: "h0"
    m.nvmlDeviceGetName = lambda h: b"NVIDIA H100 80GB HBM3"
    m.nvmlDeviceGetEnforcedPowerLimit = lambda h: 700_000

    def power(h):
        if fail:
            raise RuntimeError("GPU is lost")
        return power_mw
    m.nvmlDeviceGetPowerUsage = power
    m.nvmlDeviceGetTemperature = lambda h, kind: 41
    m.nvmlDeviceGetTotalEnergyConsumption = lambda h: 5_000_000
    m.nvmlDeviceGetCurrentClocksThrottleReasons = lambda h: 0x1  # GpuIdle only: not throttling
    return m


def test_nvml_source(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", _fake_pynvml())
    source = NvmlSource()
    assert source.probe()
    state = source.read().validated()
    assert state.power_w == pytest.approx(71.0) and state.power_budget_w == pytest.approx(700.0)
    assert state.temp_c == 41 and state.throttled is False and state.device == "NVIDIA H100 80GB HBM3"
    assert state.details["total_energy_j"] == pytest.approx(5000.0)


def test_nvml_absent_or_failing(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import raises ImportError
    assert not NvmlSource().probe()
    monkeypatch.setitem(sys.modules, "pynvml", _fake_pynvml(fail=True))
    with pytest.raises(SensorError, match="GPU is lost"):
        NvmlSource().read()


def test_jtop_source(monkeypatch):
    class FakeJtop:
        power = {"rail": {"VDD_CPU_GPU_CV": {"power": 2100}}, "tot": {"power": 6400, "name": "VDD_IN"}}
        temperature = {"cpu": {"temp": 51.2, "online": True}, "cv0": {"temp": -256, "online": False}}
        nvpmodel = types.SimpleNamespace(name="15W")

        def start(self):
            pass

        def ok(self):
            return True

        def close(self):
            pass

    monkeypatch.setitem(sys.modules, "jtop", types.SimpleNamespace(jtop=FakeJtop))
    state = JtopSource().read().validated()
    assert state.power_w == pytest.approx(6.4) and state.temp_c == pytest.approx(51.2)
    assert state.power_mode == "15W" and state.power_budget_w == 15.0


# ---- overrides ------------------------------------------------------------------------------------
def test_env_override():
    source = OverrideSource(env_var="GLONET_POWER", environ={"GLONET_POWER": "on_battery=1,battery_pct=20"})
    state = source.read()
    assert state.on_battery is True and state.battery_pct == 20.0 and state.source == "env:GLONET_POWER"


def test_file_override_json_and_key_value(tmp_path):
    f = tmp_path / "power.override"
    f.write_text('{"on_battery": true, "temp_c": 70, "power_mode": "7W"}')
    source = OverrideSource(path=f)
    assert source.read().power_mode == "7W"
    f.write_text("# set by the operator\non_battery = 0\nbattery_pct = 80, throttled = yes\n")
    state = source.read()  # re-read on every read
    assert state.on_battery is False and state.battery_pct == 80.0 and state.throttled is True


@pytest.mark.parametrize("text, fragment", [
    ("on_battery=2", "on_battery must be 0 or 1"),
    ("battery_pct=120", "battery_pct must be within"),
    ("battery=20", "unknown field"),
    ("on_battery", "is not key=value"),
    ("{not json", "not valid JSON"),
    ("[1, 2]", "is not key=value"),
    ("temp_c=nan", "temp_c must be within"),
    ("on_battery=1,on_battery=0", "given twice"),
])
def test_override_errors_are_clear(text, fragment):
    with pytest.raises(ConfigError, match=fragment):
        parse_override(text, "$GLONET_POWER")


def test_explicit_specs_fail_loudly(tmp_path):
    root = fake_sysfs.bare_machine(tmp_path)
    with pytest.raises(ConfigError, match="found nothing readable"):
        open_power_source("jetson", root=root)
    with pytest.raises(ConfigError, match="needs \\$GLONET_POWER"):
        open_power_source("env", root=root, environ={})
    with pytest.raises(ConfigError, match="on_battery must be 0 or 1"):
        open_power_source("env", root=root, environ={"GLONET_POWER": "on_battery=maybe"})
    with pytest.raises(ConfigError, match="not found"):
        open_power_source(f"file:{tmp_path / 'missing'}", root=root)
    with pytest.raises(ConfigError, match="unknown power source spec"):
        open_power_source("solar", root=root)


def test_explicit_specs_open(tmp_path):
    root = fake_sysfs.laptop(tmp_path)
    assert open_power_source("battery", root=root).read().on_battery is True
    assert open_power_source("thermal", root=root).read().temp_c == pytest.approx(52.0)
    assert open_power_source("none", root=root).read().is_unknown
    state = open_power_source("trace:laptop_discharge", root=root).read()
    assert state.source == "trace:laptop_discharge" and state.on_battery is False


def test_power_state_describe_and_validate():
    state = PowerState("x", on_battery=True, battery_pct=18.0, power_w=6.5, temp_c=51.0)
    assert state.describe() == "x: on battery, 18%, 6.5 W, 51 °C"
    with pytest.raises(SensorError, match="battery_pct"):
        PowerState("x", battery_pct=250.0).validated()
    with pytest.raises(SensorError, match="temp_c"):
        PowerState("x", temp_c=float("nan")).validated()
