"""The report's power section: a readable policy table, distinct curves, and a caption that
names the policies whose curves coincide."""

from __future__ import annotations

import re

import pytest

pytest.importorskip("matplotlib")

from glonet_edge.report.power import caption, coinciding, policy_rows, power_plot, section  # noqa: E402


def _policy(inferences: int, depths: list[int], battery: list[float | None]) -> dict:
    return {"inferences": inferences, "mean_score": 0.96123, "energy_j": 12.5, "depth_switches": 3,
            "total_energy_j": 20.25, "baseline_energy_j": 7.75, "energy_per_inference_mj": 0.123456,
            "mean_depth": 17.333, "simulated_s": 3600.0, "on_battery_s": 3600.0, "battery_empty": True,
            "battery_empty_at_s": 5400.0, "inferences_on_battery": inferences, "inferences_per_charge": 2 * inferences,
            "min_time_between_switches_s": 60.0, "time_at_depth_s": {"4": 10.0}, "inferences_at_depth": {"4": 5},
            "switches": [[0.0, 4, 8]], "timeline": {"t_s": [0.0, 1800.0, 3600.0], "depth": depths,
                                                    "battery_pct": battery, "tier": [0, 0, 1]}}


RESULT = {"metric": "accuracy", "trace": {"name": "traces/laptop.csv"}, "load": "10 Hz",
          "policies": {"power-aware": _policy(1234567, [32, 16, 8], [100.0, 60.0, 20.0]),
                       "full-depth": _policy(1000, [32, 32, 32], [100.0, 50.0, 0.0]),
                       "adaptive": _policy(2000, [32, 16, 8], [100.0, 60.0, 20.0])}}


def test_policy_table_keeps_the_readers_columns_formatted():
    rows, columns = policy_rows(RESULT)
    assert columns[0] == "policy" and 6 <= len(columns) <= 10  # not simulate.json's 16+ keys
    assert "mean accuracy" in columns and "mJ per inference" in columns and "depth switches" in columns
    pa = rows[0]
    assert pa["inferences"] == "1,234,567" and pa["mean accuracy"] == "0.9612" and pa["mean depth"] == "17.3"
    assert pa["mJ per inference"] == "0.123" and pa["battery empty at"] == "1.50 h" and pa["energy (J)"] == "20.25"
    assert policy_rows({**RESULT, "policies": {"a": {**_policy(5, [1], [None]), "total_energy_j": 162345.6}}})[0][0][
        "energy (J)"] == "162,346"  # not 1.623e+05
    one_charge = {"metric": "accuracy", "policies": {"a": {**_policy(5, [1], [1.0]), "inferences_per_charge": 5}}}
    assert "inferences per charge" not in policy_rows(one_charge)[1]  # the same numbers twice: shown once
    no_battery = {"metric": "accuracy", "policies": {"a": {**_policy(5, [1], [None]), "inferences_per_charge": None,
                                                           "battery_empty_at_s": None}}}
    assert "inferences per charge" not in policy_rows(no_battery)[1]  # no column that is empty everywhere


def test_coinciding_curves_are_named():
    policies = RESULT["policies"]
    assert coinciding(policies, "depth") == [["power-aware", "adaptive"]]
    assert coinciding(policies, "battery_pct") == [["power-aware", "adaptive"]]
    assert "power-aware and adaptive coincide" in caption(policies)
    distinct = {k: v for k, v in policies.items() if k != "adaptive"}
    assert caption(distinct) == ""
    # The same curve sampled at other times (timelines are downsampled per policy) still coincides.
    resampled = _policy(1, [32, 32, 32, 32], [100.0, 75.0, 50.0, 0.0])
    resampled["timeline"]["t_s"] = [0.0, 900.0, 1800.0, 3600.0]
    assert coinciding({"full-depth": policies["full-depth"], "x": resampled}, "battery_pct") == [["full-depth", "x"]]


def test_plot_draws_every_policy_in_its_own_style():
    import io

    from matplotlib.image import imread

    pixels = imread(io.BytesIO(power_plot(RESULT)))[..., :3]
    # Each policy's colour (STYLES order) appears, even where two curves lie on each other.
    for colour in ((0x1F, 0x77, 0xB4), (0xD6, 0x27, 0x28), (0x2C, 0xA0, 0x2C)):
        near = (abs(pixels * 255 - colour) < 40).all(axis=-1)
        assert near.sum() > 30, f"no pixels of colour {colour}"


def test_section_has_table_plot_and_caption(tmp_path):
    html = section({"simulate": {"path": str(tmp_path / "simulate.json"), "result": RESULT}})
    assert html.count("</th>") == len(policy_rows(RESULT)[1])
    assert '<div class="scroll"><table>' in html
    assert len(re.findall(r'<img [^>]*src="data:image/png;base64,', html)) == 1
    assert "power-aware and adaptive coincide" in html
