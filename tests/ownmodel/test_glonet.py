"""The GloNet wrapper: y_k = head(a_1(h_1) + ... + a_k(h_k)), its adapters, its checks, the cut loss."""

from __future__ import annotations

import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from glonet_edge import GloNet, cut_loss  # noqa: E402
from glonet_edge.errors import ConfigError  # noqa: E402
from glonet_edge.glonet import PoolConv, PoolLinear, pooled_adapters  # noqa: E402


def _stages():
    torch.manual_seed(0)
    stem = nn.Conv2d(3, 4, 3, 1, 1)
    blocks = [nn.Sequential(nn.Conv2d(4, 4, 3, 1, 1), nn.ReLU()), nn.Sequential(nn.Conv2d(4, 8, 3, 2, 1), nn.ReLU()),
              nn.Sequential(nn.Conv2d(8, 8, 3, 1, 1), nn.ReLU())]
    return stem, blocks


def test_every_depth_is_the_head_of_the_adapted_sum():
    stem, blocks = _stages()
    adapters = [PoolLinear(4, 8), PoolLinear(8, 8), PoolLinear(8, 8)]
    model = GloNet(stem=stem, blocks=blocks, head=nn.Linear(8, 5), adapters=adapters).eval()
    x = torch.randn(3, 3, 8, 8)
    with torch.no_grad():
        h, total, want = stem(x), 0, []
        for block, adapter in zip(blocks, adapters):
            h = block(h)
            total = total + adapter(h)
            want.append(model.head(total))
        for k in range(1, 4):
            torch.testing.assert_close(model(x, depth=k), want[k - 1])
        torch.testing.assert_close(model(x), want[-1])
        for got, expected in zip(model.forward_all(x), want):
            torch.testing.assert_close(got, expected)
        assert len(model(x, all_depths=True)) == 3
    with pytest.raises(ConfigError, match=r"depth must be an int in 1\.\.3"):
        model(x, depth=4)


def test_adapters_pool_then_project_and_identity_needs_matching_shapes():
    h = torch.randn(2, 4, 8, 8)
    to_grid, to_vector = PoolConv(4, 6, 2), PoolLinear(4, 6)
    torch.testing.assert_close(to_grid(h), to_grid.conv(F.avg_pool2d(h, 4)))
    torch.testing.assert_close(to_vector(h), to_vector.proj(h.mean(dim=(2, 3))))
    assert to_grid(h).shape == (2, 6, 2, 2) and to_vector(h).shape == (2, 6)
    assert isinstance(PoolLinear(4, 4).proj, nn.Identity)
    same = GloNet(stem=nn.Identity(), blocks=[nn.Linear(5, 5), nn.Linear(5, 5)], head=nn.Linear(5, 2), input_shape=[5])
    assert same(torch.randn(4, 5)).shape == (4, 2)


def test_pooled_adapters_find_each_blocks_width():
    stem, blocks = _stages()
    stem.train()
    adapters = pooled_adapters(stem, blocks, torch.zeros(2, 3, 8, 8))
    assert [type(a.proj) for a in adapters] == [nn.Linear, nn.Identity, nn.Identity]
    assert adapters[0].proj.in_features == 4 and adapters[0].proj.out_features == 8
    assert stem.training  # the probe leaves the modules' modes as they were
    wide = pooled_adapters(stem, blocks, torch.zeros(2, 3, 8, 8), width=16)
    assert [a.proj.out_features for a in wide] == [16, 16, 16]


