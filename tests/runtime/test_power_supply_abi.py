"""PowerSupplySource against trees built from the kernel's power_supply documents.

ABI = Documentation/ABI/testing/sysfs-class-power; SYSFS_C = drivers/power/supply/power_supply_sysfs.c
(the strings the kernel prints); CLASS = Documentation/power/power_supply_class.rst (units);
UCSI = drivers/usb/typec/ucsi/psy.c (USB-C ports). Each expected value names its source.
"""

from __future__ import annotations

import pytest

import fake_sysfs
from fake_sysfs import acpi_battery, hid_battery, ucsi_port, write, write_all
from glonet_edge.runtime.power import PowerSupplySource, SensorError, open_power_source

PS = "sys/class/power_supply"


def _battery(root, status="Unknown", capacity=50, **extra):
    write_all(root, f"{PS}/battery", {"type": "Battery", "status": status, "capacity": capacity, **extra})


# ---- online: every value, every external type ------------------------------------------------------------
# ABI, online: "0: Offline, 1: Online Fixed - Fixed Voltage Supply, 2: Online Programmable".
# SYSFS_C, POWER_SUPPLY_TYPE_TEXT: external types Mains, USB, Wireless, and the USB charger kinds older
# drivers print as the type (USB_DCP, USB_CDP, USB_ACA, USB_C, USB_PD, USB_PD_DRP, BrickID).
@pytest.mark.parametrize("kind", ["Mains", "USB", "Wireless", "USB_DCP", "USB_CDP", "USB_ACA", "USB_C", "USB_PD",
                                  "USB_PD_DRP", "BrickID"])
@pytest.mark.parametrize("online, on_battery", [(0, True), (1, False), (2, False)])
def test_every_online_value_of_every_external_type(tmp_path, kind, online, on_battery):
    write_all(tmp_path, f"{PS}/charger", {"type": kind, "online": online})
    _battery(tmp_path, status="Unknown")  # the battery itself does not say
    state = PowerSupplySource(tmp_path).read()
    assert state.on_battery is on_battery
    assert state.details["external"][0]["online"] == online


@pytest.mark.parametrize("value", [3, -1, "1.5", "yes", ""])
def test_online_outside_the_abi_is_refused_in_one_line(tmp_path, value):
    write_all(tmp_path, f"{PS}/AC", {"type": "Mains", "online": value})
    _battery(tmp_path)
    with pytest.raises(SensorError) as err:
        PowerSupplySource(tmp_path).read()
    assert "online" in str(err.value) and "\n" not in str(err.value)


def test_unknown_type_is_not_a_supply_we_read(tmp_path):
    write_all(tmp_path, f"{PS}/odd", {"type": "Unknown", "online": 1})  # SYSFS_C: "Unknown" type
    _battery(tmp_path, status="Discharging")
    assert PowerSupplySource(tmp_path).read().on_battery is True


# ---- status: every value, with and without an external supply listed ----------------------------------------
# ABI, status: "Unknown", "Charging", "Discharging", "Not charging", "Full". CLASS, STATUS: discharging
# is "powering a load"; Charging, Not charging (charge held, e.g. at a threshold) and Full leave the
# system on external power. Unknown says nothing.
@pytest.mark.parametrize("status, alone, ac_offline, ac_online", [
    ("Discharging", True, True, False),
    ("Charging", False, False, False),
    ("Not charging", False, False, False),
    ("Full", False, False, False),
    ("Unknown", None, True, False),  # with every external supply offline, the battery must feed the system
    ("Bogus", None, True, False),  # not an ABI value: treated as Unknown
])
def test_every_status_value(tmp_path, status, alone, ac_offline, ac_online):
    _battery(tmp_path / "alone", status=status)
    assert PowerSupplySource(tmp_path / "alone").read().on_battery is alone
    for online, expected in ((0, ac_offline), (1, ac_online)):
        root = tmp_path / f"ac{online}"
        write_all(root, f"{PS}/AC", {"type": "Mains", "online": online})
        _battery(root, status=status)
        assert PowerSupplySource(root).read().on_battery is expected, (status, online)


def test_not_charging_at_a_charge_threshold_is_on_ac(tmp_path):
    # A ThinkPad held at charge_control_end_threshold=80 (ABI) on AC: "Not charging", capacity 80.
    root = fake_sysfs.laptop(tmp_path, ac_online=True, capacity=80, status="Not charging")
    write(root, f"{PS}/BAT0/charge_control_end_threshold", 80)
    state = PowerSupplySource(root).read()
    assert state.on_battery is False and state.battery_pct == pytest.approx(80.0)
    assert state.power_w is None  # power_now is not the system's draw while AC feeds it


