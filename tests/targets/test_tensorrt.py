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
import types
import warnings

import numpy as np
import pytest
from fake_cuda import make_fake_cudart
from fake_tensorrt import make_fake_trt
from trtexec_check import script_problems, trtexec_problems

from glonet_edge.data import load_dataset
from glonet_edge.errors import ArtifactError, ConfigError
from glonet_edge.manifest import BundleManifest
from glonet_edge.targets.base import RequestPool
from glonet_edge.targets import get_target, load_artifact
from glonet_edge.targets.tensorrt import cuda, device, fp16, library
from glonet_edge.targets.tensorrt.engine import Slot
from glonet_edge.targets.tensorrt.trtexec import shape_options, trtexec_command
from glonet_edge.targets.compile import compile_bundle

ORIN = ("NVIDIA Jetson AGX Orin", 8, 7)
RTX4090 = ("NVIDIA RTX 4090", 8, 9)


@pytest.fixture
def fake_trt(monkeypatch):
    """Install a fake TensorRT of `version` over a fake CUDA runtime with `gpus` (name, cc major, minor)."""
    def install(version, gpus=(ORIN,), **kw):
        cudart = make_fake_cudart(gpus)
        fake = make_fake_trt(version, cudart, **kw)
        monkeypatch.setitem(sys.modules, "tensorrt", fake)
        monkeypatch.setattr(library, "_LOGGER", None)
        monkeypatch.setattr(cuda, "cudart", lambda: cudart)
        monkeypatch.setattr(device, "jetson_info", lambda path=None: {"l4t": "36.4.0", "jetpack": "6.x"})
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
    assert script_problems(fc_int8_bundle / sub / "trtexec.sh", version) == []  # as trtexec of this version parses it
    script = (fc_int8_bundle / sub / "trtexec.sh").read_text()
    n_int8 = len(m.depths) - sum("int8" in e.rejected for e in m.depths)
    # Graphs that carry their own fp16 are kept next to the engine and trtexec builds from them, as the
    # Python build did: fp16 on TRT 11 (no FP16 flag), int8 from TRT 10 (strongly typed, fp16 outside Q/DQ),
    # int8 before TRT 10 (the INT8 weight initializers unfolded to float -> Q -> DQ, issue 17.3).
    kept = {"fp16": ".fp16.onnx"} if major >= 11 else {}
    kept.update({"int8": ".int8.fp16.onnx"} if major >= 10 else {"int8": ".int8.unfolded.onnx"})
    n_kept = sum(len(m.depths) if p == "fp16" else n_int8 for p in kept)
    assert script.count("trtexec --onnx=../../onnx/depth_") == len(m.depths) * 2 + n_int8 - n_kept
    assert script.count("trtexec --onnx=depth_") == n_kept
    for e in m.depths:
        for p, suffix in kept.items():
            if e.artifact("tensorrt", p) is not None:
                comp = [c["path"] for c in e.artifact("tensorrt", p).companions]
                assert comp[1].endswith(f"depth_{e.depth:03d}{suffix}") and (fc_int8_bundle / comp[1]).is_file()
    assert not list((fc_int8_bundle / sub).glob(".*.onnx"))  # no stray temp graphs
    lines = script.splitlines()
    # fp32: the build cleared TF32, so does the trtexec line; fp16/int8 lines do not
    assert all(("--noTF32" in ln) == (".fp32.plan" in ln) for ln in lines if ln.startswith("trtexec"))
    assert [c["tf32"] for c in fake.calls].count(False) == script.count(".fp32.plan") > 0
    # every input of a segment graph gets its shapes (trtexec: comma-separated per input)
    for s in m.segments:
        names = list(s.inputs)
        args = dict(a.split("=", 1) for a in next(ln for ln in lines if f"segment_{s.index:02d}.fp32.plan" in ln).split()
                    if "=" in a)
        for key, b in (("--minShapes", 1), ("--optShapes", 8), ("--maxShapes", 32)):
            per_input = [x.split(":") for x in args[key].split(",")]
            assert [n for n, _ in per_input] == names and all(d.startswith(f"{b}x") for _, d in per_input)
    assert any(len(s.inputs) == 2 for s in m.segments)
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
    fake_trt("10.3.0", gpus=(RTX4090,))
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

    from glonet_edge.quantize.calibration import load_calibration
    from glonet_edge.quantize.recipes import FeedReader

    src = fc_bundle / "onnx" / "depth_004.onnx"
    bad = tmp_path / "u8.onnx"
    cal = load_calibration(BundleManifest.load(fc_bundle), 32)
    quantize_static(str(src), str(bad), FeedReader([{"x": b} for b in cal.batches()]), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax)
    with pytest.raises(ArtifactError, match="cannot parse u8.onnx:(.|\\n)*int8"):
        get_target("tensorrt").build(bad, tmp_path / "out", "int8")


def test_jetson_release_parsing(tmp_path):
    f = tmp_path / "nv_tegra_release"
    f.write_text("# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref, EABI: aarch64\n")
    assert device.jetson_info(f) == {"l4t": "35.4.1", "jetpack": "5.1.2"}
    assert device.jetson_info(tmp_path / "missing") is None


