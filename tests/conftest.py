"""Shared fixtures: small trained checkpoints, made once per session."""

from __future__ import annotations

import pytest


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