# ---- present -------------------------------------------------------------------------------------------------
def test_present_zero_is_an_empty_bay_and_absent_means_present(tmp_path):
    # ABI, present: "0: Absent, 1: Present ... If the property does not exist, the battery is
    # considered to be present."
    root = fake_sysfs.laptop(tmp_path, capacity=57)
    acpi_battery(root, "BAT1", "Unknown", 10, None)
    write(root, f"{PS}/BAT1/present", 0)
    assert PowerSupplySource(root).read().battery_pct == pytest.approx(57.0)  # BAT1's 10 % not averaged in
    (root / f"{PS}/BAT0/present").unlink()
    assert PowerSupplySource(root).read().battery_pct == pytest.approx(57.0)  # BAT0 still counted


# ---- scope: peripherals and USB-C ports ----------------------------------------------------------------------
# SYSFS_C, POWER_SUPPLY_SCOPE_TEXT: "Unknown", "System", "Device"; a Device supply powers a peripheral.
def test_peripheral_battery_is_not_the_system_battery(tmp_path):
    root = fake_sysfs.laptop(tmp_path, capacity=57)  # with a HID++ mouse at 5 %, scope Device
    state = PowerSupplySource(root).read()
    assert state.battery_pct == pytest.approx(57.0) and state.details["peripherals"] == ["hidpp_battery_0"]


def test_desktop_with_only_a_wireless_mouse_has_no_battery_reading(tmp_path):
    hid_battery(tmp_path, capacity=3)  # Discharging, 3 %: it must not put the desktop "on battery"
    source = PowerSupplySource(tmp_path)
    with pytest.raises(SensorError, match="no system battery"):
        source.read()
    assert not source.probe()
    state = open_power_source("auto", root=tmp_path, environ={}).read()
    assert state.on_battery is None and state.battery_pct is None


@pytest.mark.parametrize("scope", ["System", "Unknown"])
def test_system_and_unknown_scope_batteries_count(tmp_path, scope):
    _battery(tmp_path, status="Discharging", capacity=42, scope=scope)
    state = PowerSupplySource(tmp_path).read()
    assert state.on_battery is True and state.battery_pct == pytest.approx(42.0)


def test_usb_c_charging_while_the_ac_adapter_reads_offline(tmp_path):
    # UCSI: online 1 while the port sinks power; usb_type lists the kinds, the active one in
    # brackets (SYSFS_C, power_supply_show_usb_type).
    root = fake_sysfs.laptop(tmp_path, ac_online=False, status="Charging")
    ucsi_port(root, online=1, status="Charging", usb_type="C [PD] PD_PPS")
    state = PowerSupplySource(root).read()
    assert state.on_battery is False
    usb = [e for e in state.details["external"] if e["type"] == "USB"][0]
    assert usb == {"name": "ucsi-source-psy-USBC000:001", "type": "USB", "online": 1, "usb_type": "PD"}


def test_usb_pd_pps_online_programmable_is_online(tmp_path):
    # ABI, online 2: "Online Programmable" (a PD PPS source, tcpm); the battery still says Discharging
    # for a moment after the plug: the external supply wins.
    root = fake_sysfs.laptop(tmp_path, ac_online=False, status="Discharging")
    ucsi_port(root, name="tcpm-source-psy-4-0022", online=2, status="Charging", usb_type="C PD [PD_PPS]")
    state = PowerSupplySource(root).read()
    assert state.on_battery is False and state.power_w is None


def test_usb_c_port_powering_a_phone_does_not_mean_on_battery(tmp_path):
    # UCSI: status "Discharging" and online 0 when the port *sources* power; that is the port's own
    # direction, not the system battery's.
    root = fake_sysfs.laptop(tmp_path, ac_online=True, status="Full")
    ucsi_port(root, online=0, status="Discharging")
    assert PowerSupplySource(root).read().on_battery is False


def test_device_scope_usb_c_port_is_ignored(tmp_path):
    # UCSI, ucsi_psy_get_scope: a port without AC-supply/battery-charging capability (a discrete
    # GPU's USB-C) is scope Device; online there says nothing about this machine's power.
    root = fake_sysfs.laptop(tmp_path, ac_online=False, status="Discharging")
    ucsi_port(root, name="ucsi-source-psy-0-00081", online=1, status="Charging", scope="Device")
    state = PowerSupplySource(root).read()
    assert state.on_battery is True and "ucsi-source-psy-0-00081" in state.details["peripherals"]


