"""Issue 17.3: int8 graphs store INT8 weight initializers -> DQ (smaller than fp32), TensorRT < 10
gets them unfolded to float -> Q -> DQ (docs/quantize.md, "What an int8 file stores")."""

from __future__ import annotations

import importlib.util

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from glonet_edge.quantize import qdq_lint
from glonet_edge.quantize.accuracy import reference_outputs
from glonet_edge.quantize.qdq_rewrite import fold_weight_quantizers, unfold_weight_quantizers


def _weight_graph(w: np.ndarray, scale: np.ndarray, zp: np.ndarray, axis: int = 0) -> onnx.ModelProto:
    """x @ DQ(Q(w)).T with per-tensor or per-axis scale."""
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(scale, "s"), numpy_helper.from_array(zp, "z")]
    nodes = [helper.make_node("QuantizeLinear", ["w", "s", "z"], ["wq"], axis=axis),
             helper.make_node("DequantizeLinear", ["wq", "s", "z"], ["wd"], axis=axis),
             helper.make_node("Gemm", ["x", "wd"], ["y"], transB=1)]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, w.shape[1]])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, w.shape[0]]),
                           helper.make_tensor_value_info("wd", TensorProto.FLOAT, list(w.shape))], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])


def _cases():
    rng = np.random.default_rng(0)
    w = (rng.normal(size=(6, 5)) * 3).astype(np.float32)
    w[0, :3] = [0.5, 1.5, -2.5]  # ties: round half to even
    w[1, 0] = 1e6  # saturates
    yield "per-tensor int8", w, np.float32(0.02), np.int8(0)
    yield "per-channel int8", w, (np.abs(w).max(1) / 127).astype(np.float32) / 2, np.zeros(6, np.int8)
    yield "per-tensor uint8 zp", w, np.float32(0.05), np.uint8(128)
    yield "per-channel uint8 zp", w, np.full(6, 0.03, np.float32), np.arange(120, 126).astype(np.uint8)


@pytest.mark.parametrize("case", list(_cases()), ids=lambda c: c[0])
def test_fold_and_unfold_are_exact(case):
    _, w, scale, zp = case
    model = _weight_graph(w, np.asarray(scale), np.asarray(zp))
    x = {"x": np.random.default_rng(1).normal(size=(4, 5)).astype(np.float32)}
    folded = fold_weight_quantizers(model)
    assert not [n for n in folded.graph.node if n.op_type == "QuantizeLinear"]
    assert {t.name: t.data_type for t in folded.graph.initializer}["wq"] == helper.np_dtype_to_tensor_dtype(
        np.asarray(zp).dtype)
    assert "w" not in {t.name for t in folded.graph.initializer}
    unfolded = unfold_weight_quantizers(folded)
    assert [n.op_type for n in unfolded.graph.node].count("QuantizeLinear") == 1
    ref = reference_outputs(model, x)
    for other in (folded, unfolded):
        for a, b in zip(ref, reference_outputs(other, x)):
            assert np.array_equal(a, b)


def _int8_graph(bundle, depth):
    return onnx.load(str(bundle / "onnx" / f"depth_{depth:03d}.int8.onnx"))


def _float_weight_bytes(model):
    return sum(numpy_helper.to_array(t).nbytes for t in model.graph.initializer)


def test_shipped_int8_graphs_store_int8_weights_and_are_smaller(fc_int8_bundle):
    """fc16 test bundle, depth 16: file 56,933 vs 87,338 bytes fp32 (0.65; the QDQ nodes' names
    and the float biases / scales stay), initializers 0.37x, the weight tensors themselves 0.25x."""
    src, q = fc_int8_bundle / "onnx" / "depth_016.onnx", fc_int8_bundle / "onnx" / "depth_016.int8.onnx"
    assert q.stat().st_size <= 0.7 * src.stat().st_size
    model, fp32 = onnx.load(str(q)), onnx.load(str(src))
    inits = {t.name: t for t in model.graph.initializer}
    assert not [n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] in inits]
    weights = [inits[n.input[0]] for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits
               and inits[n.input[0]].data_type == TensorProto.INT8]
    assert weights and _float_weight_bytes(model) <= 0.4 * _float_weight_bytes(fp32)
    fp32_weights = sum(numpy_helper.to_array(t).nbytes for t in fp32.graph.initializer if len(t.dims) == 2)
    assert sum(numpy_helper.to_array(t).nbytes for t in weights) <= 0.26 * fp32_weights
    for d in (1, 4, 8, 16):
        assert (fc_int8_bundle / "onnx" / f"depth_{d:03d}.int8.onnx").stat().st_size < \
            (fc_int8_bundle / "onnx" / f"depth_{d:03d}.onnx").stat().st_size
    for seg in sorted((fc_int8_bundle / "segments").glob("*.int8.onnx")):
        assert seg.stat().st_size < seg.with_name(seg.name.replace(".int8", "")).stat().st_size


def test_lint_folded_on_10_and_unfolded_on_85(fc_int8_bundle):
    model = _int8_graph(fc_int8_bundle, 16)
    assert qdq_lint.errors(qdq_lint.lint(model, "10.3")) == []
    assert {i.rule for i in qdq_lint.errors(qdq_lint.lint(model, "8.5"))} == {"weights"}
    unfolded = unfold_weight_quantizers(model)
    assert qdq_lint.errors(qdq_lint.lint(unfolded, "8.5")) == []
    assert qdq_lint.errors(qdq_lint.lint_as_parsed(model, "8.5")) == []


def test_real_graph_round_trip_is_identical_on_onnxruntime_and_openvino(fc_int8_bundle, cnn_int8_bundle):
    for bundle, depth in ((fc_int8_bundle, 16), (cnn_int8_bundle, 6)):
        folded = _int8_graph(bundle, depth)
        unfolded = unfold_weight_quantizers(folded)
        assert len(unfolded.SerializeToString()) > len(folded.SerializeToString())
        refolded = fold_weight_quantizers(unfolded)
        x = {"x": np.load(bundle / "calibration.npz")["X"][:64].astype(np.float32)} \
            if (bundle / "calibration.npz").exists() else None
        if x is None:
            shape = [d.dim_value or 8 for d in folded.graph.input[0].type.tensor_type.shape.dim]
            x = {folded.graph.input[0].name: np.random.default_rng(0).normal(size=shape).astype(np.float32)}
        ref = reference_outputs(unfolded, x)
        for other in (folded, refolded):
            assert all(np.array_equal(a, b) for a, b in zip(ref, reference_outputs(other, x)))
        if importlib.util.find_spec("openvino") is not None:
            import openvino as ov

            core = ov.Core()

            def ov_run(m):
                compiled = core.compile_model(core.read_model(m.SerializeToString(), b""), "CPU")
                return [np.asarray(v) for v in compiled(x).values()]

            assert all(np.array_equal(a, b) for a, b in zip(ov_run(unfolded), ov_run(folded)))
