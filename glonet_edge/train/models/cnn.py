"""Convolutional models shaped like ResNet-20 v2: 3 stages of n blocks, 16/32/64 channels.

glonet-cnn:
    h_0 = conv3x3(x)                          stem, part of the running sum
    block_i = [BN] relu conv3x3(stride) [BN] relu conv3x3     pre-activation, NO per-block skip
    s = s + h_i                               global skip, taken inside a stage
    at the first block of a stage: s = proj(avgpool2(s)) before adding h_i
                                              proj is a registered, trained 1x1 conv: the
                                              reference code built an untrained one in forward
    y_k = linear(mean_hw(relu([BN] s_k)))    a cut inside an earlier stage carries s_k through
                                              the remaining projections, exactly as the full
                                              network would if the later blocks added nothing

`depth` counts blocks and must be a multiple of 3 (n = depth / 3 blocks per stage).
options.norm = "none" (default, the GloNet claim: no BatchNorm) or "bn".
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ConfigError
from .base import DepthModel, ModelConfig, State
from .registry import register_model

STAGE_WIDTHS = (16, 32, 64)


def _blocks_per_stage(config: ModelConfig) -> int:
    if config.depth % 3:
        raise ConfigError(f"{config.model} depth counts blocks over 3 stages and must be a multiple of 3, got {config.depth}")
    if len(config.input_shape) != 3:
        raise ConfigError(f"{config.model} needs image input (channels, height, width), got input_shape {config.input_shape}")
    return config.depth // 3


def _norm(channels: int, use_bn: bool) -> nn.Module:
    return nn.BatchNorm2d(channels) if use_bn else nn.Identity()


class PreActBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, use_bn: bool):
        super().__init__()
        self.norm1 = _norm(cin, use_bn)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=not use_bn)
        self.norm2 = _norm(cout, use_bn)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(F.relu(self.norm1(x)))
        return self.conv2(F.relu(self.norm2(x)))


def _stage_layout(n: int) -> list[tuple[int, int, int]]:
    """(cin, cout, stride) per block."""
    layout, cin = [], STAGE_WIDTHS[0]
    for stage, cout in enumerate(STAGE_WIDTHS):
        for b in range(n):
            stride = 2 if (stage > 0 and b == 0) else 1
            layout.append((cin, cout, stride))
            cin = cout
    return layout


@register_model("glonet-cnn")
class GloNetCNN(DepthModel):
    def __init__(self, config: ModelConfig):
        super().__init__(config)
        n = _blocks_per_stage(config)
        use_bn = config.options.get("norm", "none") == "bn"
        self.num_blocks = config.depth
        self.stem = nn.Conv2d(config.input_shape[0], STAGE_WIDTHS[0], 3, 1, 1)
        layout = _stage_layout(n)
        self.blocks = nn.ModuleList(PreActBlock(ci, co, s, use_bn) for ci, co, s in layout)
        # One trained projection per stage change, keyed by the block that starts the stage.
        self.sum_proj = nn.ModuleDict(
            {str(i): nn.Conv2d(ci, co, 1, bias=False) for i, (ci, co, s) in enumerate(layout) if s == 2}
        )
        self.final_norm = _norm(STAGE_WIDTHS[-1], use_bn)
        self.head = nn.Linear(STAGE_WIDTHS[-1], config.num_outputs)

    def embed(self, x: torch.Tensor) -> State:
        h = self.stem(self.input_norm(x))
        return h, h

    def step(self, i: int, state: State) -> State:
        h, s = state
        h = self.blocks[i](h)
        key = str(i)
        if key in self.sum_proj:
            # ceil_mode keeps odd sizes aligned with the stride-2 conv (8 -> 4 -> 2, 7 -> 4 -> 2).
            s = self.sum_proj[key](F.avg_pool2d(s, 2, ceil_mode=True, count_include_pad=False))
        return h, s + h

    def head_out(self, state: State) -> torch.Tensor:
        s = state[1]
        for proj in self.sum_proj.values():
            if s.shape[1] == proj.in_channels:
                s = proj(F.avg_pool2d(s, 2, ceil_mode=True, count_include_pad=False))
        return self.head(F.relu(self.final_norm(s)).mean(dim=(2, 3)))


@register_model("resnet-cnn")
class ResNetCNN(DepthModel):
    """ResNet-v2 baseline with BatchNorm and per-block identity / 1x1 projection shortcuts."""

    def __init__(self, config: ModelConfig):
        super().__init__(config)
        n = _blocks_per_stage(config)
        self.num_blocks = config.depth
        self.stem = nn.Conv2d(config.input_shape[0], STAGE_WIDTHS[0], 3, 1, 1)
        layout = _stage_layout(n)
        self.blocks = nn.ModuleList(PreActBlock(ci, co, s, True) for ci, co, s in layout)
        self.shortcuts = nn.ModuleDict(
            {str(i): nn.Conv2d(ci, co, 1, s, bias=False) for i, (ci, co, s) in enumerate(layout) if s == 2}
        )
        self.final_norm = nn.BatchNorm2d(STAGE_WIDTHS[-1])
        self.head = nn.Linear(STAGE_WIDTHS[-1], config.num_outputs)

    def embed(self, x: torch.Tensor) -> State:
        return (self.stem(self.input_norm(x)),)

    def step(self, i: int, state: State) -> State:
        h = state[0]
        key = str(i)
        shortcut = self.shortcuts[key](h) if key in self.shortcuts else h
        return (shortcut + self.blocks[i](h),)

    def head_out(self, state: State) -> torch.Tensor:
        h = state[0]
        for shortcut in self.shortcuts.values():
            if h.shape[1] == shortcut.in_channels:
                h = shortcut(h)
        return self.head(F.relu(self.final_norm(h)).mean(dim=(2, 3)))
