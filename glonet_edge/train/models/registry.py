"""timm-style registry: build any model from its name and a ModelConfig."""

from __future__ import annotations

from typing import Callable

from ...errors import ConfigError
from .base import DepthModel, ModelConfig

_MODELS: dict[str, Callable[[ModelConfig], DepthModel]] = {}


def register_model(name: str):
    def deco(cls):
        _MODELS[name] = cls
        return cls
    return deco


def list_models() -> list[str]:
    _load_builtin()
    return sorted(_MODELS)


def create_model(config: ModelConfig) -> DepthModel:
    _load_builtin()
    config.validate()
    if config.model not in _MODELS:
        raise ConfigError(f"unknown model {config.model!r}; available: {', '.join(sorted(_MODELS))}")
    return _MODELS[config.model](config)


def _load_builtin() -> None:
    from . import cnn, fc, vit  # noqa: F401  (registration side effect)
