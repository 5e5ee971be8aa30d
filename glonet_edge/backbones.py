"""Backbones from the ecosystem as GloNets: a timm or torchvision ResNet, a timm ViT.

    from glonet_edge.backbones import timm_glonet, torchvision_glonet
    model = timm_glonet("resnet18", num_classes=10)                    # random init, nothing fetched
    model = timm_glonet("vit_tiny_patch16_224", num_classes=10, img_size=64)
    model = torchvision_glonet("resnet18", num_classes=10, weights_file="resnet18.safetensors")

ResNet (`wrap_resnet`): stem = conv1, bn1, activation, maxpool; blocks = every residual
block of layer1..layer4, in order; each block's output is global-average-pooled and mapped
by a Linear to the last stage's width (`PoolLinear`; no Linear for the last stage); the head
is the backbone's own classifier `fc`.
ViT (`wrap_vit`, timm's VisionTransformer): stem = patch embedding, class token and position
embedding; blocks = its transformer blocks, all of one shape (no adapters); head = the final
norm, class-token (or mean) pooling and the classifier.

timm and torchvision are optional extras (`pip install glonet-edge[timm]`, `[torchvision]`).
Nothing is downloaded unless asked: timm's `pretrained=True` and torchvision's `weights=`
names fetch from the internet and need network. `weights_file=PATH` loads a local
state_dict of the backbone (safetensors, or .pt read with weights_only) before wrapping.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import ConfigError, require
from .glonet import GloNet, pooled_adapters
from .train.checkpoint import load_weights

RESNET_STAGES = ("layer1", "layer2", "layer3", "layer4")
PROBE_SIZE = 32  # channel counts do not depend on the image size; 32x32 is the smallest every ResNet takes


def timm_glonet(name: str, weights_file: str | Path | None = None, **kwargs: Any) -> GloNet:
    """timm.create_model(name, pretrained=False, **kwargs), wrapped; a ResNet or a ViT."""
    timm = require("timm", "timm")
    kwargs.setdefault("pretrained", False)
    backbone = timm.create_model(name, **kwargs)
    if weights_file is not None:
        load_weights(backbone, weights_file)
    return wrap_vit(backbone) if hasattr(backbone, "patch_embed") else wrap_resnet(backbone)


def torchvision_glonet(name: str, weights_file: str | Path | None = None, **kwargs: Any) -> GloNet:
    """torchvision.models.get_model(name, weights=None, **kwargs), wrapped; a ResNet."""
    torchvision = require("torchvision", "torchvision")
    kwargs.setdefault("weights", None)
    backbone = torchvision.models.get_model(name, **kwargs)
    if weights_file is not None:
        load_weights(backbone, weights_file)
    return wrap_resnet(backbone)


def wrap_resnet(backbone: nn.Module) -> GloNet:
    """A timm or torchvision ResNet (attributes conv1, bn1, act1 or relu, maxpool, layer1..4, fc)."""
    missing = [a for a in ("conv1", "bn1", "maxpool", *RESNET_STAGES, "fc") if not hasattr(backbone, a)]
    act = getattr(backbone, "act1", None) or getattr(backbone, "relu", None)
    if missing or act is None:
        raise ConfigError(f"{type(backbone).__name__} is not a timm/torchvision ResNet (no "
                          f"{', '.join(missing) or 'act1/relu'}); build GloNet(stem=..., blocks=[...], head=...) yourself")
    stem = nn.Sequential(backbone.conv1, backbone.bn1, act, backbone.maxpool)
    blocks = [block for stage in RESNET_STAGES for block in getattr(backbone, stage)]
    in_channels = next(m for m in backbone.modules() if isinstance(m, nn.Conv2d)).in_channels
    probe = torch.zeros(2, in_channels, PROBE_SIZE, PROBE_SIZE)
    return GloNet(stem=stem, blocks=blocks, head=backbone.fc, adapters=pooled_adapters(stem, blocks, probe))


def wrap_vit(backbone: nn.Module) -> GloNet:
    """A timm VisionTransformer with a class token, learned position embedding and no
    register tokens (vit_tiny/small/base_patch16_*, deit_*)."""
    unsupported = {"no class token": getattr(backbone, "cls_token", None) is None,
                   "no position embedding": getattr(backbone, "pos_embed", None) is None,
                   "register tokens": getattr(backbone, "reg_token", None) is not None,
                   "no_embed_class": getattr(backbone, "no_embed_class", False),
                   "dynamic_img_size": getattr(backbone, "dynamic_img_size", False),
                   "attention pooling": getattr(backbone, "attn_pool", None) is not None,
                   f"global_pool={getattr(backbone, 'global_pool', None)!r}":
                       getattr(backbone, "global_pool", None) not in ("token", "avg")}
    found = [what for what, present in unsupported.items() if present]
    if found:
        raise ConfigError(f"{type(backbone).__name__} has {', '.join(found)}, which wrap_vit does not take; build "
                          "GloNet(stem=..., blocks=[...], head=...) yourself")
    return GloNet(stem=ViTStem(backbone), blocks=list(backbone.blocks), head=ViTHead(backbone))


class ViTStem(nn.Module):
    """Patches -> tokens: patch embedding, the class token in front, position embedding added."""

    def __init__(self, vit: nn.Module):
        super().__init__()
        self.patch_embed, self.cls_token, self.pos_embed = vit.patch_embed, vit.cls_token, vit.pos_embed
        self.pos_drop, self.patch_drop, self.norm_pre = vit.pos_drop, vit.patch_drop, vit.norm_pre

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patch_embed(x)
        tokens = torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1) + self.pos_embed
        return self.norm_pre(self.patch_drop(self.pos_drop(tokens)))


class ViTHead(nn.Module):
    """The summed tokens -> logits: final norm, pooling (class token or mean of the patches), classifier."""

    def __init__(self, vit: nn.Module):
        super().__init__()
        self.norm, self.fc_norm, self.head_drop, self.head = vit.norm, vit.fc_norm, vit.head_drop, vit.head
        self.pool, self.num_prefix_tokens = vit.global_pool, vit.num_prefix_tokens

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        tokens = self.norm(tokens)
        pooled = tokens[:, 0] if self.pool == "token" else tokens[:, self.num_prefix_tokens:].mean(dim=1)
        return self.head(self.head_drop(self.fc_norm(pooled)))
