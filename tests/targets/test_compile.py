"""glonet compile: every depth of every precision loads and agrees with the ONNX fp32 reference."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
from bundle_helpers import no_staging_left, tree_digest

from glonet_edge.data import load_dataset
from glonet_edge.errors import ArtifactError, ConfigError
from glonet_edge.manifest import BundleManifest
from glonet_edge.targets import get_target, load_artifact
from glonet_edge.targets.compile import compile_bundle

pytest.importorskip("openvino")


@pytest.fixture(scope="module")
def val():
    d = load_dataset("digits", seed=0, val_fraction=0.2)
    return d.x_val, d.y_val


def _compile_all(bundle):
    compile_bundle(bundle, "openvino", ["fp32", "fp16", "int8"], progress=False)
    compile_bundle(bundle, "onnxruntime", ["fp32", "int8"], progress=False)
    return BundleManifest.load(bundle)


CASES = [("openvino", "openvino", "fp32"), ("openvino", "openvino", "fp16"), ("openvino", "openvino", "int8"),
         ("onnxruntime", "onnx", "fp32"), ("onnxruntime", "onnx", "int8")]


@pytest.mark.parametrize("family", ["fc", "cnn"])
def test_every_depth_and_precision_agrees_with_fp32_onnx(family, fc_int8_bundle, cnn_int8_bundle, val):
    bundle = fc_int8_bundle if family == "fc" else cnn_int8_bundle
    m = _compile_all(bundle)
    m.verify(bundle)
    x, _ = val
    ort = get_target("onnxruntime")
    for e in m.depths:
        ref = ort.load(e.artifact("onnx", "fp32").resolve(bundle), "fp32").run({"x": x})[0]
        for target, fmt, precision in CASES:
            art = e.artifact(fmt, precision)
            # accuracy control keeps layers in float before rejecting: every depth ships int8 here
            assert precision not in e.rejected, (family, e.depth, e.rejected)
            assert art is not None, (family, e.depth, target, precision)
            y = load_artifact(bundle, art, target).run({"x": x})[0]
            assert y.shape == ref.shape
            agree = float(np.mean(np.argmax(y, 1) == np.argmax(ref, 1)))
            if precision == "fp32":
                assert np.max(np.abs(y - ref)) <= 1e-4, (family, e.depth, target)
            elif precision == "fp16":
                assert agree >= 0.99, (family, e.depth, target, agree)
            else:
                assert agree >= 0.99, (family, e.depth, target, agree)
    # artifacts recorded with companions and target info
    ir = m.depth(m.depth_values()[-1]).artifact("openvino", "int8")
    assert ir.path.endswith(".int8.xml") and ir.companions[0]["path"].endswith(".int8.bin")
    assert m.targets["openvino"]["compile_config"]["fp32"]["PERFORMANCE_HINT"] == "LATENCY"
    assert m.targets["onnxruntime"]["session_options"]["graph_optimization_level"] == "ORT_ENABLE_ALL"
    assert "CPUExecutionProvider" in m.targets["onnxruntime"]["providers"]
    report = json.loads((bundle / "compile_openvino.json").read_text())
    assert all(r["status"] in ("ok", "skipped") for r in report["rows"])


def test_segments_compiled_and_chain_matches_full_depth(fc_int8_bundle, val):
    compile_bundle(fc_int8_bundle, "openvino", ["fp32", "int8"], progress=False)
    m = BundleManifest.load(fc_int8_bundle)
    x, _ = val
    ov = get_target("openvino")
    feeds = {"x": x}
    for s in m.segments:
        for p in ("fp32", "int8"):
            assert s.artifact("openvino", p) is not None
        model = load_artifact(fc_int8_bundle, s.artifact("openvino", "fp32"), ov)
        outs = model.run(feeds)
        full = load_artifact(fc_int8_bundle, m.depth(s.end_depth).artifact("openvino", "fp32"), ov).run({"x": x})[0]
        np.testing.assert_allclose(outs[-1], full, atol=1e-4)
        nxt = [t for t in m.segments if t.index == s.index + 1]
        if nxt:
            feeds = dict(zip(nxt[0].inputs, outs[:-1]))


def test_openvino_model_is_thread_safe(fc_bundle, val):
    compile_bundle(fc_bundle, "openvino", ["fp32"], depths=[16], segments=False, progress=False)
    m = BundleManifest.load(fc_bundle)
    model = load_artifact(fc_bundle, m.depth(16).artifact("openvino", "fp32"), "openvino")
    x, _ = val
    chunks = [x[i:i + 7] for i in range(0, 16 * 7, 7)]
    expected = [model.run({"x": c})[0] for c in chunks]
    got: dict[int, np.ndarray] = {}
    errors = []

    def work(i):
        try:
            for _ in range(20):
                got[i] = model.run({"x": chunks[i]})[0]
                np.testing.assert_array_equal(got[i], expected[i])
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(chunks))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]
    raw = model.raw_callable()
    raw({"x": chunks[0]})  # the direct engine call works on the same compiled model

def test_openvino_requests_per_shape_keep_answers_apart(fc_bundle, val):
    """run_validated keeps a request per input shape whose outputs OpenVINO writes into arrays of
    ours: batch sizes that come and go (more than the slots it keeps), and answers already handed
    out, must never see another call's numbers."""
    from glonet_edge.targets import openvino as ov_target

    compile_bundle(fc_bundle, "openvino", ["fp32"], depths=[4], segments=False, progress=False)
    m = BundleManifest.load(fc_bundle)
    model = load_artifact(fc_bundle, m.depth(4).artifact("openvino", "fp32"), "openvino")
    ort = load_artifact(fc_bundle, m.depth(4).artifact("onnx", "fp32"), "onnxruntime")
    x, _ = val
    sizes = [1, 3, 1, 32, 3] + list(range(2, 2 + ov_target._SLOTS_PER_THREAD + 2)) + [1, 32]
    kept = []
    for round_ in range(2):  # the second round meets shapes evicted in the first
        for i, n in enumerate(sizes):
            batch = np.ascontiguousarray(x[i + round_: i + round_ + n])
            (y,) = model.run({"x": batch})
            kept.append((y, ort.run({"x": batch})[0]))
    assert len(model._per_thread.slots) == ov_target._SLOTS_PER_THREAD
    for y, reference in kept:  # checked at the end: a later call must not have overwritten y
        np.testing.assert_allclose(y, reference, atol=1e-4)



