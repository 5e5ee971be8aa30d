"""Fake filesystem roots laid out exactly as the devices' documents say, for the power-source tests.

Each builder writes the files a real device exposes (same paths, same formats, same units)
under a temporary root, and returns the root. Sources are pointed at it with root=...
Where each file and value comes from (docs/power.md has the full list):

- power_supply: Documentation/ABI/testing/sysfs-class-power (values, units) and
  drivers/power/supply/power_supply_sysfs.c (the exact strings, the `usb_type` brackets);
  drivers/usb/typec/ucsi/psy.c for USB-C ports.
- thermal: Documentation/ABI/testing/sysfs-class-thermal and Documentation/driver-api/thermal/
  sysfs-api.rst (section 3 is the ACPI zone copied below); include/linux/thermal.h for
  THERMAL_TEMP_INVALID; drivers/thermal/intel/x86_pkg_temp_thermal.c for x86_pkg_temp.
- INA3221 rails: Documentation/hwmon/ina3221.rst and drivers/hwmon/ina3221.c (JetPack 5/6);
  NVIDIA's ina3221x iio driver (L4T r32 kernel, JetPack 4); jetson-stats jtop/core/power.py.
- RAPL: Documentation/power/powercap/powercap.rst.
"""

from __future__ import annotations

from pathlib import Path

THERMAL_TEMP_INVALID = -274000  # include/linux/thermal.h: "< 0K, invalid/uninitialized temperature"


def write(root: Path, rel: str, value: object) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{value}\n" if not isinstance(value, bytes) else value.decode())
    return path


def write_bytes(root: Path, rel: str, data: bytes) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def write_all(root: Path, base: str, attributes: dict) -> None:
    for name, value in attributes.items():
        write(root, f"{base}/{name}", value)


# ---- thermal ------------------------------------------------------------------------------------------
def bind_cooling_device(root: Path, zone: int, cdev: int, trip: int, kind: str = "Processor") -> None:
    """sysfs-api.rst section 2/3: thermal_zoneX/cdevK -> cooling_deviceN, cdevK_trip_point = trip index."""
    write(root, f"sys/class/thermal/cooling_device{cdev}/type", kind)
    link = root / f"sys/class/thermal/thermal_zone{zone}/cdev0"
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.is_symlink():  # a builder may run twice over one root
        link.symlink_to(f"../cooling_device{cdev}")
    write(root, f"sys/class/thermal/thermal_zone{zone}/cdev0_trip_point", trip)


def thermal_zone(root: Path, n: int, name: str, millideg: int, passive_trip: int | None = None,
                 critical_trip: int = 102500, cooled: bool = True) -> None:
    """A zone with a critical trip and, optionally, a passive trip bound to a cooling device."""
    base = f"sys/class/thermal/thermal_zone{n}"
    write_all(root, base, {"type": name, "temp": millideg, "mode": "enabled",
                           "trip_point_0_type": "critical", "trip_point_0_temp": critical_trip})
    if passive_trip is not None:
        write_all(root, base, {"trip_point_1_type": "passive", "trip_point_1_temp": passive_trip})
        if cooled:
            bind_cooling_device(root, n, cdev=n, trip=1)


def x86_pkg_temp(root: Path, n: int, millideg: int, trips: tuple = (THERMAL_TEMP_INVALID, THERMAL_TEMP_INVALID)) -> None:
    """x86_pkg_temp_thermal.c: two passive trips for user space (thermald) to set; unset ones read
    THERMAL_TEMP_INVALID (older kernels: 0); no cooling device is ever bound to them."""
    base = f"sys/class/thermal/thermal_zone{n}"
    write_all(root, base, {"type": "x86_pkg_temp", "temp": millideg, "mode": "enabled"})
    for k, trip in enumerate(trips):
        write_all(root, base, {f"trip_point_{k}_type": "passive", f"trip_point_{k}_temp": trip,
                               f"trip_point_{k}_hyst": 0})


