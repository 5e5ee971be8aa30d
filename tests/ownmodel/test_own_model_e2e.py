"""A user's own plain-torch GloNet, trained in a plain loop on an image folder, exported from
memory and from the command line, then quantized, compiled, served, profiled, simulated and
reported like any bundle."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ownmodel_helpers import cli, quantize

torch = pytest.importorskip("torch")
pytest.importorskip("PIL")

from glonet_edge.compare import cpu_session, max_abs_error  # noqa: E402
from glonet_edge.export.source import arrays_sha256  # noqa: E402
from glonet_edge.fileio import sha256_file  # noqa: E402
from glonet_edge.manifest import BundleManifest  # noqa: E402


def _graph_outputs(bundle, manifest, x):
    return {e.depth: cpu_session(bundle / e.artifact("onnx", "fp32").path).run(None, {"x": x})[0]
            for e in manifest.depths}


def test_plain_loop_trains_every_depth(own):
    manifest = BundleManifest.load(own.bundle)
    assert manifest.depth_values() == [1, 2, 3, 4] and len(manifest.segments) == 4
    scores = {e.depth: e.metrics["fp32"]["accuracy"] for e in manifest.depths}
    assert scores[4] >= 0.9, scores  # three easy classes; chance is 1/3
    assert min(scores.values()) > 0.5, scores  # the cut loss trains the shallow depths too


def test_every_depth_graph_and_segment_matches_torch_on_held_out_images(own):
    x, _ = own.heldout
    manifest = BundleManifest.load(own.bundle)
    got = _graph_outputs(own.bundle, manifest, x)
    model = own.model.eval()
    with torch.no_grad():
        for depth, out in got.items():
            assert max_abs_error(out, model(torch.from_numpy(x), depth=depth).numpy()) <= 1e-4, depth
    segments, feeds = manifest.segments, {"x": x}
    for j, seg in enumerate(segments):
        outs = cpu_session(own.bundle / seg.artifact("onnx", "fp32").path).run(None, feeds)
        assert max_abs_error(outs[-1], got[seg.end_depth]) <= 1e-4, seg.end_depth
        if j + 1 < len(segments):  # the carried state feeds the next segment
            feeds = dict(zip(segments[j + 1].inputs, outs[:-1]))


def test_manifest_records_the_model_and_the_validation_data(own):
    from glonet_edge.data import load_samples

    model = BundleManifest.load(own.bundle).model
    x, y, classes = load_samples(str(own.val_dir))
    assert model["model"] == "glonet" and model["depth"] == 4 and model["input_shape"] == [3, 16, 16]
    assert model["adapters"] == ["PoolConv", "PoolConv", "PoolConv", "Identity"] and model["num_outputs"] == 3
    assert model["source"] == {"from": "memory"}
    assert model["data"] == {"dataset": str(own.val_dir.resolve()), "seed": 0, "val_fraction": 0.2, "samples": 24,
                             "sha256": arrays_sha256(x, y), "image_size": 16, "classes": classes}


def test_cli_module_route_gives_the_same_bundle_as_the_python_call(own, tmp_path):
    out = tmp_path / "cli"
    rc, stdout, err = cli("export", "--module", f"{own.module_name}:build", "--weights", str(own.weights),
                          "--val", str(own.val_dir), "--out", str(out), "--json", cwd=own.root)
    assert rc == 0, err
    assert json.loads(stdout)["source"]["module"] == f"{own.module_name}:build"
    python, command = BundleManifest.load(own.bundle), BundleManifest.load(out)
    for a, b in zip(python.depths, command.depths):
        assert a.artifact("onnx", "fp32").sha256 == b.artifact("onnx", "fp32").sha256
        assert (a.depth, a.params, a.macs, a.metrics) == (b.depth, b.params, b.macs, b.metrics)
    assert [s.artifact("onnx", "fp32").sha256 for s in python.segments] == \
           [s.artifact("onnx", "fp32").sha256 for s in command.segments]
    assert python.source_checkpoint_sha256 == command.source_checkpoint_sha256
    assert command.model["data"] == python.model["data"]
    assert command.model["source"] == {"from": "module", "module": f"{own.module_name}:build",
                                       "weights": str(own.weights.resolve()), "weights_sha256": sha256_file(own.weights)}


def test_a_pt_state_dict_and_a_dataloader_give_the_same_graphs(own, tmp_path):
    from torch.utils.data import DataLoader, TensorDataset

    from glonet_edge.data import load_samples
    from glonet_edge.export import export_bundle

    torch.save(own.model.state_dict(), tmp_path / "model.pt")
    rc, _, err = cli("export", "--module", f"{own.module_name}:build", "--weights", str(tmp_path / "model.pt"),
                     "--val", str(own.val_dir), "--out", str(tmp_path / "pt"), "--depths", "2,4", cwd=own.root)
    assert rc == 0, err
    x, y, _ = load_samples(str(own.val_dir))
    loader = DataLoader(TensorDataset(torch.from_numpy(x), torch.from_numpy(y)), batch_size=5)
    export_bundle(own.model, tmp_path / "loader", val=loader, example_input=torch.from_numpy(x[:1]), depths=[2, 4],
                  progress=False)
    pt, from_loader, first = (BundleManifest.load(p) for p in (tmp_path / "pt", tmp_path / "loader", own.bundle))
    for depth in (2, 4):
        shas = {m.depth(depth).artifact("onnx", "fp32").sha256 for m in (pt, from_loader, first)}
        assert len(shas) == 1
        assert from_loader.depth(depth).metrics == first.depth(depth).metrics
    assert from_loader.model["data"]["sha256"] == first.model["data"]["sha256"]
    assert from_loader.model["data"]["dataset"] is None


@pytest.mark.slow
def test_downstream_quantize_compile_serve_profile_simulate_report(own, tmp_path):
    import shutil

    from glonet_edge.runtime import Runtime

    bundle = tmp_path / "bundle"
    shutil.copytree(own.bundle, bundle)
    result = quantize(bundle, own.train_dir, max_drop=0.05)
    manifest = BundleManifest.load(bundle)
    exported = {e.depth: e.metrics["fp32"]["accuracy"] for e in BundleManifest.load(own.bundle).depths}
    for e in manifest.depths:
        assert e.artifact("onnx", "int8") is not None and "int8" not in e.rejected, e.depth
        assert e.metrics["fp32"]["accuracy"] - e.metrics["int8"]["accuracy"] <= 0.05 + 1e-9
        # judged on the whole validation folder export scored, not on a split of the training images
        assert e.metrics["fp32"]["accuracy"] == pytest.approx(exported[e.depth], abs=1e-9), e.depth
    assert result["method"] == "ort" and result["calib_size"] == 32
    assert result["calibration_data"] == f"{own.train_dir} (--data)"
    assert result["validation_data"] == f"{own.val_dir.resolve()}, all 24 samples (what export scored)"
    for target in ("openvino", "onnxruntime"):
        rc, _, err = cli("compile", str(bundle), "--target", target, "--precision", "fp32,int8", "--no-progress")
        assert rc == 0, err
    x, _ = own.heldout
    want = _graph_outputs(bundle, BundleManifest.load(bundle), x)
    for target in ("onnxruntime", "openvino"):
        with Runtime.open(bundle, target=target, power="none") as rt:
            for depth in (2, 4):
                rt.set_depth(depth)
                answer = rt.infer(x)
                assert answer.depth == depth
                assert max_abs_error(answer.outputs, want[depth]) <= (0 if target == "onnxruntime" else 1e-4)
    np.save(tmp_path / "x.npy", x[:4])
    for argv in (("profile", str(bundle), "--target", "openvino", "--batches", "1", "--iterations", "3",
                  "--warmup", "1", "--energy", "none", "--no-progress"),
                 ("run", str(bundle), "--input", str(tmp_path / "x.npy"), "--depth", "3", "--power", "none",
                  "--output", str(tmp_path / "y.npy")),
                 ("simulate", str(bundle), "--trace", "laptop_discharge", "--out", str(tmp_path / "sim")),
                 ("report", str(bundle), "--out", str(tmp_path / "report.html"))):
        rc, _, err = cli(*argv)
        assert rc == 0, (argv[0], err)
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), want[3][:4])
    assert "glonet" in (tmp_path / "report.html").read_text()


@pytest.mark.slow
def test_nncf_quantization_with_accuracy_control(own, tmp_path):
    import shutil

    bundle = tmp_path / "bundle"
    shutil.copytree(own.bundle, bundle)
    result = quantize(bundle, own.train_dir, method="nncf", max_drop=0.05)
    assert result["method"] == "nncf"
    for e in BundleManifest.load(bundle).depths:
        assert e.metrics["fp32"]["accuracy"] - e.metrics["int8"]["accuracy"] <= 0.05 + 1e-9
