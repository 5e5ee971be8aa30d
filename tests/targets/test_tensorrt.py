"""TensorRT target.

* With the real `tensorrt` (a GPU machine): build, load and run every depth; skipped here.
* Always: the version bridge against a CPU stand-in shaped like TensorRT 8.5 / 10.3 / 11.4
  (fake_tensorrt.py), which runs the "engine" with onnxruntime through host-memory buffers, so
  flags, profiles, timing cache, metadata, refusal and named-tensor execution are exercised.
"""

from __future__ import annotations

import json
import sys
import threading

import numpy as np
import pytest
from fake_tensorrt import HostCuda, make_fake_trt

from glonet_edge.data import load_dataset
from glonet_edge.errors import ArtifactError, ConfigError
from glonet_edge.manifest import BundleManifest
from glonet_edge.targets import get_target, load_artifact
from glonet_edge.targets import tensorrt as T
from glonet_edge.targets.compile import compile_bundle

ORIN = {"gpu": "NVIDIA Jetson AGX Orin", "compute_capability": "8.7", "cuda_runtime": "12.6", "via": "test"}


@pytest.fixture
def fake_trt(monkeypatch):
    def install(version, gpu=ORIN, **kw):
        fake = make_fake_trt(version, **kw)
        monkeypatch.setitem(sys.modules, "tensorrt", fake)
        monkeypatch.setattr(T, "_LOGGER", None)
        monkeypatch.setattr(T, "gpu_info", lambda index=0: dict(gpu))
        monkeypatch.setattr(T, "cuda_backend", lambda index=0, prefer="auto": HostCuda(fake.memory))
        monkeypatch.setattr(T, "jetson_info", lambda path=None: {"l4t": "36.4.0", "jetpack": "6.x"})
        return fake

    return install


@pytest.mark.parametrize("version", ["8.5.2", "10.3.0", "11.4.0"])
def test_version_bridge_build_and_run(version, fake_trt, fc_int8_bundle):
    fake = fake_trt(version)
    result = compile_bundle(fc_int8_bundle, "tensorrt", ["fp32", "fp16", "int8"], progress=False)
    major = int(version.split(".")[0])
    fp32, fp16, int8 = (fake.calls[i] for i in range(3))  # depth 1: fp32, fp16, int8
    explicit = 1 << 0
    strongly = 1 << 1
    assert bool(fp32["network_flags"] & explicit) == (major < 10)  # EXPLICIT_BATCH only before 10
    assert fp16["flags"] == (["FP16"] if major < 11 else [])  # TRT 11: no FP16 flag, an fp16 graph instead
    if major < 10:
        assert int8["flags"] == ["FP16", "INT8"] and not int8["network_flags"] & strongly
    else:
        assert int8["flags"] == [] and int8["network_flags"] & strongly  # explicit quantization, strongly typed
    assert fp32["profiles"][0]["x"] == ((1, 1, 8, 8), (8, 1, 8, 8), (32, 1, 8, 8))
    # one timing cache shared across the family: each build starts from the previous one's
    assert fake.calls[0]["cache_in"] == b"" and all(c["cache_in"] for c in fake.calls[1:])
    m = BundleManifest.load(fc_int8_bundle)
    m.verify(fc_int8_bundle)
    sub = f"tensorrt/nvidia-jetson-agx-orin_sm87_trt{version}"
    assert m.targets["tensorrt"]["subdir"] == sub
    assert (fc_int8_bundle / sub / "trtexec.sh").is_file()
    script = (fc_int8_bundle / sub / "trtexec.sh").read_text()
    assert script.count("trtexec --onnx=../../onnx/depth_") == len(m.depths) * 3 - sum("int8" in e.rejected for e in m.depths)
    assert ("--fp16" in script) == (major < 11) and ("--int8" in script) == (major < 10)
    assert result["trtexec"] and "--timingCacheFile=" in result["trtexec"][0]
    x = load_dataset("digits", seed=0, val_fraction=0.2).x_val[:64]
    ort = get_target("onnxruntime")
    for e in m.depths:
        ref = ort.load(e.artifact("onnx", "fp32").resolve(fc_int8_bundle), "fp32").run({"x": x})[0]
        for p in ("fp32", "fp16", "int8"):
            art = e.artifact("tensorrt", p)
            if art is None:
                assert p == "int8" and "int8" in e.rejected
                continue
            meta = art.extra
            assert meta["tensorrt"] == version and meta["compute_capability"] == "8.7"
            assert meta["jetson"]["l4t"] == "36.4.0" and meta["profile"]["x"]["max"][0] == 32
            assert meta["onnx_sha256"] and meta["timing_cache"]["file"].startswith("timing_")
            assert art.companions[0]["path"].endswith(f".{p}.json")
            model = load_artifact(fc_int8_bundle, art, "tensorrt")
            y = model.run({"x": x})[0]
            agree = np.mean(np.argmax(y, 1) == np.argmax(ref, 1))
            if p == "fp32":
                np.testing.assert_allclose(y, ref, atol=1e-4)
            else:
                assert agree >= 0.98, (version, e.depth, p, agree)


