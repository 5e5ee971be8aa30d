"""Checkpoints: bit-for-bit reload, and a clear error for every broken file."""

from __future__ import annotations

import json
import shutil

import pytest

torch = pytest.importorskip("torch")

from glonet_edge.errors import ArtifactError, ConfigError  # noqa: E402
from glonet_edge.train.checkpoint import load_checkpoint  # noqa: E402


@pytest.fixture
def run(fc_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(fc_run, copy)
    return copy


def test_reload_reproduces_outputs_bit_for_bit(run):
    from glonet_edge.data import load_dataset

    a = load_checkpoint(run)
    b = load_checkpoint(run)
    x = torch.from_numpy(load_dataset("digits").x_val[:64])
    with torch.no_grad():
        for k in range(1, 9):
            assert torch.equal(a.model(x, depth=k), b.model(x, depth=k))
    assert a.metrics.score_by_depth.keys() == {str(k) for k in range(1, 9)}
    assert len(a.sha256) == 64


def test_missing_files(run, tmp_path):
    with pytest.raises(ArtifactError, match="does not exist"):
        load_checkpoint(tmp_path / "nothing")
    (run / "model.safetensors").unlink()
    with pytest.raises(ArtifactError, match="model.safetensors is missing"):
        load_checkpoint(run)


def test_truncated_and_corrupt_weights(run):
    weights = run / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(ArtifactError, match="corrupt or truncated"):
        load_checkpoint(run)
    weights.write_bytes(b"\x00" * 8 + data[8:])
    with pytest.raises(ArtifactError, match="corrupt or truncated"):
        load_checkpoint(run)


def test_config_that_does_not_match_the_weights(run):
    cfg = json.loads((run / "config.json").read_text())
    cfg["depth"] = 12
    (run / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ArtifactError, match="does not match config.json"):
        load_checkpoint(run)
    cfg["depth"], cfg["width"] = 8, 16
    (run / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ArtifactError, match="has shape"):
        load_checkpoint(run)


def test_malformed_and_future_config(run):
    (run / "config.json").write_text('{"schema_version": 1, "model": "glonet-fc"')
    with pytest.raises(ArtifactError, match="not valid JSON"):
        load_checkpoint(run)
    (run / "config.json").write_text(json.dumps({"schema_version": 99, "model": "glonet-fc"}))
    with pytest.raises(ConfigError, match="newer than this glonet-edge"):
        load_checkpoint(run)