def test_corrupt_and_mismatched_artifacts(fc_bundle):
    compile_bundle(fc_bundle, "openvino", ["fp32"], depths=[4], segments=False, progress=False)
    m = BundleManifest.load(fc_bundle)
    art = m.depth(4).artifact("openvino", "fp32")
    with pytest.raises(ConfigError, match="format 'openvino'.*onnxruntime"):
        load_artifact(fc_bundle, art, "onnxruntime")
    bin_path = fc_bundle / art.companions[0]["path"]
    data = bytearray(bin_path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bin_path.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="sha256"):
        load_artifact(fc_bundle, art, "openvino")
    # a corrupt source graph stops compile before anything is built, naming the fix
    src = fc_bundle / "onnx" / "depth_008.onnx"
    src.write_bytes(src.read_bytes()[:100])
    with pytest.raises(ArtifactError, match="depth_008.onnx.*re-run"):
        compile_bundle(fc_bundle, "onnxruntime", ["fp32"], progress=False)


def test_unknown_target_precision_device(fc_bundle):
    with pytest.raises(ConfigError, match="unknown target 'foo'.*onnxruntime, openvino, tensorrt"):
        compile_bundle(fc_bundle, "foo", ["fp32"], progress=False)
    with pytest.raises(ConfigError, match="unknown precision 'fp8'"):
        compile_bundle(fc_bundle, "openvino", ["fp8"], progress=False)
    with pytest.raises(ConfigError, match="does not support precision 'fp16'"):
        compile_bundle(fc_bundle, "onnxruntime", ["fp16"], progress=False)
    with pytest.raises(ConfigError, match="unknown device 'TPU'"):
        compile_bundle(fc_bundle, "openvino", ["fp32"], device="TPU", progress=False)
    if "GPU" not in __import__("openvino").Core().available_devices:
        with pytest.raises(ConfigError, match="'GPU' is not available.*--device CPU"):
            compile_bundle(fc_bundle, "openvino", ["fp32"], device="GPU", progress=False)
    with pytest.raises(ConfigError, match="run `glonet quantize"):
        compile_bundle(fc_bundle, "openvino", ["int8"], progress=False)


def test_failure_mid_compile_leaves_previous_bundle(fc_int8_bundle, monkeypatch):
    compile_bundle(fc_int8_bundle, "openvino", ["fp32"], progress=False)
    before = tree_digest(fc_int8_bundle)
    target = get_target("openvino")
    real = type(target).build
    calls = {"n": 0}

    def flaky(self, *a, **kw):
        calls["n"] += 1
        if calls["n"] == 5:
            raise RuntimeError("power cut")
        return real(self, *a, **kw)

    monkeypatch.setattr(type(target), "build", flaky)
    with pytest.raises(RuntimeError, match="power cut"):
        compile_bundle(fc_int8_bundle, "openvino", ["fp16", "int8"], progress=False)
    assert tree_digest(fc_int8_bundle) == before
    assert no_staging_left(fc_int8_bundle)


def test_cli_compile_json_and_errors(fc_bundle, capsys):
    from glonet_edge.cli import main

    assert main(["compile", str(fc_bundle), "--target", "onnxruntime", "--json", "--no-segments"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["target"] == "onnxruntime" and {r["status"] for r in out["rows"]} == {"ok"}
    assert (fc_bundle / "compile_onnxruntime.json").is_file()
    assert main(["compile", str(fc_bundle), "--target", "openvino", "--precision", "int4"]) == 2
    assert "unknown precision 'int4'" in capsys.readouterr().err


def test_source_or_skip_asks_the_family_for_the_source_once(tmp_path):
    """One lookup of the source graph per build: rejected int8 is skipped without asking,
    a refused source is skipped with the family's reason."""
    from types import SimpleNamespace

    from glonet_edge.targets.compile import _FamilyCompile

    asked = []
    graph = SimpleNamespace(extra={})

    class Family:
        target, subdir = SimpleNamespace(name="fake"), "fake"

        def source(self, entry, precision):
            asked.append((entry.index, precision))
            return graph

        def refuse(self, extra, precision):
            return "not for fp16" if precision == "fp16" else None

    run = _FamilyCompile(Family(), tmp_path, None, tmp_path, None)
    entry = SimpleNamespace(index=3, rejected={"int8": "too far from fp32"})
    assert run.source_or_skip("depth", 3, entry, "int8") == (None, "int8 rejected by quantize: too far from fp32")
    assert run.source_or_skip("depth", 3, entry, "fp16") == (None, "not for fp16")
    assert run.source_or_skip("depth", 3, entry, "fp32") == (graph, None)
    assert asked == [(3, "fp16"), (3, "fp32")]
