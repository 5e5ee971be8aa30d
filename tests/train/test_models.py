"""Models: every cut equals an independent re-computation of the truncated global sum."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

from glonet_edge.errors import ConfigError  # noqa: E402
from glonet_edge.train.models import ModelConfig, create_model, list_models, params_and_macs  # noqa: E402


def _model(name, depth, shape=(1, 8, 8), **kw):
    torch.manual_seed(0)
    m = create_model(ModelConfig(name, depth, list(shape), 10, **kw)).eval()
    with torch.no_grad():  # non-trivial normalisation so it is part of what is checked
        m.input_norm.mean.uniform_(0, 2)
        m.input_norm.inv_std.uniform_(0.5, 1.5)
    return m


def test_registry_lists_all_families():
    assert {"glonet-fc", "glonet-cnn", "glonet-vit", "resnet-fc", "resnet-cnn", "residual-fc", "plain-fc"} <= set(list_models())


def test_registering_a_name_twice_is_an_error_and_keeps_the_first(monkeypatch):
    from glonet_edge.train.models import register_model, registry

    monkeypatch.setattr(registry, "_MODELS", dict(registry._MODELS))
    original = registry._MODELS["glonet-fc"]
    with pytest.raises(ConfigError, match="'glonet-fc' is already registered by .*GloNetFC.*another name"):
        register_model("glonet-fc")(type("Impostor", (), {}))
    assert registry._MODELS["glonet-fc"] is original

    @register_model("my-model")
    class MyModel:
        pass

    assert "my-model" in list_models()
    with pytest.raises(ConfigError, match="'my-model' is already registered"):
        register_model("my-model")(MyModel)


@torch.no_grad()
def test_glonet_fc_cut_equals_manual_truncated_sum():
    m = _model("glonet-fc", 6)
    x = torch.rand(5, 1, 8, 8) * 16
    for k in range(1, 7):
        z = ((x - m.input_norm.mean) * m.input_norm.inv_std).flatten(1)
        h = z @ m.stem.weight.T + m.stem.bias
        s = h.clone()
        for i in range(k):
            lin = m.blocks[i][0]
            h = F.leaky_relu(h @ lin.weight.T + lin.bias, 0.2)
            s = s + h
        expected = s @ m.head.weight.T + m.head.bias
        torch.testing.assert_close(m(x, depth=k), expected, rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_glonet_cnn_cut_uses_trained_projections_of_the_sum():
    m = _model("glonet-cnn", 6)
    x = torch.rand(3, 1, 8, 8) * 16
    projections = list(m.sum_proj.values())
    assert len(projections) == 2 and all(p.weight.requires_grad for p in projections)
    for k in range(1, 7):
        h = m.stem((x - m.input_norm.mean) * m.input_norm.inv_std)
        s = h
        for i in range(k):
            h = m.blocks[i](h)
            if i in (2, 4):  # first block of stages 2 and 3 (n = 2 blocks per stage)
                s = m.sum_proj[str(i)](F.avg_pool2d(s, 2, ceil_mode=True, count_include_pad=False))
            s = s + h
        for p in projections:  # a cut in an earlier stage carries the sum through the rest
            if s.shape[1] == p.in_channels:
                s = p(F.avg_pool2d(s, 2, ceil_mode=True, count_include_pad=False))
        expected = m.head(F.relu(s).mean(dim=(2, 3)))
        torch.testing.assert_close(m(x, depth=k), expected, rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_glonet_vit_head_reads_class_token_of_the_sum_not_the_last_layer():
    m = _model("glonet-vit", 3)
    x = torch.rand(4, 1, 8, 8) * 16
    for k in range(1, 4):
        t = m.embed(x)[0]
        s = t
        for i in range(k):
            t = m.blocks[i](t)
            s = s + t
        expected = m.head(m.final_norm(s[:, 0]))
        last_layer_only = m.head(m.final_norm(t[:, 0]))
        torch.testing.assert_close(m(x, depth=k), expected, rtol=1e-5, atol=1e-5)
        assert not torch.allclose(m(x, depth=k), last_layer_only, atol=1e-4)


@pytest.mark.parametrize("name,shape,depth", [
    ("glonet-fc", (1, 8, 8), 5), ("resnet-fc", (10,), 4), ("residual-fc", (1, 8, 8), 4), ("plain-fc", (1, 8, 8), 4),
    ("glonet-cnn", (3, 32, 32), 3), ("resnet-cnn", (3, 32, 32), 3), ("glonet-vit", (3, 32, 32), 2),
])
@torch.no_grad()
def test_forward_all_matches_every_cut_and_runs_cifar_shape(name, shape, depth):
    m = _model(name, depth, shape)
    x = torch.rand(2, *shape)
    outs = m.forward_all(x)
    assert len(outs) == depth
    for k, o in enumerate(outs, start=1):
        assert o.shape == (2, 10)
        assert torch.equal(o, m(x, depth=k))


@torch.no_grad()
def test_residual_fc_is_the_reference_residual_mlp_and_its_stream_grows_with_depth():
    m = _model("residual-fc", 3)
    x = torch.rand(4, 1, 8, 8) * 16
    h = ((x - m.input_norm.mean) * m.input_norm.inv_std).flatten(1) @ m.stem.weight.T + m.stem.bias
    for lin in (b[0] for b in m.blocks):
        h = h + F.leaky_relu(h @ lin.weight.T + lin.bias, 0.2)  # post-activation skip, no norm
    torch.testing.assert_close(m(x), h @ m.head.weight.T + m.head.bias, rtol=1e-5, atol=1e-5)
    # Nothing bounds the residual stream at default init: why the paper's ResNet fails deep.
    deep = _model("residual-fc", 64)
    assert deep(x).std() > 100 * m(x).std()


def test_params_and_macs_grow_with_depth():
    m = _model("glonet-fc", 8)
    costs = [params_and_macs(m, k) for k in range(1, 9)]
    assert all(b[0] > a[0] and b[1] > a[1] for a, b in zip(costs, costs[1:]))
    # stem 64*32 + k blocks 32*32 + head 32*10 multiply-accumulates
    assert costs[0][1] == 64 * 32 + 32 * 32 + 32 * 10


def test_bad_depth_shape_and_name_give_clear_errors():
    m = _model("glonet-fc", 4)
    for bad in (0, 5, -1, 2.0):
        with pytest.raises(ConfigError, match="depth must be an int in 1..4"):
            m(torch.zeros(1, 1, 8, 8), depth=bad)
    with pytest.raises(ConfigError, match=r"expected \(batch, 1, 8, 8\)"):
        m(torch.zeros(2, 64))
    with pytest.raises(ConfigError, match="unknown model 'glonet-xl'; available: "):
        create_model(ModelConfig("glonet-xl", 4, [64], 10))
    with pytest.raises(ConfigError, match="multiple of 3"):
        create_model(ModelConfig("glonet-cnn", 4, [1, 8, 8], 10))
    with pytest.raises(ConfigError, match="depth must be a positive integer"):
        create_model(ModelConfig("glonet-fc", 0, [64], 10))
