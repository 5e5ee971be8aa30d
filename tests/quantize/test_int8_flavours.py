"""INT8 flavours: the TensorRT graph stays as it was, ONNX Runtime gets its own (u8 activations,
QLinear ops) under the same accuracy control, compile picks/builds it, and int8 that profiled
slower than fp32 is never served silently (runtime, inspect, doctor)."""

from __future__ import annotations

import dataclasses
import logging
import platform

import pytest

from glonet_edge.errors import ConfigError
from glonet_edge.manifest import BundleManifest
from glonet_edge.quantize import QuantizeSettings
from glonet_edge.quantize.flavours import (FLAVOURS, ORT_FORMAT, ORT_REJECTED, ORT_X86, TENSORRT_FLAVOUR,
                                           ort_flavour_for, quantize_flavour_depth)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _graph(bundle, art):
    import onnx

    return onnx.load(str(art.resolve(bundle)))


def _zero_point_types(model) -> set[int]:
    """onnx TensorProto data types of the zero points of every QuantizeLinear / QLinear op."""
    inits = {t.name: t for t in model.graph.initializer}
    zps = [n.input[2] for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")
           and len(n.input) > 2]
    zps += [n.input[i] for n in model.graph.node if n.op_type == "QLinearConv" for i in (2, 5, 7)]
    return {inits[z].data_type for z in zps if z in inits}


def _shipped(bundle):
    m = BundleManifest.load(bundle)
    return m, [e for e in m.depths if "int8" not in e.rejected]


def test_ort_flavour_graph_is_qlinear_u8_and_trt_graph_is_unchanged(cnn_int8_bundle):
    import onnx

    m, entries = _shipped(cnn_int8_bundle)
    assert entries and any(e.artifact(ORT_FORMAT, "int8") is not None for e in entries)
    for e in entries:
        ort_art, trt_art = e.artifact(ORT_FORMAT, "int8"), e.artifact("onnx", "int8")
        assert trt_art.extra["flavour"] == TENSORRT_FLAVOUR
        trt = _graph(cnn_int8_bundle, trt_art)
        assert not any(n.op_type.startswith("QLinear") for n in trt.graph.node)
        assert _zero_point_types(trt) == {onnx.TensorProto.INT8}  # signed symmetric, as TensorRT needs
        if ORT_REJECTED in e.rejected:
            continue
        assert ort_art.extra["flavour"] == ort_flavour_for(platform.machine()).name
        ort = _graph(cnn_int8_bundle, ort_art)
        ops = {n.op_type for n in ort.graph.node}
        if ort_art.extra["format"] == "QOperator":
            assert "QLinearConv" in ops
        assert onnx.TensorProto.UINT8 in _zero_point_types(ort)  # u8 activations


def test_manifest_records_the_flavour_and_its_accuracy_control(cnn_int8_bundle):
    m, entries = _shipped(cnn_int8_bundle)
    for e in entries:
        art = e.artifact(ORT_FORMAT, "int8")
        if art is None:
            assert ORT_REJECTED in e.rejected
            continue
        x = art.extra
        assert x["engine"] == "onnxruntime" and x["activations"] == "QUInt8" and x["weights"] == "QInt8"
        assert set(x["accuracy_checks"]) == {"onnxruntime"}
        assert x["max_drop"] == 0.005 and x["min_agreement"] == 0.99
        check = x["accuracy_checks"]["onnxruntime"]
        assert check["agreement"] >= 0.99
        assert e.metrics["fp32"][m.metric_name] - check["score"] <= 0.005 + 1e-9


def test_accuracy_control_rejects_a_bad_flavour(cnn_int8_bundle):
    """Calibrated on inputs shrunk 1e4 times, every activation range is tiny and the graph
    saturates: with no float fallback allowed the flavour must be rejected, never shipped."""
    from glonet_edge.quantize.calibration import load_calibration

    m = BundleManifest.load(cnn_int8_bundle)
    entry = m.depth(max(m.depth_values()))
    data = load_calibration(m, 256)
    data = dataclasses.replace(data, x_calib=data.x_calib * 1e-4)
    settings = QuantizeSettings(max_float_fraction=0.0, range_search=False, calibration_method="minmax")
    src = entry.artifact("onnx", "fp32").resolve(cnn_int8_bundle)
    row = quantize_flavour_depth(cnn_int8_bundle, entry, src, ORT_X86, data, settings)
    assert row["status"] == "rejected"
    assert entry.artifact(ORT_FORMAT, "int8") is None
    assert "onnxruntime" in entry.rejected[ORT_REJECTED] and "int8" not in entry.rejected
    assert not list(cnn_int8_bundle.glob(f"onnx/depth_{entry.depth:03d}.int8.{ORT_X86.name}*"))


def test_compile_builds_the_ort_flavour_when_missing_and_serves_it(cnn_bundle):
    from glonet_edge.quantize import quantize_bundle
    from glonet_edge.runtime import Runtime
    from glonet_edge.targets.compile import compile_bundle

    quantize_bundle(cnn_bundle, QuantizeSettings(calib_size=512, ort_flavour="none", engines="onnxruntime"),
                    depths=[6], progress=False)
    assert BundleManifest.load(cnn_bundle).depth(6).artifact(ORT_FORMAT, "int8") is None
    result = compile_bundle(cnn_bundle, "onnxruntime", ["int8"], depths=[6], segments=False, progress=False)
    made = result["made_int8_flavours"]
    assert [r["depth"] for r in made] == [6]
    art = BundleManifest.load(cnn_bundle).depth(6).artifact(ORT_FORMAT, "int8")
    if made[0]["status"] == "ok":
        assert result["rows"][0]["path"] == art.path and art.extra["flavour"] == ORT_X86.name
        with Runtime.open(cnn_bundle, precision="int8", power="none", anytime=False) as rt:
            assert rt.depths == [6]
            assert rt.resources()["artifact_bytes"] == art.bytes  # the flavour graph is what is loaded
    # compiling again picks what is there: nothing is made twice
    again = compile_bundle(cnn_bundle, "onnxruntime", ["int8"], depths=[6], segments=False, progress=False)
    assert "made_int8_flavours" not in again


