"""The common Target interface, the registry, lazy imports and missing-library errors."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from glonet_edge.errors import ArtifactError, ConfigError, MissingDependencyError
from glonet_edge.targets import Target, get_target, list_targets
from glonet_edge.targets.base import CompiledModel


def test_registry_names_are_the_contract():
    assert list_targets() == ["onnxruntime", "openvino", "tensorrt"]
    for name in list_targets():
        t = get_target(name)
        assert isinstance(t, Target) and t.name == name and set(t.precisions) <= {"fp32", "fp16", "int8"}
    with pytest.raises(ConfigError, match="unknown target 'trt'"):
        get_target("trt")


def test_describe_reports_versions():
    ort = get_target("onnxruntime").describe()
    assert ort["onnxruntime"] and "CPUExecutionProvider" in ort["available_providers"]
    if get_target("openvino").available():
        ov = get_target("openvino").describe()
        assert ov["openvino"] and "CPU" in ov["devices"]


def test_targets_import_no_heavy_libraries():
    """The runtime imports targets: numpy + the engine in use only (no torch / onnx / nncf)."""
    code = textwrap.dedent("""
        import sys
        import glonet_edge.targets as T
        from glonet_edge.targets import get_target
        for n in T.list_targets():
            get_target(n)
        import glonet_edge.targets.profile
        bad = [m for m in ("torch", "onnx", "nncf", "tensorrt", "openvino", "onnxruntime") if m in sys.modules]
        print(",".join(bad))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"imported at module load: {out}"


def test_openvino_load_does_not_pull_onnx_or_nncf(fc_bundle):
    pytest.importorskip("openvino")
    from glonet_edge.targets.compile import compile_bundle

    compile_bundle(fc_bundle, "openvino", ["fp32"], depths=[4], segments=False, progress=False, verify=False)
    code = textwrap.dedent(f"""
        import sys
        from glonet_edge.manifest import BundleManifest
        from glonet_edge.targets import load_artifact
        m = BundleManifest.load({str(fc_bundle)!r})
        model = load_artifact({str(fc_bundle)!r}, m.depth(4).artifact("openvino", "fp32"), "openvino")
        import numpy as np
        model.run({{"x": np.zeros((2, 1, 8, 8), np.float32)}})
        print(",".join(m for m in ("torch", "onnx", "nncf") if m in sys.modules))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"loading an OpenVINO IR imported {out}"


@pytest.mark.parametrize("name,extra", [("openvino", "openvino"), ("onnxruntime", "onnxruntime"),
                                        ("tensorrt", "tensorrt")])
def test_missing_library_names_the_extra(name, extra, monkeypatch, tmp_path):
    t = get_target(name)
    monkeypatch.setitem(sys.modules, t.library, None)  # import now raises ImportError
    assert t.available() is False
    with pytest.raises(MissingDependencyError, match=rf"pip install glonet-edge\[{extra}\]"):
        t.load(tmp_path / "model.bin", "fp32")
    with pytest.raises(MissingDependencyError, match=rf"glonet-edge\[{extra}\]"):
        t.describe()


def test_missing_nncf_for_quantize(fc_bundle, monkeypatch):
    from glonet_edge.quantize import QuantizeSettings, quantize_bundle

    monkeypatch.setitem(sys.modules, "nncf", None)
    with pytest.raises(MissingDependencyError, match=r"glonet-edge\[quantize\]"):
        quantize_bundle(fc_bundle, QuantizeSettings(method="nncf"), progress=False)


def test_feed_checks_and_missing_files(fc_bundle):
    ort = get_target("onnxruntime")
    model = ort.load(fc_bundle / "onnx" / "depth_001.onnx", "fp32", threads=1)
    assert isinstance(model, CompiledModel) and model.input_names == ["x"] and model.output_names == ["y"]
    with pytest.raises(ConfigError, match="missing \\['x'\\], unexpected \\['z'\\]"):
        model.run({"z": np.zeros((1, 1, 8, 8))})
    with pytest.raises(ConfigError, match="numeric"):
        model.run({"x": np.array([["a"]])})
    (y,) = model.run({"x": np.zeros((3, 1, 8, 8), np.float64)})  # converted to float32
    assert y.shape == (3, 10) and y.dtype == np.float32
    raw = model.raw_callable()
    np.testing.assert_array_equal(raw({"x": np.zeros((3, 1, 8, 8), np.float32)})[0], y)
    with pytest.raises(ArtifactError, match="does not exist"):
        ort.load(fc_bundle / "onnx" / "nope.onnx", "fp32")
    bad = fc_bundle / "onnx" / "bad.onnx"
    bad.write_bytes(b"not a graph")
    with pytest.raises(ArtifactError, match="cannot load"):
        ort.load(bad, "fp32")
    with pytest.raises(ConfigError, match="unknown device"):
        ort.load(fc_bundle / "onnx" / "depth_001.onnx", "fp32", device="FPGA")
    with pytest.raises(ConfigError, match="onnxruntime-gpu"):
        if "CUDAExecutionProvider" not in __import__("onnxruntime").get_available_providers():
            ort.load(fc_bundle / "onnx" / "depth_001.onnx", "fp32", device="GPU")
        else:  # pragma: no cover - GPU machines
            raise ConfigError("onnxruntime-gpu present")
