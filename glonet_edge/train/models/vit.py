"""glonet-vit: a small ViT whose head reads the class token of the SUM of all layer outputs.

    t_0 = [cls; patch_embed(x)] + pos          patch conv (options.patch, default 4 → 2 for 8x8)
    t_i = encoder_i(t_{i-1})                    pre-norm attention + MLP (internal residuals)
    s_k = t_0 + t_1 + ... + t_k                 the global skip over whole token tensors
    y_k = head(LayerNorm(s_k[:, 0]))            the reference code read the last layer instead,
                                                which trains a plain ViT
Attention is written out (no fused kernels) so it exports to plain ONNX ops.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ...errors import ConfigError
from .base import DepthModel, ModelConfig, State
from .registry import register_model


class SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ConfigError(f"vit width {dim} must be divisible by heads {heads}")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        attn = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(d // self.heads), dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, d))

    def extra_macs(self, inputs: tuple, output: torch.Tensor) -> int:
        b, n, d = inputs[0].shape
        return 2 * b * n * n * d  # q @ k^T and attn @ v


class EncoderLayer(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


@register_model("glonet-vit")
class GloNetViT(DepthModel):
    def __init__(self, config: ModelConfig):
        super().__init__(config)
        if len(config.input_shape) != 3:
            raise ConfigError(f"glonet-vit needs image input (channels, height, width), got {config.input_shape}")
        c, h, w = config.input_shape
        opts = config.options
        patch = int(opts.get("patch", 4 if min(h, w) >= 16 else 2))
        if h % patch or w % patch:
            raise ConfigError(f"image {h}x{w} is not divisible by patch size {patch}; set options.patch")
        dim = config.width
        self.num_blocks = config.depth
        self.patch_embed = nn.Conv2d(c, dim, patch, patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, (h // patch) * (w // patch) + 1, dim) * 0.02)
        self.blocks = nn.ModuleList(
            EncoderLayer(dim, int(opts.get("heads", 4)), int(opts.get("mlp_ratio", 2))) for _ in range(config.depth)
        )
        self.final_norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, config.num_outputs)

    def embed(self, x: torch.Tensor) -> State:
        p = self.patch_embed(self.input_norm(x)).flatten(2).transpose(1, 2)
        t = torch.cat([self.cls_token.expand(p.shape[0], -1, -1), p], dim=1) + self.pos
        return t, t

    def step(self, i: int, state: State) -> State:
        t, s = state
        t = self.blocks[i](t)
        return t, s + t

    def head_out(self, state: State) -> torch.Tensor:
        return self.head(self.final_norm(state[1][:, 0]))
