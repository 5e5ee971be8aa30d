"""QuantizeSettings: one keyword-only object for the CLI, the pipeline and Python callers."""

from __future__ import annotations

import pytest

from glonet_edge.cli import build_parser
from glonet_edge.commands.quantize import settings_from_args
from glonet_edge.errors import ConfigError
from glonet_edge.quantize import QuantizeSettings


def test_settings_are_keyword_only_and_validated():
    with pytest.raises(TypeError):
        QuantizeSettings("nncf")  # positional: which knob would that be?
    QuantizeSettings().validate()
    cases = [({"calib_size": 0}, "--calib-size must be >= 1"),
             ({"percentile": 50.0}, r"percentile must be in \(50, 100\]"),
             ({"max_drop": 1.5}, "--max-drop must be in"),
             ({"method": "tensorrt"}, "unknown quantization method 'tensorrt'")]
    for kwargs, message in cases:
        with pytest.raises(ConfigError, match=message):
            QuantizeSettings(**kwargs).validate()


def test_cli_flags_map_onto_settings():
    argv = ["quantize", "b", "--method", "nncf", "--calib-size", "64", "--max-drop", "0.01", "--min-agreement", "0.9",
            "--max-float-fraction", "0.25", "--check-engines", "onnxruntime", "--no-range-search", "--segments",
            "--no-share-calibration", "--data", "digits"]
    assert settings_from_args(build_parser().parse_args(argv)) == QuantizeSettings(
        method="nncf", calib_size=64, max_drop=0.01, min_agreement=0.9, max_float_fraction=0.25,
        engines="onnxruntime", range_search=False, segments=True, share_calibration=False, dataset="digits")
    assert settings_from_args(build_parser().parse_args(["quantize", "b"])) == QuantizeSettings()
