"""`glonet bench own-model` on a tiny sweep: contract keys, sane values, files written (run in
the venv that has timm; skipped where timm cannot be imported)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")
pytest.importorskip("PIL")
pytest.importorskip("openvino")

from glonet_edge.cli import main  # noqa: E402


def test_own_model_contract(tmp_path, capsys):
    pytest.importorskip("timm")
    out = tmp_path / "om"
    assert main(["bench", "own-model", "--out", str(out), "--per-class", "4", "--val-per-class", "3", "--epochs", "1",
                 "--depths", "1,8", "--calib-size", "8", "--max-drop", "1", "--iterations", "3", "--warmup", "1",
                 "--quiet", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert json.loads((out / "own_model.json").read_text()) == result
    assert result["library"] == "timm" and result["arch"] == "resnet18" and result["num_blocks"] == 8
    assert result["input_shape"] == [3, 32, 32] and len(result["classes"]) == 6
    assert result["data"] == {"path": str(out / "shapes"), "synthetic": True, "train_images": 24, "val_images": 18}
    assert set(result["timings"]) == {"train_s", "export_s", "quantize_s", "compile_openvino_s"}
    assert all(v > 0 for v in result["timings"].values())
    assert len(result["load_start"]) == 3 and len(result["load_end"]) == 3
    rows = result["rows"]
    assert [r["depth"] for r in rows] == [1, 8]
    assert rows[0]["params"] < rows[1]["params"] and rows[0]["macs"] < rows[1]["macs"]
    for r in rows:
        assert 0 <= r["fp32_score"] <= 1 and 0 <= r["int8_score"] <= 1 and r["int8_rejected"] is False
        assert r["openvino/fp32_p50_ms"] > 0 and r["openvino/int8_p50_ms"] > 0
    md = (out / "own_model.md").read_text()
    assert "synthetic shapes" in md and "| depth |" in md and "glonet bench own-model" in md
