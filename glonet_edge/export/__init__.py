"""Export stage: a checkpoint becomes a bundle of ONNX graphs, one per chosen depth, plus the
segment chain for anytime inference, with a checksummed manifest.

    from glonet_edge.export import export_bundle
    manifest = export_bundle("runs/fc", "bundles/fc", depths="auto")

Needs torch, onnx and onnxruntime (`pip install glonet-edge[train]`); the depth selection in
`select` is pure Python.
"""

from .bundle import export_bundle, measure_storage, share_weights
from .select import pareto_depths, parse_depths, resolve_depths

__all__ = ["export_bundle", "measure_storage", "pareto_depths", "parse_depths", "resolve_depths", "share_weights"]
