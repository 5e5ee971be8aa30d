"""ONNX-level TensorRT checks of QDQ graphs: pass on our int8 graphs, fail on each problem qdq_lint
checks for (docs/quantize.md, "TensorRT's parser, checked without TensorRT")."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from glonet_edge.errors import ConfigError
from glonet_edge.manifest import BundleManifest
from glonet_edge.quantize import qdq_lint
from glonet_edge.quantize.calibration import load_calibration
from glonet_edge.quantize.recipes import FeedReader


def _rules(model, version="8.5"):
    return {i.rule for i in qdq_lint.errors(qdq_lint.lint(model, version))}


@pytest.fixture
def int8_graph(fc_int8_bundle_src):
    """A shipped int8 graph as TensorRT 8.5 is given it: INT8 weights unfolded to float -> Q -> DQ
    (the TensorRT target does this below 10; docs/quantize.md)."""
    from glonet_edge.quantize.qdq_rewrite import unfold_weight_quantizers

    return unfold_weight_quantizers(onnx.load(str(fc_int8_bundle_src / "onnx" / "depth_008.int8.onnx")))


def test_tensorrt_recipe_graph_passes(int8_graph, fc_int8_bundle_src):
    assert _rules(int8_graph) == set()
    qdq_lint.check(int8_graph)  # no exception
    shipped = onnx.load(str(fc_int8_bundle_src / "onnx" / "depth_008.int8.onnx"))
    assert _rules(shipped, "10.3") == set()  # TensorRT >= 10 parses the INT8 weights as shipped


def _ort_quantize(bundle, tmp_path, **kw):
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    src = bundle / "onnx" / "depth_004.onnx"
    dst = tmp_path / "q.onnx"
    cal = load_calibration(BundleManifest.load(bundle), 64)
    args = dict(quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax)
    args.update(kw)
    quantize_static(str(src), str(dst), FeedReader([{"x": b} for b in cal.batches()]), **args)
    return onnx.load(str(dst))


def test_uint8_asymmetric_graph_fails(fc_bundle, tmp_path):
    from onnxruntime.quantization import QuantType

    m = _ort_quantize(fc_bundle, tmp_path, activation_type=QuantType.QUInt8,
                      extra_options={"AddQDQPairToWeight": True, "QuantizeBias": False})
    rules = _rules(m)
    assert "int8" in rules and "zero_point" in rules
    with pytest.raises(ConfigError, match="not TensorRT 8.5-compatible"):
        qdq_lint.check(m)


def test_asymmetric_int8_activations_fail(fc_bundle, tmp_path):
    m = _ort_quantize(fc_bundle, tmp_path, extra_options={"ActivationSymmetric": False, "AddQDQPairToWeight": True,
                                                          "QuantizeBias": False})
    assert "zero_point" in _rules(m)


def test_quantized_bias_and_int8_weights_fail_for_trt85(fc_bundle, tmp_path):
    from onnxruntime.quantization import QuantFormat

    m = _ort_quantize(fc_bundle, tmp_path, quant_format=QuantFormat.QDQ,
                      extra_options={"ActivationSymmetric": True, "WeightSymmetric": True})  # ORT defaults otherwise
    rules = _rules(m, "8.5")
    assert "bias" in rules  # INT32 DQ on the bias
    assert "weights" in rules  # folded int8 initializers need TRT >= 10
    assert "weights" not in _rules(m, "10.3")


def test_wrong_per_channel_axis_fails(int8_graph):
    m = onnx.ModelProto()
    m.CopyFrom(int8_graph)
    gemm = next(n for n in m.graph.node if n.op_type == "Gemm")
    dq = next(n for n in m.graph.node if n.output[0] == gemm.input[1])
    for a in dq.attribute:
        if a.name == "axis":
            a.i = 1
    rules = _rules(m)
    assert "weight_axis" in rules


def test_opset_and_custom_ops(int8_graph):
    m = onnx.ModelProto()
    m.CopyFrom(int8_graph)
    for o in m.opset_import:
        if o.domain in ("", "ai.onnx"):
            o.version = 18
    assert "opset" in _rules(m, "8.5")
    assert "opset" not in _rules(m, "10.3")
    m.graph.node.append(helper.make_node("FusedGemm", ["y"], ["z"], domain="com.microsoft"))
    assert "ops" in _rules(m, "10.3")


def test_missing_zero_point_means_uint8():
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4])
    s = numpy_helper.from_array(np.array(0.1, np.float32), "s")
    nodes = [helper.make_node("QuantizeLinear", ["x", "s"], ["q"]), helper.make_node("DequantizeLinear", ["q", "s"], ["y"])]
    m = helper.make_model(helper.make_graph(nodes, "g", [x], [y], [s]), opset_imports=[helper.make_opsetid("", 13)])
    assert "int8" in _rules(m)


def test_q_must_feed_dq(int8_graph):
    m = onnx.ModelProto()
    m.CopyFrom(int8_graph)
    q = next(n for n in m.graph.node if n.op_type == "QuantizeLinear" and not n.input[0].startswith("net."))
    m.graph.node.append(helper.make_node("Relu", [q.output[0]], ["bad"]))
    assert "q_then_dq" in _rules(m)
