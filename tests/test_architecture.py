"""The import rules of docs/architecture.md ("Import rules"), checked on the source with ast.

- no import cycles among glonet_edge modules (module-level imports);
- a stage imports only itself, earlier stages and the shared modules at module level
  (train < export < quantize < compile/profile (targets) < runtime < report/bench/commands);
- runtime, targets and the shared modules never import torch, onnx or nncf at module level;
- quantize reaches the engines only through glonet_edge.targets' public API;
- the serving modules import with torch, onnx and nncf blocked (in a subprocess).
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "glonet_edge"
HEAVY = ("torch", "onnx", "nncf")

# Modules every stage may use; they import no stage at module level.
SHARED = ("glonet_edge", "glonet_edge.errors", "glonet_edge.fileio", "glonet_edge.progress", "glonet_edge.data",
          "glonet_edge.compare", "glonet_edge.manifest", "glonet_edge.provenance", "glonet_edge.exits",
          "glonet_edge.exit_calibration")
# Stages in pipeline order: a module may import its own stage and earlier ones, never a later one.
STAGES = (
    ("train", ("glonet_edge.train", "glonet_edge.glonet", "glonet_edge.backbones")),
    ("export", ("glonet_edge.export",)),
    ("quantize", ("glonet_edge.quantize",)),
    ("compile/profile", ("glonet_edge.targets",)),
    ("runtime", ("glonet_edge.runtime",)),
    ("after the stages", ("glonet_edge.report", "glonet_edge.bench", "glonet_edge.commands", "glonet_edge.cli",
                          "glonet_edge.__main__", "glonet_edge.pipeline", "glonet_edge.doctor")),
)
SERVING = ("glonet_edge.runtime", "glonet_edge.runtime.simulate", "glonet_edge.targets", "glonet_edge.targets.compile",
           "glonet_edge.targets.profile", "glonet_edge.targets.onnxruntime", "glonet_edge.targets.openvino",
           "glonet_edge.targets.tensorrt", "glonet_edge.manifest", "glonet_edge.commands.run",
           "glonet_edge.commands.inspect", "glonet_edge.commands.simulate", "glonet_edge.commands.doctor",
           "glonet_edge.doctor")


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = _modules()


class _Imports(ast.NodeVisitor):
    """Imports of one module: all of them, or (module_level) only those run at import time,
    i.e. not inside a function and not under `if TYPE_CHECKING:`."""

    def __init__(self, name: str, is_package: bool, module_level: bool) -> None:
        self.package = name if is_package else name.rpartition(".")[0]
        self.module_level = module_level
        self.found: set[str] = set()

    def visit_FunctionDef(self, node: ast.AST) -> None:
        if not self.module_level:
            self.generic_visit(node)

    visit_AsyncFunctionDef = visit_Lambda = visit_FunctionDef

    def visit_If(self, node: ast.If) -> None:
        if self.module_level and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                self.visit(child)
            return
        self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        self.found.update(alias.name for alias in node.names)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            base = self.package.split(".")[:len(self.package.split(".")) - (node.level - 1)]
            module = ".".join(base + ([node.module] if node.module else []))
        else:
            module = node.module or ""
        for alias in node.names:  # `from . import cuda` imports the module glonet_edge....cuda
            sub = f"{module}.{alias.name}"
            self.found.add(sub if sub in MODULES else module)


def imports(name: str, module_level: bool = True) -> set[str]:
    path = MODULES[name]
    visitor = _Imports(name, path.name == "__init__.py", module_level)
    visitor.visit(ast.parse(path.read_text(encoding="utf-8"), str(path)))
    return visitor.found


def _internal(names: set[str]) -> set[str]:
    """The glonet_edge modules named: `import a.b.c` counts as its deepest module that exists."""
    out = set()
    for name in names:
        while name and name not in MODULES:
            name = name.rpartition(".")[0]
        if name.startswith("glonet_edge"):
            out.add(name)
    return out


def _rank(module: str) -> int:
    """0 for the shared modules, 1.. for the stages in order."""
    if module in SHARED:
        return 0
    for rank, (_, prefixes) in enumerate(STAGES, start=1):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return rank
    raise AssertionError(f"{module} is in no stage of tests/test_architecture.py: add it to SHARED or STAGES "
                         "(and to docs/architecture.md)")


def _stage(rank: int) -> str:
    return "shared" if rank == 0 else STAGES[rank - 1][0]


GRAPH = {name: _internal(imports(name)) - {name} for name in MODULES}


def test_every_module_has_a_stage():
    for name in MODULES:
        _rank(name)


def test_no_import_cycles():
    """Depth-first search over module-level imports; a back edge is a cycle."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(GRAPH[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(path[path.index(nxt):] + [node, nxt]) if nxt in path else f"{node} -> {nxt}")
            elif nxt not in state:
                visit(nxt, path + [node])
        state[node] = 2

    for name in sorted(GRAPH):
        if name not in state:
            visit(name, [])
    assert not cycles, "module-level import cycles:\n" + "\n".join(cycles)


def test_stages_never_import_later_stages():
    bad = [f"{m} ({_stage(_rank(m))}) imports {i} ({_stage(_rank(i))})"
           for m, deps in GRAPH.items() for i in sorted(deps) if _rank(i) > _rank(m)]
    assert not bad, "module-level imports against the stage order (docs/architecture.md):\n" + "\n".join(bad)


@pytest.mark.parametrize("prefix", ["glonet_edge.runtime", "glonet_edge.targets", *SHARED])
def test_serving_and_shared_modules_never_import_heavy_libraries_at_module_level(prefix):
    bad = []
    for name in MODULES:
        if name == prefix or (prefix != "glonet_edge" and name.startswith(prefix + ".")):
            heavy = sorted(i for i in imports(name) if i.split(".")[0] in HEAVY)
            if heavy:
                bad.append(f"{name}: {', '.join(heavy)}")
    assert not bad, "import these inside the function that needs them:\n" + "\n".join(bad)


def test_export_imports_neither_quantize_nor_targets():
    bad = [f"{m} imports {i}" for m in MODULES if m.startswith("glonet_edge.export")
           for i in sorted(_internal(imports(m, module_level=False)))
           if i.startswith(("glonet_edge.quantize", "glonet_edge.targets"))]
    assert not bad, "\n".join(bad)


def test_quantize_reaches_engines_only_through_the_targets_api():
    """Anywhere in quantize (function-level imports too): glonet_edge.targets, never a target's module."""
    bad = [f"{m} imports {i}" for m in MODULES if m.startswith("glonet_edge.quantize")
           for i in sorted(_internal(imports(m, module_level=False))) if i.startswith("glonet_edge.targets.")]
    assert not bad, "use glonet_edge.targets (get_target, load_artifact, ...) instead:\n" + "\n".join(bad)


BLOCKED_IMPORT = """
import importlib, json, sys

class Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {heavy!r}:
            raise ImportError("blocked by tests/test_architecture.py: " + name)
        return None

sys.meta_path.insert(0, Blocked())
for name in {modules!r}:
    importlib.import_module(name)
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in {heavy!r})))
"""


def test_serving_modules_import_without_torch_onnx_nncf():
    code = BLOCKED_IMPORT.format(heavy=set(HEAVY), modules=list(SERVING))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []
