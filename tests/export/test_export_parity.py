"""Exported graphs and segment chains reproduce the torch checkpoint (fc, cnn, vit, regression)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from glonet_edge.data import score
from glonet_edge.export import export_bundle
from glonet_edge.manifest import BundleManifest
from glonet_edge.train.checkpoint import load_checkpoint
from glonet_edge.train.models import params_and_macs

from export_helpers import assert_family_matches_torch, held_out, session


def test_fc_family_matches_torch(fc_run, fc_bundle):
    assert_family_matches_torch(fc_run, fc_bundle)


def test_fc_manifest_contents(fc_run, fc_bundle):
    ckpt = load_checkpoint(fc_run)
    m = BundleManifest.load(fc_bundle)
    assert m.depth_values() == list(range(1, 9))
    assert m.model == ckpt.config.to_json()
    assert m.source_checkpoint_sha256 == ckpt.sha256
    assert (m.input_shape, m.task, m.metric_name, m.opset) == ([1, 8, 8], "classification", "accuracy", 17)
    assert [(s.start_depth, s.end_depth) for s in m.segments] == [(d - 1, d) for d in range(1, 9)]
    assert m.segments[0].inputs == ["x"] and m.segments[1].inputs == ["state_0", "state_1"]
    assert m.segments[0].outputs == ["next_state_0", "next_state_1", "y"]
    for e in m.depths:
        assert (e.params, e.macs) == params_and_macs(ckpt.model, e.depth)
        assert e.artifact("onnx", "fp32").path == f"onnx/depth_{e.depth:03d}.onnx"


def test_metrics_are_measured_with_onnxruntime_on_held_out_data(fc_run, fc_bundle):
    x, y = held_out(fc_run)
    m = BundleManifest.load(fc_bundle)
    for e in m.depths:
        pred = session(fc_bundle / e.artifact("onnx", "fp32").path).run(["y"], {"x": x})[0]
        assert e.metrics == {"fp32": {"accuracy": score("classification", pred, y)}}
    report = json.loads((fc_bundle / "export.json").read_text())
    assert report["validation"]["samples"] == len(x)


def test_regression_family_matches_torch_in_target_units(regression_run, tmp_path):
    out = tmp_path / "reg"
    m = export_bundle(regression_run, out, depths=[1, 2, 4], progress=False)
    assert m.task == "regression" and m.metric_name == "r2"
    assert_family_matches_torch(regression_run, out)
    x, y = held_out(regression_run)
    pred = session(out / "onnx/depth_004.onnx").run(["y"], {"x": x})[0]
    assert m.depth(4).metrics["fp32"]["r2"] == pytest.approx(score("regression", pred, y))


def test_cnn_on_cifar_shaped_images(cnn_run, tmp_path):
    out = tmp_path / "cnn"
    m = export_bundle(cnn_run, out, depths="all", progress=False)
    assert m.input_shape == [3, 32, 32] and m.depth_values() == [1, 2, 3]
    assert_family_matches_torch(cnn_run, out)


def test_vit(vit_run, tmp_path):
    out = tmp_path / "vit"
    export_bundle(vit_run, out, depths="all", progress=False)
    assert_family_matches_torch(vit_run, out)


def test_custom_cut_points_and_no_segments(fc_run, tmp_path):
    m = export_bundle(fc_run, tmp_path / "cuts", depths=[2, 8], segments=[3, 6, 8], progress=False)
    assert [(s.start_depth, s.end_depth) for s in m.segments] == [(0, 3), (3, 6), (6, 8)]
    assert_family_matches_torch(fc_run, tmp_path / "cuts")
    m = export_bundle(fc_run, tmp_path / "none", depths=[8], segments=False, progress=False)
    assert m.segments == [] and not (tmp_path / "none" / "segments").exists()


def test_auto_depths_follow_the_checkpoint_scores(fc_run, tmp_path):
    from glonet_edge.export.select import pareto_depths

    ckpt = load_checkpoint(fc_run)
    scores = {int(k): v for k, v in ckpt.metrics.score_by_depth.items()}
    costs = {d: params_and_macs(ckpt.model, d)[1] for d in scores}
    m = export_bundle(fc_run, tmp_path / "auto", depths="auto", progress=False)
    assert m.depth_values() == pareto_depths(scores, costs, full_depth=8)
    assert 8 in m.depth_values()


def test_batch_sizes_other_than_the_export_batch(fc_bundle, fc_run):
    x = held_out(fc_run)[0]
    sess = session(fc_bundle / "onnx/depth_008.onnx")
    full = sess.run(["y"], {"x": x[:7]})[0]
    for n in (1, 3):
        assert np.abs(sess.run(["y"], {"x": x[:n]})[0] - full[:n]).max() <= 1e-5
