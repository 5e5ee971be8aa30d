"""Model families: fc.py (glonet-fc, resnet-fc, residual-fc, plain-fc), cnn.py, vit.py.

Importing the built-in model modules here registers them, so the registry itself imports no
model (no import circle) and is complete as soon as this package is imported.
"""

from . import cnn, fc, vit  # noqa: F401  (registration side effect)
from .base import DepthModel, ModelConfig, params_and_macs
from .registry import create_model, list_models, register_model

__all__ = ["DepthModel", "ModelConfig", "create_model", "list_models", "params_and_macs", "register_model"]
