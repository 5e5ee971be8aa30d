"""Accuracy control of `glonet quantize`: every shipped int8 depth loses at most --max-drop AND
agrees with fp32 on at least --min-agreement of the held-out top-1 predictions, on every checked
engine; layers go back to float (within --max-float-fraction) before a depth is rejected."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

from glonet_edge.cli import main
from glonet_edge.data import load_dataset
from glonet_edge.errors import ConfigError
from glonet_edge.manifest import BundleManifest
from glonet_edge.quantize import QuantizeSettings, accuracy, qdq_lint, qdq_rewrite, quantize_bundle
from glonet_edge.quantize.calibration import estimators, load_calibration
from glonet_edge.quantize.recipes import ort_quantize

pytest.importorskip("onnxruntime.quantization")


@pytest.fixture
def bundle(fc_served_bundle, tmp_path) -> Path:
    dst = tmp_path / "fc8"
    shutil.copytree(fc_served_bundle, dst)
    return dst


def _held_out(bundle: Path):
    cfg = BundleManifest.load(bundle).model["data"]
    d = load_dataset(cfg["dataset"], seed=cfg["seed"], val_fraction=cfg["val_fraction"])
    return d.x_val, d.y_val


def _engine_outputs(path: Path, x: np.ndarray) -> dict[str, np.ndarray]:
    """The int8 graph run by each engine straight from the file (not through quantize's helpers)."""
    import onnxruntime as ort

    outs = {"onnxruntime": ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[-1]}
    try:
        import openvino as ov
    except ImportError:
        return outs
    core = ov.Core()
    compiled = core.compile_model(core.read_model(str(path)), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    outs["openvino"] = np.asarray(compiled({"x": x})[compiled.outputs[-1]])
    return outs


def test_every_shipped_depth_meets_drop_and_agreement_on_every_engine(bundle):
    result = quantize_bundle(bundle, QuantizeSettings(calib_size=256), depths=[1, 2, 8], progress=False)
    assert result["min_agreement"] == 0.99 and "onnxruntime" in result["checked_engines"]
    m = BundleManifest.load(bundle)
    m.verify(bundle)
    assert [r["status"] for r in result["depths"]].count("ok") >= 2  # not vacuous: most depths shipped
    x, y = _held_out(bundle)
    import onnxruntime as ort

    for row in result["depths"]:
        e = m.depth(row["depth"])
        int8 = e.metrics["int8"]
        assert "agreement" in int8 and int8["agreement"] == pytest.approx(row["agreement"])  # next to the score
        if row["status"] == "rejected":
            assert e.artifact("onnx", "int8") is None
            continue
        art = e.artifact("onnx", "int8")
        assert set(art.extra["accuracy_checks"]) == set(result["checked_engines"])
        assert len(art.extra.get("float_nodes", [])) <= accuracy.float_budget(row["layers"], 0.5)
        fp32_path = e.artifact("onnx", "fp32").resolve(bundle)
        ref = ort.InferenceSession(str(fp32_path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[-1]
        fp32 = float(np.mean(np.argmax(ref, 1) == y))
        for engine, out in _engine_outputs(art.resolve(bundle), x).items():
            agree = float(np.mean(np.argmax(out, 1) == np.argmax(ref, 1)))
            score = float(np.mean(np.argmax(out, 1) == y))
            assert agree >= 0.99, (row["depth"], engine, agree)
            assert fp32 - score <= 0.005 + 1e-9, (row["depth"], engine, fp32, score)
            if engine in art.extra["accuracy_checks"]:  # what was recorded is what the engine does
                assert art.extra["accuracy_checks"][engine]["agreement"] == pytest.approx(agree)
        assert qdq_lint.errors(qdq_lint.lint_as_parsed(art.resolve(bundle), "8.5")) == []


def test_agreement_below_the_floor_falls_back_then_rejects(bundle, monkeypatch):
    """A judge that never sees enough agreement: layers go back to float up to the budget, then
    the depth is rejected with the agreement named in the reason, and nothing is shipped."""
    real = accuracy.AccuracyCheck.agreement
    monkeypatch.setattr(accuracy.AccuracyCheck, "agreement", lambda self, y: min(real(self, y), 0.9))
    result = quantize_bundle(bundle, QuantizeSettings(calib_size=128, engines="onnxruntime"), depths=[4], progress=False)
    row = result["depths"][0]
    e = BundleManifest.load(bundle).depth(4)
    assert row["status"] == "rejected" and "top-1 agreement with fp32 0.9000 < 0.99" in e.rejected["int8"]
    assert e.artifact("onnx", "int8") is None and not (bundle / "onnx" / "depth_004.int8.onnx").exists()
    assert e.metrics["int8"]["agreement"] == 0.9
    # every estimator tried as made, then each with the float fallback up to the budget
    budget = accuracy.float_budget(row["layers"], 0.5)
    assert len(row["attempts"]) == 2 * len(estimators(search=True))
    assert max(a["float_layers"] for a in row["attempts"]) == budget


def test_an_engine_that_cannot_run_a_graph_rejects_the_depth_not_the_run(bundle, monkeypatch):
    pytest.importorskip("openvino")

    real = accuracy.engine_outputs

    def broken(engine, *a, **k):
        if engine == "openvino":
            raise RuntimeError("simulated OpenVINO compile failure")
        return real(engine, *a, **k)

    monkeypatch.setattr(accuracy, "engine_outputs", broken)
    settings = QuantizeSettings(calib_size=128, engines="onnxruntime,openvino", range_search=False, max_float_fraction=0.0)
    result = quantize_bundle(bundle, settings, depths=[4], progress=False)
    (row,) = result["depths"]
    e = BundleManifest.load(bundle).depth(4)
    assert row["status"] == "rejected" and "openvino: cannot run this graph" in e.rejected["int8"]
    assert e.artifact("onnx", "int8") is None


def test_no_search_and_no_fallback_is_the_plain_recipe(bundle, monkeypatch):
    real = accuracy.AccuracyCheck.agreement
    monkeypatch.setattr(accuracy.AccuracyCheck, "agreement", lambda self, y: min(real(self, y), 0.9))
    settings = QuantizeSettings(calib_size=128, engines="onnxruntime", range_search=False, max_float_fraction=0.0)
    result = quantize_bundle(bundle, settings, depths=[4], progress=False)
    assert [a["float_layers"] for a in result["depths"][0]["attempts"]] == [0]
    assert result["depths"][0]["status"] == "rejected"


def test_keep_float_is_ort_nodes_to_exclude(bundle, tmp_path):
    """Keeping a node float by graph surgery (what the fallback ranks with, and all NNCF can use)
    gives exactly the graph onnxruntime's nodes_to_exclude gives."""
    src = bundle / "onnx" / "depth_004.onnx"
    cal = load_calibration(BundleManifest.load(bundle), 128)
    feeds = [{"x": b} for b in cal.batches(equal=True)]
    full, excl = tmp_path / "full.onnx", tmp_path / "excl.onnx"
    nodes = qdq_rewrite.quantizable_nodes(onnx.load(str(src)))
    ort_quantize(src, full, feeds=list(feeds), calibration="minmax")
    assert [n for n in qdq_rewrite.quantized_consumers(onnx.load(str(full))) if n in nodes] == nodes
    chosen = [nodes[0], nodes[-1]]  # first and last layer
    ort_quantize(src, excl, feeds=list(feeds), calibration="minmax", nodes_to_exclude=chosen)
    surgery = qdq_rewrite.keep_float(onnx.load(str(full)), chosen)
    assert qdq_rewrite.float_layers(surgery, nodes) == chosen
    a = accuracy.reference_outputs(surgery, {"x": cal.x_val})[-1]
    b = accuracy.reference_outputs(excl, {"x": cal.x_val})[-1]
    np.testing.assert_array_equal(a, b)
    assert sorted(n.op_type for n in surgery.graph.node) == sorted(n.op_type for n in onnx.load(str(excl)).graph.node)
    assert qdq_lint.errors(qdq_lint.lint(surgery, "8.5")) == []


def test_keep_float_undoes_clamps_and_int8_constants():
    """On NNCF-style graphs: a make_trt_safe clamp before the Q is bypassed (fp32 had no clamp),
    a DequantizeLinear of an INT8 constant becomes the float constant."""
    from onnx import TensorProto, helper, numpy_helper

    w = np.array([[1, -2], [3, 4]], np.int8)
    g = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["x__clamp_0"], name="q__relu"),
         helper.make_node("QuantizeLinear", ["x__clamp_0", "s", "z"], ["xq"], name="q"),
         helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"], name="dq"),
         helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wd"], name="wdq", axis=1),
         helper.make_node("MatMul", ["xd", "wd"], ["y"], name="mm")],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2])],
        [numpy_helper.from_array(np.array(0.1, np.float32), "s"), numpy_helper.from_array(np.array(0, np.int8), "z"),
         numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.array([0.5, 0.25], np.float32), "ws"),
         numpy_helper.from_array(np.zeros(2, np.int8), "wz")])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    assert qdq_rewrite.quantized_consumers(model) == ["mm"]
    out = qdq_rewrite.keep_float(model, ["mm"])
    assert [n.op_type for n in out.graph.node] == ["MatMul"] and out.graph.node[0].input[0] == "x"
    x = np.array([[-1.0, 2.0]], np.float32)
    np.testing.assert_allclose(accuracy.reference_outputs(out, {"x": x})[0], x @ (w * np.array([0.5, 0.25], np.float32)))


