"""OpenVINO target: ONNX -> IR (.xml + .bin) -> CompiledModel on CPU / GPU / NPU / AUTO.

build:  openvino.convert_model(onnx) then save_model(...):
        fp32 -> compress_to_fp16=False (save_model compresses to fp16 by default: docs/targets.md)
        fp16 -> compressed fp16 weights (compute precision is the device's: f16 on GPU/NPU)
        int8 -> from the QDQ ONNX graph (FakeQuantize in the IR, run as int8 by the plugin)
load:   core.compile_model(xml, device, {PERFORMANCE_HINT: LATENCY, CACHE_DIR: <cache>}),
        fp32 and int8 pin INFERENCE_PRECISION_HINT=f32 so CPUs with bf16/AMX (and GPUs, f16 by
        default) do not silently run the "fp32" artifact (or int8's float parts) at lower
        precision; fp16 leaves the device's own choice (f16 on GPU/NPU, bf16/f32 on CPU).
The model cache lives OUTSIDE the bundle (base.default_cache_dir("openvino"), or the
`cache_dir` option; cache_dir=False disables it), so bundle hashes never depend on a device.
Threads: CompiledModel's implicit infer request is not thread-safe, so `run` takes an
InferRequest per calling thread (run_validated). Only numpy is imported at module level.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import ArtifactError, ConfigError
from ..manifest import FAMILY_FORMAT
from .base import CompiledModel, Target, default_cache_dir

_CORE = None
_CORE_LOCK = threading.Lock()
_VIRTUAL_DEVICES = ("AUTO", "MULTI", "HETERO", "BATCH")


def core():
    """One ov.Core per process (creating one is slow; it is thread-safe)."""
    global _CORE
    with _CORE_LOCK:
        if _CORE is None:
            from ..errors import require

            ov = require("openvino", "openvino")
            _CORE = ov.Core()
        return _CORE


def _stem(onnx_path: Path) -> str:
    name = onnx_path.name
    for suffix in (".onnx", ".int8", ".fp16", ".fp32"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return name


# Distinct input shapes one thread keeps a request for; each request holds its own input and
# output buffers, so the cache is bounded (the adaptive chain compacts batches to any size).
_SLOTS_PER_THREAD = 8


class _RequestSlot:
    """One InferRequest for one set of input shapes, with numpy views of its input tensors and,
    after its first call, arrays of our own that OpenVINO writes the outputs into.

    Why: the request's tensors keep their memory while their shapes do not change, so a call is
    a copy in, infer, a copy out, with no ov.Tensor made and no tensor looked up per call; that
    is a few µs on a 50 µs cut. A new shape gets a new slot instead of set_shape on this one,
    because OpenVINO cannot resize an output tensor that wraps our memory."""

    __slots__ = ("request", "inputs", "outputs")

    def __init__(self, compiled: Any, inputs: list[tuple[str, Any]], shapes: tuple[tuple[int, ...], ...]):
        self.request = compiled.create_infer_request()
        self.inputs = []
        for (name, port), shape in zip(inputs, shapes):
            tensor = self.request.get_tensor(port)
            if tuple(tensor.shape) != tuple(shape):  # static-shape models (NPU) are left as compiled
                tensor.set_shape(list(shape))
            self.inputs.append((tensor.data, name))
        self.outputs: list[np.ndarray] | None = None

    def preset_outputs(self) -> list[np.ndarray]:
        """Copies of this first call's outputs; later calls write into arrays of these shapes
        (every glonet graph's output shapes follow from its input shapes)."""
        from openvino import Tensor

        outputs = [self.request.get_output_tensor(i).data.copy() for i in range(len(self.request.model_outputs))]
        self.outputs = [np.empty_like(out) for out in outputs]
        for i, array in enumerate(self.outputs):
            self.request.set_output_tensor(i, Tensor(array, shared_memory=True))
        return outputs


class OVCompiledModel(CompiledModel):
    target = "openvino"

    def __init__(self, compiled, precision: str, device: str, config: dict[str, Any]):
        self.compiled = compiled
        self.precision = precision
        self.device = device
        self.config = config
        self.input_names = [p.get_any_name() for p in compiled.inputs]
        self.output_names = [p.get_any_name() for p in compiled.outputs]
        self._single_output = len(compiled.outputs) == 1
        self._inputs = list(zip(self.input_names, compiled.inputs))
        # One InferRequest per calling thread and input shapes (_RequestSlot), made on first use:
        # the hot path takes no lock. A thread keeps its slots until it exits or the model is closed.
        self._per_thread = threading.local()
        self._raw_request = None
        import openvino

        self._tensor = openvino.Tensor

    def run(self, feeds: dict[str, Any]) -> list[np.ndarray]:
        return self.run_validated(self.check_feeds(feeds))

    def run_validated(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        try:
            slot = self._slot(feeds)
            for buffer, name in slot.inputs:
                np.copyto(buffer, feeds[name])
            slot.request.infer()
            if slot.outputs is None:  # first call at these shapes: from now on OpenVINO writes into our arrays
                return slot.preset_outputs()
            if self._single_output:  # the truncated graphs; spares a list comprehension per call
                return [slot.outputs[0].copy()]
            return [out.copy() for out in slot.outputs]
        except RuntimeError as exc:
            raise ConfigError(f"OpenVINO inference failed ({exc}); check the input shapes "
                              f"({', '.join(self.input_names)})") from exc

    def _slot(self, feeds: dict[str, np.ndarray]) -> "_RequestSlot":
        """This thread's request for these input shapes (the hot path takes no lock)."""
        slots = getattr(self._per_thread, "slots", None)
        if slots is None:
            slots = self._per_thread.slots = {}
        shapes = tuple(feeds[name].shape for name in self.input_names)
        slot = slots.get(shapes)
        if slot is None:
            if len(slots) >= _SLOTS_PER_THREAD:  # adaptive batches vary: keep the latest shapes only
                del slots[next(iter(slots))]
            slot = slots[shapes] = _RequestSlot(self.compiled, self._inputs, shapes)
        return slot

    def raw_callable(self) -> Callable[[dict[str, np.ndarray]], Any]:
        """One dedicated InferRequest, zero-copy in and out (single-threaded use only): the
        leanest OpenVINO call sequence, returning a view of the first output."""
        if self._raw_request is None:
            self._raw_request = self.compiled.create_infer_request()
        req, inputs, tensor = self._raw_request, self._inputs, self._tensor

        def raw(feeds: dict[str, np.ndarray]) -> Any:
            for name, port in inputs:
                arr = feeds[name]
                req.set_tensor(port, tensor(arr, shared_memory=arr.flags.writeable))
            req.infer()
            return req.get_output_tensor(0).data

        return raw

    def close(self) -> None:
        self._per_thread = threading.local()  # drops every thread's request with the old object
        self._raw_request = None


class OpenVINOTarget(Target):
    name = "openvino"
    precisions = ("fp32", "fp16", "int8")
    devices = ("CPU", "GPU", "NPU", "AUTO", "MULTI", "HETERO")
    default_device = "CPU"
    artifact_format = "openvino"
    library = "openvino"
    extra = "openvino"
    # Compiling the family graph's nested Ifs takes about twice as long per depth added: 0.43 s at
    # 16 depths, 1.51 s at 18, 5.86 s at 20 (OpenVINO 2026.4, 2-core Xeon, 4-wide fc blocks).
    family_graph_depths = 18

    def serves_format(self, format: str) -> bool:
        # The family graph is an ONNX file; OpenVINO compiles it as it is (runtime share_weights).
        return format in (self.artifact_format, FAMILY_FORMAT)

    def describe(self) -> dict[str, Any]:
        ov = self.require()
        c = core()
        names = {}
        for d in c.available_devices:
            try:
                names[d] = str(c.get_property(d, "FULL_DEVICE_NAME"))
            except Exception:  # pragma: no cover - plugin without the property
                names[d] = d
        return {"target": self.name, "openvino": ov.get_version(), "devices": names}

    def artifact_paths(self, out_dir: Path, stem: str, precision: str) -> list[Path]:
        xml = Path(out_dir) / f"{stem}.{precision}.xml"
        return [xml, xml.with_suffix(".bin")]

    def build(self, onnx_path: str | Path, out_dir: str | Path, precision: str, **options: Any) -> list[Path]:
        ov = self.require()
        self.check_precision(precision)
        onnx_path = Path(onnx_path)
        if not onnx_path.is_file():
            raise ArtifactError(f"{onnx_path} does not exist; re-run `glonet export` / `glonet quantize`")
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        xml, bin_ = self.artifact_paths(out_dir, options.get("stem") or _stem(onnx_path), precision)
        try:
            model = ov.convert_model(str(onnx_path))
        except Exception as exc:
            raise ArtifactError(f"OpenVINO cannot convert {onnx_path}: {exc}") from exc
        if precision == "int8" and not any(op.get_type_name() == "FakeQuantize" for op in model.get_ops()):
            raise ArtifactError(f"{onnx_path} has no Quantize/DequantizeLinear nodes, so an 'int8' IR would run in "
                                "float; pass the QDQ graph from `glonet quantize`")
        ov.save_model(model, str(xml), compress_to_fp16=(precision == "fp16"))
        return [xml, bin_]

    def compile_config(self, precision: str, device: str, **options: Any) -> dict[str, Any]:
        config: dict[str, Any] = {"PERFORMANCE_HINT": options.get("performance_hint", "LATENCY")}
        cache = options.get("cache_dir")
        if cache is not False:
            cache = Path(cache) if cache else default_cache_dir("openvino")
            cache.mkdir(parents=True, exist_ok=True)
            config["CACHE_DIR"] = str(cache)
        base = device.split(":")[0].split(".")[0]
        if precision in ("fp32", "int8") and base in ("CPU", "GPU"):
            # fp32 means fp32; int8 runs its quantized ops in int8 and the rest in f32 (not bf16/f16)
            config["INFERENCE_PRECISION_HINT"] = "f32"
        if options.get("threads") and base == "CPU":
            config["INFERENCE_NUM_THREADS"] = int(options["threads"])
        config.update(options.get("config") or {})
        return config

    def check_available(self, device: str) -> None:
        base = device.split(":")[0]
        if base.split(".")[0] in _VIRTUAL_DEVICES:
            return
        have = core().available_devices
        if base not in have and not any(h.split(".")[0] == base for h in have):
            raise ConfigError(f"OpenVINO device {device!r} is not available on this machine (available: "
                              f"{', '.join(have) or 'none'}; AUTO picks one); install its driver/plugin or use --device CPU")

    def load(self, artifact_path: str | Path, precision: str, **options: Any) -> OVCompiledModel:
        self.require()
        self.check_precision(precision)
        device = self.check_device(options.get("device"))
        self.check_available(device)
        xml = Path(artifact_path)
        # An ONNX graph (the runtime's family graph) is read by OpenVINO directly, weights and all.
        if not xml.is_file() or (xml.suffix != ".onnx" and not xml.with_suffix(".bin").is_file()):
            raise ArtifactError(f"OpenVINO IR {xml} (and its .bin) not found; run `glonet compile --target openvino`")
        config = self.compile_config(precision, device, **{k: v for k, v in options.items() if k != "device"})
        c = core()
        try:
            batch = options.get("static_batch")
            if batch:  # NPU (and DLA-like devices) want static shapes: one compiled model per batch
                model = c.read_model(str(xml))
                model.reshape({p.get_any_name(): [int(batch), *list(p.get_partial_shape())[1:]] for p in model.inputs})
                compiled = c.compile_model(model, device, config)
            else:
                compiled = c.compile_model(str(xml), device, config)
        except RuntimeError as exc:
            raise ArtifactError(f"OpenVINO cannot compile {xml} for {device}: {exc}; the IR may be corrupt "
                                "(re-run `glonet compile --target openvino`)") from exc
        return OVCompiledModel(compiled, precision, device, config)

    def artifact_extra(self, precision: str, **options: Any) -> dict[str, Any]:
        ov = self.require()
        return {"openvino": ov.get_version(), "compress_to_fp16": precision == "fp16"}

    def manifest_info(self, **options: Any) -> dict[str, Any]:
        info = self.describe()
        device = self.check_device(options.get("device"))
        rest = {k: v for k, v in options.items() if k not in ("device", "precision", "precisions")}
        cfgs = {}
        for p in options.get("precisions") or [options.get("precision", "fp32")]:
            cfgs[p] = self.compile_config(p, device, **rest)
            cfgs[p].pop("CACHE_DIR", None)
        info.update({"device": device, "compile_config": cfgs,
                     "cache_dir": "outside the bundle: $GLONET_CACHE_DIR/openvino or ~/.cache/glonet-edge/openvino "
                                  "(load option cache_dir; False disables)",
                     "all_depths_compiled_once": True})
        return info
