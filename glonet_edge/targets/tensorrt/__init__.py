"""TensorRT target for TensorRT 8.5 through 11.x, one code path with features detected, not
inferred from the version. Engines live in BUNDLE/tensorrt/<gpu>_sm<cc>_trt<version>/ because
they do not move between TensorRT versions or GPUs (on a Jetson: build on the device itself).

Modules: build (the build steps), engine (execution), cuda (streams and buffers), fp16 (the
TensorRT 11 fp16 graph), device (GPU / Jetson facts), metadata, trtexec, options, target.
docs/targets.md (TensorRT) has the engine facts and version rules the code relies on.
"""

from __future__ import annotations

from .engine import TrtCompiledModel
from .options import BuildOptions
from .result import EngineBuild
from .target import TensorRTFamily, TensorRTTarget

__all__ = ["BuildOptions", "EngineBuild", "TensorRTFamily", "TensorRTTarget", "TrtCompiledModel"]
