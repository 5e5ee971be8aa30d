"""Data sources: CIFAR-10 binary batches, .npz files, built-in sets, deterministic splits."""

from __future__ import annotations

import numpy as np
import pytest

from glonet_edge.data import CIFAR_RECORD, load_dataset, score
from glonet_edge.errors import ConfigError


def _cifar_batch(path, n, rng):
    labels = rng.integers(0, 10, n, dtype=np.uint8)
    pixels = rng.integers(0, 256, (n, 3 * 32 * 32), dtype=np.uint8)
    np.concatenate([labels[:, None], pixels], axis=1).tofile(path)
    return labels, pixels


def test_cifar10_binary_directory(tmp_path):
    rng = np.random.default_rng(0)
    labels, pixels = _cifar_batch(tmp_path / "data_batch_1.bin", 20, rng)
    _cifar_batch(tmp_path / "data_batch_2.bin", 10, rng)
    _cifar_batch(tmp_path / "test_batch.bin", 8, rng)
    data = load_dataset(str(tmp_path))
    assert data.task == "classification" and data.num_outputs == 10
    assert data.x_train.shape == (30, 3, 32, 32) and data.x_val.shape == (8, 3, 32, 32)
    assert data.x_train.dtype == np.float32 and data.x_train.max() <= 255
    # record layout: label byte, then 1024 red, 1024 green, 1024 blue bytes, row-major
    np.testing.assert_array_equal(data.x_train[0].reshape(-1), pixels[0].astype(np.float32))
    assert data.y_train[0] == labels[0]


def test_cifar10_truncated_or_missing_files(tmp_path):
    rng = np.random.default_rng(1)
    _cifar_batch(tmp_path / "data_batch_1.bin", 4, rng)
    with pytest.raises(ConfigError, match="no CIFAR-10 binary files"):
        load_dataset(str(tmp_path))
    _cifar_batch(tmp_path / "test_batch.bin", 4, rng)
    raw = (tmp_path / "test_batch.bin").read_bytes()
    (tmp_path / "test_batch.bin").write_bytes(raw[: CIFAR_RECORD * 2 + 100])
    with pytest.raises(ConfigError, match="truncated or in another format"):
        load_dataset(str(tmp_path))


def test_npz_sources_and_split_is_deterministic(tmp_path):
    x = np.random.default_rng(0).random((50, 6)).astype(np.float32)
    np.savez(tmp_path / "cls.npz", X=x, y=np.arange(50) % 3)
    np.savez(tmp_path / "reg.npz", X=x, y=x.sum(axis=1))
    cls, again = load_dataset(str(tmp_path / "cls.npz"), seed=3), load_dataset(str(tmp_path / "cls.npz"), seed=3)
    assert cls.task == "classification" and cls.num_outputs == 3
    np.testing.assert_array_equal(cls.x_val, again.x_val)
    assert not np.array_equal(cls.x_val, load_dataset(str(tmp_path / "cls.npz"), seed=4).x_val)
    reg = load_dataset(str(tmp_path / "reg.npz"))
    assert reg.task == "regression" and reg.y_train.shape[1] == 1 and reg.metric_name == "r2"
    np.savez(tmp_path / "bad.npz", data=x)
    with pytest.raises(ConfigError, match="must contain arrays named 'X' and 'y'"):
        load_dataset(str(tmp_path / "bad.npz"))
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ConfigError, match="could not be read as an .npz"):
        load_dataset(str(tmp_path / "junk.npz"))
    with pytest.raises(ConfigError, match="unknown data set 'mnist'"):
        load_dataset("mnist")


def test_builtin_sets_keep_source_units_and_score_metrics():
    digits = load_dataset("digits")
    assert digits.input_shape == [1, 8, 8] and digits.x_train.max() == 16
    assert len(digits.x_train) + len(digits.x_val) == 1797
    diabetes = load_dataset("diabetes")
    assert diabetes.task == "regression" and diabetes.input_shape == [10]
    y = np.array([0, 1, 2])
    assert score("classification", np.eye(3)[[0, 1, 1]], y) == pytest.approx(2 / 3)
    assert score("regression", np.array([[1.0], [2.0], [3.0]]), np.array([[1.0], [2.0], [3.0]])) == 1.0
