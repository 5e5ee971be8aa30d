"""Adaptive serving on real bundles: the certified drop on held-out data, compacted batches,
power tiers with deadlines, threads, and the refusals."""

from __future__ import annotations

import math
import re
import shutil
import threading

import numpy as np
import pytest

import fake_sysfs
from glonet_edge.data import score
from glonet_edge.errors import ArtifactError
from glonet_edge.exit_calibration import validation_split
from glonet_edge.exits import split_rows
from glonet_edge.manifest import BundleManifest
from glonet_edge.runtime import PolicyConfig, Runtime
from glonet_edge.runtime.policy import exit_budget, family_table

pytest.importorskip("onnxruntime")
pytest.importorskip("torch")


@pytest.fixture(scope="module")
def families(fc_served_bundle, tmp_path_factory):
    """Two families, quantized, so each holds fp32 and int8 thresholds: fc with int8 segments,
    cnn without (its int8 depths are served with the fp32 chain, which its int8 record names)."""
    from glonet_edge.export import export_bundle
    from glonet_edge.quantize import QuantizeSettings, quantize_bundle
    from glonet_edge.train.trainer import TrainSettings, train_run

    root = tmp_path_factory.mktemp("adaptive")
    train_run("glonet-cnn", 6, "digits", root / "cnn6", width=8, settings=TrainSettings(epochs=6, lr=2e-3),
              progress=False)
    export_bundle(root / "cnn6", root / "cnn", depths="all", progress=False)
    shutil.copytree(fc_served_bundle, root / "fc")
    for name in ("fc", "cnn"):
        quantize_bundle(root / name, QuantizeSettings(segments=name == "fc"), progress=False)
    return {name: root / name for name in ("fc", "cnn")}


def policy_for(manifest: BundleManifest, precision: str, cap: int, drop: float) -> PolicyConfig:
    """A policy whose every tier leaves exactly `drop` to early exit below depth `cap`."""
    table = family_table(manifest, "onnxruntime", precision)
    gap = max(r.score for r in table) - next(r.score for r in table if r.depth == cap)
    total = drop + gap
    return PolicyConfig(ac_max_drop=total, max_drop=total, low_battery_max_drop=total)


def binomial_upper_tail(k: int, n: int, p: float) -> float:
    return sum(math.comb(n, i) * p ** i * (1 - p) ** (n - i) for i in range(k, n + 1))


def certified_drop(reason: str) -> float:
    return float(re.search(r"exits certified for a ([0-9.]+) pt drop", reason).group(1)) / 100


@pytest.mark.parametrize("precision", ["fp32", "int8"])
@pytest.mark.parametrize("family", ["fc", "cnn"])
def test_certified_drop_holds_on_the_heldout_split(families, family, precision):
    bundle = families[family]
    manifest = BundleManifest.load(bundle)
    record = manifest.exits[precision]
    assert record.chain_precision == ("fp32" if family == "cnn" else precision) and record.points
    for point in record.points:
        held = point.heldout
        losses = round(held["risk"] * record.heldout_samples)
        # What the held-out rows saw is consistent with a risk <= max_drop (1% level), and the
        # accuracy drop never exceeds the risk that bounds it.
        assert binomial_upper_tail(losses, record.heldout_samples, point.max_drop) >= 0.01, point
        assert held["drop"] <= held["risk"] + 1e-9
    # The runtime serves what was certified: same held-out score and exits at full depth.
    deepest = max(p.max_depth for p in record.points)
    point = max((p for p in record.points if p.max_depth == deepest), key=lambda p: p.max_drop)
    x, y = validation_split(manifest)
    rows = split_rows(len(y))["heldout"]
    config = policy_for(manifest, precision, deepest, point.max_drop)
    with Runtime.open(bundle, precision=precision, power="none", adaptive=True, policy=config) as rt:
        rt.set_depth(deepest)
        pred = rt.infer(x[rows])
    assert certified_drop(pred.reason) == pytest.approx(point.max_drop)
    assert abs(score(manifest.task, pred.outputs, y[rows]) - point.heldout["score"]) <= 1 / len(rows) + 1e-9
    assert abs(pred.depths.mean() - point.heldout["mean_depth"]) <= 0.05


@pytest.fixture(scope="module")
def served(families):
    """The fc family at fp32: an adaptive runtime with every row's fixed-depth reference."""
    bundle = families["fc"]
    manifest = BundleManifest.load(bundle)
    x = validation_split(manifest)[0][:120]
    with Runtime.open(bundle, power="none", anytime=False) as plain:
        reference = {}
        for d in plain.depths:
            plain.set_depth(d)
            reference[d] = plain.infer(x).outputs
    point = min((p for p in manifest.exits["fp32"].points if p.max_depth == 8), key=lambda p: p.max_drop)
    rt = Runtime.open(bundle, power="none", adaptive=True, policy=policy_for(manifest, "fp32", 8, point.max_drop))
    rt.set_depth(8)
    yield rt, x, reference
    rt.close()


