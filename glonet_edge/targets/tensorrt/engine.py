"""A loaded TensorRT engine: named-tensor execution (execute_async_v3) on a pool of execution
contexts, each with its own CUDA stream and device buffers, so `run` is thread-safe."""

from __future__ import annotations

import threading
import warnings
from typing import Any, Callable, Dict

import numpy as np

from ...errors import ArtifactError, ConfigError
from ..base import CompiledModel, RequestPool
from . import cuda


class Slot:
    """One execution context with its stream and device buffers (used by one thread at a time)."""

    def __init__(self, engine: Any, backend: Any):
        # A new thread's current device is GPU 0, and TensorRT attaches the context (CUDA the
        # stream) to the current device: select the engine's GPU before making either.
        backend.set_device()
        self.ctx = engine.create_execution_context()
        if self.ctx is None:
            raise ArtifactError("TensorRT could not create an execution context (out of GPU memory?)")
        self.cuda = backend
        self.stream, self.handle = backend.stream()
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

    def __init__(self, trt: Any, engine: Any, precision: str, metadata: Dict[str, Any], device_index: int = 0,
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
        self.cuda = cuda.cuda_backend(self.device_index, cuda_prefer)
        # the batch sizes every input's profile accepts (a DLA / fixed-batch engine: min == max)
        ranges = [[tuple(int(d) for d in s) for s in self.profile_range(n)] for n in self.input_names]
        self.batch_min = max((lo[0] for lo, _, _ in ranges if lo), default=1)
        self.batch_max = min((hi[0] for _, _, hi in ranges if hi), default=1 << 30)
        self._pool = RequestPool(lambda: Slot(engine, self.cuda), dispose=Slot.close)
        self._raw: Slot | None = None
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

    def _execute(self, slot: Slot, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        ctx, backend = slot.ctx, slot.cuda
        backend.set_device()  # TensorRT executes on the calling thread's current device
        for n in self.input_names:
            arr = feeds[n]
            if arr.dtype != self.dtypes[n]:
                arr = arr.astype(self.dtypes[n])
            if slot.shapes.get(n) != arr.shape:
                if not ctx.set_input_shape(n, tuple(arr.shape)):
                    raise self._profile_error(n, tuple(arr.shape))
                slot.shapes[n] = arr.shape
            slot.buffer(n, arr.nbytes)
            backend.h2d(slot.buffers[n][0], arr, slot.stream)
        outs = []
        for n in self.output_names:
            shape = tuple(ctx.get_tensor_shape(n))
            out = np.empty(shape, self.dtypes[n])
            slot.buffer(n, out.nbytes)
            outs.append(out)
        if not ctx.execute_async_v3(slot.handle):
            raise ArtifactError("TensorRT execute_async_v3 failed (see the TensorRT log above)")
        for n, out in zip(self.output_names, outs):
            backend.d2h(out, slot.buffers[n][0], slot.stream)
        backend.sync(slot.stream)
        return [o.astype(np.float32, copy=False) for o in outs]

    def _execute_padded(self, slot: Slot, feeds: dict[str, np.ndarray], n: int) -> list[np.ndarray]:
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
                self._raw = Slot(self.engine, self.cuda)
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
