"""glonet-edge: ship a trained GloNet to edge devices as a family of depth-truncated engines.

`from glonet_edge import GloNet, cut_loss` needs torch; they are imported on first use, so
`import glonet_edge` (and the torch-free runtime) still works on a device without torch.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["GloNet", "cut_loss", "__version__"]

_LAZY = {"GloNet": "glonet", "cut_loss": "train.trainer"}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'glonet_edge' has no attribute {name!r}")
    import importlib

    from .errors import require

    require("torch", "train")
    return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
