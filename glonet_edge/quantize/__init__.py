"""Quantize stage: every depth's fp32 ONNX graph becomes a TensorRT-safe int8 QDQ graph that
passed accuracy control on held-out data, or is recorded as rejected.

    from glonet_edge.quantize import QuantizeSettings, quantize_bundle
    result = quantize_bundle("bundles/fc", QuantizeSettings(method="ort", calib_size=512))

Modules: settings, calibration (data and shared activation ranges), recipes (onnxruntime and
NNCF), qdq_rewrite (TensorRT-safe Q/DQ, keep-in-float), accuracy (accuracy control), bundle
(the driver), qdq_lint (what TensorRT's parser would refuse). The story is docs/quantize.md.
"""

from .bundle import quantize_bundle
from .settings import QuantizeSettings

__all__ = ["QuantizeSettings", "quantize_bundle"]
