"""The trtexec command line equivalent to one build, and the family's trtexec.sh.

A line is made from what the build did (EngineBuild: the graph it parsed, every input's
shapes, the builder flags it set, TF32 cleared, strong typing), not re-derived from the
version; docs/targets.md (TensorRT, "trtexec") lists the options and where each comes from.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import List, Optional, Sequence

from ...fileio import atomic_write_text
from .result import EngineBuild, Shapes

SCRIPT_HEADER = ["#!/bin/sh", "# trtexec equivalents of `glonet compile --target tensorrt` (paths relative to this file)",
                 "set -e", 'cd "$(dirname "$0")"']


def _tensor_name(name: str) -> str:
    """trtexec splits shape specs on ':' and ','; such names are wrapped in single quotes."""
    return f"'{name}'" if any(c in name for c in ":,'") else name


def shape_options(shapes: Shapes) -> List[str]:
    """--minShapes/--optShapes/--maxShapes with every input, comma-separated."""
    return [f"{flag}=" + ",".join(f"{_tensor_name(n)}:{'x'.join(str(int(d)) for d in s[key])}" for n, s in shapes.items())
            for key, flag in (("min", "--minShapes"), ("opt", "--optShapes"), ("max", "--maxShapes"))]


def _before(version: str, major: int, minor: int) -> bool:
    return tuple(int(p) for p in version.split(".")[:2]) < (major, minor)


def stop_option(version: str) -> str:
    """Exit after the build: --skipInference from 8.6 on; 8.5 knows only --buildOnly (gone in 10.0)."""
    return "--buildOnly" if _before(version, 8, 6) else "--skipInference"


def precision_options(build: EngineBuild) -> List[str]:
    flags = build.builder_flags
    opts = ["--stronglyTyped"] if build.strongly_typed else []
    opts += [opt for flag, opt in (("FP16", "--fp16"), ("INT8", "--int8")) if flag in flags]
    if build.no_tf32:
        opts.append("--noTF32")
    if build.optimization_level is not None:
        opts.append(f"--builderOptimizationLevel={int(build.optimization_level)}")
    dla = build.options.device.dla_core
    if dla is not None:
        opts.append(f"--useDLACore={dla}")
        if "GPU_FALLBACK" in flags:
            opts.append("--allowGPUFallback")
    return opts


def trtexec_command(build: EngineBuild, relative_to: Optional[Path] = None) -> str:
    """The trtexec line that repeats `build`, with paths relative to `relative_to` when given."""
    def path(p: Path) -> str:
        return os.path.relpath(Path(p).resolve(), Path(relative_to).resolve()) if relative_to else str(p)

    cmd = ["trtexec", f"--onnx={path(build.graph)}", f"--saveEngine={path(build.plan)}"]
    if build.dynamic_inputs:  # trtexec refuses explicit shapes for a graph whose inputs are all static
        cmd += shape_options({n: s for n, s in build.shapes.items() if n in build.dynamic_inputs})
    cmd += [f"--timingCacheFile={path(build.timing_cache)}", f"--memPoolSize=workspace:{int(build.options.workspace_mib)}"]
    cmd += precision_options(build)
    cmd.append(stop_option(build.tensorrt))
    return " ".join(shlex.quote(c) for c in cmd)


def write_script(out_dir: Path, lines: Sequence[str]) -> Path:
    """<engine dir>/trtexec.sh: every line of the family, run from the engine directory."""
    script = Path(out_dir) / "trtexec.sh"
    atomic_write_text(script, "\n".join([*SCRIPT_HEADER, *lines]) + "\n")
    return script

