"""The files in examples/ run as the README says."""

from __future__ import annotations

import configparser
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_serve_frames_logs_each_depth_decision(fc_served_bundle, tmp_path):
    pil = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(0)
    for i in range(3):
        pil.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8)).save(tmp_path / f"f{i}.png")
    res = subprocess.run([sys.executable, str(EXAMPLES / "serve_frames.py"), str(fc_served_bundle), "--frames",
                          str(tmp_path), "--power", "none", "--scale", str(16 / 255), "--max-frames", "3"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    lines = res.stderr.splitlines()
    assert sum("depth None ->" in ln for ln in lines) == 1  # the first decision, with its reason
    assert [ln.split(": ")[0].split()[-1] for ln in lines if " at depth " in ln] == ["f0.png", "f1.png", "f2.png"]


def test_systemd_unit_restarts_on_failure():
    """Keys and sections as systemd.service(5) and systemd.unit(5) define them."""
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # systemd keys are case-sensitive
    unit.read(EXAMPLES / "glonet-serve.service")
    assert unit["Service"]["Restart"] == "on-failure"
    assert {"StartLimitIntervalSec", "StartLimitBurst"} <= set(unit["Unit"])  # [Unit] since systemd 230
    assert unit["Install"]["WantedBy"] == "multi-user.target"
    script = unit["Service"]["ExecStart"].split()[1]
    assert (EXAMPLES / Path(script).name).is_file()
