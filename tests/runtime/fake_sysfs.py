"""Fake filesystem roots laid out exactly like the real devices, for the power-source tests.

Each builder writes the files a real device exposes (same paths, same formats, same units)
under a temporary root, and returns the root. Sources are pointed at it with root=...
Layouts follow the references cited in glonet_edge/runtime/power/*.py.
"""

from __future__ import annotations

from pathlib import Path


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


def thermal_zone(root: Path, n: int, name: str, millideg: int, passive_trip: int | None = None) -> None:
    base = f"sys/class/thermal/thermal_zone{n}"
    write(root, f"{base}/type", name)
    write(root, f"{base}/temp", millideg)
    k = 0
    if passive_trip is not None:
        write(root, f"{base}/trip_point_{k}_type", "passive")
        write(root, f"{base}/trip_point_{k}_temp", passive_trip)
        k += 1
    write(root, f"{base}/trip_point_{k}_type", "critical")
    write(root, f"{base}/trip_point_{k}_temp", 102500)


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


def orin_nano_jp6(root: Path, pmode: int | None = 0, vdd_in_ma: int = 1200, oc3_events: int = 0) -> Path:
    """Jetson Orin Nano developer kit, JetPack 6 (L4T r36): hwmon INA3221 at i2c 1-0040."""
    write_bytes(root, "proc/device-tree/model", b"NVIDIA Jetson Orin Nano Developer Kit\x00")
    write(root, "etc/nv_tegra_release", "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, "
                                        "EABI: aarch64, DATE: Wed Jan  8 01:49:37 UTC 2025")
    write(root, "etc/nvpmodel.conf", ORIN_NANO_CONF)
    if pmode is not None:
        write(root, "var/lib/nvpmodel/status", f"pmode:{pmode:04d}")
    hw = "sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon1"
    write(root, f"{hw}/name", "ina3221")
    for n, (label, mv, ma) in enumerate([("VDD_IN", 5000, vdd_in_ma), ("VDD_CPU_GPU_CV", 5000, 400),
                                         ("VDD_SOC", 5000, 300)], start=1):
        write(root, f"{hw}/in{n}_label", label)
        write(root, f"{hw}/in{n}_input", mv)
        write(root, f"{hw}/curr{n}_input", ma)
        write(root, f"{hw}/curr{n}_crit_alarm", 0)
        write(root, f"{hw}/curr{n}_max_alarm", 0)
        write(root, f"{hw}/shunt{n}_resistor", 5000)
    write(root, f"{hw}/in7_label", "sum of shunt voltages")
    write(root, f"{hw}/in7_input", 2840)
    oc = "sys/class/hwmon/hwmon0"  # /sys/devices/platform/soctherm-oc-event/hwmon/hwmon0
    write(root, f"{oc}/name", "soctherm_oc")
    for n, count in ((1, 0), (2, 0), (3, oc3_events)):
        write(root, f"{oc}/oc{n}_event_cnt", count)
        write(root, f"{oc}/oc{n}_throt_en", 1)
    zones = [("cpu-thermal", 48312), ("gpu-thermal", 47125), ("cv0-thermal", -256000), ("soc0-thermal", 46875),
             ("tj-thermal", 49500)]
    for n, (name, mdeg) in enumerate(zones):
        thermal_zone(root, n, name, mdeg, passive_trip=99000 if name != "cv0-thermal" else None)
    return root


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
        base = f"sys/bus/i2c/drivers/ina3221x/{dev}"
        for n, (label, mv, ma, mw) in enumerate(rails):
            write(root, f"{base}/rail_name_{n}", label)
            write(root, f"{base}/in_voltage{n}_input", mv)
            write(root, f"{base}/in_current{n}_input", ma)
            write(root, f"{base}/in_power{n}_input", mw)
            write(root, f"{base}/crit_current_limit_{n}", 4000)
            write(root, f"{base}/warn_current_limit_{n}", 3000)
    for n, (name, mdeg) in enumerate(zones):
        thermal_zone(root, n, name, mdeg, passive_trip=97000)
    return root


def laptop(root: Path, ac_online: bool = False, capacity: int = 57, status: str = "Discharging",
           power_uw: int | None = 7_500_000, with_mouse: bool = True) -> Path:
    """An x86 laptop: ACPI AC adapter + battery, a HID++ mouse battery, RAPL, two thermal zones."""
    write(root, "sys/class/power_supply/AC/type", "Mains")
    write(root, "sys/class/power_supply/AC/online", int(ac_online))
    bat = "sys/class/power_supply/BAT0"
    write(root, f"{bat}/type", "Battery")
    write(root, f"{bat}/present", 1)
    write(root, f"{bat}/status", status)
    write(root, f"{bat}/capacity", capacity)
    write(root, f"{bat}/energy_full", 55_000_000)
    write(root, f"{bat}/energy_now", 55_000_000 * capacity // 100)
    write(root, f"{bat}/voltage_now", 15_400_000)
    if power_uw is not None:
        write(root, f"{bat}/power_now", power_uw)
    if with_mouse:
        mouse = "sys/class/power_supply/hidpp_battery_0"
        write(root, f"{mouse}/type", "Battery")
        write(root, f"{mouse}/scope", "Device")
        write(root, f"{mouse}/capacity", 5)
        write(root, f"{mouse}/status", "Discharging")
    rapl(root, 1_000_000)
    thermal_zone(root, 0, "acpitz", 45000, passive_trip=95000)
    thermal_zone(root, 1, "x86_pkg_temp", 52000)
    return root


def rapl(root: Path, energy_uj: int, max_range_uj: int = 262_143_328_850) -> Path:
    base = "sys/class/powercap/intel-rapl:0"
    write(root, f"{base}/name", "package-0")
    write(root, f"{base}/energy_uj", energy_uj)
    write(root, f"{base}/max_energy_range_uj", max_range_uj)
    write(root, "sys/class/powercap/intel-rapl:0:0/name", "core")  # a sub-zone: must not be added in
    write(root, "sys/class/powercap/intel-rapl:0:0/energy_uj", 123)
    return root


def bare_machine(root: Path) -> Path:
    """A container or VM: the class directories exist but hold nothing readable."""
    for rel in ("sys/class/power_supply", "sys/class/thermal", "sys/class/powercap", "proc"):
        (root / rel).mkdir(parents=True, exist_ok=True)
    return root
