"""glonet demo: the whole pipeline end to end on digits, then a re-run that skips every stage."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")
pytest.importorskip("openvino")
pytest.importorskip("matplotlib")  # the report's plots

from glonet_edge.cli import main  # noqa: E402


def test_demo_runs_the_pipeline_and_reports(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert f"Report: {(out / 'report.html').resolve()}" in printed
    html = (out / "report.html").read_text()
    assert "<img" in html and "http://" not in html and "https://" not in html
    manifest = json.loads((out / "bundle" / "manifest.json").read_text())
    full = max(manifest["depths"], key=lambda e: e["depth"])
    assert full["depth"] == 32
    assert {"onnxruntime/fp32", "onnxruntime/int8", "openvino/fp32", "openvino/int8"} <= set(full["latency_ms"])
    assert abs(full["metrics"]["int8"]["accuracy"] - full["metrics"]["fp32"]["accuracy"]) <= 0.005
    sim = json.loads((out / "simulate" / "simulate.json").read_text())
    assert set(sim["policies"]) >= {"power-aware", "full-depth", "min-depth"}

    assert main(["demo", "--out", str(out), "--quiet", "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert {s["status"] for s in again["stages"]} == {"skipped"}