# ---- Jetson ---------------------------------------------------------------------------------------------
# Excerpt of an Orin Nano (Super, JetPack 6.2) nvpmodel.conf: mode ids are NOT ordered by power.
ORIN_NANO_CONF = """\
#
# Copyright (c) 2022-2024, NVIDIA CORPORATION.  All rights reserved.
#
# FORMAT:
# < PARAM TYPE=PARAM_TYPE NAME=PARAM_NAME >
# ARG1_NAME ARG1_PATH_VAL
#
# < POWER_MODEL ID=id_num NAME=model_name >
# PARAM1_NAME ARG11_NAME ARG11_VAL

< PARAM TYPE=FILE NAME=CPU_ONLINE >
CORE_0 /sys/devices/system/cpu/cpu0/online
CORE_1 /sys/devices/system/cpu/cpu1/online

< POWER_MODEL ID=0 NAME=15W >
CPU_ONLINE CORE_0 1
CPU_A78_0 MAX_FREQ 1497600

< POWER_MODEL ID=1 NAME=25W >
CPU_ONLINE CORE_0 1

< POWER_MODEL ID=2 NAME=MAXN_SUPER >
CPU_ONLINE CORE_0 1

< POWER_MODEL ID=3 NAME=7W >
CPU_ONLINE CORE_0 1
CPU_A78_0 MAX_FREQ 960000

< PM_CONFIG DEFAULT=2 >
"""

NANO_CONF = """\
# Jetson Nano (t210) nvpmodel.conf excerpt
< POWER_MODEL ID=0 NAME=MAXN >
CPU_ONLINE CORE_0 1
< POWER_MODEL ID=1 NAME=5W >
CPU_ONLINE CORE_0 1
< PM_CONFIG DEFAULT=0 >
"""


def ina3221_hwmon(root: Path, device: str, hwmon: str, channels: list) -> str:
    """The upstream ina3221 hwmon driver (ina3221.rst). `channels` holds (label, mV, mA) per
    channel 1-3, or None for a channel the device tree marks disconnected: that one has no
    label and `inN_enable` 0, and reading its inputs fails with ENODATA (left empty here, which
    fails to parse just as loudly, so a reader that reaches them fails the test)."""
    hw = f"sys/bus/i2c/drivers/ina3221/{device}/hwmon/{hwmon}"
    write_all(root, hw, {"name": "ina3221", "in7_label": "sum of shunt voltages", "in7_input": 0,
                         "curr4_crit_alarm": 0})
    for n, channel in enumerate(channels, start=1):
        write_all(root, hw, {f"shunt{n}_resistor": 5000, f"curr{n}_crit_alarm": 0, f"curr{n}_max_alarm": 0,
                             f"in{n}_enable": int(channel is not None)})
        if channel is None:
            write_all(root, hw, {f"in{n}_input": "", f"curr{n}_input": ""})
            continue
        label, mv, ma = channel
        write_all(root, hw, {f"in{n}_label": label, f"in{n}_input": mv, f"curr{n}_input": ma})
    return hw


def soctherm_oc(root: Path, oc3_events: int = 0) -> None:
    oc = "sys/class/hwmon/hwmon0"  # /sys/devices/platform/soctherm-oc-event/hwmon/hwmon0
    write(root, f"{oc}/name", "soctherm_oc")
    for n, count in ((1, 0), (2, 0), (3, oc3_events)):
        write_all(root, oc, {f"oc{n}_event_cnt": count, f"oc{n}_throt_en": 1})


def jetson_orin(root: Path, model: str, conf: str | None, pmode: int | None) -> None:
    write_bytes(root, "proc/device-tree/model", model.encode() + b"\x00")
    write(root, "etc/nv_tegra_release", "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, "
                                        "EABI: aarch64, DATE: Wed Jan  8 01:49:37 UTC 2025")
    if conf is not None:
        write(root, "etc/nvpmodel.conf", conf)
    if pmode is not None:
        write(root, "var/lib/nvpmodel/status", f"pmode:{pmode:04d}")
    zones = [("cpu-thermal", 48312), ("gpu-thermal", 47125), ("cv0-thermal", -256000), ("soc0-thermal", 46875),
             ("tj-thermal", 49500)]
    for n, (name, mdeg) in enumerate(zones):
        thermal_zone(root, n, name, mdeg, passive_trip=99000 if mdeg > 0 else None)


