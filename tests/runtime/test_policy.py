"""The depth policy: floor, budgets, tiers, hysteresis, dwell, reasons, config parsing."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from glonet_edge.errors import ConfigError
from glonet_edge.runtime.policy import (
    COST_MODELS, DepthPolicy, PolicyConfig, choose_depth, classify, cost_key, estimate_costs,
    family_table,
)
from glonet_edge.runtime.power import PowerState

AC = PowerState("t", on_battery=False)
UNKNOWN = PowerState("t")


def battery(pct):
    return PowerState("t", on_battery=True, battery_pct=pct)


@pytest.fixture
def table(digits_manifest):
    return estimate_costs(family_table(digits_manifest, "onnxruntime", "fp32"), COST_MODELS["orin-nano-cpu"])


# ---- family table ---------------------------------------------------------------------------------
def test_family_table_measured_values_and_fallbacks(manifest_factory):
    m = manifest_factory(scores=[0.5, 0.8, 0.9], latency=lambda d: 0.01 * d, energy=lambda d: 0.05 * d,
                         rejected={2: "int8 drift 4 pt"}, precision="int8")
    rows = family_table(m, "onnxruntime", "int8")
    assert [r.depth for r in rows] == [1, 3]  # depth 2 rejected for int8
    assert rows[1].score == 0.9 and rows[1].latency_ms is None  # no onnxruntime/int8 latency measured
    with pytest.raises(ConfigError, match="every depth lacks a score"):
        family_table(m, "onnxruntime", "fp32")  # only int8 was scored


def test_family_table_falls_back_to_fp32_score(manifest_factory):
    m = manifest_factory(scores=[0.5, 0.9], latency=lambda d: 0.02 * d, energy=lambda d: 0.1 * d)
    rows = family_table(m, "onnxruntime", "fp32")
    assert rows[1].latency_ms == pytest.approx(0.04) and rows[1].energy_mj == pytest.approx(0.2)
    int8_rows = family_table(m, "openvino", "int8")
    assert [r.score for r in int8_rows] == [0.5, 0.9] and int8_rows[0].energy_mj is None


def test_family_table_empty_is_an_error(manifest_factory):
    m = manifest_factory(scores=[0.5], rejected={1: "broken"})
    with pytest.raises(ConfigError, match="no depth in the bundle can be served"):
        family_table(m, "onnxruntime", "fp32")


def test_estimates_are_marked_and_measured_values_kept(manifest_factory):
    m = manifest_factory(scores=[0.5, 0.9], latency=lambda d: 0.1 * d)
    rows = estimate_costs(family_table(m, "onnxruntime", "fp32"), COST_MODELS["orin-nano-cpu"])
    assert rows[1].latency_ms == pytest.approx(0.2) and not rows[1].latency_estimated
    assert rows[1].energy_mj == pytest.approx(0.2 * 1.0) and rows[1].energy_estimated  # latency × 1 W
    assert cost_key(rows) == "energy_mj"


def test_cost_model_is_documented():
    model = COST_MODELS["orin-nano-cpu"]
    assert model.joules_per_mac == pytest.approx(1.0 / 3.0e9)
    assert "Orin Nano" in model.device and "measured" in model.source and "assumed" in model.source
    assert model.latency_ms(32, 35136) > 2 * model.latency_ms(6, 8512)


# ---- the rule ---------------------------------------------------------------------------------------
def test_ac_serves_best_score_cheapest_among_ties(table):
    d = choose_depth(AC, table, PolicyConfig())
    assert d.depth == 9 and d.tier == "ac"  # 0.955 first reached at depth 9; deeper ties cost more
    assert d.reason.startswith("on AC: best score → depth 9 (0.955")


def test_unknown_state_behaves_like_ac(table):
    d = choose_depth(UNKNOWN, table, PolicyConfig())
    assert d.depth == 9 and d.reason.startswith("power state unknown")


def test_battery_takes_cheapest_within_one_point(table):
    d = choose_depth(battery(60), table, PolicyConfig())
    assert d.depth == 6 and d.tier == "battery"  # 0.950 >= 0.955 - 0.01; depth 5 (0.934) is below
    assert d.reason.startswith("on battery 60%: cheapest depth within 1.0 pt of best (0.955) → depth 6")


def test_low_battery_reason_matches_the_documented_form(table):
    config = PolicyConfig(max_drop=0.01, low_battery_max_drop=0.03)
    d = choose_depth(battery(18), table, config)
    assert d.reason.startswith("on battery 18% < 20%: cheapest depth within 3.0 pt of best")
    assert d.depth == 5 and d.tier == "battery-low"


def test_accuracy_floor_is_respected_in_every_tier(table):
    config = PolicyConfig(accuracy_floor=0.953, max_drop=0.05, low_battery_max_drop=0.1)
    for state in (battery(60), battery(5), PowerState("t", temp_c=95.0)):
        d = choose_depth(state, table, config)
        assert next(r for r in table if r.depth == d.depth).score >= 0.953
        assert "scoring >= 0.953" in d.reason


def test_floor_nothing_reaches_serves_best(table):
    d = choose_depth(battery(50), table, PolicyConfig(accuracy_floor=0.99, max_drop=0.05))
    assert d.depth == 9 and "no depth reaches the floor" in d.reason


def test_latency_budget_respected(manifest_factory):
    m = manifest_factory(latency=lambda d: 0.01 + 0.002 * d)
    table = family_table(m, "onnxruntime", "fp32")
    d = choose_depth(AC, table, PolicyConfig(ac_max_drop=0.01, max_drop=0.01, latency_budget_ms=0.025))
    row = next(r for r in table if r.depth == d.depth)
    assert row.latency_ms <= 0.025 and row.score >= 0.945
    d = choose_depth(AC, table, PolicyConfig(latency_budget_ms=0.012))  # nothing admissible fits
    assert d.depth == 9 and "no admissible depth fits the budget" in d.reason


def test_energy_budget_respected(table):
    budget = next(r for r in table if r.depth == 7).energy_mj
    d = choose_depth(AC, table, PolicyConfig(ac_max_drop=0.005, max_drop=0.01, energy_budget_mj=budget))
    assert next(r for r in table if r.depth == d.depth).energy_mj <= budget


def test_hot_or_throttled_sheds_depth_and_is_urgent(table):
    d = choose_depth(PowerState("t", on_battery=False, temp_c=90.0), table, PolicyConfig(), current_depth=9,
                     previous_tier="ac")
    assert d.tier == "hot" and d.depth == 6 and d.urgent and d.reason.startswith("90 °C >= 85 °C")
    d = choose_depth(PowerState("t", throttled=True), table, PolicyConfig())
    assert d.tier == "hot" and d.reason.startswith("throttled")


def test_economy_power_mode_acts_like_battery(table):
    state = PowerState("t", on_battery=False, power_budget_w=7.0, power_mode="7W")
    assert choose_depth(state, table, PolicyConfig()).tier == "ac"  # off by default
    d = choose_depth(state, table, PolicyConfig(economy_power_budget_w=10.0))
    assert d.tier == "battery" and d.depth == 6 and "power mode 7W (budget 7 W <= 10 W)" in d.reason


def test_hysteresis_keeps_a_nearly_as_good_depth(table):
    d = choose_depth(battery(60), table, PolicyConfig(), current_depth=7)  # 7 is 8% dearer than 6: keep
    assert d.depth == 7 and "staying at depth 7" in d.reason
    d = choose_depth(battery(60), table, PolicyConfig(cost_margin=0.0), current_depth=7)
    assert d.depth == 6
    d = choose_depth(battery(60), table, PolicyConfig(), current_depth=32)  # far dearer: move
    assert d.depth == 6


def test_tier_hysteresis_bands():
    config = PolicyConfig(battery_low_pct=20, battery_band_pct=5, temp_throttle_c=85, temp_band_c=5)
    assert classify(battery(22), config, previous_tier="battery-low")[0] == "battery-low"
    assert classify(battery(22), config, previous_tier="battery")[0] == "battery"
    assert classify(battery(25), config, previous_tier="battery-low")[0] == "battery"
    hot = PowerState("t", temp_c=82.0)
    assert classify(hot, config, previous_tier="hot")[0] == "hot"
    assert classify(hot, config, previous_tier="ac")[0] == "ac"


def test_choose_depth_is_pure(table):
    state, config = battery(30), PolicyConfig()
    assert {choose_depth(state, table, config, 12) for _ in range(5)} == {choose_depth(state, table, config, 12)}


# ---- the stateful wrapper: no flapping ---------------------------------------------------------------
def _noisy_battery_run(manifest_factory, config, seed=1, steps=600):
    """Battery hovering around the 20% threshold with ±4% sensor noise, one read per second."""
    clock = [0.0]
    table = estimate_costs(family_table(manifest_factory(scores=[0.5, 0.8, 0.9, 0.935, 0.94, 0.945, 0.95]),
                                        "onnxruntime", "fp32"), COST_MODELS["orin-nano-cpu"])
    policy = DepthPolicy(table, config, clock=lambda: clock[0])
    rng = random.Random(seed)
    depths, switch_times, last = [], [], None
    for step in range(steps):
        clock[0] = float(step)
        pct = 20.0 - step * 0.005 + rng.uniform(-4.0, 4.0)
        d = policy.update(battery(pct)).depth
        if last is not None and d != last:
            switch_times.append(clock[0])
        depths.append(d)
        last = d
    return depths, switch_times, policy


def test_noisy_battery_flaps_without_hysteresis_or_dwell(manifest_factory):
    config = PolicyConfig(max_drop=0.01, low_battery_max_drop=0.02, battery_band_pct=0, min_dwell_s=0,
                          cost_margin=0)
    _, switches, _ = _noisy_battery_run(manifest_factory, config)
    assert len(switches) > 50  # the naive rule follows the noise


def test_noisy_battery_is_stable_with_band_and_dwell(manifest_factory):
    config = PolicyConfig(max_drop=0.01, low_battery_max_drop=0.02, battery_band_pct=10, min_dwell_s=30)
    depths, switches, policy = _noisy_battery_run(manifest_factory, config)
    assert len(switches) <= 2 and policy.switches == len(switches)
    assert all(b - a >= 30 for a, b in zip(switches, switches[1:]))


def test_dwell_delays_but_does_not_block_a_switch(table):
    clock = [0.0]
    policy = DepthPolicy(table, PolicyConfig(min_dwell_s=10), clock=lambda: clock[0])
    assert policy.update(AC).depth == 9
    clock[0] = 3.0
    d = policy.update(battery(60))
    assert d.depth == 9 and d.reason.startswith("holding depth 9 for the minimum dwell (7 s left; wants 6")
    clock[0] = 10.0
    assert policy.update(battery(60)).depth == 6 and policy.switches == 1


def test_dwell_is_waived_when_overheating(table):
    clock = [0.0]
    policy = DepthPolicy(table, PolicyConfig(min_dwell_s=60), clock=lambda: clock[0])
    policy.update(AC)
    clock[0] = 1.0
    assert policy.update(PowerState("t", on_battery=False, temp_c=95.0)).depth == 6


# ---- configuration ------------------------------------------------------------------------------------
def test_policy_config_toml_and_json_round_trip(tmp_path):
    f = tmp_path / "policy.toml"
    f.write_text('schema_version = 1\n[policy]\nmax_drop = 0.02\nlow_battery_max_drop = 0.04\n'
                 'temp_throttle_c = "off"\nlatency_budget_ms = 5\nmin_dwell_s = 30\n')
    config = PolicyConfig.from_toml(f)
    assert config.max_drop == 0.02 and config.temp_throttle_c is None and config.latency_budget_ms == 5.0
    assert PolicyConfig.from_json(config.to_json()) == config
    assert PolicyConfig.from_toml_text("max_drop = 0.015") == PolicyConfig(max_drop=0.015)


@pytest.mark.parametrize("text, fragment", [
    ("max_dorp = 0.01", "unknown setting 'max_dorp'; did you mean 'max_drop'?"),
    ("max_drop = 'a lot'", "max_drop must be a finite number"),
    ("max_drop = true", "max_drop must be a finite number"),
    ("max_drop = 2.0", "max_drop must be within [0, 1]"),
    ("max_drop = 0.05", "drops must not shrink"),
    ("battery_low_pct = 120", "battery_low_pct must be within [0, 100]"),
    ("min_dwell_s = -1", "min_dwell_s must be >= 0"),
    ("latency_budget_ms = 0", "latency_budget_ms must be > 0"),
    ("cost_margin = 1.0", "cost_margin must be within [0, 1)"),
    ("schema_version = 99", "newer than this glonet-edge reads"),
    ("max_drop = = 1", "not valid TOML"),
    ("max_drop = nan", "max_drop must be a finite number"),
    ("[policy]\nmax_drop = 0.01\n[other]\nx = 1", "put every setting under [policy]"),
])
def test_policy_config_errors_are_clear(text, fragment):
    with pytest.raises(ConfigError) as info:
        PolicyConfig.from_toml_text(text, "p.toml")
    assert fragment in str(info.value) and "p.toml" in str(info.value)


_values = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                    st.text(max_size=10), st.lists(st.integers(), max_size=3))


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.one_of(st.sampled_from([f.name for f in PolicyConfig.__dataclass_fields__.values()]),
                                 st.text(max_size=12)), _values, max_size=6))
def test_policy_config_garbage_dict_is_config_error(data):
    try:
        config = PolicyConfig.from_json(data)
    except ConfigError:
        return
    assert PolicyConfig.from_json(config.to_json()) == config


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_policy_config_garbage_toml_is_config_error(text):
    try:
        PolicyConfig.from_toml_text(text)
    except ConfigError:
        pass
