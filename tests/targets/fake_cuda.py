"""A host-memory stand-in for cuda-python's runtime module (`cuda.bindings.runtime`).

It keeps what the real CUDA runtime keeps and checks what it checks, as far as the TensorRT
target depends on it: each thread has its own current device (0 until cudaSetDevice), a stream
and an allocation belong to the device that was current when they were made, and calls return
(error, *values) tuples. "Device memory" is host memory (numpy buffers) at real addresses, so
cudaMemcpyAsync is a memmove and the fake TensorRT engine can read and write it.
"""

from __future__ import annotations

import ctypes
import itertools
import threading
import types
from dataclasses import dataclass

import numpy as np

SUCCESS = 0
INVALID_VALUE = 1
INVALID_DEVICE = 101
INVALID_RESOURCE_HANDLE = 400


@dataclass
class Stream:
    handle: int
    device: int

    def __int__(self) -> int:
        return self.handle


@dataclass
class DeviceProp:
    name: bytes
    major: int
    minor: int


def make_fake_cudart(gpus=(("NVIDIA Jetson AGX Orin", 8, 7),), runtime: int = 12060, driver: int = 12080):
    """A fake `cudart` with one GPU per (name, major, minor) in `gpus`."""
    rt = types.ModuleType("cudart")
    rt.cudaMemcpyKind = types.SimpleNamespace(cudaMemcpyHostToDevice=1, cudaMemcpyDeviceToHost=2)
    rt.memory = {}  # pointer -> (numpy buffer, device)
    rt.streams = {}  # handle -> Stream (live ones)
    rt.calls = []  # (call, device current on the calling thread)
    local = threading.local()
    handles = itertools.count(0x1000)

    def current() -> int:
        return getattr(local, "device", 0)

    rt.current_device = current

    def cudaSetDevice(index):
        if not 0 <= int(index) < len(gpus):
            return (INVALID_DEVICE,)
        local.device = int(index)
        return (SUCCESS,)

    def cudaGetDeviceProperties(index):
        if not 0 <= int(index) < len(gpus):
            return INVALID_DEVICE, None
        name, major, minor = gpus[int(index)]
        return SUCCESS, DeviceProp(name.encode() + b"\x00", major, minor)

    def cudaStreamCreate():
        s = Stream(next(handles), current())
        rt.streams[s.handle] = s
        rt.calls.append(("cudaStreamCreate", s.device))
        return SUCCESS, s

    def cudaStreamDestroy(stream):
        return (SUCCESS,) if rt.streams.pop(int(stream), None) is not None else (INVALID_RESOURCE_HANDLE,)

    def cudaStreamSynchronize(stream):
        return (SUCCESS,) if int(stream) in rt.streams else (INVALID_RESOURCE_HANDLE,)

    def cudaMalloc(nbytes):
        buf = np.zeros(int(nbytes), np.uint8)
        rt.memory[buf.ctypes.data] = (buf, current())
        rt.calls.append(("cudaMalloc", current()))
        return SUCCESS, buf.ctypes.data

    def cudaFree(ptr):
        return (SUCCESS,) if rt.memory.pop(int(ptr), None) is not None else (INVALID_VALUE,)

    def cudaMemcpyAsync(dst, src, nbytes, kind, stream):
        device_ptr = int(dst) if kind == rt.cudaMemcpyKind.cudaMemcpyHostToDevice else int(src)
        if int(stream) not in rt.streams or device_ptr not in rt.memory:
            return (INVALID_VALUE,)
        ctypes.memmove(int(dst), int(src), int(nbytes))
        return (SUCCESS,)

    for fn in (cudaSetDevice, cudaGetDeviceProperties, cudaStreamCreate, cudaStreamDestroy, cudaStreamSynchronize,
               cudaMalloc, cudaFree, cudaMemcpyAsync):
        setattr(rt, fn.__name__, fn)
    rt.cudaGetDevice = lambda: (SUCCESS, current())
    rt.cudaGetDeviceCount = lambda: (SUCCESS, len(gpus))
    rt.cudaRuntimeGetVersion = lambda: (SUCCESS, runtime)
    rt.cudaDriverGetVersion = lambda: (SUCCESS, driver)
    return rt