def orin_nano_jp6(root: Path, pmode: int | None = 0, vdd_in_ma: int = 1200, oc3_events: int = 0) -> Path:
    """Jetson Orin Nano developer kit, JetPack 6 (L4T r36): hwmon INA3221 at i2c 1-0040."""
    jetson_orin(root, "NVIDIA Jetson Orin Nano Developer Kit", ORIN_NANO_CONF, pmode)
    ina3221_hwmon(root, "1-0040", "hwmon1", [("VDD_IN", 5000, vdd_in_ma), ("VDD_CPU_GPU_CV", 5000, 400),
                                             ("VDD_SOC", 5000, 300)])
    soctherm_oc(root, oc3_events)
    return root


def agx_orin_jp6(root: Path) -> Path:
    """Jetson AGX Orin devkit: two INA3221s, no module-input rail, unconnected channels labelled
    "NC" (the NVIDIA labels jetson-stats skips)."""
    jetson_orin(root, "NVIDIA Jetson AGX Orin Developer Kit", None, None)
    ina3221_hwmon(root, "1-0040", "hwmon1", [("VDD_GPU_SOC", 19000, 500), ("VDD_CPU_CV", 19000, 250),
                                             ("VIN_SYS_5V0", 5000, 600)])
    ina3221_hwmon(root, "1-0041", "hwmon2", [("NC", 0, 0), ("VDDQ_VDD2_1V8AO", 1800, 200), ("NC", 0, 0)])
    return root


def ina3221x_iio(root: Path, device: str, rails: list) -> None:
    """NVIDIA's ina3221x iio driver (JetPack 4): the limits print with units ("4000 ma"), a
    channel with no rail name in the device tree prints "(null)"."""
    base = f"sys/bus/i2c/drivers/ina3221x/{device}"
    write(root, f"{base}/name", "ina3221x")
    for n, (label, mv, ma, mw) in enumerate(rails):
        write_all(root, base, {
            f"rail_name_{n}": label, f"in_voltage{n}_input": mv, f"in_current{n}_input": ma,
            f"in_power{n}_input": mw, f"crit_current_limit_{n}": "4000 ma", f"warn_current_limit_{n}": "3000 ma"})


def jetson_jp4(root: Path, board: str = "nano", pmode: int = 1) -> Path:
    """Jetson Nano or TX2 on JetPack 4 (L4T r32): NVIDIA's ina3221x iio driver."""
    write(root, "etc/nv_tegra_release", "# R32 (release), REVISION: 7.1, GCID: 29818004, BOARD: t210ref, "
                                        "EABI: aarch64, DATE: Sat Feb 19 17:05:08 UTC 2022")
    if board == "nano":
        write_bytes(root, "proc/device-tree/model", b"NVIDIA Jetson Nano Developer Kit\x00")
        write(root, "etc/nvpmodel.conf", NANO_CONF)
        write(root, "var/lib/nvpmodel/status", f"pmode:{pmode:04d}")
        devices = {"6-0040/iio:device0": [("POM_5V_IN", 5000, 700, 3500), ("POM_5V_GPU", 5000, 80, 400),
                                          ("POM_5V_CPU", 5000, 160, 800)]}
        zones = [("AO-therm", 41500), ("CPU-therm", 45500), ("GPU-therm", 43000), ("PLL-therm", 42000),
                 ("PMIC-Die", 100000), ("thermal-fan-est", 44000)]
    elif board == "tx2":  # two sensors; no model file, so detection must not rely on it
        devices = {"0-0040/iio:device0": [("VDD_SYS_GPU", 19000, 50, 950), ("VDD_SYS_SOC", 19000, 40, 760),
                                          ("VDD_4V0_WIFI", 19000, 5, 95)],
                   "0-0041/iio:device1": [("VDD_IN", 19000, 300, 5700), ("VDD_SYS_CPU", 19000, 30, 570),
                                          ("VDD_SYS_DDR", 19000, 20, 380)]}
        zones = [("BCPU-therm", 40500), ("MCPU-therm", 40500), ("GPU-therm", 39000), ("PMIC-Die", 100000),
                 ("Tboard_tegra", 35000)]
    else:
        raise ValueError(board)
    for dev, rails in devices.items():
        ina3221x_iio(root, dev, rails)
    for n, (name, mdeg) in enumerate(zones):
        thermal_zone(root, n, name, mdeg, passive_trip=97000)
    return root


