"""TensorRT target (TensorRT 8.5 through 11.x; reference/targets.md §1).

One code path, feature-detected rather than branched on one version:

* network: EXPLICIT_BATCH only on TRT < 10 (the flag is ignored in 10 and gone in 11);
  STRONGLY_TYPED for QDQ int8 on TRT 10 (precision then comes from the graph; TRT 11 is always
  strongly typed).
* precision: FP16 / INT8 builder flags only where `trt.BuilderFlag` still has them (TRT <= 10).
  TRT 11 has none: fp16 = an fp16 ONNX graph (NVIDIA ModelOpt AutoCast when installed, else the
  small converter below, I/O kept fp32), int8 = the QDQ graph from `glonet quantize`.
  fp32 clears TF32 (where the flag exists) so "fp32" means fp32.
* dynamic batch: one optimization profile min/opt/max = 1/opt_batch/max_batch over dim 0.
* timing cache: one file per (TRT version, GPU) in the engine directory, loaded before and saved
  after every build, so the L builds of a family share tactics.
* DLA (Jetson Orin/Xavier, device "DLA" or "DLA:1"): default_device_type=DLA, DLA_core,
  GPU_FALLBACK, fp16/int8 only, static batch (profile min=opt=max).
* build_serialized_network returns None on failure: checked, with the parser's errors listed.
* metadata: TRT version, GPU name + compute capability, CUDA, JetPack/L4T (/etc/nv_tegra_release),
  flags, profile, workspace, ONNX sha256/opset, timing-cache id; written to the manifest and to a
  sidecar <engine>.json. `load` refuses an engine built for another TRT version or GPU.
* execution: named tensors + execute_async_v3 (TRT 8.5+), device buffers from torch CUDA or
  cuda-python, a pool of (execution context, stream, buffers) so `run` is thread-safe.
* trtexec: the equivalent command line per graph is written to <engine dir>/trtexec.sh and the
  compile JSON (a fallback and a cross-check: `bash trtexec.sh` on the device).

Engines live in BUNDLE/tensorrt/<gpu>_sm<cc>_trt<version>/ because they do not move between
TensorRT versions or GPUs: on a Jetson build on the device itself.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import threading
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import ArtifactError, ConfigError, MissingDependencyError
from ..fileio import atomic_write_bytes, atomic_write_text, sha256_bytes, sha256_file
from .base import CompiledModel, RequestPool, Target

TEGRA_RELEASE = Path("/etc/nv_tegra_release")
_LOGGER = None


def _trt():
    from ..errors import require

    return require("tensorrt", "tensorrt")


def _logger(trt):
    global _LOGGER
    if _LOGGER is None:
        _LOGGER = trt.Logger(trt.Logger.WARNING)
    return _LOGGER


def trt_major(trt) -> int:
    return int(str(trt.__version__).split(".")[0])


def has_flag(enum: Any, name: str) -> bool:
    return hasattr(enum, name)


# ---------------------------------------------------------------------------------------------
# device facts
# ---------------------------------------------------------------------------------------------
def jetson_info(path: Path = TEGRA_RELEASE) -> dict[str, str] | None:
    """L4T release from /etc/nv_tegra_release ("# R36 (release), REVISION: 4.0, ...") and the
    JetPack line it belongs to."""
    try:
        text = path.read_text(errors="replace").splitlines()[0]
    except (OSError, IndexError):
        return None
    m = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", text)
    if not m:
        return {"nv_tegra_release": text.strip()}
    l4t = f"{m.group(1)}.{m.group(2)}"
    jetpack = {"32": "4.x", "34": "5.0", "35": "5.1.x", "36": "6.x", "38": "7.x"}.get(m.group(1), "unknown")
    return {"l4t": l4t, "jetpack": jetpack}


def gpu_info(index: int = 0) -> dict[str, Any]:
    """GPU name, compute capability and CUDA versions, via torch or cuda-python (whichever is there)."""
    try:
        import torch

        if torch.cuda.is_available():
            major, minor = torch.cuda.get_device_capability(index)
            return {"gpu": torch.cuda.get_device_name(index), "compute_capability": f"{major}.{minor}",
                    "cuda_runtime": torch.version.cuda, "via": "torch"}
    except ImportError:
        pass
    try:
        cudart = _cudart()
        prop = _ck(cudart.cudaGetDeviceProperties(index))
        name = prop.name.decode() if isinstance(prop.name, bytes) else str(prop.name)
        rt = _ck(cudart.cudaRuntimeGetVersion())
        drv = _ck(cudart.cudaDriverGetVersion())
        return {"gpu": name.strip("\x00 "), "compute_capability": f"{prop.major}.{prop.minor}",
                "cuda_runtime": f"{rt // 1000}.{(rt % 1000) // 10}", "cuda_driver": f"{drv // 1000}.{(drv % 1000) // 10}",
                "via": "cuda-python"}
    except Exception as exc:
        raise MissingDependencyError(
            "TensorRT needs a CUDA GPU and a way to reach it from Python: install cuda-python "
            f"(`pip install glonet-edge[tensorrt]`) or a CUDA build of torch ({exc})") from exc


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "gpu"


def engine_dir_name(trt_version: str, gpu: dict[str, Any]) -> str:
    cc = gpu["compute_capability"].replace(".", "")
    return f"{_slug(gpu['gpu'])}_sm{cc}_trt{trt_version}"


# ---------------------------------------------------------------------------------------------
# CUDA buffers: torch or cuda-python
# ---------------------------------------------------------------------------------------------
def _cudart():
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        from cuda import cudart  # older cuda-python
    return cudart


def _ck(res: Any) -> Any:
    err, *rest = res if isinstance(res, tuple) else (res,)
    if int(err) != 0:
        raise RuntimeError(f"CUDA error {err}")
    return rest[0] if len(rest) == 1 else (tuple(rest) if rest else None)


class _TorchCuda:
    def __init__(self, index: int):
        import torch

        self.torch = torch
        self.device = torch.device("cuda", index)

    def stream(self):
        s = self.torch.cuda.Stream(device=self.device)
        return s, s.cuda_stream

    def alloc(self, nbytes: int):
        t = self.torch.empty(max(int(nbytes), 1), dtype=self.torch.uint8, device=self.device)
        return t, t.data_ptr()

    def h2d(self, buf, arr: np.ndarray, stream) -> None:
        with self.torch.cuda.stream(stream):
            buf[:arr.nbytes].copy_(self.torch.from_numpy(arr.reshape(-1).view(np.uint8)), non_blocking=True)

    def d2h(self, out: np.ndarray, buf, stream) -> None:
        with self.torch.cuda.stream(stream):
            self.torch.from_numpy(out.reshape(-1).view(np.uint8)).copy_(buf[:out.nbytes], non_blocking=False)

    def sync(self, stream) -> None:
        stream.synchronize()

    def free(self, buf) -> None:
        del buf


class _CudaPython:
    def __init__(self, index: int):
        self.rt = _cudart()
        _ck(self.rt.cudaSetDevice(index))

    def stream(self):
        s = _ck(self.rt.cudaStreamCreate())
        return s, int(s)

    def alloc(self, nbytes: int):
        ptr = _ck(self.rt.cudaMalloc(max(int(nbytes), 1)))
        return ptr, int(ptr)

    def h2d(self, buf, arr: np.ndarray, stream) -> None:
        _ck(self.rt.cudaMemcpyAsync(buf, arr.ctypes.data, arr.nbytes,
                                    self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice, stream))

    def d2h(self, out: np.ndarray, buf, stream) -> None:
        _ck(self.rt.cudaMemcpyAsync(out.ctypes.data, buf, out.nbytes,
                                    self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream))

    def sync(self, stream) -> None:
        _ck(self.rt.cudaStreamSynchronize(stream))

    def free(self, buf) -> None:
        self.rt.cudaFree(buf)


def cuda_backend(index: int = 0, prefer: str = "auto"):
    if prefer in ("auto", "torch"):
        try:
            import torch

            if torch.cuda.is_available():
                return _TorchCuda(index)
        except ImportError:
            if prefer == "torch":
                raise
    try:
        return _CudaPython(index)
    except ImportError as exc:
        raise MissingDependencyError("running TensorRT engines needs cuda-python or a CUDA build of torch; "
                                     "install with `pip install glonet-edge[tensorrt]`") from exc


# ---------------------------------------------------------------------------------------------
# fp16 ONNX for TensorRT 11 (no FP16 builder flag: precision lives in the graph)
# ---------------------------------------------------------------------------------------------
def convert_fp16(src: str | Path, dst: str | Path) -> str:
    """fp32 ONNX -> fp16 ONNX with fp32 inputs/outputs (Cast at the edges). Uses NVIDIA ModelOpt
    AutoCast when installed; otherwise converts every float initializer / Constant / Cast target.
    Returns which converter ran."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    try:
        from modelopt.onnx.autocast import convert_to_mixed_precision  # type: ignore

        model = convert_to_mixed_precision(onnx_path=str(src), low_precision_type="fp16", keep_io_types=True)
        onnx.save(model, str(dst))
        return "modelopt-autocast"
    except ImportError:
        pass
    model = onnx.load(str(src))
    g = model.graph
    for i, t in enumerate(list(g.initializer)):
        if t.data_type == TensorProto.FLOAT:
            g.initializer[i].CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float16), t.name))
    for n in g.node:
        for a in n.attribute:
            if a.name == "value" and a.type == onnx.AttributeProto.TENSOR and a.t.data_type == TensorProto.FLOAT:
                a.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(a.t).astype(np.float16), a.t.name))
            if n.op_type == "Cast" and a.name == "to" and a.i == TensorProto.FLOAT:
                a.i = TensorProto.FLOAT16
    casts_in = []
    for inp in g.input:
        if inp.type.tensor_type.elem_type == TensorProto.FLOAT:
            new = f"{inp.name}__fp16"
            for n in g.node:
                for k, name in enumerate(n.input):
                    if name == inp.name:
                        n.input[k] = new
            casts_in.append(helper.make_node("Cast", [inp.name], [new], to=TensorProto.FLOAT16, name=f"cast_in_{inp.name}"))
    casts_out = []
    for out in g.output:
        if out.type.tensor_type.elem_type == TensorProto.FLOAT:
            new = f"{out.name}__fp16"
            for n in g.node:
                for k, name in enumerate(n.output):
                    if name == out.name:
                        n.output[k] = new
                for k, name in enumerate(n.input):
                    if name == out.name:
                        n.input[k] = new
            casts_out.append(helper.make_node("Cast", [new], [out.name], to=TensorProto.FLOAT, name=f"cast_out_{out.name}"))
    nodes = casts_in + list(g.node) + casts_out
    del g.node[:]
    g.node.extend(nodes)
    del g.value_info[:]
    onnx.save(model, str(dst))
    return "glonet-edge"


