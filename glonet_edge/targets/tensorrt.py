"""TensorRT target (TensorRT 8.5 through 11.x; reference/targets.md §1).

One code path, feature-detected rather than branched on one version:

* network: EXPLICIT_BATCH only on TRT < 10 (the flag is ignored in 10 and gone in 11);
  STRONGLY_TYPED for QDQ int8 on TRT 10 (precision then comes from the graph; TRT 11 is always
  strongly typed).
* precision: FP16 / INT8 builder flags only where `trt.BuilderFlag` still has them (TRT <= 10).
  TRT 11 has none: fp16 = an fp16 ONNX graph (NVIDIA ModelOpt AutoCast when installed, else the
  small converter below, I/O kept fp32), int8 = the QDQ graph from `glonet quantize`.
  fp32 clears TF32 (where the flag exists) so "fp32" means fp32.
  The TRT 11 fp16 graph is kept next to the engine ({stem}.fp16.onnx, a companion file) so the
  trtexec line builds from the same graph.
* dynamic batch: one optimization profile min/opt/max = 1/opt_batch/max_batch over dim 0. An
  input exported with a FIXED batch d0 inside [min, max] gets the static profile (d0, d0, d0)
  (with a warning; `run` pads smaller batches and chunks larger ones); outside -> ConfigError
  asking to re-export with a dynamic batch.
* timing cache: one file per (TRT version, GPU) in the engine directory, loaded before and saved
  after every build, so the L builds of a family share tactics. A corrupt / foreign cache
  (create_timing_cache -> None, set_timing_cache -> False) is replaced by a fresh one, with a warning.
* DLA (Jetson Orin/Xavier, device "DLA" or "DLA:1"): default_device_type=DLA, DLA_core,
  GPU_FALLBACK, fp16/int8 only, static batch (profile min=opt=max). On TRT 10 the int8 network
  is NOT strongly typed by default with DLA (strongly typed leaves non-Q/DQ layers fp32, which
  DLA cannot run -> silent GPU fallback); int8 + DLA on TRT < 10 warns (no explicit
  quantization on DLA there).
* GPU:N: the current CUDA device is set to N (set_current_device) before trt.Builder, before
  trt.Runtime and at the start of every execution on each thread; metadata, engine directory,
  timing cache and the load-time check all use GPU N.
* build_serialized_network returns None on failure: checked, with the parser's errors listed.
* metadata: TRT version, GPU name + compute capability, CUDA, JetPack/L4T (/etc/nv_tegra_release),
  flags, profile, workspace, ONNX sha256/opset, timing-cache id; written to the manifest and to a
  sidecar <engine>.json. `load` refuses an engine built for another TRT version or GPU.
* execution: named tensors + execute_async_v3 (TRT 8.5+), device buffers from torch CUDA or
  cuda-python, a pool of (execution context, stream, buffers) so `run` is thread-safe.
* trtexec: the equivalent command line per graph is written to <engine dir>/trtexec.sh and the
  compile JSON (a fallback and a cross-check: `bash trtexec.sh` on the device). It is made from
  what the build actually did (graph, every input's shapes, builder flags set, TF32 cleared,
  strong typing), not re-derived from the version.

Engines live in BUNDLE/tensorrt/<gpu>_sm<cc>_trt<version>/ because they do not move between
TensorRT versions or GPUs: on a Jetson build on the device itself.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import threading
import warnings
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
# L4T release -> JetPack (NVIDIA's JetPack archive, as tabulated by jetson-stats' jtop).
_JETPACK_EXACT = {
    "34.1.0": "5.0 DP", "34.1.1": "5.0.1 DP",
    "35.1.0": "5.0.2", "35.2.1": "5.1", "35.3.1": "5.1.1", "35.4.1": "5.1.2", "35.5.0": "5.1.3",
    "35.6.0": "5.1.4", "35.6.1": "5.1.5", "35.6.2": "5.1.5",
    "36.2.0": "6.0 DP", "36.3.0": "6.0", "36.4.0": "6.1", "36.4.2": "6.1.1", "36.4.3": "6.2", "36.4.4": "6.2.1",
    "36.4.7": "6.2.1", "38.2.0": "7.0", "38.2.2": "7.0",
}
_JETPACK_MAJOR_MINOR = {
    "32.5": "4.5.x", "32.6": "4.6", "32.7": "4.6.x", "34.1": "5.0 DP",
    "35.1": "5.0.2", "35.2": "5.1", "35.3": "5.1.1", "35.4": "5.1.2", "35.5": "5.1.3", "35.6": "5.1.4+",
    "36.2": "6.0 DP", "36.3": "6.0", "36.4": "6.1+", "38.2": "7.0",
}
_JETPACK_MAJOR = {"32": "4.x", "34": "5.0 DP", "35": "5.x", "36": "6.x", "38": "7.x"}


def jetson_info(path: Path = TEGRA_RELEASE) -> dict[str, str] | None:
    """L4T release from /etc/nv_tegra_release ("# R36 (release), REVISION: 4.0, ...") and the
    JetPack release it belongs to: exact L4T version first, then major.minor (R35.1 is JetPack
    5.0.2, R35.2+ is 5.1.x), then only the major line ("6.x")."""
    try:
        text = path.read_text(errors="replace").splitlines()[0]
    except (OSError, IndexError):
        return None
    m = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", text)
    if not m:
        return {"nv_tegra_release": text.strip()}
    major, revision = m.group(1), m.group(2).strip(".")
    l4t = f"{major}.{revision}"
    parts = l4t.split(".")
    full = ".".join((parts + ["0", "0"])[:3])
    jetpack = (_JETPACK_EXACT.get(full) or _JETPACK_MAJOR_MINOR.get(".".join(parts[:2]))
               or _JETPACK_MAJOR.get(major, "unknown"))
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


def set_current_device(index: int, prefer: str = "auto") -> None:
    """Make GPU `index` the calling thread's current CUDA device (TensorRT builds, deserializes
    and executes on the current device): torch.cuda.set_device, else cudart.cudaSetDevice."""
    if prefer in ("auto", "torch"):
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.set_device(int(index))
                return
        except ImportError:
            if prefer == "torch":
                raise
    try:
        cudart = _cudart()
    except ImportError as exc:
        raise MissingDependencyError("TensorRT needs cuda-python or a CUDA build of torch to select GPU "
                                     f"{index}; install with `pip install glonet-edge[tensorrt]`") from exc
    _ck(cudart.cudaSetDevice(int(index)))


class _TorchCuda:
    def __init__(self, index: int):
        import torch

        self.torch = torch
        self.index = int(index)
        self.device = torch.device("cuda", self.index)

    def set_device(self) -> None:
        self.torch.cuda.set_device(self.index)

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
        del buf  # the caching allocator reclaims it once the slot drops its reference

    def destroy_stream(self, stream) -> None:
        pass  # torch streams are pooled by torch itself


class _CudaPython:
    def __init__(self, index: int):
        self.rt = _cudart()
        self.index = int(index)
        _ck(self.rt.cudaSetDevice(self.index))

    def set_device(self) -> None:
        _ck(self.rt.cudaSetDevice(self.index))

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

    def destroy_stream(self, stream) -> None:
        self.rt.cudaStreamDestroy(stream)


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
FP16_MAX = 65504.0
_FLOAT_DTYPE_OPS = ("RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "EyeLike")


def _fp16_array(arr: np.ndarray) -> tuple[np.ndarray, int]:
    """float32 -> float16 clipped to +-65504 (a plain astype would turn large weights into inf)."""
    a = np.asarray(arr, np.float32)
    over = int(np.count_nonzero(np.abs(a) > FP16_MAX))
    return np.clip(a, -FP16_MAX, FP16_MAX).astype(np.float16), over


def convert_fp16(src: str | Path, dst: str | Path) -> str:
    """fp32 ONNX -> fp16 ONNX with fp32 inputs/outputs (Cast at the edges). Uses NVIDIA ModelOpt
    AutoCast when installed; otherwise converts every float initializer / Constant (value,
    value_float, value_floats) / ConstantOfShape value / Cast target / Random*/EyeLike dtype,
    clipping to +-65504. Graphs with subgraphs (If / Loop / Scan) are refused by the fallback:
    install NVIDIA ModelOpt for those. Returns which converter ran."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    try:
        from modelopt.onnx.autocast import convert_to_mixed_precision  # type: ignore
    except ImportError:
        convert_to_mixed_precision = None
    if convert_to_mixed_precision is not None:
        model = convert_to_mixed_precision(onnx_path=str(src), low_precision_type="fp16", keep_io_types=True)
        onnx.save(model, str(dst))
        return "modelopt-autocast"
    model = onnx.load(str(src))
    g = model.graph
    with_subgraphs = sorted({n.op_type for n in g.node for a in n.attribute
                             if a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)})
    if with_subgraphs:
        raise ConfigError(f"{Path(src).name} has control-flow subgraphs ({', '.join(with_subgraphs)}) that the built-in "
                          "fp16 converter does not rewrite; TensorRT 11 needs an fp16 graph for --precision fp16: "
                          "install NVIDIA ModelOpt (`pip install nvidia-modelopt[onnx]`, AutoCast) and compile again")
    clipped = 0
    for i, t in enumerate(list(g.initializer)):
        if t.data_type == TensorProto.FLOAT:
            arr, over = _fp16_array(numpy_helper.to_array(t))
            clipped += over
            g.initializer[i].CopyFrom(numpy_helper.from_array(arr, t.name))
    for n in g.node:
        for k, a in enumerate(list(n.attribute)):
            if a.name == "value" and a.type == onnx.AttributeProto.TENSOR and a.t.data_type == TensorProto.FLOAT:
                arr, over = _fp16_array(numpy_helper.to_array(a.t))
                clipped += over
                a.t.CopyFrom(numpy_helper.from_array(arr, a.t.name))
            elif n.op_type == "Constant" and a.name in ("value_float", "value_floats"):
                vals = np.array(a.f if a.name == "value_float" else list(a.floats), np.float32)
                arr, over = _fp16_array(vals)
                clipped += over
                n.attribute[k].CopyFrom(helper.make_attribute("value", numpy_helper.from_array(arr)))
            elif a.i == TensorProto.FLOAT and a.type == onnx.AttributeProto.INT and (
                    (n.op_type == "Cast" and a.name == "to") or (n.op_type in _FLOAT_DTYPE_OPS and a.name == "dtype")):
                a.i = TensorProto.FLOAT16
    if clipped:
        warnings.warn(f"fp16 conversion of {Path(src).name}: {clipped} constant value(s) beyond +-65504 were clipped "
                      "to the fp16 range; check accuracy (or use NVIDIA ModelOpt AutoCast, which keeps such "
                      "layers fp32)", RuntimeWarning, stacklevel=2)
    # The graph keeps float32 inputs/outputs: a Cast at each end, the fp16 body renamed between.
    casts_in = []
    for inp in g.input:
        if inp.type.tensor_type.elem_type == TensorProto.FLOAT:
            new = f"{inp.name}__fp16"
            _rename_tensor(g, inp.name, new, producers=False)
            casts_in.append(helper.make_node("Cast", [inp.name], [new], to=TensorProto.FLOAT16, name=f"cast_in_{inp.name}"))
    casts_out = []
    for out in g.output:
        if out.type.tensor_type.elem_type == TensorProto.FLOAT:
            new = f"{out.name}__fp16"
            _rename_tensor(g, out.name, new, producers=True)
            casts_out.append(helper.make_node("Cast", [new], [out.name], to=TensorProto.FLOAT, name=f"cast_out_{out.name}"))
    nodes = casts_in + list(g.node) + casts_out
    del g.node[:]
    g.node.extend(nodes)
    del g.value_info[:]
    onnx.save(model, str(dst))
    return "glonet-edge"