def test_fp16_graph_conversion_for_trt11(fc_bundle, tmp_path):
    """TRT 11 has no FP16 flag: the fp16 graph keeps fp32 I/O and agrees with fp32."""
    import onnx

    dst = tmp_path / "fp16.onnx"
    assert fp16.convert_fp16(fc_bundle / "onnx" / "depth_016.onnx", dst) in ("glonet-edge", "modelopt-autocast")
    m = onnx.load(str(dst))
    assert m.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert m.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in m.graph.initializer)
    x = load_dataset("digits", seed=0, val_fraction=0.2).x_val
    ort = get_target("onnxruntime")
    ref = ort.load(fc_bundle / "onnx" / "depth_016.onnx", "fp32").run({"x": x})[0]
    y = ort.load(dst, "fp32").run({"x": x})[0]
    assert np.mean(np.argmax(y, 1) == np.argmax(ref, 1)) >= 0.99


# ---- review fixes (each test fails without its fix) -------------------------------------------
def _trt_build(src, out, precision, **kw):
    return get_target("tensorrt").build(src, out, precision, **kw)


def _fixed_batch_graph(src, dst, batch):
    import onnx

    m = onnx.load(str(src))
    m.graph.input[0].type.tensor_type.shape.dim[0].dim_value = batch
    onnx.save(m, str(dst))
    return dst


def _trtexec_line(src, out, precision, **kw):
    """Build one engine; the trtexec line that repeats it (paths relative to the engine directory)."""
    return trtexec_command(get_target("tensorrt").build_engine(src, out, precision, **kw), out)


def _args(line):
    return dict(a.split("=", 1) for a in line.split() if "=" in a)


def test_fixed_batch_input_gets_static_profile_or_clear_error(fake_trt, fc_bundle, tmp_path):
    """#1: a graph exported with a fixed batch: inside the range -> static profile (warned), run pads
    and chunks; outside -> ConfigError (not a misleading build failure); profile index -1 -> ConfigError."""
    fake = fake_trt("10.3.0")
    src = fc_bundle / "onnx" / "depth_004.onnx"
    fixed = _fixed_batch_graph(src, tmp_path / "fixed4.onnx", 4)
    with pytest.warns(RuntimeWarning, match="fixed batch dimension 4.*static profile 4/4/4"):
        record = get_target("tensorrt").build_engine(fixed, tmp_path / "out", "fp32")
    plan, meta = record.files
    # docs/targets.md, "trtexec": trtexec refuses explicit shapes for a graph whose inputs are all static
    assert trtexec_problems(trtexec_command(record, tmp_path / "out"), "10.3.0", tmp_path / "out") == []
    assert fake.calls[-1]["profiles"][0]["x"] == ((4, 1, 8, 8),) * 3
    assert json.loads(meta.read_text())["profile"]["x"]["max"] == [4, 1, 8, 8]
    model = get_target("tensorrt").load(plan, "fp32")
    x = load_dataset("digits", seed=0, val_fraction=0.2).x_val[:10]
    ref = get_target("onnxruntime").load(src, "fp32").run({"x": x})[0]
    np.testing.assert_allclose(model.run({"x": x[:3]})[0], ref[:3], atol=1e-5)  # padded to 4
    np.testing.assert_allclose(model.run({"x": x})[0], ref, atol=1e-5)  # 4 + 4 + 2 (padded)
    with pytest.raises(ConfigError, match="'x' has a fixed batch dimension 64.*1..32; re-export with a dynamic batch"):
        _trt_build(_fixed_batch_graph(src, tmp_path / "fixed64.onnx", 64), tmp_path / "out", "fp32")
    fake.reject_profiles = True
    with pytest.raises(ConfigError, match=r"rejected the optimization profile.*x min \[1, 1, 8, 8\] opt \[8, 1, 8, 8\] "
                                          r"max \[32, 1, 8, 8\]"):
        _trt_build(src, tmp_path / "out", "fp32")


def test_trtexec_line_follows_the_build(fake_trt, fc_int8_bundle, tmp_path):
    """#5: trtexec flags come from what build() did (strongly_typed=False, fp16_fallback=False),
    #4: --noTF32 only where TF32 was cleared, #13: the timing cache path is relative like the others."""
    fake = fake_trt("10.3.0")
    q = fc_int8_bundle / "onnx" / "depth_004.int8.onnx"
    out = tmp_path / "bundle" / "tensorrt" / "eng"
    cache = tmp_path / "bundle" / "caches" / "tc.cache"
    lines = [_trtexec_line(q, out, "int8", strongly_typed=False, fp16_fallback=False, timing_cache=str(cache))]
    assert fake.calls[-1]["flags"] == ["INT8"] and not fake.calls[-1]["network_flags"] & 2
    args = _args(lines[-1])
    assert "--int8" in lines[-1] and "--fp16" not in lines[-1] and "--stronglyTyped" not in lines[-1]
    assert args["--timingCacheFile"] == "../../caches/tc.cache" and (out / args["--timingCacheFile"]).resolve() == cache
    lines.append(_trtexec_line(q, out, "int8", timing_cache=str(cache)))  # default on TRT 10: strongly typed, no flags
    assert "--stronglyTyped" in lines[-1] and "--int8" not in lines[-1] and "--fp16" not in lines[-1]
    src = fc_int8_bundle / "onnx" / "depth_004.onnx"
    lines.append(_trtexec_line(src, out, "fp32", tf32=True, timing_cache=str(cache)))
    assert fake.calls[-1]["tf32"] and "--noTF32" not in lines[-1]
    lines.append(_trtexec_line(src, out, "fp32", timing_cache=str(cache)))
    assert not fake.calls[-1]["tf32"] and "--noTF32" in lines[-1]
    # input names trtexec would split on are quoted the trtexec way ('in:0':1x2)
    shapes = {"in:0": {"min": [1, 2], "opt": [2, 2], "max": [4, 2]}, "s": {"min": [1, 3], "opt": [2, 3], "max": [4, 3]}}
    assert shape_options(shapes)[0] == "--minShapes='in:0':1x2,s:1x3"
    assert shape_options(shapes)[2] == "--maxShapes='in:0':4x2,s:4x3"


