"""The one small interface every deployment target implements (Polygraphy / Optimum style).

    target = get_target("openvino")
    files = target.build("onnx/depth_008.onnx", "openvino/", "int8")    # compile artifact(s)
    model = target.load(files[0], "int8", device="CPU")                  # -> CompiledModel
    (y,) = model.run({"x": batch})                                       # thread-safe
    raw = model.raw_callable(); raw({"x": batch})                        # fastest direct engine call

Adding a target = one new module with a `Target` subclass, registered in targets/__init__.py.
Modules import numpy only at top level; the engine library is imported lazily (with
`errors.require`, which names the pip extra), so `import glonet_edge.runtime` works without
torch / onnx / nncf and without the engines not in use.
"""

from __future__ import annotations

import os
import threading
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import ConfigError

PRECISIONS = ("fp32", "fp16", "int8")


def default_cache_dir(kind: str) -> Path:
    """Engine caches (OpenVINO model cache, TensorRT timing caches for a plain load) live OUTSIDE
    the bundle by default, so a bundle's sha256s never depend on what a device compiled:
    $GLONET_CACHE_DIR/<kind>, else $XDG_CACHE_HOME/glonet-edge/<kind>, else ~/.cache/glonet-edge/<kind>."""
    root = os.environ.get("GLONET_CACHE_DIR")
    if root:
        return Path(root) / kind
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "glonet-edge" / kind


def as_feed(array: Any, name: str, expected_rank: int | None = None) -> np.ndarray:
    """float32, C-contiguous view/copy of one input, with a clear error for wrong types."""
    if not isinstance(array, np.ndarray):
        try:
            array = np.asarray(array)
        except Exception as exc:  # pragma: no cover - exotic inputs
            raise ConfigError(f"input {name!r} cannot be converted to a numpy array: {exc}") from exc
    if not np.issubdtype(array.dtype, np.number):
        raise ConfigError(f"input {name!r} must be numeric, got dtype {array.dtype}")
    if expected_rank is not None and array.ndim != expected_rank:
        raise ConfigError(f"input {name!r} must have rank {expected_rank} (batch first), got shape {array.shape}")
    return np.ascontiguousarray(array, dtype=np.float32)


class CompiledModel(ABC):
    """A loaded, ready-to-run artifact. `run` MUST be safe to call from many threads at once."""

    input_names: list[str]
    output_names: list[str]
    precision: str
    target: str

    def check_feeds(self, feeds: dict[str, Any]) -> dict[str, np.ndarray]:
        if not isinstance(feeds, dict):
            raise ConfigError(f"feeds must be a dict {{input name: array}}, got {type(feeds).__name__}")
        missing = [n for n in self.input_names if n not in feeds]
        extra = [n for n in feeds if n not in self.input_names]
        if missing or extra:
            raise ConfigError(f"{self.target} model expects inputs {self.input_names}; missing {missing}, unexpected {extra}")
        return {n: as_feed(feeds[n], n) for n in self.input_names}

    @abstractmethod
    def run(self, feeds: dict[str, Any]) -> list[np.ndarray]:
        """Outputs as numpy arrays, in `output_names` order (never views of engine buffers)."""

    def run_validated(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """`run` for feeds the caller has already checked (float32, C-contiguous, every input
        named): the runtime validates once at its boundary and skips a second pass here."""
        return self.run(feeds)

    @abstractmethod
    def raw_callable(self) -> Callable[[dict[str, np.ndarray]], Any]:
        """The fastest direct engine call on the same compiled model, for measuring the
        runtime's overhead against the raw engine. Not thread-safe unless stated; feeds must
        already be float32 and contiguous; what it returns is engine-specific."""

    def close(self) -> None:
        """Release engine resources (idempotent)."""

    def __enter__(self) -> "CompiledModel":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.target}/{self.precision} in={self.input_names} out={self.output_names}>"


