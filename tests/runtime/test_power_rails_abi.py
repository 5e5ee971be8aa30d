"""INA3221 power rails (JetsonSource) and RAPL energy (RaplSource) against trees built from their documents.

INA_RST = Documentation/hwmon/ina3221.rst; INA_C = drivers/hwmon/ina3221.c (JetPack 5/6);
INA_X = NVIDIA's ina3221x iio driver in the L4T r32 kernel (JetPack 4); JTOP = jetson-stats
jtop/core/power.py; POWERCAP = Documentation/power/powercap/powercap.rst.
"""

from __future__ import annotations

import pytest

import fake_sysfs
from fake_sysfs import ina3221_hwmon, rapl_zone, write
from glonet_edge.runtime.power import JetsonSource, RaplSource

HW = "sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon1"


# ---- INA3221, upstream hwmon driver -------------------------------------------------------------------------
def test_rail_power_is_bus_millivolts_times_milliamps(tmp_path):
    # INA_RST: inN_input "Bus voltage(mV)", currN_input "Current(mA)".
    root = fake_sysfs.orin_nano_jp6(tmp_path, vdd_in_ma=1200)
    state = JetsonSource(root).read()
    assert state.details["rails_w"] == {"VDD_IN": 6.0, "VDD_CPU_GPU_CV": 2.0, "VDD_SOC": 1.5}
    assert state.power_w == pytest.approx(6.0) and state.details["power_total"] == "VDD_IN"


def test_agx_orin_nc_channels_and_no_input_rail(tmp_path):
    # JTOP, list_all_i2c_ports: labels "NC" are unconnected (Orin family) and skipped; without
    # VDD_IN / POM_5V_IN (total_power) the total is the sum of the rails.
    state = JetsonSource(fake_sysfs.agx_orin_jp6(tmp_path)).read()
    assert set(state.details["rails_w"]) == {"VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0", "VDDQ_VDD2_1V8AO"}
    assert state.details["power_total"] == "sum of rails"
    assert state.power_w == pytest.approx(9.5 + 4.75 + 3.0 + 0.36)


def test_channel_disconnected_in_the_device_tree(tmp_path):
    # INA_C, ina3221_probe_child_from_dt: a channel whose node is not available is "disconnected":
    # no label (is_visible hides it), the channel disabled (inN_enable 0), inputs -ENODATA.
    ina3221_hwmon(tmp_path, "1-0040", "hwmon1", [("VDD_IN", 5000, 1000), ("VDD_SOC", 5000, 300), None])
    state = JetsonSource(tmp_path).read()
    assert state.details["rails_w"] == {"VDD_IN": 5.0, "VDD_SOC": 1.5} and "errors" not in state.details


def test_channel_disabled_at_runtime_keeps_its_label_but_is_not_read(tmp_path):
    # INA_RST: inN_enable "Voltage channel enable controls"; INA_C: disabled inputs read -ENODATA.
    root = fake_sysfs.orin_nano_jp6(tmp_path)
    write(root, f"{HW}/in3_enable", 0)
    write(root, f"{HW}/in3_input", "")
    write(root, f"{HW}/curr3_input", "")
    state = JetsonSource(root).read()
    assert "VDD_SOC" not in state.details["rails_w"] and "errors" not in state.details


def test_connected_channel_without_a_label_is_still_a_rail(tmp_path):
    # INA_C, ina3221_is_visible: "Hide label node if label is not provided"; the channel is measured.
    root = fake_sysfs.orin_nano_jp6(tmp_path)
    (root / f"{HW}/in2_label").unlink()
    rails = JetsonSource(root).read().details["rails_w"]
    assert rails["1-0040 channel 2"] == pytest.approx(2.0) and "VDD_CPU_GPU_CV" not in rails


def test_sum_of_shunt_voltages_is_not_a_rail(tmp_path):
    # INA_RST: in7_input "Sum of shunt voltage(uV)", in7_label its label; in4-6 are shunt µV.
    root = fake_sysfs.orin_nano_jp6(tmp_path)
    write(root, f"{HW}/in7_input", 99999)
    rails = JetsonSource(root).read().details["rails_w"]
    assert set(rails) == {"VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC"}


@pytest.mark.parametrize("content", [b"", b"9" * 3_000_000])
def test_empty_or_huge_rail_input_loses_the_rails_not_the_rest(tmp_path, content):
    root = fake_sysfs.orin_nano_jp6(tmp_path)
    fake_sysfs.write_bytes(root, f"{HW}/curr1_input", content)
    state = JetsonSource(root).read()
    assert state.power_w is None and state.power_mode == "15W" and state.temp_c == pytest.approx(49.5)
    assert any(e.startswith("rails:") and "\n" not in e for e in state.details["errors"])