class _Judge:
    """Stands in for AccuracyCheck: a graph passes when enough of `needed` are float."""

    def __init__(self, needed: dict[str, set[str]], need: int):
        self.needed, self.need = needed, need
        self.graphs: list[tuple[str, tuple[str, ...]]] = []

    def check(self, path):
        name, excl = self.current
        self.graphs.append((name, excl))
        good = len(self.needed.get(name, set()) & set(excl)) >= self.need
        return accuracy.Check({"onnxruntime": {"score": 0.9, "agreement": 0.995 if good else 0.9}},
                       [] if good else ["agreement"], 0.0 if good else 0.09)

    def rank(self, base, nodes):
        return sorted(nodes, key=lambda n: n not in self.needed.get(base["name"], set()))


class _Candidate(accuracy.Candidate):
    """A recipe whose graphs exist only as what the _Judge sees: (name, layers in float)."""

    def __init__(self, judge, name, tensorrt=True):
        super().__init__(name, Path("unused"), tensorrt)
        self.judge = judge

    def write(self, excluded):
        if self.base is None:
            self.base = {"name": self.name}
        self.judge.current = (self.name, tuple(excluded))


def test_control_accuracy_order_budget_and_tensorrt_preference(monkeypatch):
    layers = [f"l{i}" for i in range(8)]  # budget: 4
    monkeypatch.setattr(accuracy, "quantized_consumers", lambda base: [n for n in layers if n not in base.get("float", [])])
    monkeypatch.setattr(accuracy, "float_layers", lambda base, ls: [n for n in ls if n in base.get("float", [])])
    judge = _Judge({"a": {"l0", "l7"}, "uint8": set()}, need=2)
    cands = [_Candidate(judge, "uint8", tensorrt=False), _Candidate(judge, "a"), _Candidate(judge, "b")]
    out = accuracy.control_accuracy(cands, judge, layers, 0.5)
    assert out.ok and out.candidate.name == "a" and sorted(out.excluded) == ["l0", "l7"]
    # TensorRT-safe candidates as made first, then their fallback; the uint8 one never needed
    assert [g[0] for g in judge.graphs][:2] == ["a", "b"] and "uint8" not in [g[0] for g in judge.graphs]
    # nothing reachable within the budget: rejected, never more than the budget in float
    judge = _Judge({"a": {"l0", "l1", "l2", "l3", "l4"}}, need=5)
    out = accuracy.control_accuracy([_Candidate(judge, "a")], judge, layers, 0.5)
    assert not out.ok and max(len(e) for _, e in judge.graphs) == accuracy.float_budget(8, 0.5) == 4


