"""The adaptive policy of `glonet simulate` on a synthetic manifest (no torch, no engine)."""

from __future__ import annotations

import json

import pytest

from glonet_edge.cli import main
from glonet_edge.exits import ExitCalibration, ExitPoint
from glonet_edge.manifest import SegmentEntry
from glonet_edge.runtime.policy import COST_MODELS, PolicyConfig, family_table
from glonet_edge.runtime.power import parse_trace
from glonet_edge.runtime.simulate import run_simulation

# 10 min on AC, then on battery, 5 W device baseline.
DISCHARGE = "t_s,on_battery,battery_pct,power_w\n" + "\n".join(
    f"{t},{0 if t < 600 else 1},100,5.0" for t in range(0, 3600, 60))


def exits_at(cap: int, max_drop: float, heldout_exits: dict[int, int], drop: float = 0.003) -> ExitCalibration:
    rows = sum(heldout_exits.values())
    mean_depth = sum(d * n for d, n in heldout_exits.items()) / rows
    held = {"score": 0.95 - drop, "reference_score": 0.95, "drop": drop, "risk": drop, "mean_depth": mean_depth,
            "mean_macs": None, "exits": {str(d): n for d, n in heldout_exits.items()}}
    point = ExitPoint(cap, max_drop, 0.9, {"risk": 0.0, "drop": 0.0, "mean_depth": mean_depth}, held)
    return ExitCalibration("max-prob", 0.9, list(range(1, 33)), 1, "fp32", 240, rows, [point])


def test_adaptive_serves_the_certified_exits_of_the_tier(manifest_factory):
    # Battery allows 1 pt below the best (0.955): power-aware takes depth 6 (0.950), which leaves
    # 0.5 pt to early exit; most rows leave at depth 2 or 3. Wide blocks: arithmetic, not the
    # per-call overhead of the extra segments, dominates the cost.
    record = exits_at(6, 0.005, {2: 60, 3: 30, 6: 30})
    table = family_table(manifest_factory(width=512), "onnxruntime", "fp32")
    result = run_simulation(table, parse_trace(DISCHARGE), PolicyConfig(), cost_model=COST_MODELS["orin-nano-cpu"],
                            battery_wh=1.0, exits=record, segment_ends=range(1, 33))
    pa, ada = result["policies"]["power-aware"], result["policies"]["adaptive"]
    assert pa["inferences_at_depth"].keys() == ada["inferences_at_depth"].keys() == {"6", "9"}  # AC: 9, battery: 6
    # On battery rows stop at depth 3.25 on average instead of 6: more inferences in the same time.
    assert ada["inferences_at_depth"]["6"] > 1.3 * pa["inferences_at_depth"]["6"]
    assert ada["mean_depth"] < pa["mean_depth"]
    assert ada["inferences_per_charge"] > 1.2 * pa["inferences_per_charge"]
    assert ada["mean_score"] == pytest.approx(pa["mean_score"] - 0.003, abs=1e-3)
    # Narrow blocks: one call per segment costs more than the blocks it skips, and the model says so.
    narrow = run_simulation(family_table(manifest_factory(), "onnxruntime", "fp32"), parse_trace(DISCHARGE),
                            cost_model=COST_MODELS["orin-nano-cpu"], battery_wh=1.0, exits=record,
                            segment_ends=range(1, 33))
    assert narrow["comparison"]["adaptive"]["per_charge_ratio_vs_power_aware"] < 1
    assert result["comparison"]["adaptive"]["per_charge_ratio_vs_power_aware"] > 1.2


def test_without_a_certified_point_adaptive_is_power_aware(digits_manifest):
    table = family_table(digits_manifest, "onnxruntime", "fp32")
    too_greedy = exits_at(6, 0.02, {2: 120})  # needs a 2 pt budget, the battery tier leaves 0.5
    result = run_simulation(table, parse_trace(DISCHARGE), cost_model=COST_MODELS["orin-nano-cpu"], battery_wh=1.0,
                            exits=too_greedy, segment_ends=range(1, 33))
    pa, ada = result["policies"]["power-aware"], result["policies"]["adaptive"]
    assert ada["inferences"] == pa["inferences"] and ada["mean_score"] == pa["mean_score"]
    plain = run_simulation(table, parse_trace(DISCHARGE), cost_model=COST_MODELS["orin-nano-cpu"], battery_wh=1.0)
    assert "adaptive" not in plain["policies"] and "adaptive" not in plain["comparison"]


def test_simulate_command_runs_adaptive_when_the_bundle_has_thresholds(bundle_dir, digits_manifest, tmp_path, capsys):
    trace = tmp_path / "discharge.csv"
    trace.write_text(DISCHARGE)
    digits_manifest.segments = [SegmentEntry(d - 1, d - 1, d, ["x"] if d == 1 else ["s"], ["s", "y"])
                                for d in range(1, 33)]
    digits_manifest.exits["fp32"] = exits_at(6, 0.005, {2: 60, 3: 30, 6: 30})
    digits_manifest.save(bundle_dir)
    assert main(["simulate", str(bundle_dir), "--trace", str(trace), "--battery-wh", "1", "--out",
                 str(tmp_path / "out")]) == 0
    assert "adaptive vs power-aware: " in capsys.readouterr().out
    written = json.loads((tmp_path / "out" / "simulate.json").read_text())
    assert set(written["policies"]) == {"power-aware", "full-depth", "min-depth", "adaptive"}
    assert main(["simulate", str(bundle_dir), "--trace", str(trace), "--precision", "int8", "--out",
                 str(tmp_path / "int8")]) == 0
    assert "adaptive" not in json.loads((tmp_path / "int8" / "simulate.json").read_text())["policies"]
