"""A CPU stand-in for the `tensorrt` Python module, shaped like the real API of a given version.

Only the names glonet_edge.targets.tensorrt touches exist, and they exist or not as in the real
release (docs/targets.md, TensorRT): EXPLICIT_BATCH is gone in 11, FP16/INT8 builder flags are gone in 11,
STRONGLY_TYPED appears in 10. The "engine" runs the parsed ONNX graph with onnxruntime, reading
and writing "device" buffers of the fake CUDA runtime (fake_cuda.py), so the target's build /
metadata / timing cache / named-tensor execution path runs end to end without a GPU. It checks
what TensorRT's parser would refuse via qdq_lint, and records every builder call.

Devices are modelled as in the real library: a builder, an engine and an execution context
belong to the CUDA device current on the calling thread when they are created, and a build or
an execution whose builder / context / stream / buffers are on another device than the engine
fails (build_serialized_network -> None, execute_async_v3 -> False, with the error logged).

Return values follow the real bindings where the target must check them:
`add_optimization_profile` -> index or -1 (invalid profile), `create_timing_cache` -> None for a
corrupt blob, `set_timing_cache` -> False for a cache from another TRT version / GPU (device tag),
`build_serialized_network` -> None when a profile disagrees with a static input dim or misses an
input, `set_input_shape` -> False outside the profile. `trt.devices` records the device each
Builder / Runtime / Engine / ExecutionContext was created on, `trt.errors` what would be logged.
"""

from __future__ import annotations

import json
import types

import numpy as np


class _Enum:
    def __init__(self, **members):
        for k, v in members.items():
            setattr(self, k, v)