def test_blocks_that_cannot_be_summed_are_named_with_both_shapes():
    stem, blocks = _stages()
    shapes = r"block 1 \(Sequential\) gives shape \(8, 4, 4\) after its adapter, but the sum of blocks 0\.\.0 has shape \(4, 8, 8\)"
    with pytest.raises(ConfigError, match=shapes):  # checked at once when the input shape is given
        GloNet(stem=stem, blocks=blocks, head=nn.Linear(8, 2), input_shape=(3, 8, 8))
    lazy = GloNet(stem=stem, blocks=blocks, head=nn.Linear(8, 2))
    with pytest.raises(ConfigError, match=shapes):  # else on the first pass
        lazy(torch.randn(2, 3, 8, 8))
    with pytest.raises(ConfigError, match=r"head of this GloNet cannot read its state of shapes"):
        GloNet(stem=stem, blocks=blocks, head=nn.Linear(3, 2), adapters=pooled_adapters(stem, blocks, torch.zeros(2, 3, 8, 8)),
               input_shape=(3, 8, 8))


@pytest.mark.parametrize("kwargs, message", [
    (dict(blocks=[]), "at least one block"),
    (dict(adapters=[None]), "adapters has 1 entries for 3 blocks"),
    (dict(head="linear"), "GloNet head is a str, not a torch.nn.Module"),
    (dict(blocks=[nn.ReLU(), 3]), r"blocks\[1\] is a int"),
])
def test_malformed_wrappers_are_refused(kwargs, message):
    stem, blocks = _stages()
    args = {**dict(stem=stem, blocks=blocks, head=nn.Linear(8, 2)), **kwargs}
    with pytest.raises(ConfigError, match=message):
        GloNet(**args)


def test_fitted_normalisation_fixes_the_input_shape_and_travels_in_the_weights():
    stem, blocks = _stages()
    adapters = pooled_adapters(stem, blocks, torch.zeros(2, 3, 8, 8))
    model = GloNet(stem=stem, blocks=blocks, head=nn.Linear(8, 2), adapters=adapters)
    assert model.input_shape == []
    x = torch.rand(20, 3, 8, 8) * 255
    model.fit_normalisation(x)
    assert model.input_shape == [3, 8, 8]
    torch.testing.assert_close(model.input_norm(x).mean(dim=0), torch.zeros(3, 8, 8), atol=1e-4, rtol=0)
    with pytest.raises(ConfigError, match=r"input has shape \(2, 3, 4, 4\), expected \(batch, 3, 8, 8\)"):
        model(torch.zeros(2, 3, 4, 4))
    stem2, blocks2 = _stages()
    fresh = GloNet(stem=stem2, blocks=blocks2, head=nn.Linear(8, 2), adapters=pooled_adapters(stem2, blocks2, x[:2]))
    fresh.load_state_dict(model.state_dict())  # the unfitted normaliser takes the saved shape
    assert fresh.input_shape == [3, 8, 8]
    with torch.no_grad():
        torch.testing.assert_close(fresh.eval()(x), model.eval()(x))


def test_cut_loss_is_the_full_loss_plus_the_mean_of_the_shallow_ones():
    outs = [torch.randn(6, 4, requires_grad=True) for _ in range(3)]
    y = torch.randint(0, 4, (6,))
    full, shallow = F.cross_entropy(outs[-1], y), (F.cross_entropy(outs[0], y) + F.cross_entropy(outs[1], y)) / 2
    torch.testing.assert_close(cut_loss(outs, y), full + shallow)
    torch.testing.assert_close(cut_loss(outs, y, weight=0.5), full + 0.5 * shallow)
    torch.testing.assert_close(cut_loss(outs, y, weight=0), full)
    target = torch.randn(6, 4)
    torch.testing.assert_close(cut_loss(outs[:1], target, F.mse_loss), F.mse_loss(outs[0], target))
    cut_loss(outs, y).backward()
    assert all(o.grad is not None and o.grad.abs().sum() > 0 for o in outs)
    with pytest.raises(ConfigError, match="all_depths=True"):
        cut_loss([], y)


def test_import_glonet_edge_needs_no_torch():
    code = ("import sys; sys.modules['torch'] = None\n"
            "import glonet_edge, glonet_edge.runtime\n"
            "try:\n    glonet_edge.GloNet\nexcept ImportError as exc:\n    print(type(exc).__name__, exc)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("MissingDependencyError") and "glonet-edge[train]" in done.stdout