# ---- laptop: power_supply, RAPL, thermal ----------------------------------------------------------------
def acpi_battery(root: Path, name: str, status: str, capacity: int, power_uw: int | None,
                 energy_full: int = 55_000_000) -> str:
    """drivers/acpi/battery.c in energy (µWh) units; it has no `scope` attribute."""
    bat = f"sys/class/power_supply/{name}"
    write_all(root, bat, {"type": "Battery", "present": 1, "status": status, "voltage_now": 15_400_000,
                          "energy_full": energy_full, "energy_now": energy_full * capacity // 100,
                          "capacity": capacity, "capacity_level": "Normal"})
    if power_uw is not None:
        write(root, f"{bat}/power_now", power_uw)
    return bat


def hid_battery(root: Path, name: str = "hidpp_battery_0", capacity: int = 5) -> None:
    """A wireless mouse (hid-logitech-hidpp): a Battery whose scope is Device."""
    write_all(root, f"sys/class/power_supply/{name}", {
        "type": "Battery", "scope": "Device", "status": "Discharging", "online": 1, "capacity": capacity})


def ucsi_port(root: Path, name: str = "ucsi-source-psy-USBC000:001", online: int = 0,
              status: str = "Not charging", usb_type: str = "[C] PD PD_PPS", scope: str = "System") -> str:
    """A USB-C port (drivers/usb/typec/ucsi/psy.c): type USB; online 1 only while it sinks power;
    status Charging (sinking), Discharging (powering a peripheral) or Not charging (nothing attached)."""
    port = f"sys/class/power_supply/{name}"
    write_all(root, port, {"type": "USB", "online": online, "status": status, "usb_type": usb_type,
                           "scope": scope, "voltage_now": 20_000_000 if online else 5_000_000,
                           "current_now": 3_000_000 if online else 0})
    return port


def laptop(root: Path, ac_online: bool = False, capacity: int = 57, status: str = "Discharging",
           power_uw: int | None = 7_500_000, with_mouse: bool = True) -> Path:
    """An x86 laptop: ACPI AC adapter + battery, a HID++ mouse battery, a USB-C port with nothing
    attached, RAPL, an ACPI thermal zone (sysfs-api.rst section 3) and x86_pkg_temp."""
    write_all(root, "sys/class/power_supply/AC", {"type": "Mains", "online": int(ac_online)})
    acpi_battery(root, "BAT0", status, capacity, power_uw)
    if with_mouse:
        hid_battery(root)
    ucsi_port(root)
    rapl(root, 1_000_000)
    thermal_zone(root, 0, "acpitz", 45000, passive_trip=95000, critical_trip=105000)
    x86_pkg_temp(root, 1, 52000)
    return root


def rapl(root: Path, energy_uj: int, max_range_uj: int = 262_143_328_850) -> Path:
    """powercap.rst: package zone intel-rapl:0 with its core sub-zone intel-rapl:0:0, and the
    control type directory intel-rapl (no energy counter of its own)."""
    write(root, "sys/class/powercap/intel-rapl/enabled", 1)
    rapl_zone(root, "intel-rapl:0", "package-0", energy_uj, max_range_uj)
    rapl_zone(root, "intel-rapl:0:0", "core", 123, max_range_uj)  # a sub-zone: must not be added in
    return root


def rapl_zone(root: Path, zone: str, name: str, energy_uj: int, max_range_uj: int = 262_143_328_850) -> None:
    write_all(root, f"sys/class/powercap/{zone}", {
        "name": name, "enabled": 1, "energy_uj": energy_uj, "max_energy_range_uj": max_range_uj})


def bare_machine(root: Path) -> Path:
    """A container or VM: the class directories exist but hold nothing readable."""
    for rel in ("sys/class/power_supply", "sys/class/thermal", "sys/class/powercap", "proc"):
        (root / rel).mkdir(parents=True, exist_ok=True)
    return root