def make_fake_trt(version: str = "10.3.0", cudart=None, dla_cores: int = 0, fail_build: bool = False) -> types.ModuleType:
    from fake_cuda import make_fake_cudart

    major = int(version.split(".")[0])
    cudart = cudart or make_fake_cudart()
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.cudart = cudart
    trt.calls = []  # what the builder was asked
    trt.errors = []  # what TensorRT would have logged as errors
    trt.devices = []  # (object created, CUDA device current at the time)
    trt.fail_build = fail_build
    trt.reject_profiles = False  # add_optimization_profile -> -1 (as for an invalid profile)
    trt.device_tag = "sm87"  # the GPU a timing cache belongs to

    class Logger:
        WARNING = 2

        def __init__(self, level):
            self.level = level

    trt.Logger = Logger
    net_flags = {"STRONGLY_TYPED": 1} if major >= 10 else {}
    if major < 11:
        net_flags["EXPLICIT_BATCH"] = 0
    trt.NetworkDefinitionCreationFlag = _Enum(**net_flags)
    bflags = {"TF32": 7, "GPU_FALLBACK": 3, "REFIT": 4}
    if major < 11:
        bflags.update(FP16=0, INT8=1)
    trt.BuilderFlag = _Enum(**bflags)
    trt.MemoryPoolType = _Enum(WORKSPACE=0)
    trt.DeviceType = _Enum(GPU=0, DLA=1)
    trt.TensorIOMode = _Enum(INPUT=1, OUTPUT=2)
    trt.nptype = lambda dt: np.float32

    class Tensor:
        def __init__(self, name, shape):
            self.name, self.shape = name, shape

    class Network:
        def __init__(self, flags):
            self.flags = flags
            self.inputs = []
            self.onnx = None

        @property
        def num_inputs(self):
            return len(self.inputs)

        def get_input(self, i):
            return self.inputs[i]

    class ParserError:
        def __init__(self, msg):
            self.msg = msg

        def __str__(self):
            return self.msg

    class OnnxParser:
        def __init__(self, network, logger):
            self.network, self.errors = network, []

        @property
        def num_errors(self):
            return len(self.errors)

        def get_error(self, i):
            return self.errors[i]

        def parse_from_file(self, path):
            import onnx

            from glonet_edge.targets import qdq_lint

            if major < 10 and not (self.network.flags & 1 << 0):
                self.errors.append(ParserError("implicit batch networks are not supported by the ONNX parser"))
                return False
            model = onnx.load(path)
            for issue in qdq_lint.errors(qdq_lint.lint(model, version)):
                self.errors.append(ParserError(f"{issue.rule}: {issue.message}"))
            if self.errors:
                return False
            self.network.onnx = model.SerializeToString()
            for inp in model.graph.input:
                dims = tuple(d.dim_value if d.dim_value > 0 else -1 for d in inp.type.tensor_type.shape.dim)
                self.network.inputs.append(Tensor(inp.name, dims))
            return True

    trt.OnnxParser = OnnxParser

    class Profile:
        def __init__(self):
            self.shapes = {}

        def set_shape(self, name, lo, opt, hi):
            self.shapes[name] = (tuple(lo), tuple(opt), tuple(hi))

    class TimingCache:
        """Serialized as FAKETC|<version>|<device tag>|<tactics>."""

        def __init__(self, tactics=b"", tag=None, ver=None):
            self.tactics, self.tag, self.version = bytes(tactics), tag or trt.device_tag, ver or version

        def serialize(self):
            return b"FAKETC|" + self.version.encode() + b"|" + self.tag.encode() + b"|" + self.tactics

    class Config:
        def __init__(self):
            self.flags = {trt.BuilderFlag.TF32}  # TF32 is on by default
            self.profiles = []
            self.cache = None
            self.pool = {}
            self.default_device_type = trt.DeviceType.GPU
            self.DLA_core = -1
            if major >= 9 or version.startswith("8.6"):
                self.builder_optimization_level = 3

        def set_memory_pool_limit(self, pool, size):
            self.pool[pool] = size

        def set_flag(self, f):
            self.flags.add(f)

        def clear_flag(self, f):
            self.flags.discard(f)

        def add_optimization_profile(self, p):
            valid = bool(p.shapes) and all(
                len(lo) == len(opt) == len(hi) and all(0 <= a <= b <= c for a, b, c in zip(lo, opt, hi))
                for lo, opt, hi in p.shapes.values())
            if trt.reject_profiles or not valid:
                return -1
            self.profiles.append(p)
            return len(self.profiles) - 1

        def create_timing_cache(self, blob):
            blob = bytes(blob)
            if not blob:
                return TimingCache()
            parts = blob.split(b"|", 3)
            if len(parts) != 4 or parts[0] != b"FAKETC":
                return None  # corrupt / not a timing cache
            return TimingCache(parts[3], parts[2].decode(), parts[1].decode())

        def set_timing_cache(self, cache, ignore_mismatch):
            if not isinstance(cache, TimingCache):
                raise TypeError("set_timing_cache(): incompatible function arguments")
            if not ignore_mismatch and (cache.version != version or cache.tag != trt.device_tag):
                return False  # header check: another TRT version or GPU
            self.cache = cache
            return True

        def get_timing_cache(self):
            return self.cache

    class Builder:
        def __init__(self, logger):
            self.num_DLA_cores = dla_cores
            self.device = cudart.current_device()
            trt.devices.append(("Builder", self.device))

        def create_network(self, flags=0):
            return Network(flags)

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            names = {v: k for k, v in vars(trt.BuilderFlag).items()}
            trt.calls.append({"network_flags": network.flags,
                              "flags": sorted(names[f] for f in config.flags if f != trt.BuilderFlag.TF32),
                              "tf32": trt.BuilderFlag.TF32 in config.flags,
                              "profiles": [p.shapes for p in config.profiles], "cache_in": config.cache.tactics,
                              "dla": config.DLA_core if config.default_device_type == trt.DeviceType.DLA else None})
            if trt.fail_build:
                return None
            if cudart.current_device() != self.device:
                trt.errors.append(f"builder made on GPU {self.device} used on GPU {cudart.current_device()}")
                return None
            for t in network.inputs:  # a profile must cover every input and agree with static dims
                if not config.profiles or t.name not in config.profiles[0].shapes:
                    return None
                if any(d > 0 and not (lo == d == hi) for d, lo, _, hi in
                       zip(t.shape, *config.profiles[0].shapes[t.name])):
                    return None
            config.cache = TimingCache(config.cache.tactics + b"+tactics")
            header = json.dumps({"version": version, "profile": {k: v for k, v in config.profiles[0].shapes.items()}}).encode()
            return np.frombuffer(b"FAKEPLAN" + len(header).to_bytes(4, "little") + header + network.onnx, np.uint8)

    trt.Builder = Builder

    class Context:
        def __init__(self, engine):
            self.engine, self.shapes, self.addr = engine, {}, {}
            self.device = cudart.current_device()  # TensorRT attaches a context to the current device
            trt.devices.append(("ExecutionContext", self.device))

        def set_input_shape(self, name, shape):
            lo, _, hi = self.engine.profile[name]
            if not all(a <= s <= b for a, s, b in zip(lo, shape, hi)):
                return False
            self.shapes[name] = tuple(shape)
            return True

        def _run(self, feeds):
            return dict(zip(self.engine.outputs, self.engine.session.run(None, feeds)))

        def get_tensor_shape(self, name):
            feeds = {n: np.zeros(s, np.float32) for n, s in self.shapes.items()}
            return self._run(feeds)[name].shape

        def set_tensor_address(self, name, ptr):
            self.addr[name] = ptr

        def _device_error(self, stream):
            want = self.engine.device
            stream_device = getattr(cudart.streams.get(int(stream)), "device", None)
            buffers = {cudart.memory[p][1] for p in self.addr.values() if p in cudart.memory}
            if self.device != want or stream_device != want or buffers - {want}:
                return (f"engine on GPU {want} run with its context on GPU {self.device}, stream on GPU "
                        f"{stream_device}, buffers on GPU(s) {sorted(buffers)} (Cuda Runtime: invalid resource handle)")
            return None

        def execute_async_v3(self, stream):
            error = self._device_error(stream)
            if error:
                trt.errors.append(error)
                return False
            feeds = {}
            for n, s in self.shapes.items():
                buf = cudart.memory[self.addr[n]][0]
                feeds[n] = buf[:int(np.prod(s)) * 4].view(np.float32).reshape(s).copy()
            for n, y in self._run(feeds).items():
                buf = cudart.memory[self.addr[n]][0]
                buf[:y.nbytes] = np.ascontiguousarray(y, np.float32).reshape(-1).view(np.uint8)
            return True

    class Engine:
        def __init__(self, header, onnx_bytes):
            import onnxruntime as ort

            self.device = cudart.current_device()  # deserialized onto the current device
            trt.devices.append(("Engine", self.device))
            self.session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
            self.inputs = [i.name for i in self.session.get_inputs()]
            self.outputs = [o.name for o in self.session.get_outputs()]
            self.profile = {k: tuple(tuple(x) for x in v) for k, v in header["profile"].items()}

        @property
        def num_io_tensors(self):
            return len(self.inputs) + len(self.outputs)

        def get_tensor_name(self, i):
            return (self.inputs + self.outputs)[i]

        def get_tensor_mode(self, name):
            return trt.TensorIOMode.INPUT if name in self.inputs else trt.TensorIOMode.OUTPUT

        def get_tensor_dtype(self, name):
            return "float32"

        def get_tensor_profile_shape(self, name, index):
            return self.profile[name]

        def create_execution_context(self):
            return Context(self)

    class Runtime:
        def __init__(self, logger):
            self.DLA_core = -1
            trt.devices.append(("Runtime", cudart.current_device()))

        def deserialize_cuda_engine(self, data):
            data = bytes(data)
            if not data.startswith(b"FAKEPLAN"):
                return None
            n = int.from_bytes(data[8:12], "little")
            header = json.loads(data[12:12 + n])
            if header["version"] != version:
                return None  # like TRT: a plan from another version does not deserialize
            return Engine(header, data[12 + n:])

    trt.Runtime = Runtime
    return trt
