"""The family graph (every depth in one graph that stops at the depth it is fed) and the runtime
serving every depth from it (`Runtime.open(..., share_weights=True)`): same answers as the
per-depth graphs, refused when its files fail their checksums, its layout visible in resources()."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from bundle_helpers import serve_from_threads

from glonet_edge.errors import ArtifactError, ConfigError
from glonet_edge.manifest import FAMILY_FORMAT, BundleManifest
from glonet_edge.runtime import Runtime
from glonet_edge.runtime.runtime import FAMILY_GRAPH_LAYOUT, PER_DEPTH_LAYOUT

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def shared_bundle_src(fc_run, tmp_path_factory) -> Path:
    """fc_run (depth 8) exported at every depth with --shared-weights: the family graph comes with it."""
    from glonet_edge.export import export_bundle

    out = tmp_path_factory.mktemp("family") / "bundle"
    export_bundle(fc_run, out, depths="all", shared_weights=True, progress=False)
    return out


@pytest.fixture
def shared_bundle(shared_bundle_src, tmp_path) -> Path:
    dst = tmp_path / "bundle"
    shutil.copytree(shared_bundle_src, dst)
    return dst


def _inputs(manifest: BundleManifest) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(16, *manifest.input_shape)).astype(np.float32)


def _open(bundle: Path, **kw) -> Runtime:
    return Runtime.open(bundle, power="none", anytime=False, threads=1, **kw)


def _graphs_within(graph):
    """The graph and every branch graph nested in it."""
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.g.node:
                yield from _graphs_within(attr.g)


def test_export_records_the_family_graph(shared_bundle_src):
    import onnx

    manifest = BundleManifest.load(shared_bundle_src)
    deepest = max(manifest.depths, key=lambda e: e.depth)
    art = deepest.artifact(FAMILY_FORMAT, "fp32")
    assert art is not None and art.companions  # the graph and the shared weights file it reads
    assert art.extra == {"depth_input": "depth", "depths": [e.depth for e in manifest.depths]}
    assert deepest.artifact("onnx", "fp32").path != art.path  # a depth's own graph is still found by "onnx"
    family = onnx.load(str(shared_bundle_src / art.path), load_external_data=False)
    own = onnx.load(str(shared_bundle_src / deepest.artifact("onnx", "fp32").path), load_external_data=False)
    assert [i.name for i in family.graph.input] == [manifest.input_name, "depth"] and len(family.graph.output) == 1
    graphs = list(_graphs_within(family.graph))
    # One If per depth but the deepest: a call stops at the depth it is fed.
    assert sum(n.op_type == "If" for g in graphs for n in g.node) == len(manifest.depths) - 1
    # Every weight of the deepest graph is held, by the (sub)graph that reads it; only the
    # shared head's weights, read in each depth's branch, are held more than once.
    held = [t.name for g in graphs for t in g.initializer if not t.name.startswith("depth_")]
    assert set(held) == {t.name for t in own.graph.initializer}
    twice = {name for name in held if held.count(name) > 1}
    assert twice and all(name.startswith("m.head.") for name in twice), twice


def test_an_older_family_graph_without_a_depth_input_is_refused(shared_bundle):
    manifest = BundleManifest.load(shared_bundle)
    art = max(manifest.depths, key=lambda e: e.depth).artifact(FAMILY_FORMAT, "fp32")
    art.extra = {"outputs": {str(e.depth): f"y_{e.depth:03d}" for e in manifest.depths}}  # the layout before
    manifest.save(shared_bundle)
    with pytest.raises(ArtifactError, match="re-export it with `glonet export --shared-weights`"):
        _open(shared_bundle, share_weights=True)


def test_onnxruntime_family_graph_answers_bitwise_like_per_depth_graphs(shared_bundle):
    per_depth, shared = _open(shared_bundle), _open(shared_bundle, share_weights=True)
    x = _inputs(per_depth.manifest)
    assert shared.depths == per_depth.depths == sorted(e.depth for e in per_depth.manifest.depths)
    for depth in per_depth.depths:
        per_depth.set_depth(depth)
        shared.set_depth(depth)
        a, b = per_depth.infer(x), shared.infer(x)
        assert b.depth == depth and np.array_equal(a.outputs, b.outputs), depth


def test_openvino_family_graph_matches_per_depth_graphs(shared_bundle):
    pytest.importorskip("openvino")
    from glonet_edge.targets import get_target

    shared = _open(shared_bundle, target="openvino", share_weights=True)
    x = _inputs(shared.manifest)
    target = get_target("openvino")
    for entry in shared.manifest.depths:
        own = target.load(shared_bundle / entry.artifact("onnx", "fp32").path, "fp32", threads=1, cache_dir=False)
        shared.set_depth(entry.depth)
        (expected,) = own.run({shared.manifest.input_name: x})
        np.testing.assert_allclose(shared.infer(x).outputs, expected, rtol=0, atol=1e-6, err_msg=str(entry.depth))


@pytest.mark.parametrize("victim", ["graph", "weights"])
def test_family_graph_failing_its_checksum_is_refused(shared_bundle, victim):
    manifest = BundleManifest.load(shared_bundle)
    art = max(manifest.depths, key=lambda e: e.depth).artifact(FAMILY_FORMAT, "fp32")
    path = shared_bundle / (art.path if victim == "graph" else art.companions[0]["path"])
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, other content: only the sha256 can tell
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="sha256"):
        _open(shared_bundle, share_weights=True)


def test_resources_record_the_memory_layout(shared_bundle):
    per_depth, shared = _open(shared_bundle).resources(), _open(shared_bundle, share_weights=True).resources()
    assert per_depth["memory_layout"] == PER_DEPTH_LAYOUT and per_depth["depth_models"] == per_depth["depths_loaded"]
    assert shared["memory_layout"] == FAMILY_GRAPH_LAYOUT and shared["depth_models"] == 1
    assert shared["depths_loaded"] == per_depth["depths_loaded"]


def test_resources_size_the_artifacts_loaded(shared_bundle):
    manifest = BundleManifest.load(shared_bundle)
    size = lambda a: a.bytes + sum(c["bytes"] for c in a.companions)  # noqa: E731
    deepest = max(manifest.depths, key=lambda e: e.depth)
    with Runtime.open(shared_bundle, power="none", threads=1) as rt:  # anytime: the segments too
        found = rt.resources()
    assert found["artifact_bytes"] == sum(size(e.artifact("onnx", "fp32")) for e in manifest.depths)
    assert found["segments_loaded"] == len(manifest.segments) > 0
    assert found["segment_bytes"] == sum(size(s.artifact("onnx", "fp32")) for s in manifest.segments)
    with _open(shared_bundle, share_weights=True) as rt:
        shared = rt.resources()
    assert shared["artifact_bytes"] == size(deepest.artifact(FAMILY_FORMAT, "fp32")) and shared["segment_bytes"] == 0


def test_share_weights_needs_the_family_graph_and_fp32(fc_served_bundle, shared_bundle):
    with pytest.raises(ArtifactError, match="--shared-weights"):
        _open(fc_served_bundle, share_weights=True)  # exported without --shared-weights
    with pytest.raises(ConfigError, match="fp32"):
        _open(shared_bundle, precision="int8", share_weights=True)


def test_merge_keeps_every_depth_of_a_cnn_family(cnn_bundle, tmp_path):
    """Conv families too: bitwise as written, within 1e-6 as ONNX Runtime optimizes them."""
    from glonet_edge.export.family_graph import check_family_graph, merge_family

    manifest = BundleManifest.load(cnn_bundle)
    graphs = {e.depth: cnn_bundle / e.artifact("onnx", "fp32").path for e in manifest.depths}
    family = merge_family(graphs, cnn_bundle / "onnx" / "family.onnx")
    check_family_graph(family, graphs, _inputs(manifest))  # raises on any difference


def test_a_wrong_family_graph_is_caught(fc_bundle):
    import onnx
    from onnx import numpy_helper

    from glonet_edge.export.family_graph import check_family_graph, merge_family

    manifest = BundleManifest.load(fc_bundle)
    graphs = {e.depth: fc_bundle / e.artifact("onnx", "fp32").path for e in manifest.depths}
    path = merge_family(graphs, fc_bundle / "onnx" / "family.onnx")
    model = onnx.load(str(path))
    shallow, next_depth = sorted(graphs)[:2]
    for t in model.graph.initializer:  # the first level stops one depth too late: `next_depth` gets `shallow`'s answer
        if t.name == f"depth_{shallow}":
            t.CopyFrom(numpy_helper.from_array(np.array(next_depth, np.int64), t.name))
    onnx.save(model, str(path))
    with pytest.raises(ArtifactError, match=f"depth-{next_depth} answer differs"):
        check_family_graph(path, graphs, _inputs(manifest))


def _single_thread_answers(rt: Runtime, x: np.ndarray) -> dict[int, np.ndarray]:
    answers = {}
    for depth in rt.depths:
        rt.set_depth(depth)
        answers[depth] = np.stack([rt.infer(x[i:i + 1]).outputs[0] for i in range(len(x))])
    rt.set_depth(None)
    return answers


@pytest.mark.parametrize("target", ["onnxruntime", "openvino"])
def test_family_graph_is_thread_safe_like_infer(shared_bundle, target):
    """Eight threads on the one shared model while the depth switches: each answer is the
    single-threaded answer of the depth it reports (the per-depth layout's guarantee)."""
    pytest.importorskip(target)
    rt = _open(shared_bundle, target=target, share_weights=True)
    x = _inputs(rt.manifest)
    errors, wrong, served = serve_from_threads(rt, x, _single_thread_answers(rt, x), calls=300)
    rt.close()
    assert errors == [] and wrong == [] and served == 8 * 300


@pytest.mark.parametrize("target", ["onnxruntime", "openvino"])
def test_closing_one_depth_of_the_family_graph_leaves_the_others(shared_bundle, target):
    """Every depth is a view of one loaded model: closing one view must not close the model
    under the others."""
    pytest.importorskip(target)
    rt = _open(shared_bundle, target=target, share_weights=True)
    x = _inputs(rt.manifest)
    before = _single_thread_answers(rt, x)
    closed = min(rt.depths)
    rt._models[closed].close()
    for depth in rt.depths:
        if depth != closed:
            rt.set_depth(depth)
            np.testing.assert_array_equal(np.concatenate([rt.infer(x[i:i + 1]).outputs for i in range(len(x))]),
                                          before[depth], err_msg=str(depth))


def test_doctor_finds_the_family_graph_loadable(shared_bundle):
    """The family graph is an artifact like the others: a target serves its format, so doctor
    checks it like the rest instead of calling it unservable."""
    import platform

    from glonet_edge.doctor import artifact_problem
    from glonet_edge.targets import get_target, list_targets

    manifest = BundleManifest.load(shared_bundle)
    deepest = max(manifest.depths, key=lambda e: e.depth)
    art = deepest.artifact(FAMILY_FORMAT, "fp32")
    targets = [get_target(n) for n in list_targets()]
    assert artifact_problem(shared_bundle, art, platform.machine(), targets, deepest) is None
    (shared_bundle / art.companions[0]["path"]).write_bytes(b"not the weights")
    path, problem, fix = artifact_problem(shared_bundle, art, platform.machine(), targets, deepest)
    assert "truncated or replaced" in problem, problem
    assert "glonet export" in fix


def test_bench_memory_measures_the_family_graph_export_writes(fc_served_bundle, shared_bundle_src, tmp_path):
    """`glonet bench memory` on a bundle exported without --shared-weights measures the family
    graph that export would write (weights in one external file), not a graph with its weights
    inline: that one costs ONNX Runtime more than every depth graph (BENCHMARKS.md, "Memory")."""
    import onnx

    from glonet_edge.bench.memory import family_graph
    from glonet_edge.export.bundle import FAMILY_WEIGHTS

    manifest = BundleManifest.load(fc_served_bundle)  # fc_run at every depth, without --shared-weights
    assert manifest.depths[-1].artifact(FAMILY_FORMAT, "fp32") is None
    graphs = {e.depth: fc_served_bundle / e.artifact("onnx", "fp32").path for e in manifest.depths}
    path, disk = family_graph(fc_served_bundle, manifest, graphs, tmp_path)
    weights = path.parent / FAMILY_WEIGHTS
    assert disk == path.stat().st_size + weights.stat().st_size
    model = onnx.load(str(path), load_external_data=False)
    held = [t for g in _graphs_within(model.graph) for t in g.initializer if not t.name.startswith("depth_")]
    big = [t for t in held if t.data_location == onnx.TensorProto.EXTERNAL]
    assert big and {e.value for t in big for e in t.external_data if e.key == "location"} == {FAMILY_WEIGHTS}
    # Built the way export builds it from the same run: the same nodes, in the same nested Ifs.
    exported = BundleManifest.load(shared_bundle_src).depths[-1].artifact(FAMILY_FORMAT, "fp32")
    ops = lambda m: [(g.name, sorted(n.op_type for n in g.node)) for g in _graphs_within(m.graph)]  # noqa: E731
    assert ops(model) == ops(onnx.load(str(shared_bundle_src / exported.path), load_external_data=False))


def _chain_graphs(n: int, folder: Path) -> dict[int, Path]:
    """n depth graphs of a tiny GloNet-shaped chain (block k: MatMul -> Relu, summed; one shared
    head): what merge_family nests, one If per depth but the deepest."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = [rng.normal(size=(4, 4)).astype(np.float32) * 0.3 for _ in range(n + 1)]
    head = rng.normal(size=(4, 3)).astype(np.float32)
    graphs = {}
    for d in range(1, n + 1):
        nodes, inits, h, acc = [], [numpy_helper.from_array(head, "head.weight")], "x", None
        for k in range(1, d + 1):
            inits.append(numpy_helper.from_array(weights[k], f"blocks.{k}.weight"))
            nodes += [helper.make_node("MatMul", [h, f"blocks.{k}.weight"], [f"mm{k}"], name=f"/b{k}/MatMul"),
                      helper.make_node("Relu", [f"mm{k}"], [f"h{k}"], name=f"/b{k}/Relu")]
            h = f"h{k}"
            if acc is not None:
                nodes.append(helper.make_node("Add", [acc, h], [f"s{k}"], name=f"/s{k}/Add"))
            acc = h if acc is None else f"s{k}"
        nodes.append(helper.make_node("MatMul", [acc, "head.weight"], ["y"], name="/head/MatMul"))
        graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])], initializer=inits)
        graphs[d] = folder / f"depth_{d:03d}.onnx"
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(graphs[d]))
    return graphs


def test_a_family_graph_answers_at_most_max_family_depths(tmp_path, caplog):
    """Each depth but the deepest nests one If (GraphProto -> NodeProto -> AttributeProto ->
    GraphProto): the protobuf parsers of onnx and ONNX Runtime stop at 100 nested messages
    (upb's default upb_DecodeOptions_MaxDepth), so 32 depths are the most one graph can hold."""
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("torch")  # export.bundle: the build side, absent from a serving-only install

    from glonet_edge.export.bundle import _family_graph
    from glonet_edge.export.family_graph import merge_family
    from glonet_edge.manifest import FAMILY_DEPTH_INPUT, MAX_FAMILY_DEPTHS, family_depth_feed

    graphs = _chain_graphs(MAX_FAMILY_DEPTHS, tmp_path)
    family = merge_family(graphs, tmp_path / "family.onnx")
    onnx.load(str(family))  # parses at the limit
    x = np.ones((2, 4), np.float32)
    from glonet_edge.compare import cpu_session
    feeds = {"x": x, FAMILY_DEPTH_INPUT: family_depth_feed(MAX_FAMILY_DEPTHS)}
    (deepest,) = cpu_session(family, threads=1).run(None, feeds)
    (own,) = cpu_session(graphs[MAX_FAMILY_DEPTHS], threads=1).run(None, {"x": x})
    np.testing.assert_array_equal(deepest, own)
    one_more = {**graphs, MAX_FAMILY_DEPTHS + 1: tmp_path / "never_read.onnx"}
    with pytest.raises(ConfigError, match="--depths"):
        merge_family(one_more, tmp_path / "too_deep.onnx")
    with caplog.at_level("WARNING"):  # export writes the shared weights but no family graph, and says so
        assert _family_graph(one_more, x) is None
    assert "no family graph" in caplog.text and not (tmp_path / "family.fp32.onnx").exists()


def test_share_weights_on_openvino_is_refused_beyond_its_compile_limit(shared_bundle, monkeypatch):
    """OpenVINO's compile time of the nested Ifs about doubles per depth: above
    family_graph_depths the runtime refuses, naming the engine that serves it."""
    pytest.importorskip("openvino")
    from glonet_edge.targets import get_target

    assert get_target("onnxruntime").family_graph_depths is None
    depths = len(BundleManifest.load(shared_bundle).depths)
    monkeypatch.setattr(type(get_target("openvino")), "family_graph_depths", depths - 1)
    with pytest.raises(ConfigError, match="serve share_weights on onnxruntime"):
        _open(shared_bundle, target="openvino", share_weights=True)
    monkeypatch.setattr(type(get_target("openvino")), "family_graph_depths", depths)
    _open(shared_bundle, target="openvino", share_weights=True).close()


def test_closing_the_runtime_closes_the_family_graph_once(shared_bundle):
    rt = _open(shared_bundle, share_weights=True)
    family = rt._models[rt.depths[0]].model
    assert all(view.model is family for view in rt._models.values())
    closed = []
    family.close = lambda: closed.append(True)  # what the runtime calls on the one loaded model
    rt.close()
    assert closed == [True]


def test_bench_memory_rebuilds_an_older_family_graph(shared_bundle, tmp_path):
    """An older export's family graph (an output per depth, no depth input) is not what the
    runtime serves now: bench memory measures a rebuilt one instead of feeding it a depth."""
    from glonet_edge.bench.memory import family_graph

    manifest = BundleManifest.load(shared_bundle)
    deepest = max(manifest.depths, key=lambda e: e.depth)
    graphs = {e.depth: shared_bundle / e.artifact("onnx", "fp32").path for e in manifest.depths}
    assert family_graph(shared_bundle, manifest, graphs, tmp_path / "a")[0].parent == (shared_bundle / "onnx")
    deepest.artifact(FAMILY_FORMAT, "fp32").extra = {"outputs": {str(d): f"y_{d:03d}" for d in graphs}}
    (tmp_path / "b").mkdir()
    path, _ = family_graph(shared_bundle, manifest, graphs, tmp_path / "b")
    assert path.is_relative_to(tmp_path / "b")
