"""Data-parallel training with torchrun: two CPU processes (gloo) write one checkpoint."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytest.importorskip("torch")


def test_torchrun_two_cpu_processes_write_a_checkpoint(tmp_path):
    run = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "glonet_edge", "train", "--model", "glonet-fc", "--depth", "4", "--epochs", "3",
           "--device", "cpu", "--out", str(run), "--quiet"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    config = json.loads((run / "config.json").read_text())
    assert config["training"]["world_size"] == 2
    metrics = json.loads((run / "metrics.json").read_text())
    assert sorted(map(int, metrics["score_by_depth"])) == [1, 2, 3, 4]
    assert metrics["score_by_depth"]["4"] > 0.5  # it learned something in 3 epochs

    from glonet_edge.train.checkpoint import load_checkpoint

    ckpt = load_checkpoint(run)  # the same kind of checkpoint as a single-process run
    assert ckpt.config.model.depth == 4
