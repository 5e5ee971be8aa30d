"""How to quantize: one keyword-only settings object (NNCF's `quantize` and Polygraphy's
`CreateConfig` are the models), read by the CLI, the pipeline's [quantize] section and Python
callers alike. The recipes and the accuracy control they steer are told in docs/quantize.md."""

from __future__ import annotations

from dataclasses import dataclass, fields

from ..errors import ConfigError

METHODS = ("ort", "nncf")
CALIBRATION_METHODS = ("percentile", "minmax")
# What is quantized: the inputs of these ops only (TensorRT's explicit-quantization placement),
# so the GloNet running sum is accumulated in float.
TRT_OP_TYPES = ("Conv", "Gemm", "MatMul")


@dataclass(kw_only=True)
class QuantizeSettings:
    """Every knob of `glonet quantize`; the defaults are the CLI's."""

    method: str = "ort"
    """ort: onnxruntime quantize_static with the TensorRT recipe; nncf: NNCF's
    quantize_with_accuracy_control, made TensorRT-safe afterwards."""
    calib_size: int = 512
    """Training samples used for calibration (a deterministic subset of the training split)."""
    calibration_method: str = "percentile"
    """ort: activation ranges from a percentile of |x| ("percentile") or plain min/max."""
    percentile: float = 99.99
    """ort, calibration_method="percentile": the percentile, in (50, 100]."""
    max_drop: float = 0.005
    """Largest allowed absolute score drop vs fp32 on held-out data (0.005 = 0.5 points)."""
    min_agreement: float = 0.99
    """Smallest allowed top-1 agreement of int8 with fp32 on held-out data (classification)."""
    max_float_fraction: float = 0.5
    """At most this fraction of a depth's quantized layers may go back to float (0 = none)."""
    engines: str = "auto"
    """Engines every int8 graph is checked on: "auto" (onnxruntime, plus openvino where
    installed) or a comma list such as "onnxruntime,openvino"."""
    range_search: bool = True
    """When the first recipe fails, try the other range estimators before any float fallback."""
    share_calibration: bool = True
    """ort: calibrate the whole depth family in one pass instead of once per graph."""
    segments: bool = False
    """Also quantize the segment chain."""
    dataset: str | None = None
    """Data set to load when the path recorded at training is not on this machine."""
    seed: int = 0
    """Seed of the calibration subset."""
    ort_flavour: str = "auto"
    """Also make ONNX Runtime's own int8 graph per depth (quantize/flavours.py), under the same
    accuracy control: "auto" (the flavour for this machine's architecture), a flavour name such
    as "ort-u8s8-qoperator", or "none"."""

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    def validate(self) -> None:
        """One ConfigError naming the first setting out of range and what it takes."""
        if self.method not in METHODS:
            raise ConfigError(f"unknown quantization method {self.method!r}; use one of {', '.join(METHODS)}")
        if self.calibration_method not in CALIBRATION_METHODS:
            raise ConfigError(f"unknown calibration method {self.calibration_method!r}; use one of "
                              f"{', '.join(CALIBRATION_METHODS)}")
        if not 50.0 < self.percentile <= 100.0:
            raise ConfigError(f"percentile must be in (50, 100], got {self.percentile}")
        if not 0 <= self.max_drop <= 1:
            raise ConfigError(f"--max-drop must be in [0, 1] (absolute, e.g. 0.005 = 0.5 points), got {self.max_drop}")
        if not 0 <= self.min_agreement <= 1:
            raise ConfigError(f"--min-agreement must be in [0, 1] (a fraction, e.g. 0.99), got {self.min_agreement}")
        if not 0 <= self.max_float_fraction <= 1:
            raise ConfigError(f"--max-float-fraction must be in [0, 1], got {self.max_float_fraction}")
        from .flavours import FLAVOURS

        if self.ort_flavour not in ("auto", "none", *FLAVOURS):
            raise ConfigError(f"unknown --ort-flavour {self.ort_flavour!r}; use auto, none or one of {', '.join(FLAVOURS)}")
        if self.calib_size < 1:
            raise ConfigError(f"--calib-size must be >= 1, got {self.calib_size}")
