"""NVIDIA Jetson: model, nvpmodel power mode, INA3221 power rails, thermal zones, throttling.

Where each reading comes from (paths relative to the root; formats as checked against
NVIDIA's tools, the kernel docs and jetson-stats):

- Model: /proc/device-tree/model, a NUL-terminated string ("NVIDIA Jetson Orin Nano
  Developer Kit").
- Power mode: /var/lib/nvpmodel/status holds the active mode id as "pmode:0002": the user
  data file `nvpmodel` stores the active mode in and answers `nvpmodel -q` from (its --help:
  "-u ... user data file when set or query power mode"; "If user data file does not exist
  ... set default mode instead"). jetson-stats runs `nvpmodel -q` itself. The names come from the
  conf's `< POWER_MODEL ID=2 NAME=15W >` lines and the boot default from
  `< PM_CONFIG DEFAULT=2 >`. The conf is looked up in the order NVIDIA's helper script uses:
  /odm/etc, /vendor/etc, /etc. Mode ids differ per board (Orin Nano Super: 15W=0, 25W=1,
  MAXN_SUPER=2, 7W=3), so only the name is meaningful; the budget in watts is parsed from it
  ("15W", "MODE_30W_4CORE"), MAXN means "no cap" (None).
- Rails, JetPack 5/6 (Orin, Xavier on L4T r34+): the upstream hwmon driver under
  /sys/bus/i2c/drivers/ina3221/<bus-addr>/hwmon/hwmonN/ (kernel Documentation/hwmon/ina3221.rst,
  drivers/hwmon/ina3221.c): channels 1-3 with in{N}_input (bus voltage, mV), curr{N}_input
  (mA), in{N}_enable and, when the device tree names it, in{N}_label. A channel the device
  tree marks disconnected has in{N}_enable 0 and no label; one labelled "NC" is unconnected
  (NVIDIA's labels; jetson-stats skips them). in4-6 are shunt voltages and in7 the "sum of
  shunt voltages": not rails.
- Rails, JetPack 4 (Nano, TX1/TX2, Xavier on L4T r32): NVIDIA's ina3221x iio driver under
  /sys/bus/i2c/drivers/ina3221x/<bus-addr>/iio:deviceN/ with rail_name_N ("(null)" for a
  channel the device tree names no rail for), in_power{N}_input (mW), in_voltage{N}_input (mV),
  in_current{N}_input (mA).
- Total power: the VDD_IN rail (Orin Nano/NX, Xavier NX, TX2) or POM_5V_IN (Nano), i.e. the
  module input as NVIDIA's docs and jetson-stats define it; boards without one (AGX Orin)
  report the sum of their rails, marked `power_total: "sum of rails"`.
- Throttling: (a) the soctherm over-current event counters on Orin,
  /sys/class/hwmon/hwmonN/oc{1,2,3}_event_cnt under the hwmon whose `name` is
  "soctherm_oc" (cumulative, so a rise between two reads means throttling happened);
  (b) INA3221 alert flags curr{N}_crit_alarm / curr{N}_max_alarm; (c) a thermal zone at or
  above its passive trip point (see thermal.py).
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from .base import Clock, PowerSource, PowerState, SensorError, first_error, optional_number, read_number, read_text
from .thermal import read_zones, summarize_zones

MODEL_FILE = "proc/device-tree/model"
TEGRA_RELEASE = "etc/nv_tegra_release"
NVPMODEL_STATUS = "var/lib/nvpmodel/status"
NVPMODEL_CONFS = ("odm/etc/nvpmodel.conf", "vendor/etc/nvpmodel.conf", "etc/nvpmodel.conf")
HWMON_GLOB = "sys/bus/i2c/drivers/ina3221/*/hwmon/hwmon*"
IIO_GLOB = "sys/bus/i2c/drivers/ina3221x/*/iio:device*"
OC_HWMON_GLOB = "sys/class/hwmon/hwmon*"
TOTAL_RAILS = ("VDD_IN", "POM_5V_IN")
UNCONNECTED_LABELS = ("NC", "(null)", "")

# Ids are bounded (\d{1,9}): int() of a 5000-digit garbage string raises ValueError, not a SensorError.
_MODEL_RE = re.compile(r"^\s*<\s*POWER_MODEL\s+ID=(\d{1,9})\s+NAME=([^\s>]+)\s*>", re.MULTILINE)
_DEFAULT_RE = re.compile(r"^\s*<\s*PM_CONFIG\s+DEFAULT=(\d{1,9})\s*>", re.MULTILINE)
_STATUS_RE = re.compile(r"pmode:\s*(\d{1,9})(?!\d)")
_BUDGET_RE = re.compile(r"(\d+(?:\.\d+)?)W", re.IGNORECASE)


def parse_nvpmodel_conf(text: str) -> tuple[dict[int, str], int | None]:
    """({mode id: name}, default id) from an nvpmodel.conf."""
    modes = {int(i): name for i, name in _MODEL_RE.findall(text)}
    default = _DEFAULT_RE.search(text)
    return modes, int(default.group(1)) if default else None


def budget_from_mode_name(name: str) -> float | None:
    """"15W" → 15.0, "MODE_30W_4CORE" → 30.0, "MAXN"/"MAXN_SUPER" → None (uncapped)."""
    match = _BUDGET_RE.search(name)
    return float(match.group(1)) if match else None


def hwmon_rails_w(d: Path) -> dict[str, float]:
    """{label: W} of the measured channels 1-3 of one upstream-driver INA3221 (ina3221.rst).

    A channel the device tree marks disconnected has `inN_enable` 0, no label, and its inputs
    fail with ENODATA; one labelled "NC" is not connected (NVIDIA's convention, skipped by
    jetson-stats too). A connected channel the device tree gave no label has no `inN_label`:
    it is named after its chip and channel. in7 is the sum of shunt voltages, not a rail.
    """
    rails: dict[str, float] = {}
    for n in (1, 2, 3):
        if not (d / f"in{n}_input").exists() or optional_number(d / f"in{n}_enable") == 0:
            continue
        label = read_text(d / f"in{n}_label") if (d / f"in{n}_label").exists() else None
        if label in UNCONNECTED_LABELS:
            continue
        volts_mv, amps_ma = read_number(d / f"in{n}_input"), read_number(d / f"curr{n}_input")
        rails[label or f"{d.parent.parent.name} channel {n}"] = volts_mv * amps_ma / 1e6  # mV x mA = µW
    return rails


def iio_rails_w(d: Path) -> dict[str, float]:
    """{rail_name: W} of one NVIDIA ina3221x iio device (JetPack 4). The driver prints a channel
    the device tree names no rail for as "(null)": that channel is not connected."""
    rails: dict[str, float] = {}
    for label_file in sorted(d.glob("rail_name_[0-2]")):
        label = read_text(label_file)
        if label in UNCONNECTED_LABELS:
            continue
        n = label_file.name.rsplit("_", 1)[1]
        power_mw = optional_number(d / f"in_power{n}_input")
        if power_mw is None:
            power_mw = read_number(d / f"in_voltage{n}_input") * read_number(d / f"in_current{n}_input") / 1e3
        rails[label] = power_mw / 1e3
    return rails


class JetsonSource(PowerSource):
    name = "jetson"

    def __init__(self, root: str | Path = "/", clock: Clock = time.time) -> None:
        super().__init__(root, clock)
        self._oc_last: dict[str, float] | None = None

    # ---- detection ---------------------------------------------------------------------------
    def probe(self) -> bool:
        try:
            model = self._model() or ""
        except SensorError:
            model = ""
        return ("jetson" in model.lower() or self.exists(TEGRA_RELEASE)
                or bool(self.glob(HWMON_GLOB) or self.glob(IIO_GLOB)))

    def _model(self) -> str | None:
        path = self.path(MODEL_FILE)
        return read_text(path) if path.exists() else None

    # ---- reading -------------------------------------------------------------------------------
    def read(self) -> PowerState:
        errors: list[str] = []
        details: dict[str, Any] = {}

        def attempt(what: str, fn, default=None):
            try:
                return fn()
            except SensorError as exc:
                errors.append(f"{what}: {exc}")
                return default

        device = attempt("model", self._model)
        mode = attempt("nvpmodel", self._power_mode)
        if mode is not None:
            details["power_mode_id"] = mode[0]
        rails = attempt("rails", self._rails, {}) or {}
        power_w, how = self._total(rails)
        if rails:
            details["rails_w"] = {k: round(v, 3) for k, v in rails.items()}
            details["power_total"] = how
        zones, zone_errors = read_zones(self)
        errors.extend(f"thermal: {e}" for e in zone_errors)
        temp_c, trip_throttled, temps = summarize_zones(zones)
        if temps:
            details["zones_c"] = temps
        oc = attempt("over-current counters", self._oc_throttled)
        alarms = attempt("ina3221 alarms", self._ina_alarms)
        indicators = [v for v in (trip_throttled, oc, alarms) if v is not None]
        throttled = any(indicators) if indicators else None
        if errors:
            details["errors"] = errors
        if device is None and mode is None and not rails and temp_c is None:
            raise SensorError(first_error(errors) if errors else f"no Jetson sensors under {self.root}")
        mode_name = mode[1] if mode else None
        return PowerState(
            source=self.name, power_w=power_w,
            power_budget_w=budget_from_mode_name(mode_name) if mode_name else None,
            power_mode=mode_name, temp_c=temp_c, throttled=throttled, timestamp=self.clock(),
            device=device, details=details,
        )

    def _power_mode(self) -> tuple[int, str] | None:
        conf = next((self.path(c) for c in NVPMODEL_CONFS if self.path(c).is_file()), None)
        if conf is None:
            return None
        modes, default = parse_nvpmodel_conf(read_text(conf))
        status = self.path(NVPMODEL_STATUS)
        if status.exists():
            match = _STATUS_RE.search(read_text(status))
            if not match:
                raise SensorError(f"{status} does not hold 'pmode:NNNN': {read_text(status)[:40]!r}")
            mode_id = int(match.group(1))
        elif default is not None:  # no status file yet: nvpmodel applies the conf default at boot
            mode_id = default
        else:
            return None
        if mode_id not in modes:
            raise SensorError(f"power mode id {mode_id} is not defined in {conf} (ids: {sorted(modes)})")
        return mode_id, modes[mode_id]

    def _rails(self) -> dict[str, float]:
        """{rail label: watts} from every INA3221 found, hwmon and legacy iio layouts alike."""
        rails: dict[str, float] = {}
        for d in self.glob(HWMON_GLOB):
            rails.update(hwmon_rails_w(d))
        for d in self.glob(IIO_GLOB):
            rails.update(iio_rails_w(d))
        return rails

    @staticmethod
    def _total(rails: dict[str, float]) -> tuple[float | None, str | None]:
        for name in TOTAL_RAILS:
            if name in rails:
                return rails[name], name
        if rails:
            return sum(rails.values()), "sum of rails"
        return None, None

    def _oc_throttled(self) -> bool | None:
        counts: dict[str, float] = {}
        for d in self.glob(OC_HWMON_GLOB):
            if (d / "name").exists() and read_text(d / "name") == "soctherm_oc":
                for f in sorted(d.glob("oc*_event_cnt")):
                    counts[f.name] = read_number(f)
        if not counts:
            return None
        last, self._oc_last = self._oc_last, counts
        if last is None:  # cumulative since boot: the first read cannot tell "now"
            return None
        return any(counts[k] > last.get(k, counts[k]) for k in counts)

    def _ina_alarms(self) -> bool | None:
        flags = [read_number(f) for d in self.glob(HWMON_GLOB)
                 for f in sorted(d.glob("curr[1-4]_crit_alarm")) + sorted(d.glob("curr[1-4]_max_alarm"))]
        return any(v != 0 for v in flags) if flags else None