def _rename_tensor(g: Any, old: str, new: str, producers: bool) -> None:
    """Point every node that reads `old` (and, with producers, the node that writes it) at `new`."""
    for n in g.node:
        fields = (n.input, n.output) if producers else (n.input,)
        for names in fields:
            for k, name in enumerate(names):
                if name == old:
                    names[k] = new


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
        self.closed = False

    def buffer(self, name: str, nbytes: int) -> int:
        cur = self.buffers.get(name)
        if cur is None or cur[2] < nbytes:
            if cur is not None:
                self.cuda.free(cur[0])
            buf, ptr = self.cuda.alloc(nbytes)
            self.buffers[name] = cur = (buf, ptr, max(int(nbytes), 1))
            self.ctx.set_tensor_address(name, ptr)
        return cur[1]

    def close(self) -> None:
        """Free the device buffers and destroy the stream (cudaFree / cudaStreamDestroy with
        cuda-python; torch frees its tensors when they are dropped). Idempotent."""
        if self.closed:
            return
        self.closed = True
        try:
            self.cuda.sync(self.stream)  # nothing may still be reading or writing the buffers
        except RuntimeError as exc:  # pragma: no cover - a failed stream: free what we can anyway
            warnings.warn(f"TensorRT slot close: stream sync failed ({exc})", RuntimeWarning, stacklevel=2)
        buffers, self.buffers = self.buffers, {}
        for buf, _, _ in buffers.values():
            self.cuda.free(buf)
        self.cuda.destroy_stream(self.stream)
        self.stream = None
        self.ctx = None  # the execution context is released with its last reference


