"""Bundle manifest: the one file that describes a family of depth-truncated graphs.

Contract (docs/architecture.md, "File contracts"): `schema_version`, the model config, the
source checkpoint sha256 and `depths`, a list of entries with `depth`, `params`, `macs`,
`artifacts`, `metrics`, and once profiled `latency_ms` / `energy_mj`. Every artifact path is
relative to the bundle and checked by sha256 on load.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import __version__
from .errors import ArtifactError, ConfigError
from .fileio import atomic_write_json, confined_path, read_json, sha256_file

if TYPE_CHECKING:
    from .exits import ExitCalibration

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"


def _expect(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(f"manifest: {msg}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    # Ints are bounded by hand: math.isfinite(10**400) raises OverflowError.
    if isinstance(v, int) and not isinstance(v, bool):
        return abs(v) < 2**1023
    return isinstance(v, float) and math.isfinite(v)


# The family graph (export/family_graph.py): every depth in one ONNX graph, one output per
# depth, recorded on the deepest depth's entry. Its own format so that lookups of a depth's
# "onnx" graph never return it.
FAMILY_FORMAT = "onnx-family"
# Each depth of a family graph but the deepest nests one If (three protobuf levels) in the
# previous; onnx and the engines parse at most 100 levels: 32 depths load, 33 do not (measured).
MAX_FAMILY_DEPTHS = 32
FAMILY_DEPTH_INPUT = "depth"  # the family graph's second input: the depth to answer (int64 scalar)


def family_depth_feed(depth: int) -> Any:
    """The value of the family graph's FAMILY_DEPTH_INPUT that makes it answer `depth`."""
    import numpy as np

    return np.array(depth, np.int64)
# ONNX Runtime's own int8 graph (quantize/flavours.py), quantized from the fp32 graph and served by
# the onnxruntime target only.
ORT_FORMAT = "onnxruntime"


@dataclass
class Artifact:
    """One file of the bundle: an ONNX graph, an OpenVINO IR, a TensorRT plan, ..."""

    format: str  # "onnx" | "openvino" | "tensorrt" | ...
    precision: str  # "fp32" | "fp16" | "int8"
    path: str  # relative to the bundle directory
    sha256: str
    bytes: int
    extra: dict[str, Any] = field(default_factory=dict)  # target metadata, e.g. TRT version
    # Side files the main file needs (an IR's .bin, ONNX external data): [{path, sha256, bytes}]
    companions: list[dict[str, Any]] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        """Bytes on disk of the file and its side files: what loading the artifact reads."""
        return self.bytes + sum(c["bytes"] for c in self.companions)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        for key in ("extra", "companions"):
            if not d[key]:
                d.pop(key)
        return d

    @classmethod
    def from_json(cls, d: Any) -> "Artifact":
        _expect(isinstance(d, dict), f"artifact must be an object, got {type(d).__name__}")
        for key, kind in (("format", str), ("precision", str), ("path", str), ("sha256", str)):
            _expect(isinstance(d.get(key), kind), f"artifact field '{key}' missing or not a {kind.__name__}: {d!r}")
        _expect(_is_int(d.get("bytes")) and d["bytes"] >= 0, f"artifact 'bytes' must be a non-negative int: {d!r}")
        _expect(len(d["sha256"]) == 64 and all(c in "0123456789abcdef" for c in d["sha256"]),
                f"artifact sha256 {d['sha256']!r} is not 64 lowercase hex digits")
        extra = d.get("extra", {})
        _expect(isinstance(extra, dict), "artifact 'extra' must be an object")
        companions = d.get("companions", [])
        _expect(isinstance(companions, list), "artifact 'companions' must be a list")
        for c in companions:
            _expect(isinstance(c, dict) and isinstance(c.get("path"), str) and isinstance(c.get("sha256"), str)
                    and _is_int(c.get("bytes")), f"companion entry {c!r} needs path, sha256 and bytes")
        return cls(d["format"], d["precision"], d["path"], d["sha256"], d["bytes"], dict(extra),
                   [dict(c) for c in companions])

    @classmethod
    def from_file(cls, bundle_dir: str | Path, path: Path, format: str, precision: str,
                  extra: dict[str, Any] | None = None, companions: list[Path] = ()) -> "Artifact":
        root = Path(bundle_dir).resolve()
        rel = lambda p: Path(p).resolve().relative_to(root).as_posix()  # noqa: E731
        return cls(format, precision, rel(path), sha256_file(path), Path(path).stat().st_size, dict(extra or {}),
                   [{"path": rel(c), "sha256": sha256_file(c), "bytes": Path(c).stat().st_size} for c in companions])

    def resolve(self, bundle_dir: str | Path, verify: bool = True) -> Path:
        """Absolute path of the artifact inside the bundle; it and its companions are checked
        against the recorded size and sha256."""
        files = [(self.path, self.bytes, self.sha256)] + [(c["path"], c["bytes"], c["sha256"]) for c in self.companions]
        resolved = []
        for rel, nbytes, digest in files:
            p = confined_path(bundle_dir, rel)
            try:
                if not p.is_file():
                    raise ArtifactError(f"artifact {rel} listed in the manifest is missing from {bundle_dir}; "
                                        "re-run the stage that makes it (export / quantize / compile).")
                if verify:
                    size = p.stat().st_size
                    if size != nbytes:
                        raise ArtifactError(f"artifact {rel} has {size} bytes, the manifest says {nbytes}: "
                                            "it was truncated or replaced; re-run the stage that makes it.")
                    if sha256_file(p) != digest:
                        raise ArtifactError(f"artifact {rel} fails its sha256 check (corrupt or swapped); "
                                            "re-run the stage that makes it.")
            except OSError as exc:  # unreadable, name too long, vanished between the checks
                raise ArtifactError(f"artifact {rel[:80]} in {bundle_dir} cannot be read ({exc}); "
                                    "re-run the stage that makes it.") from exc
            resolved.append(p)
        return resolved[0]


