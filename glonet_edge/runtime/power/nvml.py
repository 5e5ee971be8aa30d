"""NVIDIA discrete/datacenter GPUs through NVML (`pip install nvidia-ml-py`, module `pynvml`).

Used only when pynvml imports and reports at least one GPU. Readings (NVML API reference):
nvmlDeviceGetPowerUsage (mW), nvmlDeviceGetEnforcedPowerLimit (mW, the cap → power budget),
nvmlDeviceGetTemperature(NVML_TEMPERATURE_GPU) (°C), nvmlDeviceGetTotalEnergyConsumption
(mJ since driver load, Volta+; kept in details for energy accounting), and the clock
throttle reasons bit mask. Each optional call may be unsupported on a given GPU; it is
skipped rather than failing the read.
"""

from __future__ import annotations

import importlib
import time
from pathlib import Path
from typing import Any

from .base import Clock, PowerSource, PowerState, SensorError

# nvmlClocksThrottleReason* bits that mean "clocks are being held down by power or heat"
# (SwPowerCap 0x4, HwSlowdown 0x8, SwThermalSlowdown 0x20, HwThermalSlowdown 0x40,
# HwPowerBrakeSlowdown 0x80); GpuIdle (0x1) and application clock settings are not throttling.
THROTTLE_MASK = 0x4 | 0x8 | 0x20 | 0x40 | 0x80


class NvmlSource(PowerSource):
    name = "nvml"

    def __init__(self, root: str | Path = "/", clock: Clock = time.time, index: int = 0) -> None:
        super().__init__(root, clock)
        self.index = index
        self._nvml: Any = None
        self._handle: Any = None

    def _open(self) -> None:
        if self._handle is not None:
            return
        try:
            nvml = importlib.import_module("pynvml")
        except ImportError as exc:
            raise SensorError("pynvml is not installed (pip install nvidia-ml-py)") from exc
        try:
            nvml.nvmlInit()
            if nvml.nvmlDeviceGetCount() <= self.index:
                raise SensorError(f"NVML sees {nvml.nvmlDeviceGetCount()} GPU(s), no GPU #{self.index}")
            self._handle = nvml.nvmlDeviceGetHandleByIndex(self.index)
        except SensorError:
            raise
        except Exception as exc:  # pynvml raises NVMLError subclasses; no driver raises OSError
            raise SensorError(f"NVML unavailable: {exc}") from exc
        self._nvml = nvml

    def probe(self) -> bool:
        try:
            self._open()
            return True
        except SensorError:
            return False

    def read(self) -> PowerState:
        self._open()
        nvml, h = self._nvml, self._handle

        def optional(fn, *args):
            try:
                return fn(h, *args)
            except Exception:  # noqa: BLE001 - NVMLError_NotSupported and friends
                return None

        try:
            power_w = float(nvml.nvmlDeviceGetPowerUsage(h)) / 1000.0
        except Exception as exc:
            # The GPU fell off the bus or the driver was reloaded: reopen on the next read.
            self._handle = None
            raise SensorError(f"nvmlDeviceGetPowerUsage failed: {exc}") from exc
        limit_mw = optional(nvml.nvmlDeviceGetEnforcedPowerLimit)
        temp = optional(nvml.nvmlDeviceGetTemperature, getattr(nvml, "NVML_TEMPERATURE_GPU", 0))
        reasons_fn = getattr(nvml, "nvmlDeviceGetCurrentClocksEventReasons", None) or \
            getattr(nvml, "nvmlDeviceGetCurrentClocksThrottleReasons", None)
        reasons = optional(reasons_fn) if reasons_fn else None
        name = optional(nvml.nvmlDeviceGetName)
        details: dict[str, Any] = {"gpu_index": self.index}
        try:  # a driver (or a binding) returning something that is not a number is a sensor fault
            energy_mj = optional(nvml.nvmlDeviceGetTotalEnergyConsumption)
            if energy_mj is not None:
                details["total_energy_j"] = float(energy_mj) / 1000.0
            if reasons is not None:
                details["throttle_reasons"] = int(reasons)
            return PowerState(
                source=self.name, power_w=power_w,
                power_budget_w=float(limit_mw) / 1000.0 if limit_mw is not None else None,
                temp_c=float(temp) if temp is not None else None,
                throttled=bool(int(reasons) & THROTTLE_MASK) if reasons is not None else None,
                timestamp=self.clock(),
                device=name.decode("utf-8", "replace") if isinstance(name, bytes) else
                (str(name) if name is not None else None),
                details=details,
            )
        except (TypeError, ValueError, OverflowError) as exc:
            raise SensorError(f"NVML returned a malformed reading: {exc}") from exc

    def close(self) -> None:
        if self._nvml is not None:
            try:
                self._nvml.nvmlShutdown()
            except Exception:  # noqa: BLE001 - shutting down a half-initialised NVML is harmless
                pass
        self._nvml = self._handle = None
