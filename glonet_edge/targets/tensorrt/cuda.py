"""CUDA for TensorRT engines: the current device, streams, device buffers and copies.

Two interchangeable backends with the same small interface (set_device, stream, alloc, h2d,
d2h, sync, free, destroy_stream): cuda-python's cudart first, torch's CUDA tensors and streams
when cuda-python is not installed. docs/targets.md (TensorRT, "GPU:N and CUDA") says why.
"""

from __future__ import annotations

from typing import Any, Tuple

import numpy as np

from ...errors import ConfigError, MissingDependencyError


def cudart() -> Any:
    """cuda-python's runtime module (its import path moved in cuda-python 12.6)."""
    try:
        from cuda.bindings import runtime  # cuda-python >= 12.6
    except ImportError:
        from cuda import cudart as runtime  # older cuda-python
    return runtime


def checked(res: Any) -> Any:
    """cuda-python returns (error, *values): raise on an error, return the value(s)."""
    err, *rest = res if isinstance(res, tuple) else (res,)
    if int(err) != 0:
        raise RuntimeError(f"CUDA error {err}")
    return rest[0] if len(rest) == 1 else (tuple(rest) if rest else None)


BACKENDS = ("auto", "cuda-python", "torch")


def _cuda_torch() -> Any:
    """torch when it is installed with a usable CUDA device, else None."""
    try:
        import torch
    except ImportError:
        return None
    return torch if torch.cuda.is_available() else None


def _missing(what: str) -> MissingDependencyError:
    return MissingDependencyError(f"{what} needs cuda-python (or, as a fallback, a CUDA build of torch); install it "
                                  "with `pip install glonet-edge[tensorrt]`")


def cuda_backend(index: int = 0, prefer: str = "auto") -> Any:
    """The CUDA backend of an engine's streams and buffers on GPU `index`: cuda-python unless
    `prefer` is "torch" or cuda-python is not installed."""
    if prefer not in BACKENDS:
        raise ConfigError(f"unknown CUDA backend {prefer!r}; use one of {', '.join(BACKENDS)}")
    if prefer != "torch":
        try:
            return CudaPython(index)
        except ImportError:
            if prefer == "cuda-python":
                raise _missing(f"GPU {index} with cuda=cuda-python") from None
    torch = _cuda_torch()
    if torch is None:
        raise _missing(f"running TensorRT engines on GPU {index}")
    return TorchCuda(torch, index)


def set_current_device(index: int, prefer: str = "auto") -> None:
    """Make GPU `index` the calling thread's current CUDA device (TensorRT builds, deserializes
    and executes on the current device)."""
    cuda_backend(index, prefer).set_device()


class TorchCuda:
    """Device memory as torch uint8 tensors, streams as torch.cuda.Stream."""

    def __init__(self, torch: Any, index: int):
        self.torch = torch
        self.index = int(index)
        self.device = torch.device("cuda", self.index)

    def set_device(self) -> None:
        self.torch.cuda.set_device(self.index)

    def stream(self) -> Tuple[Any, int]:
        s = self.torch.cuda.Stream(device=self.device)
        return s, s.cuda_stream

    def alloc(self, nbytes: int) -> Tuple[Any, int]:
        t = self.torch.empty(max(int(nbytes), 1), dtype=self.torch.uint8, device=self.device)
        return t, t.data_ptr()

    def h2d(self, buf: Any, arr: np.ndarray, stream: Any) -> None:
        with self.torch.cuda.stream(stream):
            buf[:arr.nbytes].copy_(self.torch.from_numpy(arr.reshape(-1).view(np.uint8)), non_blocking=True)

    def d2h(self, out: np.ndarray, buf: Any, stream: Any) -> None:
        with self.torch.cuda.stream(stream):
            self.torch.from_numpy(out.reshape(-1).view(np.uint8)).copy_(buf[:out.nbytes], non_blocking=False)

    def sync(self, stream: Any) -> None:
        stream.synchronize()

    def free(self, buf: Any) -> None:
        del buf  # the caching allocator reclaims it once the slot drops its reference

    def destroy_stream(self, stream: Any) -> None:
        pass  # torch streams are pooled by torch itself


class CudaPython:
    """Device memory from cudaMalloc, streams from cudaStreamCreate (cuda-python)."""

    def __init__(self, index: int):
        self.rt = cudart()
        self.index = int(index)
        self.set_device()

    def set_device(self) -> None:
        err, *_ = self.rt.cudaSetDevice(self.index)
        if int(err) != 0:
            raise ConfigError(f"CUDA device {self.index} cannot be selected (cudaSetDevice error {int(err)}); this "
                              "machine's GPUs are GPU:0 .. GPU:<count-1> (see nvidia-smi)")

    def stream(self) -> Tuple[Any, int]:
        s = checked(self.rt.cudaStreamCreate())
        return s, int(s)

    def alloc(self, nbytes: int) -> Tuple[Any, int]:
        ptr = checked(self.rt.cudaMalloc(max(int(nbytes), 1)))
        return ptr, int(ptr)

    def h2d(self, buf: Any, arr: np.ndarray, stream: Any) -> None:
        checked(self.rt.cudaMemcpyAsync(buf, arr.ctypes.data, arr.nbytes,
                                        self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice, stream))

    def d2h(self, out: np.ndarray, buf: Any, stream: Any) -> None:
        checked(self.rt.cudaMemcpyAsync(out.ctypes.data, buf, out.nbytes,
                                        self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream))

    def sync(self, stream: Any) -> None:
        checked(self.rt.cudaStreamSynchronize(stream))

    def free(self, buf: Any) -> None:
        self.rt.cudaFree(buf)

    def destroy_stream(self, stream: Any) -> None:
        self.rt.cudaStreamDestroy(stream)

