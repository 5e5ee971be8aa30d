"""Fully connected models: the GloNet, the baselines of the paper's MNIST figure, and ResNetv2.

glonet-fc (reference-faithful by default):
    h_0 = stem(x)                        Linear(in, width), no activation
    h_i = act(W_i h_{i-1} + b_i)          LeakyReLU(0.2), no normalisation, no per-block skip
    s_k = h_0 + h_1 + ... + h_k           the global skip (options.sum_stem=False drops h_0)
    y_k = head(s_k)                       Linear(width, outputs)
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from .base import DepthModel, ModelConfig, State, activation
from .registry import register_model


def _flat_features(config: ModelConfig) -> int:
    n = 1
    for s in config.input_shape:
        n *= s
    return n


@register_model("glonet-fc")
class GloNetFC(DepthModel):
    def __init__(self, config: ModelConfig):
        super().__init__(config)
        opts = config.options
        self.num_blocks = config.depth
        self.sum_stem = bool(opts.get("sum_stem", True))
        self.stem = nn.Linear(_flat_features(config), config.width)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Linear(config.width, config.width), activation(opts.get("activation", "leaky_relu")))
            for _ in range(config.depth)
        )
        self.head = nn.Linear(config.width, config.num_outputs)

    def embed(self, x: torch.Tensor) -> State:
        h = self.stem(self.input_norm(x).flatten(1))
        return h, (h if self.sum_stem else torch.zeros_like(h))

    def step(self, i: int, state: State) -> State:
        h, s = state
        h = self.blocks[i](h)
        return h, s + h

    def head_out(self, state: State) -> torch.Tensor:
        return self.head(state[1])


class _FlatStem(DepthModel):
    """A Linear stem on the flattened input, `depth` blocks of `width` and one tensor of state
    (resnet-fc, plain-fc); `block(width)` builds each block."""

    def __init__(self, config: ModelConfig, block: Callable[[int], nn.Module]):
        super().__init__(config)
        self.num_blocks = config.depth
        self.stem = nn.Linear(_flat_features(config), config.width)
        self.blocks = nn.ModuleList(block(config.width) for _ in range(config.depth))

    def embed(self, x: torch.Tensor) -> State:
        return (self.stem(self.input_norm(x).flatten(1)),)


@register_model("resnet-fc")
class ResNetFC(_FlatStem):
    """ResNetv2 baseline: h_i = h_{i-1} + W_i relu(BN(h_{i-1})), head on relu(BN(h_k))."""

    def __init__(self, config: ModelConfig):
        act = config.options.get("activation", "relu")
        super().__init__(config, lambda w: nn.Sequential(nn.BatchNorm1d(w), activation(act), nn.Linear(w, w)))
        w = config.width
        self.final_norm = nn.Sequential(nn.BatchNorm1d(w), nn.ReLU())
        self.head = nn.Linear(w, config.num_outputs)

    def step(self, i: int, state: State) -> State:
        return (state[0] + self.blocks[i](state[0]),)

    def head_out(self, state: State) -> torch.Tensor:
        return self.head(self.final_norm(state[0]))


@register_model("plain-fc")
class PlainFC(_FlatStem):
    """No skip at all: h_i = act(W_i h_{i-1}), head on h_k. Collapses as depth grows."""

    def __init__(self, config: ModelConfig):
        act = config.options.get("activation", "leaky_relu")
        super().__init__(config, lambda w: nn.Sequential(nn.Linear(w, w), activation(act)))
        self.head = nn.Linear(config.width, config.num_outputs)

    def step(self, i: int, state: State) -> State:
        return (self.blocks[i](state[0]),)

    def head_out(self, state: State) -> torch.Tensor:
        return self.head(state[0])


@register_model("residual-fc")
class ResidualFC(PlainFC):
    """The paper's MNIST "ResNet" baseline, as in its reference code: plain-fc plus a per-block
    skip, h_i = h_{i-1} + act(W_i h_{i-1}); no normalisation, default init, head on h_k. Nothing
    bounds the residual stream, so it grows with depth and training fails at the deepest depths
    (the paper's figure: 95.5 % -> 11 % at depth 200). resnet-fc is the normalised ResNetv2 that
    the speed comparison uses."""

    def step(self, i: int, state: State) -> State:
        return (state[0] + self.blocks[i](state[0]),)
