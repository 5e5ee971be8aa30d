"""Training: the paper's depth behaviour on digits, at sizes that run in CI."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("torch")

from glonet_edge.cli import main  # noqa: E402
from glonet_edge.errors import ConfigError  # noqa: E402
from glonet_edge.train.trainer import TrainSettings, train_run  # noqa: E402


def _scores(run):
    return {int(k): v for k, v in json.loads((run / "metrics.json").read_text())["score_by_depth"].items()}


def test_cli_train_glonet_fc_depth32_flat_from_depth8(tmp_path):
    run = tmp_path / "run"
    assert main(["train", "--model", "glonet-fc", "--depth", "32", "--dataset", "digits", "--out", str(run), "--quiet"]) == 0
    scores = _scores(run)
    assert sorted(scores) == list(range(1, 33))
    best = max(scores.values())
    assert scores[8] >= 0.95
    assert all(scores[k] >= best - 0.01 for k in range(8, 33)), scores
    metrics = json.loads((run / "metrics.json").read_text())
    assert len(metrics["seconds_per_epoch"]) == len(metrics["curve"]) == 40
    config = json.loads((run / "config.json").read_text())
    assert config["model"] == "glonet-fc" and config["depth"] == 32 and config["input_shape"] == [1, 8, 8]


def test_glonet_fc_depth128_does_not_degrade(tmp_path):
    _, metrics = train_run("glonet-fc", 128, "digits", None, progress=False)
    scores = {int(k): v for k, v in metrics.score_by_depth.items()}
    assert min(scores[k] for k in range(8, 129)) >= 0.95


def test_plain_fc_collapses_where_glonet_does_not():
    plain = TrainSettings(epochs=10, cut_loss=0.0)  # the paper's plain training for both
    _, glonet = train_run("glonet-fc", 64, "digits", None, settings=plain, progress=False)
    _, mlp = train_run("plain-fc", 64, "digits", None, settings=plain, progress=False)
    assert glonet.score_by_depth["64"] >= 0.9
    assert mlp.score_by_depth["64"] <= 0.5, "a 64-layer plain MLP is expected to collapse"


@pytest.mark.parametrize("model,depth,epochs,options", [
    ("glonet-cnn", 6, 10, {}),
    ("glonet-vit", 4, 15, {}),
])
def test_cnn_and_vit_train_on_digits(model, depth, epochs, options):
    _, metrics = train_run(model, depth, "digits", None, options=options,
                           settings=TrainSettings(epochs=epochs, lr=2e-3), progress=False)
    assert metrics.score_by_depth[str(depth)] >= 0.90


def test_regression_on_diabetes_reports_r2(tmp_path):
    _, metrics = train_run("glonet-fc", 4, "diabetes", tmp_path / "r", settings=TrainSettings(epochs=30), progress=False)
    assert metrics.metric == "r2"
    assert metrics.score_by_depth["4"] > 0.3


def test_npz_with_nan_is_refused_with_a_clear_message(tmp_path):
    x = np.random.rand(20, 4).astype(np.float32)
    x[3, 1] = np.nan
    np.savez(tmp_path / "d.npz", X=x, y=np.arange(20) % 2)
    with pytest.raises(ConfigError, match="contains 1 NaN/Inf values"):
        train_run("glonet-fc", 2, str(tmp_path / "d.npz"), None, progress=False)


def test_cli_reports_bad_input_without_traceback(tmp_path, capsys):
    assert main(["train", "--model", "nope", "--depth", "4", "--out", str(tmp_path / "x"), "--quiet"]) == 2
    assert "unknown model 'nope'" in capsys.readouterr().err
    assert main(["train", "--depth", "0", "--out", str(tmp_path / "x"), "--quiet"]) == 2
    assert "depth must be a positive integer" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("width, batch, expected", [(32, 64, 1), (1024, 512, None)])
def test_auto_threads_one_for_small_models_torch_default_for_large(monkeypatch, width, batch, expected):
    import torch

    from glonet_edge.train.models import ModelConfig, create_model
    from glonet_edge.train.trainer import cpu_threads

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    model = create_model(ModelConfig("glonet-fc", 8, (64,), 10, "classification", width, {}))
    with cpu_threads(model, TrainSettings(batch_size=batch), torch.device("cpu")) as threads:
        assert threads == (expected or before) == torch.get_num_threads()
    assert torch.get_num_threads() == before  # restored: the caller's process is not changed
    with cpu_threads(model, TrainSettings(threads=3), torch.device("cpu")) as threads:
        assert threads == 3 == torch.get_num_threads()


def test_train_help_names_each_setting_and_default(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for flag, default in (("--epochs", "40"), ("--batch-size", "64"), ("--lr", "1e-3"), ("--threads", "0 = auto")):
        described = text.split("options:", 1)[1]  # past the usage line
        assert f"(default {default}" in described.split(flag, 1)[1][:200], flag