# ---- INA3221, NVIDIA ina3221x iio driver (JetPack 4) --------------------------------------------------------
def test_iio_power_is_milliwatts(tmp_path):
    # INA_X, ina3221_get_channel_power: power_mw = voltage_mv * current_ma / 1000 (in_powerN_input).
    state = JetsonSource(fake_sysfs.jetson_jp4(tmp_path, board="nano")).read()
    assert state.details["rails_w"] == {"POM_5V_IN": 3.5, "POM_5V_GPU": 0.4, "POM_5V_CPU": 0.8}


def test_iio_channel_without_rail_name_prints_null_and_is_not_a_rail(tmp_path):
    # INA_X, ina3221_show_channel(CHANNEL_NAME): snprintf("%s\n", rail_name) of a channel whose
    # device-tree node has no "ti,rail-name" prints "(null)"; it is not a connected rail.
    root = fake_sysfs.jetson_jp4(tmp_path, board="tx2")
    base = "sys/bus/i2c/drivers/ina3221x/0-0041/iio:device1"
    write(root, f"{base}/rail_name_0", "(null)")  # VDD_IN's channel unnamed: no total rail any more
    write(root, f"{base}/in_power0_input", 7)
    state = JetsonSource(root).read()
    assert "(null)" not in state.details["rails_w"] and state.details["power_total"] == "sum of rails"
    assert state.power_w == pytest.approx(0.95 + 0.76 + 0.095 + 0.57 + 0.38)


# ---- RAPL powercap ------------------------------------------------------------------------------------------
def _rapl_reads(root, energies, dt=2.0):
    now = [0.0]
    source = RaplSource(root, monotonic=lambda: now[0])
    powers = []
    for values in energies:
        for zone, uj in values.items():
            write(root, f"sys/class/powercap/{zone}/energy_uj", uj)
        powers.append(source.read().power_w)
        now[0] += dt
    return powers, source


def test_rapl_energy_is_microjoules_and_enabled_is_only_the_limit_switch(tmp_path):
    # POWERCAP: energy_uj "Current energy counter in micro joules"; enabled "Enable/Disable controls".
    root = fake_sysfs.rapl(tmp_path, 0)
    write(root, "sys/class/powercap/intel-rapl:0/enabled", 0)
    powers, _ = _rapl_reads(root, [{"intel-rapl:0": 1_000_000}, {"intel-rapl:0": 31_000_000}])
    assert powers == [None, pytest.approx(15.0)]  # 30 J over 2 s


def test_rapl_wrap_at_max_energy_range_and_reset_to_zero(tmp_path):
    # POWERCAP: max_energy_range_uj "Range of the above energy counter"; energy_uj "Write "0" to reset".
    root = fake_sysfs.rapl(tmp_path, 0, max_range_uj=100_000_000)
    powers, _ = _rapl_reads(root, [{"intel-rapl:0": 95_000_000}, {"intel-rapl:0": 5_000_000},
                                   {"intel-rapl:0": 15_000_000}, {"intel-rapl:0": 1_000}])
    assert powers[1] == pytest.approx(5.0)  # wrapped: 10 J over 2 s
    assert powers[2] == pytest.approx(5.0)
    assert powers[3] is None  # 15 J -> 0.001 J is a reset (a wrap would be 85 J in 2 s), not a reading


def test_rapl_packages_add_psys_stands_alone_mmio_is_not_read(tmp_path):
    # POWERCAP: one zone per CPU package (intel-rapl:0, intel-rapl:1), sub-zones inside them.
    root = fake_sysfs.rapl(tmp_path, 0)
    rapl_zone(root, "intel-rapl:1", "package-1", 0)
    rapl_zone(root, "intel-rapl-mmio:0", "package-0", 0)  # the same package through MMIO
    powers, source = _rapl_reads(root, [{}, {"intel-rapl:0": 4_000_000, "intel-rapl:1": 6_000_000,
                                             "intel-rapl-mmio:0": 4_000_000}])
    assert powers[1] == pytest.approx(5.0) and source.read().details["domains"] == ["package-0", "package-1"]
    rapl_zone(root, "intel-rapl:2", "psys", 0)  # the whole platform, packages included
    powers, source = _rapl_reads(root, [{}, {"intel-rapl:2": 20_000_000}])
    assert powers[1] == pytest.approx(10.0) and source.read().details["domains"] == ["psys"]
