"""Typed build settings for one TensorRT engine, made once from `glonet compile`'s options."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

from ...errors import ConfigError

# Options of the other targets that may reach TensorRT through one compile call; not used here.
FOREIGN_OPTIONS = frozenset({"threads", "cache_dir", "config", "performance_hint"})


@dataclass(frozen=True)
class Device:
    """GPU:N or DLA:N. A DLA core belongs to the Jetson's one GPU (CUDA device 0)."""

    kind: str  # "GPU" or "DLA"
    index: int

    @classmethod
    def parse(cls, checked_name: str) -> "Device":
        """From a name Target.check_device accepted ("GPU", "CUDA:1", "DLA:0")."""
        base, _, idx = checked_name.partition(":")
        try:
            index = int(idx or 0)
        except ValueError:
            raise ConfigError(f"device {checked_name!r}: the index after ':' must be a number, e.g. GPU:1 or DLA:0") from None
        return cls("DLA" if base == "DLA" else "GPU", index)

    @property
    def dla_core(self) -> Optional[int]:
        return self.index if self.kind == "DLA" else None

    @property
    def gpu_index(self) -> int:
        """The CUDA device a build / load uses: N for GPU:N, 0 for DLA."""
        return 0 if self.kind == "DLA" else self.index


@dataclass(frozen=True)
class BatchProfile:
    """The optimization profile over dim 0: min <= opt <= max (DLA and static_batch: all equal)."""

    min: int = 1
    opt: int = 8
    max: int = 32

    @classmethod
    def from_options(cls, options: Mapping[str, Any], dla: bool) -> "BatchProfile":
        static = _int(options, "static_batch", 0)
        if dla or static:
            b = static or 1
            return cls(b, b, b)
        b_max = _int(options, "max_batch", 32)
        profile = cls(_int(options, "min_batch", 1), _int(options, "opt_batch", min(8, b_max)), b_max)
        if not 1 <= profile.min <= profile.opt <= profile.max:
            raise ConfigError("batch profile must satisfy 1 <= min <= opt <= max, got "
                              f"{profile.min}/{profile.opt}/{profile.max}")
        return profile

    def as_dict(self) -> Dict[str, int]:
        return {"min": self.min, "opt": self.opt, "max": self.max}


def _int(options: Mapping[str, Any], key: str, default: int) -> int:
    value = options.get(key)
    if value is None:
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"tensorrt option {key}={value!r} must be a whole number") from None


@dataclass(frozen=True)
class BuildOptions:
    """Everything one engine build depends on besides the graph."""

    precision: str
    device: Device = Device("GPU", 0)
    batch: BatchProfile = BatchProfile()
    stem: Optional[str] = None  # file stem of the engine (default: the ONNX file's)
    workspace_mib: int = 1024
    strongly_typed: Optional[bool] = None  # None: the version's default (docs/targets.md)
    fp16_fallback: bool = True  # TensorRT < 10 int8: let non-quantized layers run fp16
    tf32: bool = False  # fp32 engines clear TF32 unless asked
    optimization_level: int = 3
    timing_cache: Optional[Path] = None  # default: one per GPU in the engine directory
    cuda: str = "auto"  # which CUDA backend selects the device

    KEYS = ("stem", "workspace_mib", "strongly_typed", "fp16_fallback", "tf32", "optimization_level",
            "timing_cache", "cuda", "min_batch", "opt_batch", "max_batch", "static_batch")

    @classmethod
    def from_options(cls, precision: str, device: Device, options: Mapping[str, Any]) -> "BuildOptions":
        unknown = sorted(k for k in options if k not in cls.KEYS and k not in FOREIGN_OPTIONS)
        if unknown:
            raise ConfigError(f"unknown tensorrt build option(s) {', '.join(unknown)}; use {', '.join(cls.KEYS)}")
        cache = options.get("timing_cache")
        strong = options.get("strongly_typed")
        return cls(precision, device, BatchProfile.from_options(options, device.kind == "DLA"),
                   stem=options.get("stem") or None, workspace_mib=_int(options, "workspace_mib", 1024),
                   strongly_typed=None if strong is None else bool(strong),
                   fp16_fallback=bool(options.get("fp16_fallback", True)), tf32=bool(options.get("tf32", False)),
                   optimization_level=_int(options, "optimization_level", 3),
                   timing_cache=Path(cache) if cache else None, cuda=str(options.get("cuda") or "auto"))