def _artifacts_from_json(items: Any, where: str) -> list[Artifact]:
    _expect(isinstance(items, list), f"{where}.artifacts must be a list")
    return [Artifact.from_json(a) for a in items]


class _ArtifactHolder:
    """Lookup and replacement of one entry's artifacts by (format, precision)."""

    artifacts: list[Artifact]

    def artifact(self, format: str, precision: str) -> Artifact | None:
        for a in self.artifacts:
            if a.format == format and a.precision == precision:
                return a
        return None

    def set_artifact(self, artifact: Artifact) -> None:
        self.artifacts = [a for a in self.artifacts
                          if not (a.format == artifact.format and a.precision == artifact.precision)]
        self.artifacts.append(artifact)


@dataclass
class DepthEntry(_ArtifactHolder):
    depth: int
    params: int
    macs: int
    artifacts: list[Artifact] = field(default_factory=list)
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # {precision: {metric: value}}
    latency_ms: dict[str, dict[str, float]] = field(default_factory=dict)  # {"target/precision": {p50, p90, batch}}
    energy_mj: dict[str, float] = field(default_factory=dict)  # {"target/precision": mJ per inference}
    rejected: dict[str, str] = field(default_factory=dict)  # {precision: why it must not be served}
    # {"metrics/<precision>" | "profile/<target>/<precision>": sha256 of the graph it was measured on}
    # (provenance.py): a result measured on an older graph is never used.
    measured_on: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "depth": self.depth,
            "params": self.params,
            "macs": self.macs,
            "artifacts": [a.to_json() for a in self.artifacts],
            "metrics": self.metrics,
        }
        if self.latency_ms:
            d["latency_ms"] = self.latency_ms
        if self.energy_mj:
            d["energy_mj"] = self.energy_mj
        if self.rejected:
            d["rejected"] = self.rejected
        if self.measured_on:
            d["measured_on"] = self.measured_on
        return d

    @classmethod
    def from_json(cls, d: Any) -> "DepthEntry":
        _expect(isinstance(d, dict), f"depth entry must be an object, got {type(d).__name__}")
        for key in ("depth", "params", "macs"):
            _expect(_is_int(d.get(key)) and d[key] >= 0, f"depth entry '{key}' must be a non-negative int: {d.get(key)!r}")
        _expect(d["depth"] >= 1, f"depth must be >= 1, got {d['depth']}")
        metrics = d.get("metrics", {})
        _expect(isinstance(metrics, dict), "depth 'metrics' must be an object")
        for prec, vals in metrics.items():
            _expect(isinstance(vals, dict) and all(isinstance(k, str) and _is_number(v) for k, v in vals.items()),
                    f"metrics[{prec!r}] must map metric names to finite numbers")
        latency = d.get("latency_ms", {})
        _expect(isinstance(latency, dict), "depth 'latency_ms' must be an object")
        for key, vals in latency.items():
            _expect(isinstance(vals, dict) and all(_is_number(v) for v in vals.values()),
                    f"latency_ms[{key!r}] must map p50/p90/batch to numbers")
        energy = d.get("energy_mj", {})
        _expect(isinstance(energy, dict) and all(_is_number(v) for v in energy.values()),
                "depth 'energy_mj' must map 'target/precision' to numbers")
        rejected = d.get("rejected", {})
        _expect(isinstance(rejected, dict) and all(isinstance(v, str) for v in rejected.values()),
                "depth 'rejected' must map precision to a reason string")
        measured_on = d.get("measured_on", {})
        _expect(isinstance(measured_on, dict) and all(isinstance(v, str) for v in measured_on.values()),
                "depth 'measured_on' must map result keys to graph sha256 strings")
        return cls(d["depth"], d["params"], d["macs"], _artifacts_from_json(d.get("artifacts", []), "depth"),
                   {k: dict(v) for k, v in metrics.items()}, {k: dict(v) for k, v in latency.items()},
                   dict(energy), dict(rejected), dict(measured_on))


