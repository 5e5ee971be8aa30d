"""Shared fixtures: small trained checkpoints, made once per session."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

# OpenVINO's convert_model (and NNCF) send telemetry from a forked process and then wait up to a
# second for it, on every call; tests must not phone home, and openvino_telemetry stands down
# when CI=true.
os.environ.setdefault("CI", "true")


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    # Tiny models on 2 busy cores: OpenMP spin-waiting makes them ~10x slower with >1 thread.
    try:
        import torch
    except ImportError:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def pytest_addoption(parser):
    parser.addoption("--long", action="store_true", default=False, help="run the long robustness mode")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--long"):
        return
    skip = pytest.mark.skip(reason="long mode only: pass --long")
    for item in items:
        if "long" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def fc_run(tmp_path_factory):
    """A glonet-fc depth-8 checkpoint on digits (a few seconds of training)."""
    pytest.importorskip("torch")
    from glonet_edge.train.trainer import TrainSettings, train_run

    out = tmp_path_factory.mktemp("runs") / "fc8"
    train_run("glonet-fc", 8, "digits", out, settings=TrainSettings(epochs=8), progress=False)
    return out


@pytest.fixture(scope="session")
def fc_served_bundle(fc_run, tmp_path_factory):
    """fc_run exported at every depth with its segment chain (ONNX Runtime fp32 servable)."""
    from glonet_edge.export import export_bundle

    out = tmp_path_factory.mktemp("bundles") / "fc8"
    export_bundle(fc_run, out, depths="all", progress=False)
    return out


# ---- tiny bundles of the quantize and targets tests (bundle_helpers.make_bundle), copied per test ----
@pytest.fixture(scope="session")
def _bundle_cache(tmp_path_factory):
    cache: dict[str, Path] = {}

    def get(kind: str) -> Path:
        pytest.importorskip("torch")  # they are trained here: skipped in a serving-only (torch-free) install
        from bundle_helpers import make_bundle

        if kind not in cache:
            root = tmp_path_factory.mktemp(kind)
            if kind == "fc":
                # digits, depth 16: family 1..16 sampled, segments of 4 blocks
                cache[kind] = make_bundle(root, "glonet-fc", 16, "digits", [1, 4, 8, 16], epochs=12,
                                          segments=[(0, 4), (4, 8), (8, 16)])
            elif kind == "cnn":
                # digits (1x8x8) CNN, depth 6 = 2 blocks per stage
                cache[kind] = make_bundle(root, "glonet-cnn", 6, "digits", [1, 2, 4, 6], epochs=25, lr=5e-3,
                                          segments=[(0, 2), (2, 6)])
            else:
                raise KeyError(kind)
        return cache[kind]

    return get


def _copy(src: Path, tmp_path: Path, name: str) -> Path:
    dst = tmp_path / name / "bundle"
    shutil.copytree(src, dst)
    return dst


@pytest.fixture
def fc_bundle(_bundle_cache, tmp_path) -> Path:
    return _copy(_bundle_cache("fc"), tmp_path, "fc")


@pytest.fixture
def cnn_bundle(_bundle_cache, tmp_path) -> Path:
    return _copy(_bundle_cache("cnn"), tmp_path, "cnn")


def _quantized(kind: str, bundle_cache, tmp_path_factory) -> Path:
    from bundle_helpers import CALIB

    from glonet_edge.quantize import QuantizeSettings, quantize_bundle

    dst = tmp_path_factory.mktemp(f"{kind}_int8") / "bundle"
    shutil.copytree(bundle_cache(kind), dst)
    quantize_bundle(dst, QuantizeSettings(method="ort", calib_size=CALIB, segments=True), progress=False)
    return dst


@pytest.fixture(scope="session")
def fc_int8_bundle_src(_bundle_cache, tmp_path_factory) -> Path:
    """The fc bundle quantized once (ORT, TRT recipe) with segments; tests copy it."""
    return _quantized("fc", _bundle_cache, tmp_path_factory)


@pytest.fixture(scope="session")
def cnn_int8_bundle_src(_bundle_cache, tmp_path_factory) -> Path:
    return _quantized("cnn", _bundle_cache, tmp_path_factory)


@pytest.fixture
def fc_int8_bundle(fc_int8_bundle_src, tmp_path) -> Path:
    return _copy(fc_int8_bundle_src, tmp_path, "fc_int8")


@pytest.fixture
def cnn_int8_bundle(cnn_int8_bundle_src, tmp_path) -> Path:
    return _copy(cnn_int8_bundle_src, tmp_path, "cnn_int8")

