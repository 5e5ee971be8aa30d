"""`glonet explain`: per-block contributions of a GloNet add up exactly and show self-regulation."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from glonet_edge.cli import main  # noqa: E402
from glonet_edge.errors import ConfigError  # noqa: E402
from glonet_edge.report.explain import block_terms, explain_model, explain_run  # noqa: E402
from glonet_edge.train.models import ModelConfig, create_model  # noqa: E402
from glonet_edge.train.trainer import TrainSettings, train_run  # noqa: E402


@pytest.mark.parametrize("name, shape, options, depth", [
    ("glonet-fc", [1, 8, 8], {}, 5),
    ("glonet-fc", [1, 8, 8], {"sum_stem": False}, 5),
    ("glonet-cnn", [3, 15, 15], {}, 6),          # odd size: ceil-mode pooling in the carry
    ("glonet-cnn", [3, 16, 16], {"norm": "bn"}, 6),
    ("glonet-vit", [1, 8, 8], {}, 3),
])
def test_contributions_add_up_to_the_output(name, shape, options, depth):
    torch.manual_seed(0)
    model = create_model(ModelConfig(name, depth, shape, 10, "classification", 32, options))
    if options.get("norm") == "bn":  # non-trivial running statistics, then eval mode
        model.train()
        with torch.no_grad():
            model(torch.randn(16, *shape) * 3 + 1)
    model.eval()
    x = torch.from_numpy(np.random.default_rng(0).normal(size=(12, *shape)).astype(np.float32))
    indices, norms, carried, z, bias, out = block_terms(model, x)
    with_stem = options.get("sum_stem", True)
    assert indices == list(range(0 if with_stem else 1, depth + 1))
    torch.testing.assert_close(z.sum(0) + bias, out, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out, model(x), atol=1e-5, rtol=1e-5)
    result = explain_model(model, x.numpy(), batch=5)  # several batches, one partial
    shares = [b["share"] for b in result["blocks"]]
    assert sum(shares) == pytest.approx(1.0) and min(shares) >= 0
    assert result["blocks"][-1]["cumulative_share"] == pytest.approx(1.0)
    assert result["decomposition_max_abs_err"] < 1e-4


def test_regression_output_decomposes():
    model = create_model(ModelConfig("glonet-fc", 3, [5], 1, "regression", 8)).eval()
    x = np.random.default_rng(1).normal(size=(9, 5)).astype(np.float32)
    result = explain_model(model, x)
    assert sum(b["share"] for b in result["blocks"]) == pytest.approx(1.0)
    assert result["decomposition_max_abs_err"] < 1e-5


def test_trained_glonet_deep_blocks_fade(tmp_path, capsys):
    pytest.importorskip("matplotlib")  # the command writes explain.png
    """Self-regulation on a real short training (checked beforehand at 2 seeds and cut_loss 0 and 1:
    the deepest quarter holds ~1.3-1.7 % of the logit per block vs ~12 % for the shallowest)."""
    run = tmp_path / "fc16"
    train_run("glonet-fc", 16, "digits", run, settings=TrainSettings(epochs=10, cut_loss=0.0), progress=False)
    out = tmp_path / "explain"
    assert main(["explain", str(run), "--out", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result == json.loads((out / "explain.json").read_text())
    assert (out / "explain.png").read_bytes()[:4] == b"\x89PNG"
    s = result["summary"]
    assert s["deep_fades"] and s["deep_mean_share"] < 0.5 * s["shallow_mean_share"]
    assert s["deep_mean_carried_norm"] < s["shallow_mean_carried_norm"]
    assert result["samples"] == 359 and [b["block"] for b in result["blocks"]] == list(range(17))
    assert result["blocks"][16]["score_at_depth"] is not None and result["blocks"][0]["score_at_depth"] is None


def test_models_without_global_sum_are_refused(tmp_path):
    run = tmp_path / "resnet"
    train_run("resnet-fc", 2, "digits", run, settings=TrainSettings(epochs=1), progress=False)
    with pytest.raises(ConfigError, match="no global sum"):
        explain_run(run)
    assert main(["explain", str(run)]) == 2  # the CLI turns it into a one-line error
