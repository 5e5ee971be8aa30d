"""The serving side on the Pythons JetPack ships (3.8 on JetPack 5, 3.10 on JetPack 6).

CI makes a bundle with the main Python (tests/compat/make_reference.py) and runs these tests
in a torch-free venv of each Python, with GLONET_COMPAT_DIR pointing at it: the answers must
equal the main Python's, and the serving commands must work. Without GLONET_COMPAT_DIR the
reference is made here (needs torch), so the main suite checks the same path.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

TOLERANCE = 1e-6  # the bar: the same answers on every Python and engine version


@pytest.fixture(scope="module")
def reference_dir(tmp_path_factory) -> Path:
    given = os.environ.get("GLONET_COMPAT_DIR")
    if given:
        return Path(given)
    pytest.importorskip("torch")
    sys.path.insert(0, str(Path(__file__).parent))
    from make_reference import make_reference

    return make_reference(tmp_path_factory.mktemp("compat"))


def _glonet(*argv: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "glonet_edge", *argv], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def test_answers_equal_the_main_python(reference_dir):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("openvino")
    sys.path.insert(0, str(Path(__file__).parent))
    from make_reference import answers

    with np.load(reference_dir / "reference.npz", allow_pickle=False) as ref:
        expected = {k: ref[k] for k in ref.files}
    here = answers(reference_dir / "bundle", expected.pop("x"))
    assert set(here) == set(expected)
    worst = {k: float(np.max(np.abs(here[k] - expected[k]))) for k in expected}
    assert max(worst.values()) <= TOLERANCE, worst


@pytest.mark.parametrize("argv", [
    ["inspect", "{bundle}", "--verify"],
    ["run", "{bundle}", "--input", "{x}", "--power", "none", "--json"],
    ["run", "{bundle}", "--input", "{x}", "--target", "openvino", "--deadline-ms", "50"],
    ["simulate", "{bundle}", "--trace", "thinkpad_discharge_recorded", "--out", "{tmp}/sim"],
    ["doctor", "{bundle}", "--json"],
])
def test_serving_commands(reference_dir, tmp_path, argv):
    with np.load(reference_dir / "reference.npz", allow_pickle=False) as ref:
        np.save(tmp_path / "x.npy", ref["x"])
    values = {"bundle": str(reference_dir / "bundle"), "x": str(tmp_path / "x.npy"), "tmp": str(tmp_path)}
    res = _glonet(*[a.format(**values) for a in argv], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr


@pytest.mark.skipif(sys.version_info >= (3, 10), reason="training runs on this Python")
def test_training_commands_name_the_python_they_need(tmp_path):
    res = _glonet("train", "--out", str(tmp_path / "run"), cwd=tmp_path)
    assert res.returncode == 2
    assert "needs Python 3.10 or newer" in res.stderr and "Traceback" not in res.stderr
