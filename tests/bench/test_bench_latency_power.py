"""bench latency / power / torch-latency: contract keys and sane values on a tiny bundle."""

from __future__ import annotations

import json

import pytest

from glonet_edge.cli import main

pytest.importorskip("onnxruntime")


def test_latency_suite_rows_match_the_contract(fc_served_bundle, tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "lat"
    assert main(["bench", "latency", "--bundle", str(fc_served_bundle), "--targets", "onnxruntime",
                 "--precisions", "fp32", "--batches", "1,4", "--iterations", "20", "--warmup", "2",
                 "--switches", "20", "--switch-rounds", "3", "--out", str(out)]) == 0
    result = json.loads((out / "latency.json").read_text())
    rows = result["rows"]
    assert {(r["depth"], r["batch"]) for r in rows} == {(d, b) for d in range(1, 9) for b in (1, 4)}
    for r in rows:
        assert {"model", "target", "precision", "depth", "batch", "runtime_ms", "raw_engine_ms"} <= set(r)
        assert r["runtime_ms"] > 0 and r["raw_engine_ms"] > 0
        assert r["overhead_ratio"] == pytest.approx(r["runtime_ms"] / r["raw_engine_ms"])
    (summary,) = result["summary"]
    b1 = [r for r in rows if r["batch"] == 1]
    assert summary["family_overhead_pct"] == pytest.approx(
        100 * (sum(r["runtime_ms"] for r in b1) / sum(r["raw_engine_ms"] for r in b1) - 1))
    assert summary["max_overhead_pct"] == pytest.approx(100 * (max(r["overhead_ratio"] for r in b1) - 1))
    (sw,) = result["switch"]
    assert sw["switches"] == 20 and sw["rounds"] == 3
    # The reported p99 is the median round's; the worst round stays visible.
    assert sw["switch_extra_p99_ms"] == sorted(sw["switch_extra_p99_ms_by_round"])[1]  # rounds kept in order
    assert sw["switch_extra_p99_ms_worst_round"] == max(sw["switch_extra_p99_ms_by_round"])
    assert (out / "latency.png").stat().st_size > 0 and (out / "latency.md").is_file()


def test_power_suite_compares_policies_per_trace(fc_served_bundle, tmp_path):
    out = tmp_path / "pw"
    assert main(["bench", "power", "--bundle", str(fc_served_bundle), "--traces",
                 "laptop_discharge,orin_nano_battery", "--out", str(out)]) == 0
    result = json.loads((out / "power.json").read_text())
    # An exported bundle carries fp32 exit thresholds, so the adaptive policy runs too (docs/adaptive.md).
    policies = {"power-aware", "full-depth", "min-depth", "adaptive"}
    assert {r["policy"] for r in result["rows"]} == policies
    laptop, orin = result["comparison"]
    assert laptop["trace"] == "laptop_discharge" and laptop["ratio_vs_full_depth"] >= 1.0
    # Each trace is costed as the device it comes from unless --cost-model says otherwise.
    assert (laptop["cost_model"], orin["cost_model"]) == ("x86-cpu", "orin-nano-cpu")
    sim = json.loads((out / "laptop_discharge" / "simulate.json").read_text())
    assert set(sim["policies"]) == policies


def test_torch_latency_suite_on_cpu(fc_run, tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("matplotlib")
    out = tmp_path / "tl"
    assert main(["bench", "torch-latency", "--run", str(fc_run), "--device", "cpu", "--depths", "1,8",
                 "--batches", "1", "--iterations", "5", "--warmup", "1", "--out", str(out)]) == 0
    rows = json.loads((out / "torch_latency.json").read_text())["rows"]
    assert [r["depth"] for r in rows] == [1, 8]
    assert rows[1]["macs"] > rows[0]["macs"] and all(r["p50_ms"] > 0 for r in rows)


def test_latency_suite_reports_int8_file_bytes_from_the_files(fc_int8_bundle_src):
    """The bytes table (issue 17.3) is what is on disk, each INT8 graph against its own depth's FP32."""
    from glonet_edge.bench.latency import int8_file_bytes
    from glonet_edge.manifest import BundleManifest

    manifest = BundleManifest.load(fc_int8_bundle_src)
    rows = int8_file_bytes(manifest)
    assert {r["depth"] for r in rows} == {e.depth for e in manifest.depths}
    for r in rows:
        stem = fc_int8_bundle_src / "onnx" / f"depth_{r['depth']:03d}"
        assert r["fp32_bytes"] == stem.with_suffix(".onnx").stat().st_size
        int8_path = fc_int8_bundle_src / manifest.depth(r["depth"]).artifact(r["int8_format"], "int8").path
        assert r["int8_bytes"] == int8_path.stat().st_size
        assert r["int8_over_fp32"] == pytest.approx(r["int8_bytes"] / r["fp32_bytes"]) and r["int8_over_fp32"] < 1