def test_compacted_batch_answers_in_order_like_each_row_alone(served):
    rt, x, reference = served
    order = np.random.default_rng(0).permutation(len(x))
    batch = rt.infer(x[order])
    assert len(set(batch.depths.tolist())) >= 2  # rows really left at different depths
    for pos, i in enumerate(order):
        alone = rt.infer(x[i:i + 1])
        assert alone.depths[0] == batch.depths[pos]
        np.testing.assert_allclose(batch.outputs[pos], alone.outputs[0], atol=1e-5)
        np.testing.assert_allclose(batch.outputs[pos], reference[int(batch.depths[pos])][i], atol=1e-4)
    assert batch.depth == batch.depths.max() and batch.segments_run <= 8


def test_tier_sets_cap_and_drop_and_the_deadline_still_holds(families, tmp_path):
    from test_runtime import SlowModel

    bundle = families["cnn"]
    manifest = BundleManifest.load(bundle)
    record = manifest.exits["fp32"]
    cap = max(p.max_depth for p in record.points)
    drops = sorted({p.max_drop for p in record.points if p.max_depth == cap})
    root = fake_sysfs.laptop(tmp_path / "laptop", ac_online=True, capacity=90, status="Charging")
    gap = policy_for(manifest, "fp32", cap, 0.0).ac_max_drop
    config = PolicyConfig(ac_max_drop=gap, max_drop=gap + drops[0], low_battery_max_drop=gap + drops[-1], min_dwell_s=0)
    x = validation_split(manifest)[0][:64]
    with Runtime.open(bundle, power="battery", power_root=root, poll_interval_s=0, adaptive=True, policy=config) as rt:
        rt.set_depth(cap)
        for ac_online, capacity, tier in ((True, 90, "ac"), (False, 60, "battery"), (False, 5, "battery-low")):
            fake_sysfs.laptop(tmp_path / "laptop", ac_online=ac_online, capacity=capacity)
            assert rt.refresh().tier == tier
            pred = rt.infer(x)
            budget = exit_budget(rt.policy.table, config, tier, cap)
            assert pred.depths.max() <= cap
            if tier == "ac":
                assert "every row runs to it" in pred.reason and (pred.depths == cap).all()
            else:
                assert certified_drop(pred.reason) <= budget + 1e-9
        # Low battery and a deadline: the segment after depth 2 now takes 200 ms.
        end, model = rt._chain.segments[2]
        rt._chain.segments[2] = (end, SlowModel(model, 0.2))
        rt._chain.segment_ms[2] = 300.0
        pred = rt.infer_anytime(x, deadline_ms=100)
        assert pred.deadline_met and pred.segments_run == 2 and pred.depths.max() <= 2
        rt.set_depth(2)  # a lower cap than the deadline allows wins too
        assert rt.infer_anytime(x, deadline_ms=10_000).depths.max() <= 2


def test_threads_get_their_own_rows_back(served):
    rt, x, reference = served
    errors, wrong = [], []

    def client(seed: int) -> None:
        rng = np.random.default_rng(seed)
        for _ in range(150):
            rows = rng.choice(len(x), int(rng.integers(1, 9)), replace=False)
            try:
                pred = rt.infer(x[rows])
            except Exception as exc:  # noqa: BLE001 - any failure is the finding
                errors.append(repr(exc))
                return
            for pos, i in enumerate(rows):
                if not np.allclose(pred.outputs[pos], reference[int(pred.depths[pos])][i], atol=1e-4):
                    wrong.append((i, int(pred.depths[pos])))

    threads = [threading.Thread(target=client, args=(s,)) for s in range(6)]
    for t in threads:
        t.start()
    for cap in [8, 6, 4, 8, 5] * 20:  # caps change under the clients' feet
        rt.set_depth(cap)
    for t in threads:
        t.join()
    rt.set_depth(8)
    assert errors == [] and wrong == []


def test_adaptive_refuses_without_thresholds_it_can_trust(families, tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(families["fc"], bundle)
    manifest = BundleManifest.load(bundle)
    del manifest.exits["int8"]
    manifest.exits["fp32"] = type(manifest.exits["fp32"])(**{**manifest.exits["fp32"].__dict__,
                                                           "chain_precision": "int8"})
    manifest.save(bundle)
    with pytest.raises(ArtifactError, match=r"no int8 exit thresholds.*re-run the calibration: `glonet calibrate "
                                            r".* --precision int8`"):
        Runtime.open(bundle, precision="int8", power="none", adaptive=True)
    with pytest.raises(ArtifactError, match="calibrated on the int8 segment chain, but this target serves the fp32"):
        Runtime.open(bundle, precision="fp32", power="none", adaptive=True)
    with Runtime.open(bundle, precision="int8", power="none") as rt:  # plain serving is unaffected
        assert rt.infer(np.zeros((1, 1, 8, 8), np.float32)).depths is None


def test_calibrate_command_recalibrates_one_precision(families, tmp_path, capsys):
    from glonet_edge.cli import main

    bundle = tmp_path / "bundle"
    shutil.copytree(families["fc"], bundle)
    assert main(["calibrate", str(bundle), "--max-drops", "0.005"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "needs at least 460 (a validation split of 690)" in err
    assert main(["calibrate", str(bundle), "--precision", "fp32", "--max-drops", "0.02", "--stride", "2", "--json"]) == 0
    manifest = BundleManifest.load(bundle)
    record = manifest.exits["fp32"]
    assert record.stride == 2 and record.checks == [2, 4, 6, 8] and {p.max_drop for p in record.points} == {0.02}
    assert manifest.exits["int8"] == BundleManifest.load(families["fc"]).exits["int8"]  # left alone