def test_float_budget():
    assert accuracy.float_budget(8, 0.5) == 4 and accuracy.float_budget(3, 0.5) == 2 and accuracy.float_budget(2, 0.5) == 1
    assert accuracy.float_budget(1, 0.5) == 0 and accuracy.float_budget(10, 0.0) == 0 and accuracy.float_budget(4, 1.0) == 3


def test_bad_arguments_and_cli(bundle, capsys):
    with pytest.raises(ConfigError, match="min-agreement"):
        quantize_bundle(bundle, QuantizeSettings(min_agreement=99), progress=False)
    with pytest.raises(ConfigError, match="max-float-fraction"):
        quantize_bundle(bundle, QuantizeSettings(max_float_fraction=-0.1), progress=False)
    with pytest.raises(ConfigError, match="unknown engine 'tensorrt'"):
        quantize_bundle(bundle, QuantizeSettings(engines="onnxruntime,tensorrt"), progress=False)
    assert main(["quantize", str(bundle), "--min-agreement", "1.5"]) == 2
    assert "min-agreement" in capsys.readouterr().err
    assert main(["quantize", str(bundle), "--depths", "2", "--calib-size", "128", "--min-agreement", "0.98",
                 "--check-engines", "onnxruntime", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["min_agreement"] == 0.98 and out["checked_engines"] == ["onnxruntime"]
    row = out["depths"][0]
    assert set(row["engines"]) == {"onnxruntime"} and row["agreement"] is not None
    assert json.loads((bundle / "quantize.json").read_text())["min_agreement"] == 0.98
