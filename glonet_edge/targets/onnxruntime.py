"""ONNX Runtime target: the artifact IS the ONNX graph (fp32 or the QDQ int8 graph).

`build` only validates (a session is created and runs one sample); `load` makes a session
with tuned SessionOptions (ORT_ENABLE_ALL, sequential execution, thread counts) and the
execution providers chosen from what this onnxruntime build has: CPU here; CUDA / TensorRT /
OpenVINO EPs where installed. `InferenceSession.run` is thread-safe, so one session serves
every thread.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..compare import session_options
from ..errors import ArtifactError, ConfigError
from ..manifest import FAMILY_FORMAT, ORT_FORMAT  # the family graph; ONNX Runtime's own int8 graph
from .base import CompiledModel, FamilyBuilder, Target, default_cache_dir


# device -> providers to try, in order (CPU is always appended as the fallback)
_DEVICE_PROVIDERS = {
    "CPU": [],
    "GPU": ["CUDAExecutionProvider"],
    "CUDA": ["CUDAExecutionProvider"],
    "TENSORRT": ["TensorrtExecutionProvider", "CUDAExecutionProvider"],
    "OPENVINO": ["OpenVINOExecutionProvider"],
    "NPU": ["OpenVINOExecutionProvider", "QNNExecutionProvider"],
    "AUTO": ["CUDAExecutionProvider", "OpenVINOExecutionProvider", "DmlExecutionProvider", "CoreMLExecutionProvider"],
}


class OrtCompiledModel(CompiledModel):
    target = "onnxruntime"

    def __init__(self, session, precision: str, providers: list[str]):
        self.session = session
        self.precision = precision
        self.providers = providers
        self.input_names = [i.name for i in session.get_inputs()]
        self.output_names = [o.name for o in session.get_outputs()]

    def run(self, feeds: dict[str, Any]) -> list[np.ndarray]:
        return self.run_validated(self.check_feeds(feeds))

    def run_validated(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        try:
            return list(self.session.run(self.output_names, feeds))
        except Exception as exc:  # onnxruntime raises its own InvalidArgument / Fail / RuntimeException
            shapes = {k: tuple(v.shape) for k, v in feeds.items()}
            raise ConfigError(f"ONNX Runtime inference failed ({type(exc).__name__}: {exc}); inputs {shapes} do "
                              f"not fit the graph's inputs {self.input_names}") from exc

    def raw_callable(self) -> Callable[[dict[str, np.ndarray]], Any]:
        run, names = self.session.run, self.output_names
        return lambda feeds: run(names, feeds)


class OnnxRuntimeTarget(Target):
    name = "onnxruntime"
    precisions = ("fp32", "int8")
    devices = tuple(_DEVICE_PROVIDERS)
    default_device = "CPU"
    artifact_format = "onnx"
    library = "onnxruntime"
    extra = "onnxruntime"

    def describe(self) -> dict[str, Any]:
        ort = self.require()
        return {"target": self.name, "onnxruntime": ort.__version__, "device": ort.get_device(),
                "available_providers": ort.get_available_providers()}

    def providers(self, device: str | None = None, precision: str = "fp32", cache_dir: str | None = None,
                  **_: Any) -> list:
        """Providers for a device from those this onnxruntime build has, with their options."""
        ort = self.require()
        device = self.check_device(device)
        base = device.split(":")[0]
        index = int(device.split(":")[1]) if ":" in device else 0
        have = set(ort.get_available_providers())
        wanted = [p for p in _DEVICE_PROVIDERS[base] if p in have]
        if base not in ("CPU", "AUTO") and not wanted:
            raise ConfigError(f"device {device!r} needs one of {_DEVICE_PROVIDERS[base]}, but this onnxruntime has only "
                              f"{sorted(have)}; install onnxruntime-gpu (CUDA/TensorRT) or onnxruntime-openvino, "
                              "or use --device CPU")
        out: list = []
        for p in wanted:
            if p == "CUDAExecutionProvider":
                out.append((p, {"device_id": index}))
            elif p == "TensorrtExecutionProvider":
                cache = str(cache_dir or default_cache_dir("ort-tensorrt"))
                opts = {"device_id": index, "trt_engine_cache_enable": True, "trt_engine_cache_path": cache,
                        "trt_timing_cache_enable": True, "trt_timing_cache_path": cache}
                if precision in ("fp16", "int8"):
                    opts["trt_fp16_enable"] = True  # ignored by TensorRT 11 (precision lives in the graph)
                if precision == "int8":
                    opts["trt_int8_enable"] = True  # QDQ graphs on TensorRT < 11
                out.append((p, opts))
            elif p == "OpenVINOExecutionProvider":
                out.append((p, {"device_type": "NPU" if base == "NPU" else "CPU",
                                "cache_dir": str(cache_dir or default_cache_dir("ort-openvino"))}))
            else:
                out.append(p)
        out.append("CPUExecutionProvider")
        return out

    def serving_artifact(self, entry: Any, precision: str) -> Any:
        """int8: ONNX Runtime's own flavour (u8 activations, quantized outputs: QLinearConv & co.)
        when quantize made one; else the TensorRT QDQ graph, which ORT's x86 kernels run slower
        than fp32 (BENCHMARKS.md)."""
        if precision == "int8":
            own = entry.artifact(ORT_FORMAT, "int8")
            if own is not None:
                return own
        return entry.artifact(self.artifact_format, precision)

    def serves_format(self, format: str) -> bool:
        return format in (self.artifact_format, ORT_FORMAT, FAMILY_FORMAT)

    def family(self, device: str, **options: Any) -> "OrtFamilyBuilder":
        return OrtFamilyBuilder(self, device, options)

    def session_settings(self, threads: int | None = None) -> dict[str, Any]:
        return {"graph_optimization_level": "ORT_ENABLE_ALL", "execution_mode": "ORT_SEQUENTIAL",
                "intra_op_num_threads": int(threads or 0), "inter_op_num_threads": 1}

    def build(self, onnx_path: str | Path, out_dir: str | Path, precision: str, **options: Any) -> list[Path]:
        """Nothing to compile: check the graph loads and runs one sample; the artifact is the ONNX file."""
        self.check_precision(precision)
        model = self.load(onnx_path, precision, **options)
        feeds = {}
        for inp in model.session.get_inputs():
            shape = [d if isinstance(d, int) and d > 0 else 1 for d in inp.shape]
            feeds[inp.name] = np.zeros(shape, np.float32)
        outs = model.run(feeds)
        if not all(np.all(np.isfinite(o)) for o in outs):
            raise ArtifactError(f"{onnx_path}: onnxruntime produced NaN/Inf on a zero input; the graph is broken")
        return [Path(onnx_path)]

    def load(self, artifact_path: str | Path, precision: str, **options: Any) -> OrtCompiledModel:
        ort = self.require()
        self.check_precision(precision)
        path = Path(artifact_path)
        if not path.is_file():
            raise ArtifactError(f"ONNX graph {path} does not exist; re-run `glonet export` / `glonet quantize`")
        providers = self.providers(options.get("device"), precision, cache_dir=options.get("cache_dir"))
        so = session_options(threads=options.get("threads") or _env_threads())
        try:
            sess = ort.InferenceSession(str(path), so, providers=providers)
        except Exception as exc:  # ORT raises its own Fail/InvalidGraph/... types
            raise ArtifactError(f"onnxruntime cannot load {path}: {exc}; the file is corrupt or not an ONNX graph "
                                "(re-run the stage that made it)") from exc
        return OrtCompiledModel(sess, precision, sess.get_providers())

    def manifest_info(self, **options: Any) -> dict[str, Any]:
        info = self.describe()
        info["providers"] = [p if isinstance(p, str) else p[0] for p in
                             self.providers(options.get("device"), options.get("precision", "fp32"))]
        info["session_options"] = self.session_settings(options.get("threads"))
        return info


class OrtFamilyBuilder(FamilyBuilder):
    """`glonet compile --target onnxruntime`: nothing to build but, for int8, ONNX Runtime's own
    flavour graph, made (under quantize's accuracy control) for depths a bundle quantized before
    flavours existed lacks."""

    def prepare(self, stage: Path, manifest: Any, depths: list[int], precisions: list[str]) -> list[dict[str, Any]]:
        if "int8" not in precisions:
            return []
        from ..quantize.flavours import ORT_REJECTED, add_ort_flavours
        from ..quantize.settings import QuantizeSettings

        missing = [d for d in depths if manifest.depth(d).artifact(ORT_FORMAT, "int8") is None
                   and manifest.depth(d).artifact("onnx", "int8") is not None
                   and ORT_REJECTED not in manifest.depth(d).rejected]
        if not missing:
            return []

        return add_ort_flavours(stage, manifest, missing, QuantizeSettings(**self.quantize_settings(manifest)))

    def source(self, entry: Any, precision: str) -> Any:
        return self.target.serving_artifact(entry, precision) if precision == "int8" else super().source(entry, precision)

    @staticmethod
    def quantize_settings(manifest: Any) -> dict[str, Any]:
        """The accuracy limits the TensorRT graphs were quantized with (recorded per artifact)."""
        extra = next((a.extra for e in manifest.depths for a in e.artifacts
                      if a.format == "onnx" and a.precision == "int8"), {})
        return {k: extra[k] for k in ("max_drop", "min_agreement") if k in extra}


def _env_threads() -> int | None:
    v = os.environ.get("GLONET_THREADS")
    return int(v) if v and v.isdigit() else None
