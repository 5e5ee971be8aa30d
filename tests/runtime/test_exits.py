"""Exit rules and the threshold calibration (numpy only): the guarantee, its size limits, the record."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest

from glonet_edge import exits
from glonet_edge.errors import ConfigError
from glonet_edge.manifest import BundleManifest, SegmentEntry


def synthetic_chain(n: int, seed: int, segments: int = 6, classes: int = 10):
    """Logits that sharpen with depth, faster for easy rows: what a GloNet chain looks like."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    ease = rng.random(n)
    outputs = []
    for j in range(segments):
        logits = rng.normal(0.0, 1.0, (n, classes))
        logits[np.arange(n), y] += (j + 1) * (0.3 + ease)
        outputs.append(logits.astype(np.float32))
    return outputs, y


def test_rules_score_what_they_say():
    logits = np.log(np.array([[0.7, 0.2, 0.1], [0.4, 0.35, 0.25]]))
    np.testing.assert_allclose(exits.confidence("max-prob", logits, None), [0.7, 0.4], rtol=1e-6)
    np.testing.assert_allclose(exits.confidence("margin", logits, None), [0.5, 0.05], rtol=1e-5)
    before, after = np.array([[1.0, 2.0], [0.0, 0.0]]), np.array([[1.5, 1.0], [0.0, 0.1]])
    assert exits.confidence("delta", after, None).tolist() == [-math.inf, -math.inf]
    np.testing.assert_allclose(exits.confidence("delta", after, before), [-1.0, -0.1])
    with pytest.raises(ConfigError, match="delta"):
        exits.check_rule("margin", "regression")


def test_minimum_size_is_where_a_clean_calibration_first_passes():
    for drop, confidence in ((0.01, 0.9), (0.005, 0.9), (0.02, 0.95)):
        need = exits.minimum_samples(drop, confidence)
        assert exits.hb_pvalue(0.0, need, drop) <= 1 - confidence < exits.hb_pvalue(0.0, need - 1, drop)


def test_pvalue_is_valid_when_the_risk_is_exactly_the_limit():
    # Under H0 (true risk = alpha) a valid p-value is <= delta at most delta of the time.
    rng = np.random.default_rng(1)
    n, alpha, delta = 400, 0.05, 0.1
    p = [exits.hb_pvalue(rng.binomial(n, alpha) / n, n, alpha) for _ in range(3000)]
    assert np.mean(np.array(p) <= delta) <= delta
    assert exits.hb_pvalue(0.01, n, alpha) < 1e-4  # and it rejects when the risk is far below


def test_guarantee_holds_over_repeated_calibration_draws():
    """With confidence 0.9, at most ~10% of calibration draws may certify a threshold whose
    risk on the whole population (the share of rows the cap gets right and the exit wrong,
    which bounds the accuracy drop) exceeds the limit."""
    pop_outputs, pop_y = synthetic_chain(20_000, seed=0)
    pop_correct = np.stack([o.argmax(1) == pop_y for o in pop_outputs], axis=1)
    pop_conf = np.stack([exits.confidence("max-prob", o, None) for o in pop_outputs], axis=1)
    rng = np.random.default_rng(2)
    risks = []
    for _ in range(40):
        rows = rng.choice(len(pop_y), 900, replace=False)
        record = exits.calibrate([o[rows] for o in pop_outputs], pop_y[rows], "classification", range(1, 7),
                                 chain_precision="fp32", max_drops=[0.02])
        for point in record.points:
            cap = pop_correct[:, point.max_depth - 1]
            early = pop_correct[np.arange(len(pop_y)), exits.first_exit(pop_conf[:, :point.max_depth], point.threshold)]
            risks.append(np.mean(cap & ~early))
            assert cap.mean() - early.mean() <= risks[-1]
    assert len(risks) > 40 and np.mean(np.array(risks) > 0.02) <= 0.1


def test_thresholds_save_cost_and_the_record_round_trips():
    outputs, y = synthetic_chain(3000, seed=3)
    record = exits.calibrate(outputs, y, "classification", [1, 2, 3, 4, 5, 6], chain_precision="fp32",
                             segment_macs=[100] * 6, stride=2)
    assert record.checks == [2, 4, 6] and record.calibration_samples == 2000
    full = record.point_for(6, 0.05)
    assert full is not None and full.max_drop == 0.05
    assert full.heldout["mean_depth"] < 6 and full.heldout["drop"] <= 0.05
    assert set(full.heldout["exits"]) <= {"2", "4", "6"} and sum(full.heldout["exits"].values()) == 1000
    assert full.heldout["mean_macs"] == pytest.approx(100 * full.heldout["mean_depth"])
    for part, figures in (("calibration", full.calibration), ("heldout", full.heldout)):
        rows = exits.split_rows(len(y))[part]  # the figures come from these rows, and only these
        conf = np.stack([exits.confidence("max-prob", outputs[j][rows], None) for j in (1, 3, 5)], axis=1)
        seg = np.array([1, 3, 5])[exits.first_exit(conf, full.threshold)]
        correct = np.stack([o[rows].argmax(1) == y[rows] for o in outputs], axis=1)
        risk = np.mean(correct[:, 5] & ~correct[np.arange(len(rows)), seg])
        assert figures["risk"] == pytest.approx(risk, abs=1e-6) and figures["mean_depth"] == pytest.approx(seg.mean() + 1)
    assert record.point_for(6, 0.004) is None and record.point_for(5, 0.05).max_depth == 5
    assert exits.ExitCalibration.from_json(record.to_json()) == record


