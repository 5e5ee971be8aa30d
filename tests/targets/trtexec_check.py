"""A trtexec command line checked the way trtexec itself checks it, for a given TensorRT release.

The option names come from data/trtexec_options.json (read from samples/common/sampleOptions.cpp
at each release tag); the rules are the ones that file names with their source: trtexec exits
on an unknown option, refuses explicit shapes for a graph whose inputs are all static, refuses
a shape for a name that is not an input, and (10.x) drops --fp16/--int8 under --stronglyTyped.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

TABLE = json.loads((Path(__file__).parent / "data" / "trtexec_options.json").read_text())
SHAPE_OPTIONS = ("--minShapes", "--optShapes", "--maxShapes")


def release_for(version: str) -> str:
    """The table row for a TensorRT version: the newest tagged release of the same major at or
    below it (11.4.0 -> 11.1, 10.13.0 -> 10.3, 8.5.2 -> 8.5)."""
    major, minor = (int(p) for p in version.split(".")[:2])
    rows = [k for k in TABLE["versions"] if int(k.split(".")[0]) == major and int(k.split(".")[1]) <= minor]
    if not rows:
        raise KeyError(f"no trtexec option table for TensorRT {version}")
    return max(rows, key=lambda k: int(k.split(".")[1]))


def _shape_names(spec: str) -> list[str]:
    """Input names of a --minShapes value (name:AxBxC,...; names may be single-quoted)."""
    return [item.rsplit(":", 1)[0].strip("'") for item in spec.split(",")]


def _graph_inputs(onnx_path: Path) -> dict[str, bool]:
    """{input name: has a dynamic dim} of a graph (initializers listed as inputs left out)."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    weights = {t.name for t in graph.initializer}
    return {i.name: any(d.dim_param or d.dim_value <= 0 for d in i.type.tensor_type.shape.dim)
            for i in graph.input if i.name not in weights}


def trtexec_problems(line: str, version: str, cwd: Path) -> list[str]:
    """What trtexec of TensorRT `version` would refuse in `line`, run from `cwd`; [] when nothing."""
    args = shlex.split(line)
    assert args[0] == "trtexec", line
    row = TABLE["versions"][release_for(version)]
    known = set(row["options"])
    opts = dict(a.split("=", 1) if "=" in a else (a, "") for a in args[1:])
    problems = [f"unknown option {name} (TensorRT {version}: sampleOptions.cpp at {row['tag']})"
                for name in opts if name not in known]
    inputs = _graph_inputs(Path(cwd) / opts["--onnx"])
    shapes = [opts[k] for k in SHAPE_OPTIONS if k in opts]
    if shapes and not any(inputs.values()):
        problems.append("Static model does not take explicit shapes (every input of "
                        f"{opts['--onnx']} is static; sampleEngines.cpp)")
    problems += [f"Cannot find input tensor with name {n!r}" for spec in shapes for n in _shape_names(spec)
                 if n not in inputs]
    if "--stronglyTyped" in opts:
        problems += [f"{flag} is not allowed if graph is strongly typed" for flag in ("--fp16", "--int8") if flag in opts]
    return problems


def script_problems(script: Path, version: str) -> list[str]:
    """trtexec_problems of every trtexec line of a trtexec.sh, run from the script's directory."""
    return [p for line in script.read_text().splitlines() if line.startswith("trtexec ")
            for p in trtexec_problems(line, version, script.parent)]