def _profile(bundle, int8_ms: float, fp32_ms: float, depths=None) -> None:
    m = BundleManifest.load(bundle)
    for e in m.depths:
        if depths is None or e.depth in depths:
            e.latency_ms["onnxruntime/int8"] = {"p50": int8_ms, "p90": int8_ms, "batch": 1}
            e.latency_ms["onnxruntime/fp32"] = {"p50": fp32_ms, "p90": fp32_ms, "batch": 1}
    m.save(bundle)


@pytest.mark.parametrize("int8_ms, fp32_ms, expected", [(0.1, 0.2, "int8"), (0.3, 0.2, "fp32")])
def test_auto_precision_chooses_by_profile(cnn_int8_bundle, int8_ms, fp32_ms, expected):
    from glonet_edge.runtime import Runtime

    _profile(cnn_int8_bundle, int8_ms, fp32_ms)
    with Runtime.open(cnn_int8_bundle, precision="auto", power="none", anytime=False) as rt:
        assert rt.precision == expected
        assert "auto" in rt.precision_reason and expected in rt.precision_reason


def test_auto_precision_without_a_profile_serves_fp32(cnn_int8_bundle):
    from glonet_edge.runtime import Runtime

    with Runtime.open(cnn_int8_bundle, precision="auto", power="none", anytime=False) as rt:
        assert rt.precision == "fp32" and "not profiled" in rt.precision_reason


def test_auto_precision_skips_int8_rejected_everywhere(cnn_int8_bundle):
    from glonet_edge.runtime import Runtime

    _profile(cnn_int8_bundle, 0.1, 0.2)
    m = BundleManifest.load(cnn_int8_bundle)
    for e in m.depths:
        e.rejected["int8"] = "failed accuracy control (test)"
    m.save(cnn_int8_bundle)
    with Runtime.open(cnn_int8_bundle, precision="auto", power="none", anytime=False) as rt:
        assert rt.precision == "fp32" and "accuracy" in rt.precision_reason


def test_slower_int8_is_said_by_runtime_inspect_and_doctor(cnn_int8_bundle, tmp_path, caplog, capsys):
    from glonet_edge.cli import main
    from glonet_edge.doctor import examine
    from glonet_edge.runtime import Runtime

    _profile(cnn_int8_bundle, 0.1, 0.2)
    _profile(cnn_int8_bundle, 0.5, 0.2, depths=[2])  # depth 2: int8 2.5x slower
    with caplog.at_level(logging.WARNING, logger="glonet_edge.runtime"):
        with Runtime.open(cnn_int8_bundle, precision="int8", power="none", anytime=False) as rt:
            assert "depth 2, batch 1" in rt.precision_reason
    assert any("slower" in r.getMessage() and "depth 2" in r.getMessage() for r in caplog.records)
    assert main(["inspect", str(cnn_int8_bundle)]) == 0
    out = capsys.readouterr().out
    assert "WARNING: onnxruntime/int8 profiled slower than fp32 at depth 2, batch 1" in out
    assert "depth 4" not in out.split("WARNING", 1)[1]
    speed = [f for f in examine(root=str(tmp_path), bundle=str(cnn_int8_bundle))["findings"]
             if f["name"] == "onnxruntime int8 speed"]
    assert len(speed) == 1 and speed[0]["ok"] is False and "depth 2" in speed[0]["value"]
    assert "glonet quantize" in speed[0]["fix"]


def test_profile_sweep_file_counts_for_other_batches(cnn_int8_bundle):
    import json

    from glonet_edge.runtime.int8_speed import slower_int8

    _profile(cnn_int8_bundle, 0.1, 0.2)
    for precision, ms in (("int8", 9.0), ("fp32", 3.0)):
        rows = [{"depth": 4, "batch": 32, "p50": ms}]
        (cnn_int8_bundle / f"profile_onnxruntime_{precision}.json").write_text(json.dumps({"rows": rows}))
    slow = slower_int8(BundleManifest.load(cnn_int8_bundle), cnn_int8_bundle)
    assert [(s.depth, s.batch) for s in slow] == [(4, 32)]


def test_settings_and_bench_registry():
    from glonet_edge.bench import available_suites
    from glonet_edge.bench.int8_flavours import selected_flavours

    with pytest.raises(ConfigError, match="ort-flavour"):
        QuantizeSettings(ort_flavour="nope").validate()
    QuantizeSettings(ort_flavour="none").validate()
    assert "int8-flavours" in available_suites()
    assert [f.name for f in selected_flavours("ort-u8s8-qdq")] == ["ort-u8s8-qdq"]
    with pytest.raises(ConfigError, match="unknown flavour"):
        selected_flavours("ort-u9")
    assert ort_flavour_for("aarch64").measured is False and ort_flavour_for("x86_64") is ORT_X86
    assert all(f.weight == "QInt8" for f in FLAVOURS.values())
