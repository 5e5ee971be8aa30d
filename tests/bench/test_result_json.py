"""Bench result files: one line per row, the same values as the result, checked-in ones too."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from glonet_edge.bench import result_json

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def test_rows_are_one_line_each_and_values_round_trip_exactly():
    result = {"rows": [{"depth": 1, "ms": 0.1 + 0.2, "by_round": [1e-7, 3.0]}, {"depth": 2, "ms": None, "ok": True}],
              "environment": {"cpu": "x", "versions": {"numpy": "2.0"}}, "skipped": [], "bundle": "b",
              "by_depth": {7: (1, 2)}}
    text = result_json(result)
    assert text.splitlines() == [
        "{",
        '  "rows": [',
        '    {"depth": 1, "ms": 0.30000000000000004, "by_round": [1e-07, 3.0]},',
        '    {"depth": 2, "ms": null, "ok": true}',
        "  ],",
        '  "environment": {',
        '    "cpu": "x",',
        '    "versions": {"numpy": "2.0"}',
        "  },",
        '  "skipped": [],',
        '  "bundle": "b",',
        '  "by_depth": {"7": [1, 2]}',
        "}",
    ]
    assert json.loads(text) == json.loads(json.dumps(result))  # tuples and int keys as json writes them


def test_nan_is_refused_as_json_would():
    with pytest.raises(ValueError):
        result_json({"rows": [{"ms": float("nan")}]})


@pytest.mark.parametrize("path", sorted(BENCHMARKS.glob("**/*.json")), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_checked_in_results_are_written_one_line_per_row(path):
    text = path.read_text()
    assert result_json(json.loads(text)) == text
