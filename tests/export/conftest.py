"""Checkpoints and bundles shared by the export tests (trained once per session, tiny)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from glonet_edge.export import export_bundle
from glonet_edge.train.trainer import TrainSettings, train_run


def _train(root: Path, name: str, model: str, depth: int, dataset: str, epochs: int, **kw) -> Path:
    out = root / name
    train_run(model, depth, dataset, out=out, settings=TrainSettings(epochs=epochs), progress=False, **kw)
    return out


@pytest.fixture(scope="session")
def runs_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="session")
def fc_run(runs_dir) -> Path:
    return _train(runs_dir, "fc8", "glonet-fc", 8, "digits", epochs=2)


@pytest.fixture(scope="session")
def fc32_run(runs_dir) -> Path:
    return _train(runs_dir, "fc32", "glonet-fc", 32, "digits", epochs=1)


@pytest.fixture(scope="session")
def regression_run(runs_dir) -> Path:
    return _train(runs_dir, "fc-diabetes", "glonet-fc", 4, "diabetes", epochs=2)


@pytest.fixture(scope="session")
def cifar_like_npz(runs_dir) -> Path:
    """64 random 3x32x32 images with CIFAR-10's shape, dtype and value range."""
    rng = np.random.default_rng(0)
    path = runs_dir / "cifar_like.npz"
    np.savez(path, X=rng.integers(0, 256, (64, 3, 32, 32)).astype(np.float32), y=rng.integers(0, 10, 64).astype(np.int64))
    return path


@pytest.fixture(scope="session")
def cnn_run(runs_dir, cifar_like_npz) -> Path:
    return _train(runs_dir, "cnn3", "glonet-cnn", 3, str(cifar_like_npz), epochs=2)


@pytest.fixture(scope="session")
def vit_run(runs_dir) -> Path:
    return _train(runs_dir, "vit2", "glonet-vit", 2, "digits", epochs=1, width=32)


@pytest.fixture(scope="session")
def fc_bundle(fc_run, tmp_path_factory) -> Path:
    """All depths of the fc checkpoint plus its segment chain; tests must not modify it."""
    out = tmp_path_factory.mktemp("bundles") / "fc8"
    export_bundle(fc_run, out, depths="all", progress=False)
    return out
