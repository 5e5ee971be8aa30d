"""glonet quantize: TensorRT-safe QDQ int8 per depth, calibrated on training data, checked on held-out data."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from bundle_helpers import no_staging_left, tree_digest

from glonet_edge.errors import ConfigError
from glonet_edge.manifest import BundleManifest
from glonet_edge.quantize import QuantizeSettings, accuracy, calibration, qdq_lint, qdq_rewrite, quantize_bundle, recipes

MAX_DROP = 0.005  # 0.5 points


@pytest.mark.parametrize("family", ["fc", "cnn"])
def test_int8_within_half_a_point_of_fp32_from_depth_4(family, fc_int8_bundle_src, cnn_int8_bundle_src):
    bundle = fc_int8_bundle_src if family == "fc" else cnn_int8_bundle_src
    m = BundleManifest.load(bundle)
    m.verify(bundle)
    report = json.loads((bundle / "quantize.json").read_text())
    assert report["calibration_data"].startswith("training split")
    for e in m.depths:
        fp32, int8 = e.metrics["fp32"][m.metric_name], e.metrics["int8"][m.metric_name]
        if e.depth >= 4:
            assert "int8" not in e.rejected, e.rejected
            assert fp32 - int8 <= MAX_DROP + 1e-9, (family, e.depth, fp32, int8)
        if "int8" not in e.rejected:
            art = e.artifact("onnx", "int8")
            assert art is not None and art.path == f"onnx/depth_{e.depth:03d}.int8.onnx"
            assert art.extra["tensorrt_compatible"] is True and art.extra["lint"] == "ok"


@pytest.mark.parametrize("family", ["fc", "cnn"])
def test_int8_graphs_pass_tensorrt_lint(family, fc_int8_bundle_src, cnn_int8_bundle_src):
    bundle = fc_int8_bundle_src if family == "fc" else cnn_int8_bundle_src
    graphs = sorted((bundle / "onnx").glob("*.int8.onnx")) + sorted((bundle / "segments").glob("*.int8.onnx"))
    assert graphs
    m = BundleManifest.load(bundle)
    kept_float = {n for e in m.depths for a in e.artifacts if a.precision == "int8"
                  for n in a.extra.get("float_nodes", [])}  # left in float by the accuracy fallback
    for g in graphs:
        assert qdq_lint.errors(qdq_lint.lint_as_parsed(g, "8.5")) == [], g
        model = onnx.load(str(g))
        inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
        qdq = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
        assert qdq, "no Q/DQ nodes: the graph was not quantized"
        for n in qdq:  # signed, symmetric
            assert inits[n.input[2]].dtype == np.int8 and not np.any(inits[n.input[2]])
        # weights: float initializer -> Q -> DQ, per channel; bias stays float
        for n in model.graph.node:
            if n.op_type in ("Conv", "Gemm") and n.name not in kept_float:
                assert n.input[1].endswith("DequantizeLinear_Output"), (g.name, n.name)
                if len(n.input) > 2:
                    assert n.input[2] in inits and inits[n.input[2]].dtype == np.float32


def test_calibration_uses_training_split_only(fc_bundle):
    m = BundleManifest.load(fc_bundle)
    cal = calibration.load_calibration(m, 300)
    from glonet_edge.data import load_dataset

    d = load_dataset("digits", seed=0, val_fraction=0.2)
    train_rows = {r.tobytes() for r in d.x_train}
    assert len(cal.x_calib) == 300 and all(r.tobytes() in train_rows for r in cal.x_calib)
    assert cal.x_val.shape == d.x_val.shape and np.array_equal(cal.y_val, d.y_val)
    assert np.array_equal(calibration.load_calibration(m, 300).x_calib, cal.x_calib)  # deterministic


def _scales(path):
    model = onnx.load(str(path))
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    return {n.input[0]: inits[n.input[1]] for n in model.graph.node if n.op_type == "QuantizeLinear"}


@pytest.mark.parametrize("family", ["fc", "cnn"])
def test_shared_calibration_equals_per_graph_calibration(family, _bundle_cache, tmp_path):
    src = _bundle_cache(family)
    shared, single = tmp_path / "shared", tmp_path / "single"
    shutil.copytree(src, shared)
    shutil.copytree(src, single)
    r1 = quantize_bundle(shared, QuantizeSettings(calib_size=256, segments=True, max_drop=1.0), progress=False)
    r2 = quantize_bundle(single, QuantizeSettings(calib_size=256, segments=True, max_drop=1.0, share_calibration=False),
                         progress=False)
    assert r1["shared_calibration"] and r1["timing"]["calibration_passes"] == 1
    assert not r2["shared_calibration"] and r2["timing"]["calibration_passes"] == len(r2["depths"])
    # fewer distinct tensors than graph tensors: the family really shares them
    assert r1["timing"]["distinct_tensors"] < r1["timing"]["graph_tensors"]
    for g in sorted((shared / "onnx").glob("*.int8.onnx")):
        a, b = _scales(g), _scales(single / "onnx" / g.name)
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], err_msg=f"{g.name}:{k}")


def test_structural_keys_do_not_trust_tensor_names(cnn_bundle):
    """In the CNN, a depth-1 graph applies sum_proj to s_1 under the same tensor names the full
    graph uses for s_3: names collide, keys must not."""
    d1 = onnx.load(str(cnn_bundle / "onnx" / "depth_001.onnx"))
    d6 = onnx.load(str(cnn_bundle / "onnx" / "depth_006.onnx"))
    k1, k6 = calibration.structural_keys(d1, {"x": "x"}), calibration.structural_keys(d6, {"x": "x"})
    same_name = [n for n in k1 if n in k6 and not n.startswith(("net.", "onnx::")) and n != "x"]
    assert any(k1[n] != k6[n] for n in same_name), "expected a name collision with different values"
    # the stem is the same computation in both graphs
    stem = next(n.output[0] for n in d1.graph.node if n.op_type == "Conv")
    assert k1[stem] == k6[stem]


def test_rejected_depth_is_recorded_and_not_shipped(fc_bundle, monkeypatch):
    real = accuracy.engine_outputs

    def shuffled(*args, **kwargs):  # every engine answers for the wrong samples: the int8 score collapses
        return real(*args, **kwargs)[::-1]

    monkeypatch.setattr(accuracy, "engine_outputs", shuffled)
    result = quantize_bundle(fc_bundle, QuantizeSettings(calib_size=128), depths=[4, 8], progress=False)
    m = BundleManifest.load(fc_bundle)
    for d in (4, 8):
        e = m.depth(d)
        assert "below fp32" in e.rejected["int8"] and "--method nncf" in e.rejected["int8"]
        assert e.artifact("onnx", "int8") is None
        assert not (fc_bundle / "onnx" / f"depth_{d:03d}.int8.onnx").exists()
        assert e.metrics["int8"]["accuracy"] < e.metrics["fp32"]["accuracy"]
    assert set(result["rejected"]) == {"4", "8"}
    assert m.depth(1).artifact("onnx", "int8") is None  # not selected, untouched


def test_failed_quantize_leaves_bundle_intact(fc_int8_bundle, monkeypatch):
    before = tree_digest(fc_int8_bundle)
    calls = {"n": 0}
    real = recipes.ort_quantize

    def flaky(*a, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("disk full")
        return real(*a, **kw)

    monkeypatch.setattr(recipes, "ort_quantize", flaky)
    with pytest.raises(RuntimeError, match="disk full"):
        quantize_bundle(fc_int8_bundle, QuantizeSettings(calib_size=64), progress=False)
    assert tree_digest(fc_int8_bundle) == before
    assert no_staging_left(fc_int8_bundle)


def test_bad_arguments(fc_bundle):
    with pytest.raises(ConfigError, match="unknown quantization method"):
        quantize_bundle(fc_bundle, QuantizeSettings(method="tensorrt"), progress=False)
    with pytest.raises(ConfigError, match="depth 5 is not in this bundle"):
        quantize_bundle(fc_bundle, depths=[5], progress=False)
    with pytest.raises(ConfigError, match="max-drop"):
        quantize_bundle(fc_bundle, QuantizeSettings(max_drop=-1), progress=False)
    with pytest.raises(ConfigError, match="calibration method"):
        quantize_bundle(fc_bundle, QuantizeSettings(calibration_method="entropy"), progress=False)


def test_make_trt_safe_turns_uint8_into_symmetric_int8(cnn_bundle, tmp_path):
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    src = cnn_bundle / "onnx" / "depth_004.onnx"
    dst = tmp_path / "u8.onnx"
    cal = calibration.load_calibration(BundleManifest.load(cnn_bundle), 128)
    quantize_static(str(src), str(dst), recipes.FeedReader([{"x": b} for b in cal.batches()]), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
                    calibrate_method=CalibrationMethod.MinMax,
                    extra_options={"AddQDQPairToWeight": True, "QuantizeBias": False})
    assert any(i.rule in ("int8", "zero_point") for i in qdq_lint.errors(qdq_lint.lint(dst)))
    safe, changed = qdq_rewrite.make_trt_safe(onnx.load(str(dst)))
    assert changed > 0
    assert qdq_lint.errors(qdq_lint.lint(safe)) == []
    ref = accuracy.reference_outputs(src, {"x": cal.x_val})[0]
    y = accuracy.reference_outputs(safe, {"x": cal.x_val})[0]
    assert np.mean(np.argmax(y, 1) == np.argmax(ref, 1)) > 0.9


def test_nncf_accuracy_control_is_tensorrt_safe(cnn_bundle):
    pytest.importorskip("nncf")
    result = quantize_bundle(cnn_bundle, QuantizeSettings(method="nncf", calib_size=200), depths=[6], progress=False)
    row = result["depths"][0]
    m = BundleManifest.load(cnn_bundle)
    e = m.depth(6)
    if row["status"] == "rejected":
        assert "int8" in e.rejected
    else:
        assert row["drop"] <= MAX_DROP + 1e-9
        art = e.artifact("onnx", "int8")
        assert art.extra["method"] == "nncf"
        assert art.extra["tensorrt_compatible"] is True, art.extra  # UINT8 pairs converted
        assert qdq_lint.errors(qdq_lint.lint_as_parsed(art.resolve(cnn_bundle))) == []
