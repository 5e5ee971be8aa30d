"""Model families: fc.py (glonet-fc, resnet-fc, residual-fc, plain-fc), cnn.py, vit.py."""

from .base import DepthModel, ModelConfig, params_and_macs
from .registry import create_model, list_models, register_model

__all__ = ["DepthModel", "ModelConfig", "create_model", "list_models", "params_and_macs", "register_model"]