# ---------------------------------------------------------------------------------------------
# compiled engine
# ---------------------------------------------------------------------------------------------
class _Slot:
    """One execution context with its stream and device buffers (used by one thread at a time)."""

    def __init__(self, engine, cuda, inputs: list[str], outputs: list[str]):
        self.ctx = engine.create_execution_context()
        if self.ctx is None:
            raise ArtifactError("TensorRT could not create an execution context (out of GPU memory?)")
        self.cuda = cuda
        self.stream, self.handle = cuda.stream()
        self.buffers: dict[str, tuple[Any, int, int]] = {}  # name -> (buffer, ptr, capacity)
        self.shapes: dict[str, tuple[int, ...]] = {}

    def buffer(self, name: str, nbytes: int) -> int:
        cur = self.buffers.get(name)
        if cur is None or cur[2] < nbytes:
            if cur is not None:
                self.cuda.free(cur[0])
            buf, ptr = self.cuda.alloc(nbytes)
            self.buffers[name] = cur = (buf, ptr, max(int(nbytes), 1))
            self.ctx.set_tensor_address(name, ptr)
        return cur[1]


class TrtCompiledModel(CompiledModel):
    target = "tensorrt"

    def __init__(self, trt, engine, precision: str, metadata: dict[str, Any], device_index: int = 0,
                 cuda_prefer: str = "auto"):
        self.trt = trt
        self.engine = engine
        self.precision = precision
        self.metadata = metadata
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self.input_names = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.output_names = [n for n in names if n not in self.input_names]
        self.dtypes = {n: np.dtype(trt.nptype(engine.get_tensor_dtype(n))) for n in names}
        self.cuda = cuda_backend(device_index, cuda_prefer)
        self._pool = RequestPool(lambda: _Slot(engine, self.cuda, self.input_names, self.output_names))
        self._raw: _Slot | None = None
        self._lock = threading.Lock()

    def profile_range(self, name: str) -> tuple[Any, Any, Any]:
        return tuple(self.engine.get_tensor_profile_shape(name, 0))

    def _execute(self, slot: _Slot, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        ctx, cuda = slot.ctx, slot.cuda
        for n in self.input_names:
            arr = feeds[n]
            if arr.dtype != self.dtypes[n]:
                arr = arr.astype(self.dtypes[n])
            if slot.shapes.get(n) != arr.shape:
                if not ctx.set_input_shape(n, tuple(arr.shape)):
                    lo, _, hi = self.profile_range(n)
                    raise ConfigError(f"input {n!r} shape {arr.shape} is outside the engine's optimization profile "
                                      f"[{tuple(lo)} .. {tuple(hi)}]; rebuild with a larger --max-batch")
                slot.shapes[n] = arr.shape
            slot.buffer(n, arr.nbytes)
            cuda.h2d(slot.buffers[n][0], arr, slot.stream)
        outs = []
        for n in self.output_names:
            shape = tuple(ctx.get_tensor_shape(n))
            out = np.empty(shape, self.dtypes[n])
            slot.buffer(n, out.nbytes)
            outs.append(out)
        if not ctx.execute_async_v3(slot.handle):
            raise ArtifactError("TensorRT execute_async_v3 failed (see the TensorRT log above)")
        for n, out in zip(self.output_names, outs):
            cuda.d2h(out, slot.buffers[n][0], slot.stream)
        cuda.sync(slot.stream)
        return [o.astype(np.float32, copy=False) for o in outs]

    def run(self, feeds: dict[str, Any]) -> list[np.ndarray]:
        """Batches above the optimization profile's max are run in chunks of max."""
        feeds = self.check_feeds(feeds)
        first = self.input_names[0]
        n = feeds[first].shape[0]
        hi = int(tuple(self.profile_range(first)[2])[0])
        slot = self._pool.acquire()
        try:
            if n <= hi:
                return self._execute(slot, feeds)
            parts = [self._execute(slot, {k: v[i:i + hi] for k, v in feeds.items()}) for i in range(0, n, hi)]
            return [np.concatenate(outs) for outs in zip(*parts)]
        finally:
            self._pool.release(slot)

    def raw_callable(self) -> Callable[[dict[str, np.ndarray]], Any]:
        """One dedicated context: H2D, execute_async_v3, D2H, sync; no checks (single thread)."""
        with self._lock:
            if self._raw is None:
                self._raw = _Slot(self.engine, self.cuda, self.input_names, self.output_names)
        slot = self._raw
        return lambda feeds: self._execute(slot, feeds)

    def close(self) -> None:
        self._pool.clear()
        self._raw = None


# ---------------------------------------------------------------------------------------------
# the target
# ---------------------------------------------------------------------------------------------
class TensorRTTarget(Target):
    name = "tensorrt"
    precisions = ("fp32", "fp16", "int8")
    devices = ("GPU", "CUDA", "DLA")
    default_device = "GPU"
    artifact_format = "tensorrt"
    library = "tensorrt"
    extra = "tensorrt"
    load_options = ("cuda",)

    # ---- facts -------------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        trt = _trt()
        info: dict[str, Any] = {"target": self.name, "tensorrt": str(trt.__version__)}
        info.update(gpu_info(0))
        jet = jetson_info()
        if jet:
            info["jetson"] = jet
        builder = trt.Builder(_logger(trt))
        info["dla_cores"] = int(getattr(builder, "num_DLA_cores", 0) or 0)
        info["builder_flags"] = sorted(n for n in ("FP16", "INT8", "TF32", "STRONGLY_TYPED") if has_flag(trt.BuilderFlag, n))
        return info

    def _device(self, device: str | None) -> tuple[str, int]:
        device = self.check_device(device)
        base, _, idx = device.partition(":")
        return ("DLA" if base == "DLA" else "GPU"), int(idx or 0)

    def bundle_subdir(self, **options: Any) -> str:
        trt = _trt()
        kind, idx = self._device(options.get("device"))
        gpu = gpu_info(0 if kind == "DLA" else idx)
        sub = engine_dir_name(str(trt.__version__), gpu)
        return f"tensorrt/{sub}" + (f"_dla{idx}" if kind == "DLA" else "")

    def artifact_paths(self, out_dir: Path, stem: str, precision: str) -> list[Path]:
        plan = Path(out_dir) / f"{stem}.{precision}.plan"
        return [plan, plan.with_suffix(".json")]

    def timing_cache_path(self, out_dir: Path) -> Path:
        trt = _trt()
        gpu = gpu_info(0)
        return Path(out_dir) / f"timing_{engine_dir_name(str(trt.__version__), gpu)}.cache"

    # ---- family hooks ----------------------------------------------------------------------
    def begin_family(self, out_dir: Path, **options: Any) -> dict[str, Any]:
        opts = {k: v for k, v in options.items() if k != "device"}
        opts.setdefault("timing_cache", str(self.timing_cache_path(out_dir)))
        opts["_trtexec"] = []
        return opts

    def end_family(self, out_dir: Path, builds: list[dict[str, Any]], **options: Any) -> dict[str, Path]:
        lines = ["#!/bin/sh", "# trtexec equivalents of `glonet compile --target tensorrt` (paths relative to this file)",
                 "set -e", 'cd "$(dirname "$0")"']
        lines += options.get("_trtexec", [])
        script = Path(out_dir) / "trtexec.sh"
        atomic_write_text(script, "\n".join(lines) + "\n")
        files = {"trtexec": script}
        cache = Path(options["timing_cache"])
        if cache.is_file():
            files["timing_cache"] = cache
        return files

    def family_result(self, out_dir: Path, builds: list[dict[str, Any]], **options: Any) -> dict[str, Any]:
        return {"trtexec": list(options.get("_trtexec", []))}

    def refuse_source(self, source_extra: dict[str, Any], precision: str) -> str | None:
        if precision == "int8" and source_extra.get("tensorrt_compatible") is False:
            return ("the int8 graph is not TensorRT-safe (UINT8/asymmetric Q/DQ, see its lint); re-run "
                    "`glonet quantize --method ort` to make a TensorRT int8 graph")
        return None

    # ---- build ---------------------------------------------------------------------------------
    def trtexec_command(self, onnx_path: Path, plan: Path, precision: str, input_shape: list[int] | None,
                        input_name: str, opts: dict[str, Any], trt_version: str, dla: int | None,
                        out_dir: Path | None = None) -> str:
        def rel(p: Path) -> str:
            return os.path.relpath(Path(p).resolve(), Path(out_dir).resolve()) if out_dir else str(p)

        major = int(trt_version.split(".")[0])
        cmd = ["trtexec", f"--onnx={rel(onnx_path)}", f"--saveEngine={rel(plan)}"]
        if input_shape is not None:
            dims = "x".join(str(s) for s in input_shape)
            b = _batches(opts, dla is not None)
            cmd += [f"--minShapes={input_name}:{b[0]}x{dims}", f"--optShapes={input_name}:{b[1]}x{dims}",
                    f"--maxShapes={input_name}:{b[2]}x{dims}"]
        cmd += [f"--timingCacheFile={Path(opts['timing_cache']).name}",
                f"--memPoolSize=workspace:{int(opts.get('workspace_mib', 1024))}"]
        if major < 11:
            if precision == "fp16" or (precision == "int8" and major < 10):
                cmd.append("--fp16")
            if precision == "int8" and major < 10:
                cmd.append("--int8")
            if precision == "int8" and major == 10:
                cmd.append("--stronglyTyped")
        if major >= 9 or trt_version.startswith("8.6"):
            cmd.append(f"--builderOptimizationLevel={int(opts.get('optimization_level', 3))}")
        if dla is not None:
            cmd += [f"--useDLACore={dla}", "--allowGPUFallback"]
        cmd.append("--skipInference")
        return " ".join(shlex.quote(c) for c in cmd)

    def build(self, onnx_path: str | Path, out_dir: str | Path, precision: str, **options: Any) -> list[Path]:
        trt = _trt()
        self.check_precision(precision)
        kind, index = self._device(options.get("device"))
        dla = index if kind == "DLA" else None
        onnx_path = Path(onnx_path)
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        stem = options.get("stem") or onnx_path.name.split(".")[0]
        plan_path, meta_path = self.artifact_paths(out_dir, stem, precision)
        major = trt_major(trt)
        logger = _logger(trt)
        builder = trt.Builder(logger)
        if dla is not None:
            if precision == "fp32":
                raise ConfigError("DLA runs fp16 or int8 only; use --precision fp16 or int8 with --device DLA")
            if int(getattr(builder, "num_DLA_cores", 0) or 0) <= dla:
                raise ConfigError(f"device DLA:{dla} asked for but this GPU has {getattr(builder, 'num_DLA_cores', 0)} "
                                  "DLA cores (DLA exists on Jetson Orin/Xavier; not in TensorRT 11.0-11.3 or on Thor)")

        # precision policy (feature-detected)
        strongly_typed = False
        flags = 0
        net_flags = trt.NetworkDefinitionCreationFlag
        if major < 10 and has_flag(net_flags, "EXPLICIT_BATCH"):
            flags |= 1 << int(net_flags.EXPLICIT_BATCH)
        elif precision == "int8" and major >= 10 and has_flag(net_flags, "STRONGLY_TYPED") \
                and options.get("strongly_typed", True):
            # TRT 10: explicit quantization with strong typing, no precision flags (TRT 11: always)
            flags |= 1 << int(net_flags.STRONGLY_TYPED)
            strongly_typed = True
        graph_path = onnx_path
        converter = None
        if precision == "fp16" and not has_flag(trt.BuilderFlag, "FP16"):
            # TRT 11: no FP16 flag; the graph itself must be fp16 (I/O stays fp32)
            graph_path = out_dir / f".{stem}.fp16.onnx"
            converter = convert_fp16(onnx_path, graph_path)
        network = builder.create_network(flags)
        parser = trt.OnnxParser(network, logger)
        ok = parser.parse_from_file(str(graph_path))
        if not ok:
            errs = [str(parser.get_error(i)) for i in range(parser.num_errors)]
            raise ArtifactError(f"TensorRT {trt.__version__} cannot parse {onnx_path.name}:\n  " + "\n  ".join(errs[:10])
                                + ("\n(int8: run `glonet quantize` with the TensorRT recipe; opset must be <= 17 for 8.5/8.6)"
                                   if precision == "int8" or major < 10 else ""))
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(options.get("workspace_mib", 1024)) << 20)
        used_flags: list[str] = []

        def set_flag(name: str) -> None:
            if has_flag(trt.BuilderFlag, name):
                config.set_flag(getattr(trt.BuilderFlag, name))
                used_flags.append(name)

        if precision == "fp32" and has_flag(trt.BuilderFlag, "TF32") and not options.get("tf32", False):
            config.clear_flag(trt.BuilderFlag.TF32)
        if precision == "fp16":
            set_flag("FP16")
        if precision == "int8" and not strongly_typed:
            set_flag("INT8")  # TRT 8.x needs it for Q/DQ to take effect; absent in TRT 11
            if options.get("fp16_fallback", True):
                set_flag("FP16")  # non-quantized layers may run fp16
        if hasattr(config, "builder_optimization_level"):
            config.builder_optimization_level = int(options.get("optimization_level", 3))
        if dla is not None:
            config.default_device_type = trt.DeviceType.DLA
            config.DLA_core = dla
            set_flag("GPU_FALLBACK")
        # optimization profile over the batch dimension
        b_min, b_opt, b_max = _batches(options, dla is not None)
        profile = builder.create_optimization_profile()
        shapes: dict[str, Any] = {}
        for i in range(network.num_inputs):
            t = network.get_input(i)
            dims = tuple(t.shape)
            if any(d < 0 for d in dims[1:]):
                raise ConfigError(f"input {t.name} has dynamic non-batch dims {dims}; export with a fixed sample shape")
            rest = dims[1:]
            profile.set_shape(t.name, (b_min, *rest), (b_opt, *rest), (b_max, *rest))
            shapes[t.name] = {"min": [b_min, *rest], "opt": [b_opt, *rest], "max": [b_max, *rest]}
        config.add_optimization_profile(profile)
        # timing cache shared across the family
        cache_path = Path(options.get("timing_cache") or self.timing_cache_path(out_dir))
        blob = cache_path.read_bytes() if cache_path.is_file() else b""
        cache = config.create_timing_cache(blob)
        config.set_timing_cache(cache, ignore_mismatch=False)
        plan = builder.build_serialized_network(network, config)
        if plan is None:
            raise ArtifactError(f"TensorRT {trt.__version__} failed to build an engine for {onnx_path.name} ({precision}); "
                                "see the TensorRT log above (unsupported layer, workspace too small, or a QDQ placement "
                                "it has no int8 kernel for: lint the graph with glonet_edge.targets.qdq_lint)")
        atomic_write_bytes(plan_path, bytes(memoryview(plan)))
        new_cache = config.get_timing_cache()
        if new_cache is not None:
            atomic_write_bytes(cache_path, bytes(memoryview(new_cache.serialize())))
        if converter is not None:
            graph_path.unlink(missing_ok=True)
        meta = self._metadata(trt, precision, dla, used_flags, strongly_typed, shapes, options, onnx_path, cache_path,
                              converter)
        atomic_write_text(meta_path, json.dumps(meta, indent=2) + "\n")
        trtexec = options.get("_trtexec")
        if isinstance(trtexec, list):
            first = next(iter(shapes.values()), None)
            trtexec.append(self.trtexec_command(onnx_path, plan_path, precision,
                                                first["min"][1:] if first else None, next(iter(shapes), "x"),
                                                {**options, "timing_cache": str(cache_path)}, str(trt.__version__), dla,
                                                out_dir))
        return [plan_path, meta_path]

    def _metadata(self, trt, precision: str, dla: int | None, used_flags: list[str], strongly_typed: bool,
                  shapes: dict[str, Any], options: dict[str, Any], onnx_path: Path, cache_path: Path,
                  converter: str | None) -> dict[str, Any]:
        import importlib

        meta: dict[str, Any] = {"tensorrt": str(trt.__version__), **gpu_info(0)}
        jet = jetson_info()
        if jet:
            meta["jetson"] = jet
        meta.update({
            "precision": precision, "builder_flags": used_flags, "strongly_typed": strongly_typed or trt_major(trt) >= 11,
            "dla_core": dla, "profile": shapes, "workspace_mib": int(options.get("workspace_mib", 1024)),
            "optimization_level": int(options.get("optimization_level", 3)),
            "version_compatible": False, "hardware_compatibility_level": "NONE",
            "onnx_sha256": sha256_file(onnx_path),
            "timing_cache": {"file": cache_path.name,
                             "sha256": sha256_file(cache_path) if cache_path.is_file() else None},
        })
        try:
            onnx = importlib.import_module("onnx")
            m = onnx.load(str(onnx_path), load_external_data=False)
            meta["onnx_opset"] = next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), None)
        except Exception:
            pass
        if converter:
            meta["fp16_converter"] = converter
        return meta

    def artifact_extra(self, precision: str, **options: Any) -> dict[str, Any]:
        """The engine's metadata (from the sidecar JSON the build just wrote)."""
        files = options.get("files") or []
        sidecars = [Path(f) for f in files if str(f).endswith(".json")]
        return json.loads(sidecars[0].read_text()) if sidecars and sidecars[0].is_file() else {}

    # ---- load ----------------------------------------------------------------------------------
    def check_artifact(self, extra: dict[str, Any]) -> None:
        if not extra:
            return
        trt = _trt()
        here_trt = str(trt.__version__)
        built_trt = extra.get("tensorrt")
        gpu = gpu_info(0)
        problems = []
        if built_trt and built_trt != here_trt:
            problems.append(f"TensorRT {built_trt} (this machine has {here_trt})")
        cc = extra.get("compute_capability")
        if cc and cc != gpu["compute_capability"]:
            problems.append(f"compute capability {cc} (this GPU, {gpu['gpu']}, is {gpu['compute_capability']})")
        elif extra.get("gpu") and extra["gpu"] != gpu["gpu"]:
            problems.append(f"GPU {extra['gpu']} (this machine has {gpu['gpu']})")
        if problems:
            raise ArtifactError("TensorRT engine was built for " + " and ".join(problems) + "; engines do not move between "
                                "TensorRT versions or GPUs: rebuild it here with `glonet compile BUNDLE --target tensorrt`")

    def load(self, artifact_path: str | Path, precision: str, **options: Any) -> TrtCompiledModel:
        trt = _trt()
        self.check_precision(precision)
        kind, index = self._device(options.get("device"))
        path = Path(artifact_path)
        if not path.is_file():
            raise ArtifactError(f"TensorRT engine {path} not found; run `glonet compile --target tensorrt`")
        meta: dict[str, Any] = {}
        sidecar = path.with_suffix(".json")
        if sidecar.is_file():
            meta = json.loads(sidecar.read_text())
            self.check_artifact(meta)
        runtime = trt.Runtime(_logger(trt))
        dla = meta.get("dla_core")
        if dla is not None:
            runtime.DLA_core = int(dla)
        data = path.read_bytes()
        engine = runtime.deserialize_cuda_engine(data)
        if engine is None:
            raise ArtifactError(f"TensorRT {trt.__version__} could not deserialize {path.name} (sha256 {sha256_bytes(data)[:12]}): "
                                "it was built by another TensorRT version / for another GPU, or is corrupt; rebuild it "
                                "with `glonet compile --target tensorrt` on this device")
        return TrtCompiledModel(trt, engine, precision, meta, 0 if kind == "DLA" else index,
                                options.get("cuda", "auto"))

    def manifest_info(self, **options: Any) -> dict[str, Any]:
        info = self.describe()
        info["device"] = self.check_device(options.get("device"))
        info["batch_profile"] = dict(zip(("min", "opt", "max"), _batches(options, info["device"].startswith("DLA"))))
        info["note"] = "engines are valid only for this TensorRT version and GPU; load refuses any other"
        return info


def _batches(options: dict[str, Any], dla: bool) -> tuple[int, int, int]:
    if dla or options.get("static_batch"):
        b = int(options.get("static_batch") or 1)
        return b, b, b
    b_min = int(options.get("min_batch", 1))
    b_max = int(options.get("max_batch", 32))
    b_opt = int(options.get("opt_batch", min(8, b_max)))
    if not 1 <= b_min <= b_opt <= b_max:
        raise ConfigError(f"batch profile must satisfy 1 <= min <= opt <= max, got {b_min}/{b_opt}/{b_max}")
    return b_min, b_opt, b_max