def test_trt11_fp16_graph_is_a_companion_and_no_temp_is_left(fake_trt, fc_bundle, tmp_path):
    """#3/#11: TRT 11 fp16 keeps {stem}.fp16.onnx next to the engine and points trtexec at it; a failed
    build leaves no temp graph behind."""
    import onnx

    fake_trt("11.4.0")
    out = tmp_path / "out"
    record = get_target("tensorrt").build_engine(fc_bundle / "onnx" / "depth_004.onnx", out, "fp16")
    files, lines = record.files, [trtexec_command(record, out)]
    assert [f.name for f in files] == ["depth_004.fp16.plan", "depth_004.fp16.json", "depth_004.fp16.onnx"]
    assert _args(lines[-1])["--onnx"] == "depth_004.fp16.onnx" and "--fp16" not in lines[-1]
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in onnx.load(str(files[2])).graph.initializer)
    meta = json.loads(files[1].read_text())
    assert meta["fp16_graph"]["file"] == "depth_004.fp16.onnx" and meta["fp16_graph"]["sha256"]
    assert sorted(p.name for p in out.iterdir() if p.suffix == ".onnx") == ["depth_004.fp16.onnx"]
    fake_trt("11.4.0", fail_build=True)
    out2 = tmp_path / "out2"
    with pytest.raises(ArtifactError, match="failed to build"):
        _trt_build(fc_bundle / "onnx" / "depth_008.onnx", out2, "fp16")
    assert not [p.name for p in out2.iterdir() if p.suffix == ".onnx"]


def test_corrupt_or_foreign_timing_cache_starts_fresh(fake_trt, fc_bundle, tmp_path):
    """#6: create_timing_cache -> None or an exception (corrupt: wrapped as Polygraphy does) or
    set_timing_cache -> False (other GPU): warn and start fresh."""
    fake = fake_trt("10.3.0")
    src = fc_bundle / "onnx" / "depth_004.onnx"
    cache = tmp_path / "tc.cache"
    for damaged in (b"\x00garbage", b"FAKETC|10.3"):
        cache.write_bytes(damaged)
        with pytest.warns(RuntimeWarning, match="tc.cache is unreadable.*fresh"):
            _trt_build(src, tmp_path / "out", "fp32", timing_cache=str(cache))
        assert fake.calls[-1]["cache_in"] == b"" and cache.read_bytes().startswith(b"FAKETC|10.3.0|sm87|")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a good cache: no warning, tactics reused
        _trt_build(src, tmp_path / "out", "fp16", timing_cache=str(cache))
    assert fake.calls[-1]["cache_in"] == b"+tactics"
    fake.device_tag = "sm89"  # the cache was made on another GPU
    with pytest.warns(RuntimeWarning, match="made by another TensorRT version or GPU"):
        _trt_build(src, tmp_path / "out", "fp32", timing_cache=str(cache))
    assert fake.calls[-1]["cache_in"] == b"" and b"|sm89|" in cache.read_bytes()


def test_optimization_level_is_recorded_only_where_applied(fake_trt, fc_bundle, tmp_path):
    """docs/targets.md, "Version rules the build follows": TensorRT 8.5 has no
    builder_optimization_level: neither the metadata nor the
    trtexec line claims one; from 8.6 on both carry the level that was set."""
    src = fc_bundle / "onnx" / "depth_004.onnx"
    for version, level in (("8.5.2", None), ("10.3.0", 5)):
        fake_trt(version)
        record = get_target("tensorrt").build_engine(src, tmp_path / version, "fp32", optimization_level=5)
        meta = json.loads(record.sidecar.read_text())
        assert meta.get("optimization_level") == level and record.optimization_level == level
        assert ("--builderOptimizationLevel=5" in trtexec_command(record)) == (level is not None)


def test_describe_reports_strong_typing_as_a_network_flag(fake_trt):
    """#7: STRONGLY_TYPED lives in NetworkDefinitionCreationFlag (10.x opt-in, always on in 11)."""
    t = get_target("tensorrt")
    expected = {"8.5.2": ("unsupported", ["EXPLICIT_BATCH"]), "10.3.0": ("opt-in", ["EXPLICIT_BATCH", "STRONGLY_TYPED"]),
                "11.4.0": ("always", ["STRONGLY_TYPED"])}
    for version, (typing, net_flags) in expected.items():
        fake_trt(version)
        info = t.describe()
        assert info["strongly_typed"] == typing and info["network_flags"] == net_flags
        assert "STRONGLY_TYPED" not in info["builder_flags"]
        assert ("FP16" in info["builder_flags"]) == (version != "11.4.0")


