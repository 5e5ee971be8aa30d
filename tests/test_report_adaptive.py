"""The report's adaptive-serving section on a real exported bundle."""

from __future__ import annotations

import re

import pytest

pytest.importorskip("torch")
pytest.importorskip("matplotlib")

from glonet_edge.manifest import BundleManifest  # noqa: E402
from glonet_edge.report.report import write_report  # noqa: E402


def test_report_shows_exit_depths_and_accuracy_vs_cost(fc_served_bundle, tmp_path):
    record = BundleManifest.load(fc_served_bundle).exits["fp32"]
    write_report(fc_served_bundle, tmp_path / "report.html", explain=False)
    page = (tmp_path / "report.html").read_text()
    section = re.search(r'<section id="adaptive">(.*?)</section>', page, re.S).group(1)
    assert "Adaptive serving (early exit)" in section and record.method in section
    deepest = max(p.max_depth for p in record.points)
    assert section.count("<tr>") - section.count("<tr><td>") >= 1  # header rows
    for point in (p for p in record.points if p.max_depth == deepest):
        assert f"<td>{point.max_drop:.4g}</td>" in section
    assert section.count('src="data:image/png;base64,') == 1