class FixedFeeds(CompiledModel):
    """`model` with some inputs always fed the same values: the family graph's `depth`, one view
    per depth (export/family_graph.py). Views share the engine model, so they cost no memory, and
    closing one leaves the model to the others; callers feed the remaining inputs."""

    def __init__(self, model: CompiledModel, fixed: dict[str, np.ndarray]):
        self.model, self.fixed = model, fixed
        self.target, self.precision = model.target, model.precision
        self.input_names = [n for n in model.input_names if n not in fixed]
        self.output_names = model.output_names

    def run(self, feeds: dict[str, Any]) -> list[np.ndarray]:
        return self.model.run_validated({**self.check_feeds(feeds), **self.fixed})

    def run_validated(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self.model.run_validated({**feeds, **self.fixed})

    def raw_callable(self) -> Callable[[dict[str, np.ndarray]], Any]:
        raw, fixed = self.model.raw_callable(), self.fixed
        return lambda feeds: raw({**feeds, **fixed})


class Target(ABC):
    """One deployment backend. Subclasses set the class attributes and implement the methods."""

    name: str = ""
    precisions: tuple[str, ...] = ()
    devices: tuple[str, ...] = ()  # accepted device names ("" = target default)
    default_device: str = "CPU"
    artifact_format: str = ""  # manifest Artifact.format of what build() makes
    library: str = ""  # import name of the engine library
    extra: str = ""  # pip extra that installs it: pip install glonet-edge[<extra>]
    family_graph_depths: int | None = None  # most depths of a family graph it loads in reasonable time (None: no limit)

    # ---- availability ---------------------------------------------------------------------
    def available(self) -> bool:
        """True when the engine library can be imported here (no other side effects)."""
        import importlib.util

        try:
            return importlib.util.find_spec(self.library) is not None
        except (ImportError, ValueError):
            return False

    def require(self):
        """Import the engine library or raise MissingDependencyError naming the extra."""
        from ..errors import require

        return require(self.library, self.extra)

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """Library versions and devices, for the manifest and `glonet inspect`."""

    # ---- argument checks shared by all targets -------------------------------------------
    def check_precision(self, precision: str) -> str:
        if precision not in PRECISIONS:
            raise ConfigError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
        if precision not in self.precisions:
            raise ConfigError(f"target {self.name!r} does not support precision {precision!r}; "
                              f"it supports {', '.join(self.precisions)}")
        return precision

    def check_available(self, device: str) -> None:
        """Raise ConfigError when `device` is a valid name but not present on this machine."""

    def check_device(self, device: str | None) -> str:
        device = (device or self.default_device).upper()
        base = device.split(":")[0].split(".")[0]
        if base not in self.devices:
            raise ConfigError(f"unknown device {device!r} for target {self.name!r}; use one of {', '.join(self.devices)}")
        return device

    # ---- the work ---------------------------------------------------------------------------
    def artifact_paths(self, out_dir: Path, stem: str, precision: str) -> list[Path]:
        """Files build() will write for `stem` (main file first, companions after)."""
        return [Path(out_dir) / f"{stem}.{precision}.{self.artifact_format}"]

    @abstractmethod
    def build(self, onnx_path: str | Path, out_dir: str | Path, precision: str, **options: Any) -> list[Path]:
        """Compile an ONNX graph into artifact file(s) in out_dir; returns [main, *companions]."""

    @abstractmethod
    def load(self, artifact_path: str | Path, precision: str, **options: Any) -> CompiledModel:
        """Load an artifact (from build) for inference."""

    def serving_artifact(self, entry: Any, precision: str) -> Any:
        """The manifest Artifact of `entry` (a depth or segment) this target serves at `precision`."""
        return entry.artifact(self.artifact_format, precision)

    def serves_format(self, format: str) -> bool:
        """Whether load() takes artifacts of this manifest format."""
        return format == self.artifact_format

    def artifact_extra(self, precision: str, **options: Any) -> dict[str, Any]:
        """Metadata recorded in the manifest next to each artifact this target builds."""
        return {}

    def check_artifact(self, extra: dict[str, Any], **options: Any) -> None:
        """Refuse (ArtifactError) an artifact built for another engine version / device; `options`
        are the load options (e.g. device) it is about to be loaded with."""

    def manifest_info(self, **options: Any) -> dict[str, Any]:
        """What `compile` records under manifest.targets[name]."""
        return self.describe()

    def family(self, device: str, **options: Any) -> "FamilyBuilder":
        """How `glonet compile` builds a family of graphs for this target (see FamilyBuilder)."""
        return FamilyBuilder(self, device, options)


class FamilyBuilder:
    """Builds one family (every depth and segment) for targets/compile.py.

    The defaults share nothing between builds; a target whose builds share state (TensorRT: one
    timing cache, one trtexec script, a per-GPU engine directory) returns its own subclass from
    Target.family."""

    load_options: tuple[str, ...] = ("threads", "cache_dir", "config")  # compile options load() also takes

    def __init__(self, target: Target, device: str, options: dict[str, Any]):
        self.target = target
        self.device = device
        self.options = {k: v for k, v in options.items() if k != "device"}

    @property
    def subdir(self) -> str:
        """Where the family's artifacts live inside the bundle."""
        return self.target.name

    def refuse(self, source_extra: dict[str, Any], precision: str) -> str | None:
        """A reason not to build from this source graph (None = fine)."""
        return None

    def prepare(self, stage: Path, manifest: Any, depths: list[int], precisions: list[str]) -> list[dict[str, Any]]:
        """Before the first build: make what the family's sources need (in the staged bundle);
        returns rows for compile's JSON result."""
        return []

    def source(self, entry: Any, precision: str) -> Any:
        """The manifest Artifact a build at `precision` starts from: the graph provenance judges
        its freshness against."""
        from ..provenance import source_graph

        return source_graph(entry, precision)

    def build(self, onnx_path: Path, out_dir: Path, precision: str, stem: str) -> list[Path]:
        """One graph of the family: Target.build with the family's options."""
        return self.target.build(onnx_path, out_dir, precision, stem=stem, device=self.device, **self.options)

    def load(self, artifact_path: Path, precision: str) -> CompiledModel:
        """Load what build() made, with the compile options that load() also takes."""
        opts = {k: v for k, v in self.options.items() if k in self.load_options}
        return self.target.load(artifact_path, precision, device=self.device, **opts)

    def finish(self, out_dir: Path) -> dict[str, Path]:
        """After the last build: write family-wide files; returns {label: path} to record."""
        return {}

    def result(self) -> dict[str, Any]:
        """Extra keys for compile's JSON result."""
        return {}


class RequestPool:
    """A tiny pool of per-call engine contexts (TensorRT execution contexts with their buffers):
    a thread takes one, uses it, gives it back; new ones are made on demand, so concurrency is
    bounded only by the number of calling threads. Contexts the pool drops (the idle list is
    full, or they come back after clear()) go to `dispose`, which frees what they hold."""

    def __init__(self, factory: Callable[[], Any], max_idle: int = 16,
                 dispose: Callable[[Any], None] | None = None):
        self._factory = factory
        self._dispose = dispose or (lambda item: None)
        self._idle: list[Any] = []
        self._lock = threading.Lock()
        self._max_idle = max_idle
        self._cleared = False
        self.created = 0

    def acquire(self) -> Any:
        with self._lock:
            if self._idle:
                return self._idle.pop()
            self._cleared = False  # used again after clear(): contexts are made on demand
            self.created += 1
        return self._factory()

    def release(self, item: Any) -> None:
        with self._lock:
            if not self._cleared and len(self._idle) < self._max_idle:
                self._idle.append(item)
                return
        self._dispose(item)

    def clear(self) -> None:
        with self._lock:
            self._cleared = True
            idle, self._idle = self._idle, []
        for item in idle:
            self._dispose(item)

    @property
    def idle(self) -> int:
        return len(self._idle)