def test_ups_discharging_means_on_battery(tmp_path):
    # ABI, type: "UPS"; its status Discharging means the mains failed and it feeds the system.
    write_all(tmp_path, f"{PS}/ups", {"type": "UPS", "status": "Discharging", "capacity": 64})
    state = PowerSupplySource(tmp_path).read()
    assert state.on_battery is True and state.battery_pct == pytest.approx(64.0)


# ---- units ---------------------------------------------------------------------------------------------------
def test_energy_in_uwh_charge_in_uah_power_in_uw(tmp_path):
    # CLASS, Units: µV, µA, µAh, µWh; ENERGY_* in µWh only, CHARGE_* in µAh only; power_now in µW.
    write_all(tmp_path, f"{PS}/BAT0", {"type": "Battery", "status": "Discharging", "energy_now": 22_000_000,
                                       "energy_full": 44_000_000, "power_now": 6_600_000})
    state = PowerSupplySource(tmp_path).read()
    assert state.battery_pct == pytest.approx(50.0) and state.power_w == pytest.approx(6.6)
    write_all(tmp_path / "charge", f"{PS}/BAT0", {"type": "Battery", "status": "Discharging",
                                                 "charge_now": 1_500_000, "charge_full": 6_000_000,
                                                 "current_now": -1_200_000, "voltage_now": 7_600_000})
    state = PowerSupplySource(tmp_path / "charge").read()
    # ABI, current_now: "Negative values are used for discharging batteries": 1.2 A x 7.6 V.
    assert state.battery_pct == pytest.approx(25.0) and state.power_w == pytest.approx(9.12)


def test_energy_now_above_last_full_is_full(tmp_path):
    # CLASS, ENERGY_FULL: "last remembered value of energy when battery became full", so energy_now
    # may exceed it after a recalibration: the battery is full, not 104 %.
    write_all(tmp_path, f"{PS}/BAT0", {"type": "Battery", "status": "Full", "energy_now": 52_000_000,
                                       "energy_full": 50_000_000})
    assert PowerSupplySource(tmp_path).read().battery_pct == pytest.approx(100.0)


def test_two_batteries_weighted_only_in_one_unit(tmp_path):
    acpi_battery(tmp_path, "BAT0", "Discharging", 80, None, energy_full=20_000_000)
    acpi_battery(tmp_path, "BAT1", "Discharging", 20, None, energy_full=60_000_000)
    assert PowerSupplySource(tmp_path).read().battery_pct == pytest.approx(35.0)  # (80x20 + 20x60) / 80
    for name in ("energy_now", "energy_full"):  # BAT1 now reports charge (µAh)
        (tmp_path / f"{PS}/BAT1/{name}").unlink()
    write_all(tmp_path, f"{PS}/BAT1", {"charge_now": 600_000, "charge_full": 3_000_000})
    assert PowerSupplySource(tmp_path).read().battery_pct == pytest.approx(50.0)  # µWh and µAh: plain mean


# ---- files that are empty or huge ----------------------------------------------------------------------------
@pytest.mark.parametrize("content", [b"", b"\n", b"9" * 3_000_000, b"\xff\xfe"])
@pytest.mark.parametrize("attribute", ["capacity", "power_now", "online"])
def test_empty_or_huge_attribute_fails_the_read_in_one_line(tmp_path, attribute, content):
    root = fake_sysfs.laptop(tmp_path)
    target = "AC" if attribute == "online" else "BAT0"
    fake_sysfs.write_bytes(root, f"{PS}/{target}/{attribute}", content)
    with pytest.raises(SensorError) as err:
        PowerSupplySource(root).read()
    assert "\n" not in str(err.value) and len(str(err.value)) < 300
    assert open_power_source(PowerSupplySource(root)).read().is_unknown  # served: unknown, no traceback


def test_huge_type_file_is_not_a_supply(tmp_path):
    root = fake_sysfs.laptop(tmp_path)
    fake_sysfs.write_bytes(root, f"{PS}/AC/type", b"M" * 3_000_000)
    state = PowerSupplySource(root).read()  # not a type the ABI defines: AC is skipped, the rest is read
    assert [e["name"] for e in state.details["external"]] == ["ucsi-source-psy-USBC000:001"]
    assert state.on_battery is True
