"""GloNet as a layer on top of any backbone: sum what every block says, read the sum once.

    h_0 = stem(norm(x))                   norm: optional, fitted from data (identity until then)
    h_i = block_i(h_{i-1})                the backbone's own blocks, in order
    s_k = a_1(h_1) + ... + a_k(h_k)       a_i: the block's adapter to the common shape
    y_k = head(s_k)

Every y_k uses the same head, so the network can be cut after any block without retraining.
It follows the embed / step / readout contract of the built-in models (state = (h_i, s_i)),
so export cuts the same depth family and segment chain out of it.

Adapters map each block's output to the shape that is summed: identity (None) where shapes
already match; for backbones whose stages change resolution or width, `PoolLinear`
(global-average-pool + Linear, to a vector) or `PoolConv` (average-pool to a grid + 1x1 conv).
`pooled_adapters` builds the PoolLinear set for a whole backbone from one example input.

    model = GloNet(stem=stem, blocks=blocks, head=nn.Linear(64, 10),
                   adapters=pooled_adapters(stem, blocks, torch.zeros(2, 3, 32, 32)))
    y = model(x)                  # full depth;  model(x, depth=2): the first two blocks
    ys = model.forward_all(x)     # every depth from one pass (also model(x, all_depths=True))
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .errors import ConfigError
from .train.models.base import DepthModel, ModelConfig, State

MODEL_NAME = "glonet"
ADAPTER_HINT = ("pass adapters=[...] that map every block to one shape, e.g. glonet_edge.glonet.PoolLinear(in, out) "
                "(global-average-pool + Linear) or PoolConv(in, out, size) (pool + 1x1 conv)")


class PoolLinear(nn.Module):
    """(batch, channels, ...) -> (batch, out_features): mean over everything after the channels,
    then a Linear (none when the widths already match)."""

    def __init__(self, in_channels: int, out_features: int):
        super().__init__()
        self.proj = nn.Identity() if in_channels == out_features else nn.Linear(in_channels, out_features)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.proj(h.flatten(2).mean(dim=2))


class PoolConv(nn.Module):
    """(batch, in_channels, H, W) -> (batch, out_channels, size, size): average-pool to the grid,
    then a 1x1 conv. Both are linear, so pooling first gives the same map on fewer pixels.
    `size` must divide H and W: ONNX has no pooling with uneven windows."""

    def __init__(self, in_channels: int, out_channels: int, size: int):
        super().__init__()
        self.size = size
        self.conv = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if h.shape[-2] % self.size or h.shape[-1] % self.size:
            raise ConfigError(f"PoolConv(size={self.size}) got a {h.shape[-2]}x{h.shape[-1]} grid; the size must divide "
                              "it (ONNX pools in even windows only)")
        return self.conv(F.adaptive_avg_pool2d(h, self.size))


class GloNet(DepthModel):
    """Any stem + ordered blocks + head as a depth-cuttable GloNet (see the module doc).

    input_shape (one sample, no batch dim) is optional: given, the block shapes are checked
    at once; otherwise it is fixed by `fit_normalisation` or by the weights' fitted
    normalisation, and export takes it from its example input.
    """

    def __init__(self, stem: nn.Module, blocks: Sequence[nn.Module], head: nn.Module,
                 adapters: Sequence[nn.Module | None] | None = None, input_shape: Sequence[int] | None = None):
        blocks = list(blocks)
        adapters = [None] * len(blocks) if adapters is None else list(adapters)
        if not blocks:
            raise ConfigError("GloNet needs at least one block: blocks=[block_1, block_2, ...]")
        if len(adapters) != len(blocks):
            raise ConfigError(f"adapters has {len(adapters)} entries for {len(blocks)} blocks; give one per block "
                              "(None where the block's output already has the summed shape)")
        for what, module in [("stem", stem), ("head", head), *((f"blocks[{i}]", b) for i, b in enumerate(blocks))]:
            if not isinstance(module, nn.Module):
                raise ConfigError(f"GloNet {what} is a {type(module).__name__}, not a torch.nn.Module")
        # num_outputs is whatever the head gives: export measures it, nothing here depends on it.
        super().__init__(ModelConfig(MODEL_NAME, len(blocks), list(input_shape or []), num_outputs=1))
        self.num_blocks = len(blocks)
        self.stem = stem
        self.blocks = nn.ModuleList(blocks)
        self.adapters = nn.ModuleList(nn.Identity() if a is None else a for a in adapters)
        self.head = head
        if input_shape is not None:
            self.dry_run(torch.zeros(2, *input_shape))

    @property
    def input_shape(self) -> list[int]:
        """One sample's shape: declared, or the one the normalisation was fitted on; [] if unknown."""
        return list(self.config.input_shape) or list(self.input_norm.mean.shape)

    def describe(self) -> dict[str, Any]:
        names = lambda modules: [type(m).__name__ for m in modules]  # noqa: E731
        return {"model": MODEL_NAME, "depth": self.num_blocks, "input_shape": self.input_shape,
                "stem": type(self.stem).__name__, "blocks": names(self.blocks), "adapters": names(self.adapters),
                "head": type(self.head).__name__}

    @torch.no_grad()
    def fit_normalisation(self, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
        """Per-element mean and std of training samples x, stored in the weights and the graphs."""
        self.config.input_shape = list(x.shape[1:])
        self.input_norm.fit(x)

    def embed(self, x: torch.Tensor) -> State:
        h = self.stem(self.input_norm(x))
        # The sum is empty before block 1, which replaces this placeholder (the state keeps one arity).
        return h, h.new_zeros(())

    def step(self, i: int, state: State) -> State:
        h, total = state
        h = self.blocks[i](h)
        term = self.adapters[i](h)
        if i == 0:
            return h, term
        if term.shape[1:] != total.shape[1:]:
            raise ConfigError(f"GloNet block {i} ({type(self.blocks[i]).__name__}) gives shape {tuple(term.shape[1:])} "
                              f"after its adapter, but the sum of blocks 0..{i - 1} has shape "
                              f"{tuple(total.shape[1:])}; {ADAPTER_HINT}")
        return h, total + term

    def head_out(self, state: State) -> torch.Tensor:
        return self.head(state[1])

    def check_input(self, x: torch.Tensor) -> None:
        if self.input_shape:
            expected = tuple(self.input_shape)
            if tuple(x.shape[1:]) != expected:
                raise ConfigError(f"input has shape {tuple(x.shape)}, expected (batch, {', '.join(map(str, expected))}) "
                                  "(the shape this GloNet was declared or fitted with); resize the data to it.")


@torch.no_grad()
def pooled_adapters(stem: nn.Module, blocks: Sequence[nn.Module], example: torch.Tensor,
                    width: int | None = None) -> list[PoolLinear]:
    """One PoolLinear per block, from its channel count to `width` (default: the last block's),
    the channel counts found by running `example` through the stem and blocks once in eval mode."""
    modules = [stem, *blocks]
    modes = [m.training for m in modules]
    channels = []
    try:
        h = stem.eval()(example)
        for block in blocks:
            h = block.eval()(h)
            channels.append(h.shape[1])
    finally:
        for m, mode in zip(modules, modes):
            m.train(mode)
    return [PoolLinear(c, width or channels[-1]) for c in channels]