def test_regression_calibrates_on_the_change_between_segments():
    rng = np.random.default_rng(4)
    y = rng.normal(0, 1, (3000, 1)).astype(np.float32)
    noise = rng.normal(0, 1, (3000, 1)) * rng.random((3000, 1))
    outputs = [(y + noise / (j + 1) ** 2).astype(np.float32) for j in range(5)]
    record = exits.calibrate(outputs, y, "regression", [1, 2, 3, 4, 5], chain_precision="fp32", max_drops=[0.02])
    assert record.rule == "delta"
    point = record.point_for(5, 0.02)
    assert point is not None and point.threshold < 0 and point.heldout["drop"] <= 0.02
    assert 1 < point.heldout["mean_depth"] < 5  # nobody leaves at 1 (nothing to compare), many before 5


def test_too_small_a_calibration_split_names_the_minimum():
    outputs, y = synthetic_chain(300, seed=5)
    with pytest.raises(ConfigError, match=r"has 200 samples.*needs at least 460 \(a validation split of 690\)"):
        exits.calibrate(outputs, y, "classification", range(1, 7), chain_precision="fp32", max_drops=[0.005])
    assert exits.feasible_drops(300, 0.9, exits.DEFAULT_MAX_DROPS) == [0.02, 0.05]
    with pytest.raises(ConfigError, match="confidence"):
        exits.calibrate(outputs, y, "classification", range(1, 7), chain_precision="fp32", confidence_level=1.0)


def test_stride_grows_with_the_check_cost():
    assert exits.choose_stride([0.1] * 8, 0.001) == 1
    assert exits.choose_stride([0.01] * 8, 0.08) == 4
    assert exits.choose_stride([0.01] * 3, 10.0) == 3


def test_manifest_validates_the_thresholds(digits_manifest):
    outputs, y = synthetic_chain(900, seed=6, segments=4)
    record = exits.calibrate(outputs, y, "classification", [2, 4, 6, 8], chain_precision="fp32", max_drops=[0.02])
    manifest = digits_manifest
    manifest.segments = [SegmentEntry(i, 2 * i, 2 * i + 2, ["x"] if i == 0 else ["s"], ["s", "y"]) for i in range(4)]
    manifest.exits["fp32"] = record
    data = manifest.to_json()
    assert BundleManifest.from_json(data).exits["fp32"] == record
    bad = {**data, "segments": data["segments"][:2]}
    with pytest.raises(ConfigError, match="end no segment"):
        BundleManifest.from_json(bad)
    newer = {**data, "exits": {"fp32": {**data["exits"]["fp32"], "schema_version": 99}}}
    with pytest.raises(ConfigError, match="re-run the calibration"):
        BundleManifest.from_json(newer)
    with pytest.raises(ConfigError, match="rule"):
        BundleManifest.from_json({**data, "exits": {"fp32": {**data["exits"]["fp32"], "rule": "vibes"}}})


def test_exit_thresholds_are_certified_on_the_data_quantize_judges_on(manifest_factory, tmp_path):
    """An own-model bundle's recorded validation data is used whole, as quantize uses it; a
    `glonet train` bundle's recorded data set is split as its checkpoint's training split it."""
    if sys.version_info < (3, 10):  # this file also runs in the serving-only installs of .ci/serving-compat
        pytest.skip("the quantize stage (build side) needs Python 3.10+")
    pytest.importorskip("onnx", reason="the quantize stage needs the build extras")
    from glonet_edge.exit_calibration import validation_split
    from glonet_edge.quantize.calibration import load_calibration

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(50, 64)).astype(np.float32), np.arange(50) % 10
    np.savez(tmp_path / "val.npz", X=x, y=y)
    manifest = manifest_factory()
    manifest.model["data"] = {"dataset": str(tmp_path / "val.npz"), "seed": 0, "val_fraction": 0.2}
    for source, rows in (({"from": "module"}, 50), (None, 10)):
        manifest.model["source"] = source
        x_val, y_val = validation_split(manifest)
        quantize = load_calibration(manifest, 16)
        assert len(y_val) == rows
        np.testing.assert_array_equal(x_val, quantize.x_val)
        np.testing.assert_array_equal(y_val, quantize.y_val)
    manifest.model["source"] = {"from": "module"}
    np.testing.assert_array_equal(validation_split(manifest)[0], x)  # all of it, in its order
