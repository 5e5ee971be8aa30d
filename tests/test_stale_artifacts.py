"""Provenance (issue 15.1, "a stale engine is served silently"): every compiled artifact records
the ONNX graph it was built from; re-quantize removes the engines of the graphs it replaced;
`inspect --verify` reports, the runtime and profile refuse, what is built from or measured on
another graph (docs/targets.md, "Provenance: nothing stale")."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from bundle_helpers import CALIB

from glonet_edge import __version__
from glonet_edge.cli import main
from glonet_edge.errors import ArtifactError
from glonet_edge.manifest import BundleManifest
from glonet_edge.provenance import prune_stale, stale_artifacts, stale_results
from glonet_edge.quantize import QuantizeSettings, quantize_bundle
from glonet_edge.runtime import Runtime
from glonet_edge.runtime.policy import family_table
from glonet_edge.targets.compile import compile_bundle
from glonet_edge.targets.profile import profile_bundle

sys.path.insert(0, str(Path(__file__).parent / "targets"))  # the fake TensorRT and CUDA live there


@pytest.fixture
def compiled(fc_int8_bundle, tmp_path, monkeypatch) -> Path:
    """The int8 fc bundle with OpenVINO fp32 and int8 IRs of depths 1 and 4 (no segments: quick)."""
    pytest.importorskip("openvino")
    monkeypatch.setenv("GLONET_CACHE_DIR", str(tmp_path / "cache"))  # no model cache in ~/.cache
    compile_bundle(fc_int8_bundle, "openvino", ["fp32", "int8"], depths=[1, 4], segments=False, verify=False,
                   progress=False)
    return fc_int8_bundle


def _edit_manifest(bundle: Path, edit) -> None:
    """Change manifest.json as an older glonet-edge (or a hand) would have left it."""
    path = bundle / "manifest.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def _depth(data: dict, d: int) -> dict:
    return next(e for e in data["depths"] if e["depth"] == d)


def _ir(data: dict, d: int, precision: str) -> dict:
    return next(a for a in _depth(data, d)["artifacts"] if a["format"] == "openvino" and a["precision"] == precision)


def _requantize(bundle: Path) -> dict:
    # Another calibration set gives other ranges, so other scales: a new int8 graph for depth 1
    # (the issue's `--method nncf` after `--method ort` does the same, slower).
    return quantize_bundle(bundle, QuantizeSettings(method="ort", calib_size=64), depths=[1], progress=False)


def test_compile_records_the_source_graph_and_tool_versions(compiled):
    m = BundleManifest.load(compiled)
    import openvino

    for d, precision in ((1, "fp32"), (1, "int8"), (4, "int8")):
        entry = m.depth(d)
        src = entry.artifact("onnx", precision)
        extra = entry.artifact("openvino", precision).extra
        assert extra["onnx_sha256"] == src.sha256 and extra["onnx_path"] == src.path
        assert extra["glonet_edge"] == __version__ and extra["openvino"] == openvino.get_version()
    assert stale_artifacts(m) == [] and stale_results(m, compiled) == []


def test_requantize_removes_the_engines_and_latency_of_the_replaced_graph(compiled, capsys):
    profile_bundle(compiled, "onnxruntime", "int8", batches=[1], iterations=2, warmup=0, depths=[1, 4],
                   energy="none", progress=False)
    before = BundleManifest.load(compiled)
    old_sha = before.depth(1).artifact("onnx", "int8").sha256
    ir = compiled / before.depth(1).artifact("openvino", "int8").path
    # the CLI, as in the issue (another calibration set: another int8 graph for depth 1)
    assert main(["quantize", str(compiled), "--calib-size", "64", "--depths", "1", "--no-progress"]) == 0
    out = capsys.readouterr().out
    result = json.loads((compiled / "quantize.json").read_text())
    m = BundleManifest.load(compiled)
    assert m.depth(1).artifact("onnx", "int8").sha256 != old_sha  # the graph did change
    assert m.depth(1).artifact("openvino", "int8") is None
    assert not ir.exists() and not ir.with_suffix(".bin").exists()
    assert m.depth(1).artifact("openvino", "fp32") is not None  # built from the fp32 graph, untouched
    assert m.depth(4).artifact("openvino", "int8") is not None  # depth 4 was not re-quantized
    assert "onnxruntime/int8" not in m.depth(1).latency_ms and "onnxruntime/int8" in m.depth(4).latency_ms
    assert f"depth 1 openvino/int8 {ir.relative_to(compiled).as_posix()}" in result["removed_stale"]
    assert "depth 1 profile/onnxruntime/int8" in result["removed_stale"]
    assert f"removed stale engines and results: {', '.join(result['removed_stale'])}" in out
    assert m.depth(1).measured_on["metrics/int8"] == m.depth(1).artifact("onnx", "int8").sha256
    assert main(["inspect", str(compiled), "--verify"]) == 0
    with Runtime.open(compiled, target="openvino", precision="int8", power="none", anytime=False) as rt:
        assert rt.depths == [4]  # the old depth-1 engine is gone, not served


def test_verify_reports_each_stale_engine_with_its_compile_command(compiled, capsys):
    _edit_manifest(compiled, lambda d: _ir(d, 1, "int8")["extra"].update(onnx_sha256="0" * 64))
    assert main(["inspect", str(compiled), "--verify"]) == 1
    out = capsys.readouterr()
    lines = [ln for ln in out.out.splitlines() if ln.startswith("STALE:")]
    assert len(lines) == 1 and "depth 1 openvino/int8" in lines[0] and "built from an older" in lines[0]
    assert f"`glonet compile {compiled} --target openvino --precision int8`" in lines[0]
    assert "stale" in out.err and "Traceback" not in out.err
    # doctor, asked about the bundle, says the same engine will not load here and how to rebuild it
    assert main(["doctor", str(compiled), "--json"]) == 0
    findings = [f for f in json.loads(capsys.readouterr().out)["findings"] if f["section"] == "bundle"]
    bad = [f for f in findings if not f["ok"]]
    assert len(bad) == 1 and "stale" in bad[0]["value"] and "depth_001.int8" in bad[0]["value"]
    assert bad[0]["fix"] == f"glonet compile {compiled} --target openvino --precision int8"


def test_runtime_and_cli_refuse_a_stale_engine_with_the_command(compiled, capsys):
    _edit_manifest(compiled, lambda d: _ir(d, 4, "int8")["extra"].update(onnx_sha256="1" * 64))
    fix = f"glonet compile {compiled} --target openvino --precision int8"
    with pytest.raises(ArtifactError, match="depth 4 openvino/int8 .* is stale") as err:
        Runtime.open(compiled, target="openvino", precision="int8", power="none", anytime=False)
    assert fix in str(err.value) and "\n" not in str(err.value)
    x = compiled.parent / "x.npy"
    import numpy as np

    np.save(x, np.zeros((2, 1, 8, 8), np.float32))
    assert main(["run", str(compiled), "--input", str(x), "--target", "openvino", "--precision", "int8",
                 "--power", "none"]) != 0
    err_text = capsys.readouterr().err
    assert fix in err_text and "Traceback" not in err_text and len(err_text.strip().splitlines()) == 1
    # fp32 engines are intact and still served
    with Runtime.open(compiled, target="openvino", precision="fp32", power="none", anytime=False) as rt:
        assert rt.depths == [1, 4]


def test_old_manifest_without_source_sha_is_unknown_provenance(compiled):
    def strip(data):  # the engines of a glonet-edge that recorded no source (it made no ORT flavour graphs)
        for e in data["depths"]:
            for a in e["artifacts"]:
                if a["format"] == "openvino":
                    a.get("extra", {}).pop("onnx_sha256", None)
    _edit_manifest(compiled, strip)
    m = BundleManifest.load(compiled)  # still reads
    stale = stale_artifacts(m)
    assert {(s.where, s.artifact.precision) for s in stale} == {("depth 1", "fp32"), ("depth 1", "int8"),
                                                                ("depth 4", "fp32"), ("depth 4", "int8")}
    assert all("unknown provenance" in s.message(compiled) and not s.provable for s in stale)
    with pytest.raises(ArtifactError, match="unknown provenance.*glonet compile .* --target openvino --precision fp32"):
        Runtime.open(compiled, target="openvino", precision="fp32", power="none", anytime=False)
    # nothing proves them stale either: a prune with no rewritten graph keeps them (verify keeps reporting)
    assert prune_stale(compiled, m, changed=set()) == [] and len(stale_artifacts(m)) == 4
    # ONNX graphs are their own source: onnxruntime serves as before
    with Runtime.open(compiled, target="onnxruntime", precision="int8", power="none", anytime=False) as rt:
        assert rt.depths


def test_requantize_removes_unknown_provenance_engines_of_the_rewritten_graph(compiled):
    _edit_manifest(compiled, lambda d: [_ir(d, k, p)["extra"].pop("onnx_sha256")
                                        for k in (1, 4) for p in ("fp32", "int8")])
    _requantize(compiled)
    m = BundleManifest.load(compiled)
    assert m.depth(1).artifact("openvino", "int8") is None  # its graph was rewritten: provably not fresh
    assert m.depth(4).artifact("openvino", "int8") is not None and m.depth(1).artifact("openvino", "fp32") is not None


def test_stale_profile_latency_and_int8_metrics_are_ignored_reported_and_dropped(compiled, capsys):
    profile_bundle(compiled, "onnxruntime", "int8", batches=[1], iterations=2, warmup=0, depths=[1, 4],
                   energy="none", progress=False)
    m = BundleManifest.load(compiled)
    from glonet_edge.targets import get_target

    served = get_target("onnxruntime").serving_artifact(m.depth(4), "int8")  # its own int8 graph where quantize made one
    assert m.depth(4).measured_on["profile/onnxruntime/int8"] == served.sha256
    rows = {r.depth: r for r in family_table(m, "onnxruntime", "int8")}
    assert rows[4].latency_ms is not None

    def age(data):
        _depth(data, 4)["measured_on"]["profile/onnxruntime/int8"] = "2" * 64
        _depth(data, 4)["metrics"]["int8"]["accuracy"] = 0.123
        _depth(data, 4)["measured_on"]["metrics/int8"] = "3" * 64
    _edit_manifest(compiled, age)
    m = BundleManifest.load(compiled)
    row = {r.depth: r for r in family_table(m, "onnxruntime", "int8")}[4]
    assert row.latency_ms is None and row.score == m.depth(4).metrics["fp32"]["accuracy"] != 0.123
    assert main(["inspect", str(compiled), "--verify"]) == 1
    out = capsys.readouterr().out
    assert f"glonet profile {compiled} --target onnxruntime --precision int8" in out
    assert "depth 4 metrics/int8" in out and f"glonet quantize {compiled}" in out
    notes = prune_stale(compiled, m, changed=set())
    assert notes == ["depth 4 metrics/int8", "depth 4 profile/onnxruntime/int8"]
    assert "onnxruntime/int8" not in m.depth(4).latency_ms and "int8" not in m.depth(4).metrics


def test_exit_thresholds_of_older_segment_graphs_are_refused(fc_int8_bundle, capsys):
    m = BundleManifest.load(fc_int8_bundle)
    record = m.exits["int8"]
    assert record.graphs == {s.artifact("onnx", record.chain_precision).path:
                             s.artifact("onnx", record.chain_precision).sha256 for s in m.segments}
    with Runtime.open(fc_int8_bundle, precision="int8", power="none", adaptive=True) as rt:
        assert rt.exits is not None
    first = next(iter(record.graphs))
    _edit_manifest(fc_int8_bundle, lambda d: d["exits"]["int8"]["graphs"].update({first: "4" * 64}))
    with pytest.raises(ArtifactError, match=f"older segment graphs.*glonet calibrate {fc_int8_bundle} --precision int8"):
        Runtime.open(fc_int8_bundle, precision="int8", power="none", adaptive=True)
    assert main(["inspect", str(fc_int8_bundle), "--verify"]) == 1
    assert "exits int8 were calibrated on other segment graphs" in capsys.readouterr().out
    m = BundleManifest.load(fc_int8_bundle)
    assert prune_stale(fc_int8_bundle, m, changed=set()) == ["exits int8"] and "int8" not in m.exits


def test_tensorrt_engine_of_another_graph_is_refused_and_reported(fc_bundle, monkeypatch):
    from fake_cuda import make_fake_cudart
    from fake_tensorrt import make_fake_trt

    from glonet_edge.targets.tensorrt import cuda, device, library

    cudart = make_fake_cudart((("NVIDIA Jetson AGX Orin", 8, 7),))
    monkeypatch.setitem(sys.modules, "tensorrt", make_fake_trt("10.3.0", cudart))
    monkeypatch.setattr(library, "_LOGGER", None)
    monkeypatch.setattr(cuda, "cudart", lambda: cudart)
    monkeypatch.setattr(device, "jetson_info", lambda path=None: {"l4t": "36.4.0", "jetpack": "6.x"})
    compile_bundle(fc_bundle, "tensorrt", ["fp32"], depths=[4], segments=False, verify=False, progress=False)
    art = BundleManifest.load(fc_bundle).depth(4).artifact("tensorrt", "fp32")
    assert art.extra["onnx_sha256"] == BundleManifest.load(fc_bundle).depth(4).artifact("onnx", "fp32").sha256
    assert art.extra["tensorrt"] == "10.3.0" and art.extra["glonet_edge"] == __version__
    with Runtime.open(fc_bundle, target="tensorrt", power="none", anytime=False) as rt:
        assert rt.depths == [4]

    def swap(data):
        engine = next(a for a in _depth(data, 4)["artifacts"] if a["format"] == "tensorrt")
        engine["extra"]["onnx_sha256"] = "5" * 64
    _edit_manifest(fc_bundle, swap)
    stale = stale_artifacts(BundleManifest.load(fc_bundle))
    assert [(s.where, s.artifact.format, s.provable) for s in stale] == [("depth 4", "tensorrt", True)]
    with pytest.raises(ArtifactError, match=f"glonet compile {fc_bundle} --target tensorrt --precision fp32"):
        Runtime.open(fc_bundle, target="tensorrt", power="none", anytime=False)
    with pytest.raises(ArtifactError, match="is stale"):
        profile_bundle(fc_bundle, "tensorrt", "fp32", batches=[1], iterations=1, warmup=0, energy="none",
                       depths=[4], progress=False)
