"""An engine's metadata (the sidecar <engine>.json and the manifest entry) and the load-time check
that refuses an engine built by another TensorRT version or for another GPU."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Optional

from ...errors import ArtifactError
from ...fileio import atomic_write_text, sha256_file
from . import device
from .library import trt_major
from .result import EngineBuild


def _onnx_opset(onnx_path: Path) -> Optional[int]:
    try:
        import onnx

        m = onnx.load(str(onnx_path), load_external_data=False)
    except Exception:  # the opset is informative only: an unreadable header leaves it out
        return None
    return next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), None)


def _file_id(path: Path) -> Dict[str, Any]:
    return {"file": path.name, "sha256": sha256_file(path) if path.is_file() else None}


def engine_metadata(trt: Any, record: EngineBuild, onnx_path: Path) -> Dict[str, Any]:
    """TensorRT version, GPU, Jetson release, precision settings, profile, source graph and cache ids."""
    opts = record.options
    gpu_index = opts.device.gpu_index
    meta: Dict[str, Any] = {"tensorrt": str(trt.__version__), **device.gpu_info(gpu_index), "gpu_index": gpu_index}
    jetson = device.jetson_info()
    if jetson:
        meta["jetson"] = jetson
    meta.update({
        "precision": opts.precision, "builder_flags": record.builder_flags,
        "strongly_typed": record.strongly_typed or trt_major(trt) >= 11, "dla_core": opts.device.dla_core,
        "profile": record.shapes, "workspace_mib": opts.workspace_mib,
        "version_compatible": False, "hardware_compatibility_level": "NONE",
        "onnx_sha256": sha256_file(onnx_path), "onnx_opset": _onnx_opset(onnx_path),
        "timing_cache": _file_id(record.timing_cache),
    })
    if record.optimization_level is not None:  # TensorRT 8.5 has no optimization level to apply
        meta["optimization_level"] = record.optimization_level
    if meta["onnx_opset"] is None:
        del meta["onnx_opset"]
    if record.converter:
        meta["unfold" if record.unfolded_graph is not None else "fp16_converter"] = record.converter
    if record.fp16_graph is not None:
        meta["fp16_graph"] = _file_id(record.fp16_graph)
    if record.unfolded_graph is not None:
        meta["unfolded_graph"] = _file_id(record.unfolded_graph)
    return meta


def write_metadata(trt: Any, record: EngineBuild, onnx_path: Path) -> None:
    atomic_write_text(record.sidecar, json.dumps(engine_metadata(trt, record, onnx_path), indent=2) + "\n")


def read_metadata(plan: Path) -> Dict[str, Any]:
    """The sidecar of an engine, {} when there is none."""
    sidecar = Path(plan).with_suffix(".json")
    if not sidecar.is_file():
        return {}
    try:
        return json.loads(sidecar.read_text())
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"TensorRT engine metadata {sidecar} is unreadable ({exc}); rebuild the engine with "
                            "`glonet compile BUNDLE --target tensorrt`") from exc


def check_engine(meta: Dict[str, Any], trt_version: str, gpu: Dict[str, Any]) -> None:
    """ArtifactError when the engine was built by another TensorRT version or for another GPU."""
    problems = []
    built_trt = meta.get("tensorrt")
    if built_trt and built_trt != trt_version:
        problems.append(f"TensorRT {built_trt} (this machine has {trt_version})")
    cc = meta.get("compute_capability")
    if cc and cc != gpu["compute_capability"]:
        problems.append(f"compute capability {cc} (this GPU, {gpu['gpu']}, is {gpu['compute_capability']})")
    elif meta.get("gpu") and meta["gpu"] != gpu["gpu"]:
        problems.append(f"GPU {meta['gpu']} (this machine has {gpu['gpu']})")
    if problems:
        raise ArtifactError("TensorRT engine was built for " + " and ".join(problems) + "; engines do not move between "
                            "TensorRT versions or GPUs: rebuild it here with `glonet compile BUNDLE --target tensorrt`")