def test_engine_for_other_version_or_gpu_is_refused(fake_trt, fc_bundle, monkeypatch):
    fake_trt("10.3.0")
    compile_bundle(fc_bundle, "tensorrt", ["fp16"], depths=[4], segments=False, progress=False)
    art = BundleManifest.load(fc_bundle).depth(4).artifact("tensorrt", "fp16")
    fake_trt("10.3.0", gpu={**ORIN, "gpu": "NVIDIA RTX 4090", "compute_capability": "8.9"})
    with pytest.raises(ArtifactError, match="compute capability 8.7.*rebuild it here"):
        load_artifact(fc_bundle, art, "tensorrt")
    fake_trt("10.13.0")
    with pytest.raises(ArtifactError, match="TensorRT 10.3.0 \\(this machine has 10.13.0\\)"):
        load_artifact(fc_bundle, art, "tensorrt")
    # without metadata the engine itself refuses: deserialize returns None -> a clear error
    plan = fc_bundle / art.path
    (plan.with_suffix(".json")).unlink()
    with pytest.raises(ArtifactError, match="could not deserialize.*rebuild"):
        get_target("tensorrt").load(plan, "fp16")


def test_run_is_thread_safe_and_checks_profile(fake_trt, fc_bundle):
    fake_trt("10.3.0")
    compile_bundle(fc_bundle, "tensorrt", ["fp32"], depths=[8], segments=False, progress=False, max_batch=16)
    model = load_artifact(fc_bundle, BundleManifest.load(fc_bundle).depth(8).artifact("tensorrt", "fp32"), "tensorrt")
    rng = np.random.default_rng(0)
    xs = [rng.normal(size=(b, 1, 8, 8)).astype(np.float32) for b in (1, 3, 16, 5)]
    expected = [model.run({"x": x})[0] for x in xs]
    errors = []

    def work(i):
        try:
            for _ in range(10):
                np.testing.assert_allclose(model.run({"x": xs[i]})[0], expected[i], rtol=1e-6)
        except Exception as exc:  # pragma: no cover
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(xs))]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors, errors[0]
    np.testing.assert_allclose(model.raw_callable()({"x": xs[1]})[0], expected[1], rtol=1e-6)
    big = rng.normal(size=(40, 1, 8, 8)).astype(np.float32)  # above max 16: run in chunks
    np.testing.assert_allclose(model.run({"x": big})[0], np.concatenate([model.run({"x": big[i:i + 8]})[0]
                                                                         for i in range(0, 40, 8)]), rtol=1e-6)
    with pytest.raises(ConfigError, match="outside the engine's optimization profile.*--max-batch"):
        model.raw_callable()({"x": np.zeros((17, 1, 8, 8), np.float32)})


def test_dla_static_batch_and_fp32_refused(fake_trt, fc_int8_bundle):
    fake = fake_trt("10.3.0", dla_cores=2)
    with pytest.raises(ConfigError, match="DLA runs fp16 or int8 only"):
        compile_bundle(fc_int8_bundle, "tensorrt", ["fp32"], device="DLA", progress=False)
    compile_bundle(fc_int8_bundle, "tensorrt", ["fp16"], device="DLA:1", depths=[4], segments=False,
                   progress=False, static_batch=4, verify=False)
    call = fake.calls[-1]
    assert call["dla"] == 1 and "GPU_FALLBACK" in call["flags"]
    assert call["profiles"][0]["x"][0] == call["profiles"][0]["x"][2] == (4, 1, 8, 8)
    m = BundleManifest.load(fc_int8_bundle)
    assert m.targets["tensorrt"]["subdir"].endswith("_dla1")
    assert m.depth(4).artifact("tensorrt", "fp16").extra["dla_core"] == 1
    fake_trt("11.0.0", dla_cores=0)
    with pytest.raises(ConfigError, match="DLA:0 asked for but this GPU has 0 DLA cores"):
        compile_bundle(fc_int8_bundle, "tensorrt", ["fp16"], device="DLA", progress=False)