def test_close_frees_buffers_and_streams(fake_trt, fc_bundle, tmp_path):
    """#8: close() frees every idle slot's and the raw slot's buffers and destroys their streams; a
    slot the pool drops (idle list full) is closed at once."""
    fake = fake_trt("10.3.0")
    plan, _ = _trt_build(fc_bundle / "onnx" / "depth_004.onnx", tmp_path / "out", "fp32")
    model = get_target("tensorrt").load(plan, "fp32")
    x = np.zeros((5, 1, 8, 8), np.float32)
    model.run({"x": x})
    model.raw_callable()({"x": x})
    assert fake.cudart.memory and fake.cudart.streams
    model.close()
    assert not fake.cudart.memory and not fake.cudart.streams
    model.close()  # idempotent
    pool = RequestPool(lambda: Slot(model.engine, model.cuda), max_idle=1, dispose=Slot.close)
    slots = [pool.acquire() for _ in range(3)]
    for s in slots:
        model._execute(s, {"x": x})
    for s in slots:
        pool.release(s)
    assert pool.idle == 1 and [s.closed for s in slots] == [False, True, True]
    assert len(fake.cudart.streams) == 1
    pool.clear()
    assert not fake.cudart.memory and not fake.cudart.streams


def test_dla_static_batch_pads_small_batches(fake_trt, fc_bundle):
    """#9: a DLA engine (min = opt = max = 4) runs batches of 3 and 10 (padded); the raw call names
    the real range instead of asking for a larger --max-batch."""
    fake_trt("10.3.0", dla_cores=1)
    compile_bundle(fc_bundle, "tensorrt", ["fp16"], device="DLA", depths=[4], segments=False, progress=False,
                   static_batch=4, verify=False)
    model = load_artifact(fc_bundle, BundleManifest.load(fc_bundle).depth(4).artifact("tensorrt", "fp16"), "tensorrt",
                          device="DLA")
    x = load_dataset("digits", seed=0, val_fraction=0.2).x_val[:10]
    ref = get_target("onnxruntime").load(fc_bundle / "onnx" / "depth_004.onnx", "fp32").run({"x": x})[0]
    np.testing.assert_allclose(model.run({"x": x[:3]})[0], ref[:3], atol=1e-5)
    np.testing.assert_allclose(model.run({"x": x})[0], ref, atol=1e-5)
    assert model.run({"x": x[:0]})[0].shape == (0, 10)
    with pytest.raises(ConfigError, match=r"\(3, 1, 8, 8\) is outside .*\[\(4, 1, 8, 8\) \.\. \(4, 1, 8, 8\)\]; this engine "
                                          "has a static batch of 4") as err:
        model.raw_callable()({"x": x[:3]})
    assert "--max-batch" not in str(err.value)


def test_gpu_index_is_used_for_build_load_and_run(fake_trt, fc_bundle):
    """#10: GPU:1 is current when trt.Builder / trt.Runtime are made, and names, metadata and the
    load check use GPU 1."""
    fake = fake_trt("10.3.0", gpus=(ORIN, RTX4090))
    compile_bundle(fc_bundle, "tensorrt", ["fp32"], device="GPU:1", depths=[4], segments=False, progress=False,
                   verify=False)
    assert ("Builder", 1) in fake.devices and ("Builder", 0) not in fake.devices
    m = BundleManifest.load(fc_bundle)
    art = m.depth(4).artifact("tensorrt", "fp32")
    assert m.targets["tensorrt"]["subdir"] == "tensorrt/nvidia-rtx-4090_sm89_trt10.3.0"
    assert art.extra["compute_capability"] == "8.9" and art.extra["gpu_index"] == 1
    assert art.extra["timing_cache"]["file"] == "timing_nvidia-rtx-4090_sm89_trt10.3.0.cache"
    assert m.targets["tensorrt"]["gpu"] == "NVIDIA RTX 4090"
    model = load_artifact(fc_bundle, art, "tensorrt", device="GPU:1")
    assert fake.devices[-2:] == [("Runtime", 1), ("Engine", 1)]
    with pytest.raises(ArtifactError, match="compute capability 8.9 \\(this GPU, NVIDIA Jetson AGX Orin, is 8.7\\)"):
        load_artifact(fc_bundle, art, "tensorrt", device="GPU:0")
    model.close()


