"""Fixtures for tests/robustness: bundle copies, an OpenVINO-compiled bundle, held-out inputs,
and the figures file (robustness_figures.json, named in one line at the end of the run).

Fast mode (CI) runs every test with small example counts and a few seconds of load; `--long`
raises the hypothesis budgets 20x and runs the load test for 60 s (GLONET_LOAD_SECONDS
overrides either).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
for extra in (HERE, HERE.parent / "runtime"):  # robust_support; fake_sysfs (the device trees)
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

import robust_support  # noqa: E402

_FIGURES_PATH: list[Path] = []


_ROOT_LEVEL: list[int] = []


def pytest_configure(config):
    import logging

    robust_support.LONG = bool(config.getoption("--long", default=False))
    _ROOT_LEVEL.append(logging.getLogger().level)  # before any fixture (quantize) changes it


@pytest.fixture(scope="session")
def _robust_cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("robust-engine-cache")


@pytest.fixture(scope="module", autouse=True)
def _robust_env(_robust_cache_dir):
    """Per module (so nothing leaks into other test folders): engine caches (OpenVINO) in a
    temp dir, not ~/.cache; one ONNX Runtime thread per session (2 shared cores)."""
    old = {k: os.environ.get(k) for k in ("GLONET_CACHE_DIR", "GLONET_THREADS")}
    os.environ["GLONET_CACHE_DIR"] = str(_robust_cache_dir)
    os.environ["GLONET_THREADS"] = "1"
    yield
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(autouse=True)
def _restore_root_logging():
    """A stage that touches the root logger's level and fails to restore it must not leak into
    later tests (test_quantize_leaves_the_root_logger_alone checks quantize itself)."""
    import logging

    yield
    logging.getLogger().setLevel(_ROOT_LEVEL[0])


@pytest.fixture(scope="session", autouse=True)
def _figures_file(tmp_path_factory):
    """Where the figures go: $GLONET_ROBUSTNESS_FIGURES, else the session's pytest tmp dir."""
    path = Path(os.environ.get("GLONET_ROBUSTNESS_FIGURES")
                or tmp_path_factory.getbasetemp() / "robustness_figures.json")
    _FIGURES_PATH.append(path)
    robust_support.put("run", "mode", "long" if robust_support.LONG else "fast")
    yield path
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(robust_support.figures_json(), indent=2, sort_keys=True) + "\n")


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    figures = robust_support.figures_json()
    if len(figures) <= 1:  # only "run": no robustness test ran
        return
    # One line: the figures themselves are in the file (-v prints them too).
    where = f" written to {_FIGURES_PATH[0]}" if _FIGURES_PATH else ""
    terminalreporter.write_line(f"robustness figures ({len(figures) - 1} groups){where}")
    if config.getoption("verbose") > 0:
        terminalreporter.write_line(json.dumps(figures, indent=1, sort_keys=True))


@pytest.fixture(scope="session")
def x_val() -> np.ndarray:
    from glonet_edge.data import load_dataset

    return np.ascontiguousarray(load_dataset("digits").x_val[:32])


@pytest.fixture(scope="session")
def ort_reference(fc_served_bundle, x_val) -> dict[int, np.ndarray]:
    """Single-threaded answers of every depth on x_val (ONNX Runtime fp32), by depth."""
    from glonet_edge.runtime import Runtime

    with Runtime.open(fc_served_bundle, power="none", anytime=False) as rt:
        out = {}
        for d in rt.depths:
            rt.set_depth(d)
            out[d] = rt.infer(x_val).outputs
    return out


@pytest.fixture
def bundle_copy(fc_served_bundle, tmp_path) -> Path:
    """A private copy of the served fc bundle (all depths + segments) that a test may damage."""
    dst = tmp_path / "bundles" / "fc8"
    shutil.copytree(fc_served_bundle, dst, symlinks=True)
    return dst


@pytest.fixture(scope="session")
def ov_bundle_src(fc_served_bundle, tmp_path_factory) -> Path:
    """The fc bundle with OpenVINO fp32 IRs of depths 1, 4, 8 (no segments): tests copy it."""
    pytest.importorskip("openvino")
    from glonet_edge.targets.compile import compile_bundle

    dst = tmp_path_factory.mktemp("robust-ov") / "fc8"
    shutil.copytree(fc_served_bundle, dst)
    compile_bundle(dst, "openvino", ["fp32"], depths=[1, 4, 8], segments=False, progress=False, verify=False)
    return dst


@pytest.fixture
def ov_bundle(ov_bundle_src, tmp_path) -> Path:
    dst = tmp_path / "ov" / "fc8"
    shutil.copytree(ov_bundle_src, dst, symlinks=True)
    return dst