@dataclass
class SegmentEntry(_ArtifactHolder):
    """Segment j of the anytime chain: runs blocks start_depth+1 .. end_depth.

    Inputs are `inputs` (["x"] for the first segment, the carried state otherwise); outputs
    are the carried state followed by "y", the prediction at end_depth.
    """

    index: int
    start_depth: int
    end_depth: int
    inputs: list[str]
    outputs: list[str]
    artifacts: list[Artifact] = field(default_factory=list)
    macs: int | None = None  # per sample: this segment's blocks and its head (and the stem for the first)

    def to_json(self) -> dict[str, Any]:
        d = {"index": self.index, "start_depth": self.start_depth, "end_depth": self.end_depth,
             "inputs": list(self.inputs), "outputs": list(self.outputs),
             "artifacts": [a.to_json() for a in self.artifacts]}
        if self.macs is not None:
            d["macs"] = self.macs
        return d

    @classmethod
    def from_json(cls, d: Any) -> "SegmentEntry":
        _expect(isinstance(d, dict), "segment entry must be an object")
        for key in ("index", "start_depth", "end_depth"):
            _expect(_is_int(d.get(key)) and d[key] >= 0, f"segment '{key}' must be a non-negative int")
        _expect(d["end_depth"] > d["start_depth"], "segment end_depth must exceed start_depth")
        for key in ("inputs", "outputs"):
            _expect(isinstance(d.get(key), list) and all(isinstance(n, str) for n in d[key]) and d[key],
                    f"segment '{key}' must be a non-empty list of tensor names")
        macs = d.get("macs")
        _expect(macs is None or (_is_int(macs) and macs >= 0), "segment 'macs' must be a non-negative int")
        return cls(d["index"], d["start_depth"], d["end_depth"], list(d["inputs"]), list(d["outputs"]),
                   _artifacts_from_json(d.get("artifacts", []), "segment"), macs)