def test_gpu_n_engine_runs_from_a_new_thread(fake_trt, fc_bundle):
    """docs/targets.md, "GPU:N and CUDA": a new thread's current device is GPU 0, so an execution context and stream
    made there before set_device land on GPU 0 and the GPU 1 engine fails; they must be made
    after the thread selects GPU 1."""
    fake = fake_trt("10.3.0", gpus=(ORIN, RTX4090))
    compile_bundle(fc_bundle, "tensorrt", ["fp32"], device="GPU:1", depths=[4], segments=False, progress=False,
                   verify=False)
    model = load_artifact(fc_bundle, BundleManifest.load(fc_bundle).depth(4).artifact("tensorrt", "fp32"), "tensorrt",
                          device="GPU:1")
    x = load_dataset("digits", seed=0, val_fraction=0.2).x_val[:5]
    results, failures = {}, []

    def work(name):
        try:
            results[name] = model.run({"x": x})[0]
        except Exception as exc:  # reported below
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(f"worker{i}",)) for i in range(3)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not failures and not fake.errors, (failures, fake.errors)
    assert {d for kind, d in fake.devices if kind == "ExecutionContext"} == {1}
    assert {d for call, d in fake.cudart.calls} == {1}
    ref = get_target("onnxruntime").load(fc_bundle / "onnx" / "depth_004.onnx", "fp32").run({"x": x})[0]
    for y in results.values():
        np.testing.assert_allclose(y, ref, atol=1e-5)
    model.close()


def test_parser_error_hints_match_precision_and_version(fake_trt, fc_bundle, tmp_path):
    """#12: the quantize hint only for int8, the opset <= 17 hint only on TRT 8.x."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from glonet_edge.quantize.calibration import load_calibration
    from glonet_edge.quantize.recipes import FeedReader

    bad = tmp_path / "u8.onnx"
    cal = load_calibration(BundleManifest.load(fc_bundle), 32)
    quantize_static(str(fc_bundle / "onnx" / "depth_001.onnx"), str(bad), FeedReader([{"x": b} for b in cal.batches()]),
                    quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax)
    for version, precision, quant_hint, opset_hint in (("8.5.2", "fp32", False, True), ("10.3.0", "fp32", False, False),
                                                       ("10.3.0", "int8", True, False), ("8.5.2", "int8", True, True)):
        fake_trt(version)
        with pytest.raises(ArtifactError, match="cannot parse u8.onnx") as err:
            _trt_build(bad, tmp_path / "out", precision)
        assert ("glonet quantize" in str(err.value)) == quant_hint, (version, precision)
        assert ("opset <= 17" in str(err.value)) == opset_hint, (version, precision)


def test_jetpack_mapping_uses_major_minor(tmp_path):
    """#14: L4T R35.1 is JetPack 5.0.2 (not 5.1.x); exact, then major.minor, then the major line."""
    f = tmp_path / "nv_tegra_release"
    for rel, rev, jp in (("35", "1.0", "5.0.2"), ("35", "2.1", "5.1"), ("35", "6.0", "5.1.4"), ("36", "4.3", "6.2"),
                         ("36", "3.0", "6.0"), ("35", "1.7", "5.0.2"), ("36", "9.0", "6.x"), ("99", "1.0", "unknown")):
        f.write_text(f"# R{rel} (release), REVISION: {rev}, GCID: 1, BOARD: t186ref, EABI: aarch64\n")
        assert device.jetson_info(f)["jetpack"] == jp, (rel, rev)


