"""The `tensorrt` module, imported on first use, and the version facts the target branches on."""

from __future__ import annotations

from typing import Any

from ...errors import require

_LOGGER = None


def load_trt() -> Any:
    """`import tensorrt`, or MissingDependencyError naming `pip install glonet-edge[tensorrt]`."""
    return require("tensorrt", "tensorrt")


def logger(trt: Any) -> Any:
    """One trt.Logger per process (TensorRT warns when builders and runtimes use different ones)."""
    global _LOGGER
    if _LOGGER is None:
        _LOGGER = trt.Logger(trt.Logger.WARNING)
    return _LOGGER


def trt_major(trt: Any) -> int:
    return int(str(trt.__version__).split(".")[0])


def has_flag(enum: Any, name: str) -> bool:
    """Whether this TensorRT has an enum member (features are detected, not inferred from the version)."""
    return hasattr(enum, name)
