"""timm-style registry: build any model from its name and a ModelConfig.

The registry never imports models: a model module registers itself with `@register_model`,
and the package's __init__ imports the built-in ones, so the registry is full once
`glonet_edge.train.models` is imported.
"""

from __future__ import annotations

from typing import Callable

from ...errors import ConfigError
from .base import DepthModel, ModelConfig

ModelFactory = Callable[[ModelConfig], DepthModel]

_MODELS: dict[str, ModelFactory] = {}


def register_model(name: str) -> Callable[[ModelFactory], ModelFactory]:
    """Class decorator: `create_model` builds `name` with it. A name can be registered once."""
    def deco(factory: ModelFactory) -> ModelFactory:
        if name in _MODELS:
            taken = _MODELS[name]
            raise ConfigError(f"model name {name!r} is already registered by {taken.__module__}.{taken.__qualname__}; "
                              "register the new model under another name")
        _MODELS[name] = factory
        return factory
    return deco


def list_models() -> list[str]:
    return sorted(_MODELS)


def create_model(config: ModelConfig) -> DepthModel:
    config.validate()
    if config.model not in _MODELS:
        raise ConfigError(f"unknown model {config.model!r}; available: {', '.join(sorted(_MODELS))}")
    return _MODELS[config.model](config)