def test_fp16_fallback_converter_constants_clipping_and_subgraphs(tmp_path, monkeypatch):
    """#15: Constant value_float / value_floats become fp16, values beyond 65504 are clipped (not inf),
    If/Loop subgraphs are refused with a pointer to ModelOpt."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    monkeypatch.setitem(sys.modules, "modelopt.onnx.autocast", None)  # force the built-in converter
    big = numpy_helper.from_array(np.array([1e6, -2.0], np.float32), "big")
    g = helper.make_graph(
        [helper.make_node("Constant", [], ["c1"], value_float=2.0),
         helper.make_node("Constant", [], ["c2"], value_floats=[1.0, -1.0]),
         helper.make_node("Mul", ["x", "c1"], ["t1"]), helper.make_node("Add", ["t1", "c2"], ["t2"]),
         helper.make_node("Min", ["t2", "big"], ["y"])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 2])], [big])
    src = tmp_path / "c.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(src))
    dst = tmp_path / "c16.onnx"
    with pytest.warns(RuntimeWarning, match="1 constant value"):
        assert fp16.convert_fp16(src, dst) == "glonet-edge"
    m = onnx.load(str(dst))
    assert np.isfinite(numpy_helper.to_array(m.graph.initializer[0]).astype(np.float32)).all()
    consts = [n for n in m.graph.node if n.op_type == "Constant"]
    assert all(a.name == "value" and a.t.data_type == TensorProto.FLOAT16 for n in consts for a in n.attribute)
    x = np.array([[1.0, 2.0], [3.0, 1e5]], np.float32)
    y = get_target("onnxruntime").load(dst, "fp32").run({"x": x})[0]
    np.testing.assert_allclose(y, [[3.0, -2.0], [7.0, -2.0]])
    branch = helper.make_graph([helper.make_node("Identity", ["x"], ["o"])], "b", [],
                               [helper.make_tensor_value_info("o", TensorProto.FLOAT, ["n", 2])])
    g2 = helper.make_graph([helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0),
                            helper.make_node("Greater", ["s", "zero"], ["c"]),
                            helper.make_node("If", ["c"], ["y"], then_branch=branch, else_branch=branch)],
                           "g2", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 2])],
                           [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 2])],
                           [numpy_helper.from_array(np.array(0.0, np.float32), "zero")])
    onnx.save(helper.make_model(g2, opset_imports=[helper.make_opsetid("", 17)]), str(src))
    with pytest.raises(ConfigError, match="subgraphs \\(If\\).*ModelOpt"):
        fp16.convert_fp16(src, dst)


def test_dla_precision_risks_are_warned(fake_trt, fc_int8_bundle, tmp_path):
    """DLA + int8 on TRT < 10 warns (no explicit quantization on DLA); on TRT 10 DLA int8 is not
    strongly typed by default; strongly typed without fp16 outside Q/DQ warns."""
    q = fc_int8_bundle / "onnx" / "depth_004.int8.onnx"
    fake = fake_trt("8.5.2", dla_cores=1)
    with pytest.warns(RuntimeWarning, match="DLA does not support explicit quantization.*run on the GPU"):
        _trt_build(q, tmp_path / "a", "int8", device="DLA")
    fake = fake_trt("10.3.0", dla_cores=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _trt_build(q, tmp_path / "b", "int8", device="DLA")
        assert not fake.calls[-1]["network_flags"] & 2 and fake.calls[-1]["flags"] == ["FP16", "GPU_FALLBACK", "INT8"]
        _trt_build(q, tmp_path / "c", "int8", device="DLA", strongly_typed=True)  # fp16 outside Q/DQ: DLA runs it
        assert fake.calls[-1]["network_flags"] & 2
    with pytest.warns(RuntimeWarning, match="strongly typed int8 network.*stay fp32.*fall back to the GPU"):
        _trt_build(q, tmp_path / "d", "int8", device="DLA", strongly_typed=True, fp16_fallback=False)


def test_trtexec_check_refuses_what_trtexec_refuses(tmp_path):
    """The test double's trtexec: per-release option tables and the rules trtexec applies."""
    import onnx
    from onnx import TensorProto, helper

    for name, batch in (("dyn.onnx", "n"), ("static.onnx", 4)):
        g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 3])])
        onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / name))
    shapes = "--minShapes=x:1x3 --optShapes=x:2x3 --maxShapes=x:4x3"

    def problems(args, version, graph="dyn.onnx"):
        return trtexec_problems(f"trtexec --onnx={graph} --saveEngine=a.plan {args}", version, tmp_path)

    assert problems(f"{shapes} --skipInference --noTF32", "10.3.0") == []
    assert problems(f"{shapes} --buildOnly --fp16 --int8", "8.5.2") == []
    assert problems("--skipInference", "8.5.2") == ["unknown option --skipInference (TensorRT 8.5.2: sampleOptions.cpp "
                                                    "at 8.5.2)"]
    assert problems("--buildOnly", "10.3.0")[0].startswith("unknown option --buildOnly")
    assert problems("--stronglyTyped --fp16", "11.4.0")[0].startswith("unknown option --fp16 (TensorRT 11.4.0: "
                                                                     "sampleOptions.cpp at v11.1)")
    assert problems("--builderOptimizationLevel=3", "8.5.2")[0].startswith("unknown option --builderOptimizationLevel")
    assert problems(shapes, "10.3.0", "static.onnx")[0].startswith("Static model does not take explicit shapes")
    assert problems("--minShapes=z:1x3", "10.3.0") == ["Cannot find input tensor with name 'z'"]
    assert problems("--stronglyTyped --int8", "10.3.0") == ["--int8 is not allowed if graph is strongly typed"]


def _float_types(model):
    """{tensor: elem type} of a model, by strict ONNX type inference."""
    import onnx

    g = onnx.shape_inference.infer_shapes(model, strict_mode=True).graph
    elem = {v.name: v.type.tensor_type.elem_type for v in [*g.value_info, *g.input, *g.output]}
    elem.update({t.name: t.data_type for t in g.initializer})
    return elem


def float32_producers(model):
    """The op types of the nodes that produce float32 values, other than the Casts back to float32
    at the graph's outputs: [] when everything between the float32 inputs and outputs is fp16."""
    import onnx

    elem, outputs = _float_types(model), {o.name for o in model.graph.output}
    return [n.op_type for n in model.graph.node
            if not (n.op_type == "Cast" and set(n.output) & outputs)
            and onnx.TensorProto.FLOAT in {elem.get(t) for t in n.output}]