@dataclass
class BundleManifest:
    model: dict[str, Any]  # the checkpoint's config.json
    source_checkpoint_sha256: str
    input_shape: list[int]  # one sample, without the batch dimension
    task: str  # "classification" | "regression"
    metric_name: str  # higher is better: "accuracy" or "r2"
    depths: list[DepthEntry] = field(default_factory=list)
    segments: list[SegmentEntry] = field(default_factory=list)
    input_name: str = "x"
    output_name: str = "y"
    opset: int = 17
    targets: dict[str, dict[str, Any]] = field(default_factory=dict)  # per-target build info
    exits: dict[str, ExitCalibration] = field(default_factory=dict)  # {precision: early-exit thresholds}
    schema_version: int = SCHEMA_VERSION
    producer: str = f"glonet-edge {__version__}"

    # ---- queries -------------------------------------------------------------------------
    def depth(self, k: int) -> DepthEntry:
        for e in self.depths:
            if e.depth == k:
                return e
        raise ConfigError(f"depth {k} is not in this bundle; available depths: {self.depth_values()}")

    def depth_values(self) -> list[int]:
        return [e.depth for e in self.depths]

    @property
    def max_depth(self) -> int:
        return int(self.model["depth"])

    # ---- (de)serialisation ---------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "producer": self.producer,
            "model": self.model,
            "source_checkpoint_sha256": self.source_checkpoint_sha256,
            "input": {"name": self.input_name, "shape": list(self.input_shape), "dtype": "float32"},
            "output": {"name": self.output_name, "task": self.task},
            "metric_name": self.metric_name,
            "opset": self.opset,
            "depths": [e.to_json() for e in sorted(self.depths, key=lambda e: e.depth)],
            "segments": [s.to_json() for s in self.segments],
            "targets": self.targets,
            **({"exits": {p: e.to_json() for p, e in self.exits.items()}} if self.exits else {}),
        }

    @classmethod
    def from_json(cls, d: Any) -> "BundleManifest":
        _expect(isinstance(d, dict), f"top level must be an object, got {type(d).__name__}")
        version = d.get("schema_version")
        _expect(_is_int(version), f"'schema_version' missing or not an int: {version!r}")
        if version > SCHEMA_VERSION:
            raise ConfigError(
                f"manifest: bundle schema_version {version} was written by a newer glonet-edge "
                f"({d.get('producer', 'unknown producer')}); this is {__version__}, which reads schema "
                f"<= {SCHEMA_VERSION}. Upgrade with `pip install -U glonet-edge` or re-export the bundle."
            )
        _expect(version >= 1, f"schema_version must be >= 1, got {version}")
        model = d.get("model")
        _expect(isinstance(model, dict) and isinstance(model.get("model"), str) and _is_int(model.get("depth")),
                "'model' must be the checkpoint config with 'model' (name) and 'depth'")
        sha = d.get("source_checkpoint_sha256")
        _expect(isinstance(sha, str), "'source_checkpoint_sha256' must be a string")
        inp = d.get("input")
        _expect(isinstance(inp, dict) and isinstance(inp.get("shape"), list)
                and all(_is_int(s) and s > 0 for s in inp["shape"]) and isinstance(inp.get("name", "x"), str),
                "'input' must have a 'shape' list of positive ints")
        out = d.get("output")
        _expect(isinstance(out, dict) and out.get("task") in ("classification", "regression")
                and isinstance(out.get("name", "y"), str),
                "'output.task' must be 'classification' or 'regression' (and 'output.name' a string)")
        _expect(isinstance(d.get("metric_name"), str), "'metric_name' must be a string")
        depths = d.get("depths")
        _expect(isinstance(depths, list), "'depths' must be a list")
        entries = [DepthEntry.from_json(e) for e in depths]
        values = [e.depth for e in entries]
        _expect(len(set(values)) == len(values), f"duplicate depths in 'depths': {values}")
        _expect(all(v <= model["depth"] for v in values), f"depths {values} exceed the model depth {model['depth']}")
        segments = d.get("segments", [])
        _expect(isinstance(segments, list), "'segments' must be a list")
        segs = [SegmentEntry.from_json(s) for s in segments]
        for i, s in enumerate(segs):
            _expect(s.index == i, "segments must be listed in order with index 0, 1, 2, ...")
            _expect(s.start_depth == (segs[i - 1].end_depth if i else 0), "segments must chain without gaps")
        targets = d.get("targets", {})
        _expect(isinstance(targets, dict), "'targets' must be an object")
        opset = d.get("opset", 17)
        _expect(_is_int(opset), "'opset' must be an int")
        return cls(model=dict(model), source_checkpoint_sha256=sha, input_shape=list(inp["shape"]),
                   task=out["task"], metric_name=d["metric_name"], depths=entries, segments=segs,
                   input_name=inp.get("name", "x"), output_name=out.get("name", "y"), opset=opset,
                   targets=dict(targets), exits=_exits_from_json(d.get("exits", {}), segs),
                   schema_version=version, producer=str(d.get("producer", "")))

    # ---- files -----------------------------------------------------------------------------
    def save(self, bundle_dir: str | Path) -> Path:
        path = Path(bundle_dir) / MANIFEST_NAME
        atomic_write_json(path, self.to_json())
        return path

    @classmethod
    def load(cls, bundle_dir: str | Path) -> "BundleManifest":
        bundle_dir = Path(bundle_dir)
        if bundle_dir.is_file():
            raise ArtifactError(f"{bundle_dir} is a file, not a bundle; pass the directory that holds {MANIFEST_NAME}.")
        if not bundle_dir.is_dir():
            raise ArtifactError(f"bundle directory {bundle_dir} does not exist; create it with `glonet export RUN --out {bundle_dir}`.")
        return cls.from_json(read_json(bundle_dir / MANIFEST_NAME, "bundle manifest"))

    def all_artifacts(self) -> list[Artifact]:
        return [a for e in self.depths for a in e.artifacts] + [a for s in self.segments for a in s.artifacts]

    def verify(self, bundle_dir: str | Path) -> None:
        """Check every artifact exists inside the bundle with the recorded size and sha256."""
        for a in self.all_artifacts():
            a.resolve(bundle_dir, verify=True)


def _exits_from_json(d: Any, segments: list[SegmentEntry]) -> dict[str, ExitCalibration]:
    """Early-exit thresholds per precision; their checks and caps must be segment ends."""
    from .exits import ExitCalibration  # exits.py imports this module's validators

    _expect(isinstance(d, dict), "'exits' must map precision to thresholds")
    ends = {s.end_depth for s in segments}
    out = {}
    for precision, record in d.items():
        calibration = ExitCalibration.from_json(record, f"exits[{str(precision)[:20]!r}]")
        depths = set(calibration.checks) | {p.max_depth for p in calibration.points}
        _expect(depths <= ends, f"exits[{precision!r}] names depths {sorted(depths - ends)} that end no segment")
        out[precision] = calibration
    return out
