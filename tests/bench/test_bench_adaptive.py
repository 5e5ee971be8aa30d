"""`glonet bench adaptive` on the small fc bundle: the matched depth, the ratios, the files."""

from __future__ import annotations

import json
import shutil

import pytest

pytest.importorskip("torch")
pytest.importorskip("matplotlib")
pytest.importorskip("onnxruntime")

from glonet_edge.cli import main  # noqa: E402
from glonet_edge.manifest import BundleManifest  # noqa: E402


def test_adaptive_bench_compares_with_the_cheapest_fixed_depth_of_equal_accuracy(fc_served_bundle, tmp_path, capsys):
    bundle = tmp_path / "fc"
    shutil.copytree(fc_served_bundle, bundle)
    out = tmp_path / "out"
    assert main(["bench", "adaptive", "--out", str(out), "--families", "fc", "--fc-bundle", str(bundle),
                 "--targets", "onnxruntime", "--batches", "1,8", "--repeats", "1", "--max-drop", "0.01",
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    manifest = BundleManifest.load(bundle)
    macs = {e.depth: e.macs for e in manifest.depths}
    fixed = {int(d): s for d, s in result["families"]["fc"]["fixed"]["onnxruntime"].items()}
    assert [r["batch"] for r in result["rows"]] == [1, 8]
    for r in result["rows"]:
        reaching = [d for d, s in fixed.items() if s >= r["adaptive_score"] - 1e-12]
        assert r["matched_depth"] == min(reaching, key=macs.get)  # the cheapest that is as accurate
        assert r["macs_ratio"] == pytest.approx(macs[r["matched_depth"]] / r["adaptive_macs"])
        assert r["drop_pts_vs_full"] == pytest.approx(100 * (fixed[8] - r["adaptive_score"]))
        assert sum(s.macs for s in manifest.segments[:1]) <= r["adaptive_macs"] <= sum(s.macs for s in manifest.segments)
        assert r["latency_ratio"] == pytest.approx(r["matched_ms"] / r["adaptive_ms"])
    assert result["rows"][0]["adaptive_score"] == result["rows"][1]["adaptive_score"]  # same rows either way
    (even,) = result["breakeven"]
    assert even["segments"] == 8 and even["chain_full_ms"] > 0 and even["check_ms"] > 0
    (power,) = result["power"]
    assert power["trace"] == "thinkpad_discharge_recorded" and power["power_aware_per_charge"] > 0
    assert {0.01} <= {p.max_drop for p in manifest.exits["fp32"].points}
    assert "glonet bench adaptive" in (out / "adaptive.md").read_text()
    assert (out / "adaptive.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