@pytest.mark.parametrize("family", ["fc", "cnn"])
def test_int8_strongly_typed_graph_runs_fp16_outside_qdq(family, fake_trt, fc_int8_bundle, cnn_int8_bundle, tmp_path):
    """docs/targets.md, "fp16 graphs": on strongly typed builds (TRT 10, 11) the int8 graph TensorRT parses has
    every layer outside the quantized integer math in fp16 (Q/DQ read and write fp16, as ModelOpt
    emits with high_precision_dtype fp16), float32 inputs and outputs, the same Q/DQ placement,
    and the same answers; TRT 8.5 (weakly typed, FP16 flag) and fp16_fallback=False keep the source."""
    import onnx

    bundle = fc_int8_bundle if family == "fc" else cnn_int8_bundle
    depth = BundleManifest.load(bundle).depth_values()[-1]
    src = bundle / "onnx" / f"depth_{depth:03d}.int8.onnx"
    x = load_dataset("digits", seed=0, val_fraction=0.2).x_val
    ref = get_target("onnxruntime").load(src, "int8").run({"x": x})[0]
    source = onnx.load(str(src))
    for version in ("10.3.0", "11.4.0"):
        fake_trt(version)
        out = tmp_path / version
        record = get_target("tensorrt").build_engine(src, out, "int8")
        assert record.strongly_typed and record.fp16_graph == out / f"depth_{depth:03d}.int8.fp16.onnx"
        mixed = onnx.load(str(record.fp16_graph))
        onnx.checker.check_model(mixed, full_check=True)
        assert float32_producers(mixed) == [], (version, float32_producers(mixed))
        assert [i.type.tensor_type.elem_type for i in [*mixed.graph.input, *mixed.graph.output]] == [1, 1]
        # the same layers and Q/DQ pairs (opset 19 moves ReduceMean's axes into a Constant input)
        assert [n.op_type for n in mixed.graph.node if n.op_type not in ("Cast", "Constant")] == \
            [n.op_type for n in source.graph.node if n.op_type != "Constant"]
        assert trtexec_problems(trtexec_command(record, out), version, out) == []
        assert "--stronglyTyped" in trtexec_command(record, out)
        y = get_target("tensorrt").load(record.plan, "int8").run({"x": x})[0]
        assert np.mean(np.argmax(y, 1) == np.argmax(ref, 1)) >= 0.99
    fake_trt("10.3.0")
    assert get_target("tensorrt").build_engine(src, tmp_path / "no", "int8", fp16_fallback=False).fp16_graph is None
    fake_trt("8.5.2")
    record = get_target("tensorrt").build_engine(src, tmp_path / "old", "int8")
    assert record.fp16_graph is None and record.builder_flags == ["INT8", "FP16"]


