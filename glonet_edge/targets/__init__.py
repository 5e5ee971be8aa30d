"""Deployment targets (contract names: "onnxruntime", "openvino", "tensorrt").

    from glonet_edge.targets import get_target, list_targets
    t = get_target("openvino")          # Target (base.py); t.available(), t.describe()
    model = t.load(path, "int8")        # CompiledModel: thread-safe run(feeds) -> [outputs]

Each target lives in its own module, imported only when asked for; none imports its engine
library at module level. Adding a target = one module + one line in _TARGETS.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .base import PRECISIONS, CompiledModel, Target

# name -> (module, class)
_TARGETS: dict[str, tuple[str, str]] = {
    "onnxruntime": (".onnxruntime", "OnnxRuntimeTarget"),
    "openvino": (".openvino", "OpenVINOTarget"),
    "tensorrt": (".tensorrt", "TensorRTTarget"),
}
_INSTANCES: dict[str, Target] = {}


def list_targets() -> list[str]:
    return list(_TARGETS)


def register_target(name: str, module: str, cls: str) -> None:
    """Register an out-of-tree target (module is an absolute import path)."""
    _TARGETS[name] = (module, cls)
    _INSTANCES.pop(name, None)


def get_target(name: str) -> Target:
    if not isinstance(name, str) or name not in _TARGETS:
        raise ConfigError(f"unknown target {name!r}; available targets: {', '.join(_TARGETS)}")
    if name not in _INSTANCES:
        module, cls = _TARGETS[name]
        mod = importlib.import_module(module, __package__) if module.startswith(".") else importlib.import_module(module)
        _INSTANCES[name] = getattr(mod, cls)()
    return _INSTANCES[name]


def load_artifact(bundle_dir: str | Path, artifact: Any, target: str | Target, verify: bool = True,
                  holder: Any = None, **options: Any) -> CompiledModel:
    """Check an artifact (provenance, sha256 + companions, target compatibility) and load it.

    `artifact` is a manifest.Artifact and `holder` the DepthEntry / SegmentEntry that lists it
    (named in errors): a compiled artifact not proven built from the holder's current
    graph is refused (provenance.py). The runtime and profile use this so every load goes
    through the same checks."""
    t = get_target(target) if isinstance(target, str) else target
    if holder is not None:
        from ..provenance import check_fresh

        check_fresh(bundle_dir, holder, artifact)
    if not t.serves_format(artifact.format):
        raise ConfigError(f"artifact {artifact.path} has format {artifact.format!r}; target {t.name!r} "
                          f"loads {t.artifact_format!r} artifacts (run `glonet compile --target {t.name}`)")
    t.check_artifact(artifact.extra, **options)
    path = artifact.resolve(bundle_dir, verify=verify)
    return t.load(path, artifact.precision, **options)


__all__ = ["PRECISIONS", "CompiledModel", "Target", "get_target", "list_targets", "load_artifact", "register_target"]
