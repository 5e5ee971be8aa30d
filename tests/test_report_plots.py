"""The report's plots: depth labels that do not overlap, legends that do not cover curves."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("matplotlib")

from glonet_edge.report import plots  # noqa: E402
from glonet_edge.report.report import _tradeoff_plot, _training_plot  # noqa: E402


def _intersect(a: Any, b: Any) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


@pytest.fixture
def drawn(monkeypatch) -> list[Any]:
    """The figures the report draws, kept open and rendered instead of turned into PNG bytes."""
    figures: list[Any] = []

    def keep(fig: Any, path: Any = None, dpi: int = 110) -> bytes:
        fig.tight_layout()
        fig.canvas.draw()
        figures.append(fig)
        return b""

    monkeypatch.setattr(plots, "finish", keep)
    return figures


def _crowded_manifest() -> dict[str, Any]:
    """Four target/precision lines whose points nearly coincide (the demo's shape)."""
    depths = []
    for d in (1, 2, 3, 4, 6, 8, 32):
        lat = {f"{t}/{p}": {"p50": 0.01 + 0.0005 * d + 0.0002 * i} for i, (t, p) in
               enumerate([("ort", "fp32"), ("ort", "int8"), ("ov", "fp32"), ("ov", "int8")])}
        depths.append({"depth": d, "params": 10 * d, "macs": 100 * d, "latency_ms": lat,
                       "metrics": {"fp32": {"accuracy": 0.97 + 0.0001 * d}, "int8": {"accuracy": 0.97}}})
    return {"metric_name": "accuracy", "depths": depths}


def test_tradeoff_depth_labels_do_not_overlap(drawn):
    _tradeoff_plot(_crowded_manifest())
    ax = next(a for a in drawn[0].axes if a.get_title().startswith("trade-off"))
    boxes = [t.get_window_extent() for t in ax.texts]
    assert 4 <= len(boxes) < 28  # some labelled, the crowded rest left out
    for i, a in enumerate(boxes):
        assert all(not _intersect(a, b) for b in boxes[i + 1:]), "two depth labels overlap"
        assert not _intersect(a, ax.get_legend().get_window_extent()), "a label under the legend"
        assert ax.bbox.x0 <= a.x0 and a.x1 <= ax.bbox.x1 + 1 and ax.bbox.y0 <= a.y0 and a.y1 <= ax.bbox.y1 + 1


def test_training_legend_sits_below_the_curves(drawn):
    metrics = {"metric": "accuracy", "score_by_depth": {"1": 0.9, "2": 0.95},
               "curve": [{"epoch": e, "train_loss": 4 / e, "val_score": 1 - 0.4 / e} for e in range(1, 11)]}
    _training_plot(metrics)
    ax = next(a for a in drawn[0].axes if a.get_title() == "training")
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["train loss", "val accuracy"]  # one legend, both axes
    assert legend.get_window_extent().y1 <= ax.bbox.y0  # wholly below the axes: covers no curve
    assert sum(a.get_legend() is not None for a in drawn[0].axes) == 1