def test_fp16_converter_keeps_float32_only_inputs_from_the_schemas(tmp_path, monkeypatch):
    """docs/targets.md, "fp16 graphs": what must stay float32 comes from onnx.defs: Resize `scales`, Range's
    inputs, QuantizeLinear's x / y_scale before opset 19; constants feeding them stay float32,
    values computed from them are cast to fp16 where the next op needs it."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    only17, only19 = fp16.float32_only_inputs(17), fp16.float32_only_inputs(19)
    assert only17["Resize"] == ["scales"] and only17["Range"] == ["start", "limit", "delta"]
    assert only17["QuantizeLinear"] == ["x", "y_scale"] and "QuantizeLinear" not in only19
    assert "Add" not in only17 and "Conv" not in only17
    monkeypatch.setitem(sys.modules, "modelopt.onnx.autocast", None)  # the built-in converter
    g = helper.make_graph(
        [helper.make_node("Resize", ["x", "", "scales"], ["r"], mode="nearest"),
         helper.make_node("Mul", ["r", "two"], ["y1"]),
         helper.make_node("Constant", [], ["start"], value_float=0.0),
         helper.make_node("Constant", [], ["limit"], value_float=8.0),
         helper.make_node("Constant", [], ["delta"], value_float=1.0),
         helper.make_node("Range", ["start", "limit", "delta"], ["seq"]),
         helper.make_node("Add", ["y1", "seq"], ["y"])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 1, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 1, 8, 8])],
        [numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"),
         numpy_helper.from_array(np.array(2.0, np.float32), "two")])
    src, dst = tmp_path / "resize.onnx", tmp_path / "resize16.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(src))
    assert fp16.convert_fp16(src, dst) == "glonet-edge"
    m = onnx.load(str(dst))
    onnx.checker.check_model(m, full_check=True)  # an fp16 `scales` would fail here
    elem = _float_types(m)
    assert elem["scales"] == elem["start"] == elem["seq"] == TensorProto.FLOAT
    assert elem["two"] == elem["r"] == elem["y1"] == TensorProto.FLOAT16
    assert float32_producers(m) == ["Constant"] * 3 + ["Range"]  # Range's inputs and output, cast to fp16 after
    x = np.random.default_rng(0).normal(size=(2, 1, 4, 4)).astype(np.float32)
    want = get_target("onnxruntime").load(src, "fp32").run({"x": x})[0]
    np.testing.assert_allclose(get_target("onnxruntime").load(dst, "fp32").run({"x": x})[0], want, atol=1e-2)


def test_fake_tensorrt_refuses_precision_flags_on_a_strongly_typed_network(fake_trt):
    """The double checks what TensorRT checks: a strongly typed network takes no FP16 / INT8 flag."""
    trt = fake_trt("10.3.0")
    builder = trt.Builder(None)
    network = builder.create_network(1 << trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    config = builder.create_builder_config()
    config.set_timing_cache(config.create_timing_cache(b""), False)
    config.set_flag(trt.BuilderFlag.FP16)
    assert builder.build_serialized_network(network, config) is None
    assert trt.errors == ["precision flags set on a strongly typed network (precision comes from the graph)"]


def test_cuda_backend_is_cuda_python_first_torch_as_fallback(monkeypatch):
    """docs/targets.md, "GPU:N and CUDA": the order it states: cuda-python, then torch; named errors otherwise."""
    from glonet_edge.errors import MissingDependencyError

    cudart = make_fake_cudart((ORIN, RTX4090))
    monkeypatch.setattr(cuda, "cudart", lambda: cudart)
    monkeypatch.setattr(cuda, "_cuda_torch", lambda: object())  # a CUDA torch is there too
    backend = cuda.cuda_backend(1)
    assert isinstance(backend, cuda.CudaPython) and cudart.current_device() == 1
    with pytest.raises(ConfigError, match="CUDA device 5 cannot be selected"):
        cuda.set_current_device(5)
    with pytest.raises(ConfigError, match="unknown CUDA backend 'cupy'"):
        cuda.cuda_backend(0, "cupy")

    def no_cuda_python():
        raise ImportError("No module named 'cuda'")

    monkeypatch.setattr(cuda, "cudart", no_cuda_python)
    monkeypatch.setattr(cuda, "_cuda_torch", lambda: None)
    with pytest.raises(MissingDependencyError, match=r"needs cuda-python.*pip install glonet-edge\[tensorrt\]"):
        cuda.cuda_backend(0)
    with pytest.raises(MissingDependencyError, match="cuda=cuda-python"):
        cuda.cuda_backend(0, "cuda-python")
    selected = []
    torch = types.SimpleNamespace(device=lambda kind, index: (kind, index),
                                  cuda=types.SimpleNamespace(set_device=selected.append))
    monkeypatch.setattr(cuda, "_cuda_torch", lambda: torch)
    assert isinstance(cuda.cuda_backend(1), cuda.TorchCuda)
    cuda.set_current_device(1)
    assert selected == [1]


def test_real_tensorrt_command_on_the_fake(fake_trt, fc_int8_bundle, capsys):
    """The GPU command's own logic (compile, check, profile, print) on the fake TensorRT 10.3."""
    from real_tensorrt import main

    fake_trt("10.3.0")
    assert main(["--bundle", str(fc_int8_bundle), "--iterations", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("TensorRT 10.3.0, GPU:0: per-depth latency")
    rows = [ln.split() for ln in lines[2:]]
    depths = BundleManifest.load(fc_int8_bundle).depth_values()
    assert sorted((int(r[0]), r[1]) for r in rows) == sorted((d, p) for d in depths for p in ("fp32", "fp16", "int8"))
    assert all(float(r[2]) <= 1e-4 for r in rows if r[1] == "fp32") and all(float(r[4]) > 0 for r in rows)


# ---- real TensorRT (GPU machines only) --------------------------------------------------------
def test_real_tensorrt_build_and_run(fc_int8_bundle):
    """The real library: every precision builds, runs and agrees with onnxruntime; every depth is
    timed (`python tests/targets/real_tensorrt.py` prints the same table)."""
    pytest.importorskip("tensorrt", reason="TensorRT is not installed (needs an NVIDIA GPU + `pip install "
                                           "glonet-edge[tensorrt]`); the fake TensorRT tests above run instead")
    try:
        device.gpu_info(0)
    except Exception as exc:  # pragma: no cover - tensorrt without a usable GPU
        pytest.skip(f"tensorrt is importable but no CUDA GPU is usable: {exc}")
    from real_tensorrt import build_and_time

    rows = build_and_time(fc_int8_bundle, iterations=20, warmup=5)
    depths = BundleManifest.load(fc_int8_bundle).depth_values()
    assert sorted({(r["depth"], r["precision"]) for r in rows}) == sorted(
        (d, p) for d in depths for p in ("fp32", "fp16", "int8"))
    for r in rows:
        assert r["p50_ms_b1"] > 0 and r["p50_ms_b8"] > 0
        if r["precision"] == "fp32":
            assert r["max_abs_err"] <= 1e-3, r
        else:
            assert r["top1_agreement"] >= 0.98, r
    assert json.loads((fc_int8_bundle / "compile_tensorrt.json").read_text())["trtexec"]


def test_int8_weights_are_unfolded_for_trt_before_10_only(fake_trt, fc_int8_bundle, tmp_path):
    """Issue 17.3: the shipped int8 graph stores INT8 weight initializers -> DQ, which TensorRT 8.5
    cannot parse (the fake parser lints at its version): the build parses, keeps and records
    <stem>.int8.unfolded.onnx (float weights -> Q -> DQ) on 8.5, the source itself on 10.3."""
    import onnx

    src = fc_int8_bundle / "onnx" / "depth_004.int8.onnx"
    fake_trt("8.5.2")
    out = tmp_path / "old"
    record = get_target("tensorrt").build_engine(src, out, "int8")
    assert record.unfolded_graph == record.graph == out / "depth_004.int8.unfolded.onnx" and record.graph.is_file()
    assert record.unfolded_graph in record.files and not list(out.glob(".*.onnx"))
    unfolded = onnx.load(str(record.graph))
    inits = {t.name for t in unfolded.graph.initializer}
    assert [n for n in unfolded.graph.node if n.op_type == "QuantizeLinear" and n.input[0] in inits]
    assert f"--onnx={record.graph.name}" in trtexec_command(record, out)
    meta = json.loads(record.sidecar.read_text())
    assert meta["unfolded_graph"]["file"] == record.graph.name and meta["unfold"] == "unfold_weight_quantizers"
    for version in ("10.3.0", "11.4.0"):
        fake_trt(version)
        record = get_target("tensorrt").build_engine(src, tmp_path / version, "int8", fp16_fallback=False)
        assert record.unfolded_graph is None and record.graph == src
        assert not list((tmp_path / version).glob("*.unfolded.onnx"))