class TrtCompiledModel(CompiledModel):
    target = "tensorrt"

    def __init__(self, trt, engine, precision: str, metadata: dict[str, Any], device_index: int = 0,
                 cuda_prefer: str = "auto"):
        self.trt = trt
        self.engine = engine
        self.precision = precision
        self.metadata = metadata
        self.device_index = int(device_index)
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self.input_names = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.output_names = [n for n in names if n not in self.input_names]
        self.dtypes = {n: np.dtype(trt.nptype(engine.get_tensor_dtype(n))) for n in names}
        self.cuda = cuda_backend(self.device_index, cuda_prefer)
        # the batch sizes every input's profile accepts (a DLA / fixed-batch engine: min == max)
        ranges = [[tuple(int(d) for d in s) for s in self.profile_range(n)] for n in self.input_names]
        self.batch_min = max((lo[0] for lo, _, _ in ranges if lo), default=1)
        self.batch_max = min((hi[0] for _, _, hi in ranges if hi), default=1 << 30)
        self._pool = RequestPool(lambda: _Slot(engine, self.cuda, self.input_names, self.output_names),
                                 dispose=_Slot.close)
        self._raw: _Slot | None = None
        self._lock = threading.Lock()

    def profile_range(self, name: str) -> tuple[Any, Any, Any]:
        return tuple(self.engine.get_tensor_profile_shape(name, 0))

    def _profile_error(self, name: str, shape: tuple[int, ...]) -> ConfigError:
        """What set_input_shape refused, with the engine's real range and the matching fix."""
        lo, _, hi = (tuple(int(d) for d in s) for s in self.profile_range(name))
        inner_ok = bool(shape) and len(shape) == len(lo) and all(a <= d <= b for a, d, b in zip(lo[1:], shape[1:], hi[1:]))
        if not inner_ok:
            hint = f"the engine takes shape (batch, {', '.join(str(d) for d in lo[1:])})"
        elif shape[0] > hi[0]:
            hint = ("rebuild with a larger --max-batch" if lo[0] < hi[0]
                    else f"this engine has a static batch of {hi[0]}; run() splits larger batches")
        elif shape[0] < lo[0]:
            hint = (f"this engine has a static batch of {lo[0]}; run() zero-pads smaller batches" if lo[0] == hi[0]
                    else f"batches below the profile minimum {lo[0]} must be padded (run() does) or the engine rebuilt "
                         "with a smaller --min-batch")
        else:  # pragma: no cover - TensorRT refused a shape inside the profile
            hint = "TensorRT refused it (see the TensorRT log above)"
        return ConfigError(f"input {name!r} shape {tuple(shape)} is outside the engine's optimization profile "
                           f"[{lo} .. {hi}]; {hint}")

    def _execute(self, slot: _Slot, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        ctx, cuda = slot.ctx, slot.cuda
        cuda.set_device()  # TensorRT executes on the calling thread's current device
        for n in self.input_names:
            arr = feeds[n]
            if arr.dtype != self.dtypes[n]:
                arr = arr.astype(self.dtypes[n])
            if slot.shapes.get(n) != arr.shape:
                if not ctx.set_input_shape(n, tuple(arr.shape)):
                    raise self._profile_error(n, tuple(arr.shape))
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

    def _execute_padded(self, slot: _Slot, feeds: dict[str, np.ndarray], n: int) -> list[np.ndarray]:
        """A chunk smaller than the profile minimum (DLA / fixed-batch engines: min == max) is
        zero-padded up to the minimum and the outputs sliced back to its n rows."""
        lo = self.batch_min
        if n >= lo:
            return self._execute(slot, feeds)
        padded = {k: np.concatenate([v, np.zeros((lo - n, *v.shape[1:]), v.dtype)]) for k, v in feeds.items()}
        return [o[:n].copy() for o in self._execute(slot, padded)]

    def run(self, feeds: dict[str, Any]) -> list[np.ndarray]:
        """Batches above the optimization profile's max are run in chunks of max; chunks below
        its min are zero-padded to min and the outputs cut back."""
        feeds = self.check_feeds(feeds)
        n = feeds[self.input_names[0]].shape[0] if feeds[self.input_names[0]].ndim else 1
        hi = self.batch_max
        slot = self._pool.acquire()
        try:
            if n <= hi:
                return self._execute_padded(slot, feeds, n)
            parts = [self._execute_padded(slot, {k: v[i:i + hi] for k, v in feeds.items()}, min(hi, n - i))
                     for i in range(0, n, hi)]
            return [np.concatenate(outs) for outs in zip(*parts)]
        finally:
            self._pool.release(slot)

    def raw_callable(self) -> Callable[[dict[str, np.ndarray]], Any]:
        """One dedicated context: H2D, execute_async_v3, D2H, sync; no checks, no padding or
        chunking (single thread)."""
        with self._lock:
            if self._raw is None:
                self._raw = _Slot(self.engine, self.cuda, self.input_names, self.output_names)
        slot = self._raw
        return lambda feeds: self._execute(slot, feeds)

    def close(self) -> None:
        """Free every idle slot's device buffers and stream (slots in use are freed when their
        run returns) and the raw slot's. Idempotent."""
        self._pool.clear()
        with self._lock:
            raw, self._raw = self._raw, None
        if raw is not None:
            raw.close()


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
    def describe(self, index: int = 0) -> dict[str, Any]:
        trt = _trt()
        info: dict[str, Any] = {"target": self.name, "tensorrt": str(trt.__version__)}
        info.update(gpu_info(index))
        jet = jetson_info()
        if jet:
            info["jetson"] = jet
        builder = trt.Builder(_logger(trt))
        info["dla_cores"] = int(getattr(builder, "num_DLA_cores", 0) or 0)
        info["builder_flags"] = sorted(n for n in ("FP16", "INT8", "TF32") if has_flag(trt.BuilderFlag, n))
        # STRONGLY_TYPED is a network-creation flag (10.x opt-in; 11.x always on, flag deprecated)
        net = trt.NetworkDefinitionCreationFlag
        info["network_flags"] = sorted(n for n in ("EXPLICIT_BATCH", "STRONGLY_TYPED") if has_flag(net, n))
        info["strongly_typed"] = ("always" if trt_major(trt) >= 11 else
                                  "opt-in" if has_flag(net, "STRONGLY_TYPED") else "unsupported")
        return info

    def _device(self, device: str | None) -> tuple[str, int]:
        device = self.check_device(device)
        base, _, idx = device.partition(":")
        return ("DLA" if base == "DLA" else "GPU"), int(idx or 0)

    def _gpu_index(self, device: str | None) -> int:
        """The CUDA device a build / load uses: N for GPU:N, 0 for DLA (one GPU on a Jetson)."""
        kind, idx = self._device(device)
        return 0 if kind == "DLA" else idx

    def bundle_subdir(self, **options: Any) -> str:
        trt = _trt()
        kind, idx = self._device(options.get("device"))
        gpu = gpu_info(self._gpu_index(options.get("device")))
        sub = engine_dir_name(str(trt.__version__), gpu)
        return f"tensorrt/{sub}" + (f"_dla{idx}" if kind == "DLA" else "")

    def artifact_paths(self, out_dir: Path, stem: str, precision: str) -> list[Path]:
        plan = Path(out_dir) / f"{stem}.{precision}.plan"
        return [plan, plan.with_suffix(".json")]

    def timing_cache_path(self, out_dir: Path, index: int = 0) -> Path:
        trt = _trt()
        gpu = gpu_info(index)
        return Path(out_dir) / f"timing_{engine_dir_name(str(trt.__version__), gpu)}.cache"

    # ---- family hooks ----------------------------------------------------------------------
    def begin_family(self, out_dir: Path, **options: Any) -> dict[str, Any]:
        opts = {k: v for k, v in options.items() if k != "device"}
        opts.setdefault("timing_cache", str(self.timing_cache_path(out_dir, self._gpu_index(options.get("device")))))
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
    def trtexec_command(self, onnx_path: Path, plan: Path, shapes: dict[str, dict[str, list[int]]],
                        timing_cache: Path, workspace_mib: int, *, builder_flags: list[str] | tuple[str, ...] = (),
                        strongly_typed: bool = False, no_tf32: bool = False, optimization_level: int | None = None,
                        dla: int | None = None, out_dir: Path | None = None) -> str:
        """The trtexec line equivalent to what build() did: `onnx_path` is the graph it parsed (the
        fp16 companion on TRT 11), `shapes` every input's min/opt/max, the flags those it set."""
        def rel(p: Path) -> str:
            return os.path.relpath(Path(p).resolve(), Path(out_dir).resolve()) if out_dir else str(p)

        def name(n: str) -> str:  # trtexec: names containing ':' or ',' are wrapped in single quotes
            return f"'{n}'" if any(c in n for c in ":,'") else n

        cmd = ["trtexec", f"--onnx={rel(onnx_path)}", f"--saveEngine={rel(plan)}"]
        if shapes:
            for key, flag in (("min", "--minShapes"), ("opt", "--optShapes"), ("max", "--maxShapes")):
                cmd.append(f"{flag}=" + ",".join(f"{name(n)}:{'x'.join(str(int(d)) for d in s[key])}"
                                                 for n, s in shapes.items()))
        cmd += [f"--timingCacheFile={rel(timing_cache)}", f"--memPoolSize=workspace:{int(workspace_mib)}"]
        if strongly_typed:
            cmd.append("--stronglyTyped")
        if "FP16" in builder_flags:
            cmd.append("--fp16")
        if "INT8" in builder_flags:
            cmd.append("--int8")
        if no_tf32:
            cmd.append("--noTF32")
        if optimization_level is not None:
            cmd.append(f"--builderOptimizationLevel={int(optimization_level)}")
        if dla is not None:
            cmd.append(f"--useDLACore={dla}")
            if "GPU_FALLBACK" in builder_flags:
                cmd.append("--allowGPUFallback")
        cmd.append("--skipInference")
        return " ".join(shlex.quote(c) for c in cmd)

    def _profile_shapes(self, network, b_min: int, b_opt: int, b_max: int) -> dict[str, dict[str, list[int]]]:
        """min/opt/max per network input. A dynamic batch dim gets the requested range; a batch
        dim the ONNX graph fixed (d0 > 0) gets (d0, d0, d0) when d0 is inside the range (TRT
        rejects a profile that disagrees with a static dim), else ConfigError."""
        shapes: dict[str, dict[str, list[int]]] = {}
        for i in range(network.num_inputs):
            t = network.get_input(i)
            dims = tuple(int(d) for d in t.shape)
            if not dims:
                shapes[t.name] = {"min": [], "opt": [], "max": []}
                continue
            if any(d < 0 for d in dims[1:]):
                raise ConfigError(f"input {t.name} has dynamic non-batch dims {dims}; export with a fixed sample shape")
            rest = list(dims[1:])
            d0 = dims[0]
            if d0 > 0:
                if not b_min <= d0 <= b_max:
                    raise ConfigError(f"input {t.name!r} has a fixed batch dimension {d0} ({dims}) but the requested "
                                      f"batch range is {b_min}..{b_max}; re-export with a dynamic batch (dynamic axis 0) "
                                      f"or compile with a batch range that contains {d0}")
                if b_min != b_max:
                    warnings.warn(f"input {t.name!r} has a fixed batch dimension {d0}: the engine gets the static "
                                  f"profile {d0}/{d0}/{d0} instead of {b_min}/{b_opt}/{b_max} (run() pads smaller "
                                  "batches and splits larger ones); re-export with a dynamic batch for a batch range",
                                  RuntimeWarning, stacklevel=3)
                shapes[t.name] = {k: [d0, *rest] for k in ("min", "opt", "max")}
            else:
                shapes[t.name] = {"min": [b_min, *rest], "opt": [b_opt, *rest], "max": [b_max, *rest]}
        return shapes

    def _timing_cache(self, config, cache_path: Path):
        """Load the family's timing cache; a corrupt or foreign one (create_timing_cache -> None,
        set_timing_cache -> False: another TRT version / GPU) is replaced by a fresh cache."""
        blob = cache_path.read_bytes() if cache_path.is_file() else b""
        cache = config.create_timing_cache(blob) if blob else None
        if blob and (cache is None or config.set_timing_cache(cache, False) is False):
            why = "unreadable (corrupt)" if cache is None else "made by another TensorRT version or GPU"
            warnings.warn(f"TensorRT timing cache {cache_path} is {why}; starting a fresh one (it is overwritten "
                          "after this build)", RuntimeWarning, stacklevel=3)
            cache = None
        if cache is None:
            cache = config.create_timing_cache(b"")
            if cache is None or config.set_timing_cache(cache, False) is False:
                raise ArtifactError("TensorRT could not create an empty timing cache")
        return cache

    def build(self, onnx_path: str | Path, out_dir: str | Path, precision: str, **options: Any) -> list[Path]:
        trt = _trt()
        self.check_precision(precision)
        kind, index = self._device(options.get("device"))
        dla = index if kind == "DLA" else None
        gpu_index = self._gpu_index(options.get("device"))
        onnx_path = Path(onnx_path)
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        stem = options.get("stem") or onnx_path.name.split(".")[0]
        plan_path, meta_path = self.artifact_paths(out_dir, stem, precision)
        major = trt_major(trt)
        logger = _logger(trt)
        set_current_device(gpu_index, options.get("cuda", "auto"))  # TRT builds on the current device
        builder = trt.Builder(logger)
        if dla is not None:
            if precision == "fp32":
                raise ConfigError("DLA runs fp16 or int8 only; use --precision fp16 or int8 with --device DLA")
            if int(getattr(builder, "num_DLA_cores", 0) or 0) <= dla:
                raise ConfigError(f"device DLA:{dla} asked for but this GPU has {getattr(builder, 'num_DLA_cores', 0)} "
                                  "DLA cores (DLA exists on Jetson Orin/Xavier; not in TensorRT 11.0-11.3 or on Thor)")
            if precision == "int8" and major < 10:
                warnings.warn(f"DLA with int8 on TensorRT {trt.__version__}: DLA does not support explicit quantization "
                              "(Q/DQ) before TensorRT 10, so with GPU_FALLBACK the quantized layers run on the GPU, "
                              "silently; check with `trtexec --useDLACore=... --dumpLayerInfo` or use fp16 on DLA",
                              RuntimeWarning, stacklevel=2)

        # precision policy (feature-detected)
        strongly_typed = False
        flags = 0
        net_flags = trt.NetworkDefinitionCreationFlag
        want_strong = options.get("strongly_typed")
        if want_strong is None:
            # DLA on TRT 10: a strongly typed int8 network keeps non-Q/DQ layers fp32 -> GPU fallback
            want_strong = not (dla is not None and major == 10)
        if major < 10 and has_flag(net_flags, "EXPLICIT_BATCH"):
            flags |= 1 << int(net_flags.EXPLICIT_BATCH)
        elif precision == "int8" and major >= 10 and has_flag(net_flags, "STRONGLY_TYPED") \
                and (want_strong or major >= 11):
            # TRT 10: explicit quantization with strong typing, no precision flags (TRT 11: always)
            flags |= 1 << int(net_flags.STRONGLY_TYPED)
            strongly_typed = True
            if dla is not None:
                warnings.warn(f"DLA with a strongly typed int8 network on TensorRT {trt.__version__}: layers outside "
                              "Q/DQ pairs stay fp32, which DLA cannot run, so they fall back to the GPU"
                              + (" (pass strongly_typed=False on TensorRT 10 to let them run fp16)" if major == 10 else ""),
                              RuntimeWarning, stacklevel=2)
        graph_path = onnx_path  # the graph TensorRT parses (and trtexec is pointed at)
        fp16_graph: Path | None = None
        converter = None
        tmp_graph: Path | None = None
        try:
            if precision == "fp16" and not has_flag(trt.BuilderFlag, "FP16"):
                # TRT 11: no FP16 flag; the graph itself must be fp16 (I/O stays fp32). It is kept
                # as a companion of the engine so trtexec builds from the same graph.
                fp16_graph = out_dir / f"{stem}.fp16.onnx"
                tmp_graph = out_dir / f".{stem}.fp16.tmp.onnx"
                converter = convert_fp16(onnx_path, tmp_graph)
                graph_path = tmp_graph
            network = builder.create_network(flags)
            parser = trt.OnnxParser(network, logger)
            ok = parser.parse_from_file(str(graph_path))
            if not ok:
                errs = [str(parser.get_error(i)) for i in range(parser.num_errors)]
                hints = []
                if precision == "int8":
                    hints.append("int8: run `glonet quantize` with the TensorRT recipe (symmetric INT8 Q/DQ)")
                if major < 9:
                    hints.append(f"TensorRT {trt.__version__} parses ONNX opset <= 17: re-export with opset 17")
                raise ArtifactError(f"TensorRT {trt.__version__} cannot parse {onnx_path.name}:\n  " + "\n  ".join(errs[:10])
                                    + "".join(f"\n({h})" for h in hints))
            config = builder.create_builder_config()
            workspace_mib = int(options.get("workspace_mib", 1024))
            config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mib << 20)
            used_flags: list[str] = []

            def set_flag(name: str) -> None:
                if has_flag(trt.BuilderFlag, name):
                    config.set_flag(getattr(trt.BuilderFlag, name))
                    used_flags.append(name)

            no_tf32 = False
            if precision == "fp32" and has_flag(trt.BuilderFlag, "TF32") and not options.get("tf32", False):
                config.clear_flag(trt.BuilderFlag.TF32)
                no_tf32 = True
            if precision == "fp16":
                set_flag("FP16")
            if precision == "int8" and not strongly_typed:
                set_flag("INT8")  # TRT 8.x needs it for Q/DQ to take effect; absent in TRT 11
                if options.get("fp16_fallback", True):
                    set_flag("FP16")  # non-quantized layers may run fp16
            opt_level: int | None = None
            if hasattr(config, "builder_optimization_level"):
                opt_level = int(options.get("optimization_level", 3))
                config.builder_optimization_level = opt_level
            if dla is not None:
                config.default_device_type = trt.DeviceType.DLA
                config.DLA_core = dla
                set_flag("GPU_FALLBACK")
            # optimization profile over the batch dimension
            b_min, b_opt, b_max = _batches(options, dla is not None)
            shapes = self._profile_shapes(network, b_min, b_opt, b_max)
            profile = builder.create_optimization_profile()
            for name, s in shapes.items():
                profile.set_shape(name, tuple(s["min"]), tuple(s["opt"]), tuple(s["max"]))
            if config.add_optimization_profile(profile) < 0:
                raise ConfigError(f"TensorRT rejected the optimization profile for {onnx_path.name}: "
                                  + "; ".join(f"{n} min {s['min']} opt {s['opt']} max {s['max']}" for n, s in shapes.items())
                                  + " (each needs 1 <= min <= opt <= max, element-wise)")
            # timing cache shared across the family
            cache_path = Path(options.get("timing_cache") or self.timing_cache_path(out_dir, gpu_index))
            self._timing_cache(config, cache_path)
            plan = builder.build_serialized_network(network, config)
            if plan is None:
                raise ArtifactError(f"TensorRT {trt.__version__} failed to build an engine for {onnx_path.name} ({precision}); "
                                    "see the TensorRT log above (unsupported layer, workspace too small, or a QDQ placement "
                                    "it has no int8 kernel for: lint the graph with glonet_edge.quantize.qdq_lint)")
            atomic_write_bytes(plan_path, bytes(memoryview(plan)))
            if tmp_graph is not None and fp16_graph is not None:
                os.replace(tmp_graph, fp16_graph)
                graph_path = fp16_graph
        finally:
            if tmp_graph is not None:
                tmp_graph.unlink(missing_ok=True)
        new_cache = config.get_timing_cache()
        if new_cache is not None:
            atomic_write_bytes(cache_path, bytes(memoryview(new_cache.serialize())))
        meta = self._metadata(trt, precision, dla, used_flags, strongly_typed, shapes, options, onnx_path, cache_path,
                              converter, gpu_index, fp16_graph)
        atomic_write_text(meta_path, json.dumps(meta, indent=2) + "\n")
        trtexec = options.get("_trtexec")
        if isinstance(trtexec, list):
            trtexec.append(self.trtexec_command(graph_path, plan_path, shapes, cache_path, workspace_mib,
                                                builder_flags=used_flags, strongly_typed=strongly_typed,
                                                no_tf32=no_tf32, optimization_level=opt_level, dla=dla,
                                                out_dir=out_dir))
        return [plan_path, meta_path] + ([fp16_graph] if fp16_graph is not None else [])

    def _metadata(self, trt, precision: str, dla: int | None, used_flags: list[str], strongly_typed: bool,
                  shapes: dict[str, Any], options: dict[str, Any], onnx_path: Path, cache_path: Path,
                  converter: str | None, gpu_index: int = 0, fp16_graph: Path | None = None) -> dict[str, Any]:
        import importlib

        meta: dict[str, Any] = {"tensorrt": str(trt.__version__), **gpu_info(gpu_index), "gpu_index": gpu_index}
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
        if fp16_graph is not None:
            meta["fp16_graph"] = {"file": fp16_graph.name, "sha256": sha256_file(fp16_graph)}
        return meta

    def artifact_extra(self, precision: str, **options: Any) -> dict[str, Any]:
        """The engine's metadata (from the sidecar JSON the build just wrote)."""
        files = options.get("files") or []
        sidecars = [Path(f) for f in files if str(f).endswith(".json")]
        return json.loads(sidecars[0].read_text()) if sidecars and sidecars[0].is_file() else {}

    # ---- load ----------------------------------------------------------------------------------
    def check_artifact(self, extra: dict[str, Any], **options: Any) -> None:
        """Refuse an engine built by another TensorRT version or for another GPU than the one it
        is about to be loaded on (options["device"], default GPU 0)."""
        if not extra:
            return
        trt = _trt()
        here_trt = str(trt.__version__)
        built_trt = extra.get("tensorrt")
        gpu = gpu_info(self._gpu_index(options.get("device")))
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
        gpu_index = self._gpu_index(options.get("device"))
        path = Path(artifact_path)
        if not path.is_file():
            raise ArtifactError(f"TensorRT engine {path} not found; run `glonet compile --target tensorrt`")
        meta: dict[str, Any] = {}
        sidecar = path.with_suffix(".json")
        if sidecar.is_file():
            meta = json.loads(sidecar.read_text())
            self.check_artifact(meta, device=options.get("device"))
        cuda_prefer = options.get("cuda", "auto")
        set_current_device(gpu_index, cuda_prefer)  # TRT deserializes onto the current device
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
        return TrtCompiledModel(trt, engine, precision, meta, gpu_index, cuda_prefer)

    def manifest_info(self, **options: Any) -> dict[str, Any]:
        info = self.describe(self._gpu_index(options.get("device")))
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