def test_failed_engine_build_is_reported(fake_trt, fc_bundle):
    fake_trt("10.3.0", fail_build=True)
    with pytest.raises(ArtifactError, match="failed to build an engine for depth_001.onnx"):
        compile_bundle(fc_bundle, "tensorrt", ["fp32"], progress=False)
    assert not (fc_bundle / "tensorrt").exists()


def test_parser_errors_are_listed(fake_trt, fc_bundle, tmp_path):
    """A UINT8 QDQ graph is refused by the parser; its errors are shown."""
    fake_trt("8.5.2")
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from glonet_edge.export import quantize as Q

    src = fc_bundle / "onnx" / "depth_004.onnx"
    bad = tmp_path / "u8.onnx"
    cal = Q.load_calibration(BundleManifest.load(fc_bundle), 32)
    quantize_static(str(src), str(bad), Q._Reader([{"x": b} for b in cal.batches()]), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax)
    with pytest.raises(ArtifactError, match="cannot parse u8.onnx:(.|\\n)*int8"):
        get_target("tensorrt").build(bad, tmp_path / "out", "int8")


def test_jetson_release_parsing(tmp_path):
    f = tmp_path / "nv_tegra_release"
    f.write_text("# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref, EABI: aarch64\n")
    assert T.jetson_info(f) == {"l4t": "35.4.1", "jetpack": "5.1.x"}
    assert T.jetson_info(tmp_path / "missing") is None


def test_fp16_graph_conversion_for_trt11(fc_bundle, tmp_path):
    """TRT 11 has no FP16 flag: the fp16 graph keeps fp32 I/O and agrees with fp32."""
    import onnx

    dst = tmp_path / "fp16.onnx"
    assert T.convert_fp16(fc_bundle / "onnx" / "depth_016.onnx", dst) in ("glonet-edge", "modelopt-autocast")
    m = onnx.load(str(dst))
    assert m.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert m.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in m.graph.initializer)
    x = load_dataset("digits", seed=0, val_fraction=0.2).x_val
    ort = get_target("onnxruntime")
    ref = ort.load(fc_bundle / "onnx" / "depth_016.onnx", "fp32").run({"x": x})[0]
    y = ort.load(dst, "fp32").run({"x": x})[0]
    assert np.mean(np.argmax(y, 1) == np.argmax(ref, 1)) >= 0.99


# ---- real TensorRT (GPU machines only) --------------------------------------------------------
def test_real_tensorrt_build_and_run(fc_int8_bundle):
    pytest.importorskip("tensorrt", reason="TensorRT is not installed (needs an NVIDIA GPU + `pip install "
                                           "glonet-edge[tensorrt]`); the ONNX-level checks in test_qdq_lint run instead")
    try:
        T.gpu_info(0)
    except Exception as exc:  # pragma: no cover - tensorrt without a usable GPU
        pytest.skip(f"tensorrt is importable but no CUDA GPU is usable: {exc}")
    compile_bundle(fc_int8_bundle, "tensorrt", ["fp32", "fp16", "int8"], progress=False)
    m = BundleManifest.load(fc_int8_bundle)
    x = load_dataset("digits", seed=0, val_fraction=0.2).x_val
    for e in m.depths:
        ref = get_target("onnxruntime").load(e.artifact("onnx", "fp32").resolve(fc_int8_bundle), "fp32").run({"x": x})[0]
        y = load_artifact(fc_int8_bundle, e.artifact("tensorrt", "fp32"), "tensorrt").run({"x": x})[0]
        np.testing.assert_allclose(y, ref, atol=1e-3)
    assert json.loads((fc_int8_bundle / "compile_tensorrt.json").read_text())["trtexec"]
