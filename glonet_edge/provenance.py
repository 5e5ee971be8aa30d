"""Provenance: nothing stale is served (docs/targets.md, "Provenance: nothing stale").

A compiled artifact (an OpenVINO IR, a TensorRT engine) is only as good as the ONNX graph it
was built from. `glonet compile` records in its Artifact.extra:
- `onnx_sha256`: the sha256 of that graph (the key TensorRT's engine metadata already used),
- `onnx_path`: where the graph is in the bundle,
- `glonet_edge` and the engine library's version under its own name (`openvino`, `tensorrt`).
Results measured on a graph record its sha256 too: DepthEntry.measured_on maps
"metrics/<precision>" and "profile/<target>/<precision>" to it, ExitCalibration.graphs maps
each segment graph of the calibrated chain to it.

An artifact is fresh when its recorded source sha256 is the current graph's for its precision
(int8 <- the QDQ graph, fp32 / fp16 <- the fp32 graph). One without a recorded sha256 (built
by an older glonet-edge) has unknown provenance: it is refused too, since nothing proves it
fresh. Results without a recorded sha256 are used as before (they only inform the policy);
results whose sha256 is not the current graph's are ignored and dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from .errors import ArtifactError
from .fileio import confined_path
from .manifest import FAMILY_FORMAT, ORT_FORMAT, Artifact, BundleManifest, SegmentEntry

SOURCE_SHA = "onnx_sha256"
SOURCE_PATH = "onnx_path"
UNKNOWN = "unknown provenance: built by a glonet-edge that did not record its source graph's sha256"


# ONNX Runtime's own int8 graph (quantize/flavours.py) is quantized from the fp32 graph, not
# from the TensorRT QDQ graph.
FROM_FP32_FORMATS = (ORT_FORMAT,)
# ONNX graphs that export writes and that run as they are: their own source.
GRAPH_FORMATS = ("onnx", FAMILY_FORMAT)
# Every ONNX graph export or quantize writes into the bundle; the other formats are compiled from them.
WRITTEN_FORMATS = (*GRAPH_FORMATS, *FROM_FP32_FORMATS)


def source_graph(holder: Any, precision: str, fmt: str = "") -> Artifact | None:
    """The ONNX graph an artifact of `precision` (and format `fmt`) is built from: the QDQ graph
    for int8 engines, else the fp32 graph."""
    int8_qdq = precision == "int8" and fmt not in FROM_FP32_FORMATS
    return holder.artifact("onnx", "int8" if int8_qdq else "fp32")


def current_sha(holder: Any, precision: str) -> str | None:
    src = source_graph(holder, precision)
    return None if src is None else src.sha256


def built_from(artifact: Artifact) -> str | None:
    """The sha256 of the graph `artifact` runs: itself for an ONNX graph (ONNX Runtime's int8
    flavour included), the recorded source otherwise."""
    if artifact.format in WRITTEN_FORMATS:
        return artifact.sha256
    return recorded_source(artifact)


def recorded_source(artifact: Artifact) -> str | None:
    """The sha256 of the graph an engine (or a flavour graph) was made from, as recorded then."""
    sha = artifact.extra.get(SOURCE_SHA)
    return sha if isinstance(sha, str) else None


def source_extra(source: Artifact, tools: dict[str, Any]) -> dict[str, Any]:
    """What compile adds to a compiled artifact's extra: its source graph and the versions that built it."""
    from . import __version__

    return {**tools, SOURCE_SHA: source.sha256, SOURCE_PATH: source.path, "glonet_edge": __version__}


def compile_command(bundle: str | Path, artifact: Artifact) -> str:
    # A compiled artifact's format is the name of the target that builds it (openvino, tensorrt).
    return f"glonet compile {bundle} --target {artifact.format} --precision {artifact.precision}"


@dataclass(frozen=True)
class Stale:
    """A compiled artifact that cannot be proven built from its holder's current graph."""

    holder: Any  # the DepthEntry / SegmentEntry that lists it
    artifact: Artifact
    reason: str
    provable: bool  # False: unknown provenance (nothing recorded), True: known to be built from another graph

    @property
    def where(self) -> str:
        """"depth 4" | "segment 1"."""
        return holder_name(self.holder)

    def message(self, bundle: str | Path) -> str:
        a = self.artifact
        return (f"{self.where} {a.format}/{a.precision} {a.path} is stale ({self.reason}); rebuild it with "
                f"`{compile_command(bundle, a)}`")


def staleness(holder: Any, artifact: Artifact) -> tuple[str, bool] | None:
    """(why, provable) when `artifact` is not proven built from the holder's current graph; None if it is."""
    if artifact.format in GRAPH_FORMATS:
        return None  # a graph that export wrote is its own source
    src = source_graph(holder, artifact.precision, artifact.format)
    if src is None:
        return f"its source {artifact.precision} ONNX graph is no longer in the bundle", True
    built = recorded_source(artifact)
    if built is None:
        return UNKNOWN, False
    if built != src.sha256:
        return f"built from an older {src.path}: sha256 {built[:12]}, the graph is now {src.sha256[:12]}", True
    return None


def holder_name(holder: Any) -> str:
    """How messages name a depth or segment entry of the manifest."""
    return f"segment {holder.index}" if isinstance(holder, SegmentEntry) else f"depth {holder.depth}"


def holders(manifest: BundleManifest) -> Iterator[Any]:
    """The manifest's depth entries, shallowest first, then its segment entries."""
    yield from sorted(manifest.depths, key=lambda e: e.depth)
    yield from manifest.segments


def stale_artifacts(manifest: BundleManifest) -> list[Stale]:
    found = []
    for holder in holders(manifest):
        for a in holder.artifacts:
            why = staleness(holder, a)
            if why is not None:
                found.append(Stale(holder, a, *why))
    return found


def check_fresh(bundle: str | Path, holder: Any, artifact: Artifact) -> None:
    """ArtifactError (one line, with the compile command) unless `artifact` is built from the current graph."""
    why = staleness(holder, artifact)
    if why is not None:
        raise ArtifactError(Stale(holder, artifact, *why).message(bundle))


# ---- results measured on a graph ---------------------------------------------------------------
def metrics_key(precision: str) -> str:
    return f"metrics/{precision}"


def profile_key(target: str, precision: str) -> str:
    return f"profile/{target}/{precision}"


def _parse_key(key: str) -> tuple[str, str | None, str]:
    """(kind, target or None, precision) of a metrics_key / profile_key."""
    kind, *rest = key.split("/")
    return (kind, rest[0], rest[1]) if kind == "profile" else (kind, None, rest[0])


def stamp(entry: Any, key: str, sha: str | None) -> None:
    """Record (or, with None, forget) the graph a result of `entry` was measured on."""
    if sha is None:
        entry.measured_on.pop(key, None)
    else:
        entry.measured_on[key] = sha


def result_is_stale(entry: Any, key: str, precision: str) -> bool:
    """True when the result `key` was measured on a graph that is not the entry's current one
    for `precision`; a result with nothing recorded (an older bundle) is taken as it is."""
    recorded = entry.measured_on.get(key)
    return recorded is not None and recorded != _measured_graph(entry, key, precision)


def _stale_result_keys(entry: Any) -> list[tuple[str, str]]:
    """(key, precision) of each result of `entry` measured on a graph other than its current one, in key order."""
    keyed = [(key, _parse_key(key)[2]) for key in sorted(entry.measured_on)]
    return [(key, precision) for key, precision in keyed if result_is_stale(entry, key, precision)]


def _measured_graph(entry: Any, key: str, precision: str) -> str | None:
    """The sha256 of the graph a result `key` is measured on today: ONNX Runtime's own int8
    graph where the entry has one (that is what it profiles), else the source graph."""
    kind, target, _ = _parse_key(key)
    own = entry.artifact(ORT_FORMAT, precision) if kind == "profile" and target == "onnxruntime" else None
    return own.sha256 if own is not None else current_sha(entry, precision)


def _result_fix(bundle: str | Path, key: str) -> str:
    kind, target, precision = _parse_key(key)
    if kind == "profile":
        return f"glonet profile {bundle} --target {target} --precision {precision}"
    return f"glonet quantize {bundle}" if precision == "int8" else f"glonet export RUN --out {bundle}"


def stale_results(manifest: BundleManifest, bundle: str | Path) -> list[str]:
    """One line per stale measured result (metrics, profile latency, exit thresholds), with its fix."""
    lines = []
    for entry in sorted(manifest.depths, key=lambda e: e.depth):
        for key, precision in _stale_result_keys(entry):
            if precision not in entry.rejected:
                lines.append(f"depth {entry.depth} {key} was measured on another graph than the current one; "
                             f"re-measure it with `{_result_fix(bundle, key)}`")
    for precision in stale_exits(manifest):
        lines.append(f"exits {precision} were calibrated on other segment graphs than the current ones; re-run "
                     f"`glonet calibrate {bundle} --precision {precision}`")
    return lines


def chain_graphs(manifest: BundleManifest, chain_precision: str) -> dict[str, str]:
    """{path: sha256} of the segment graphs an exit calibration of `chain_precision` runs."""
    arts = [s.artifact("onnx", chain_precision) for s in manifest.segments]
    return {a.path: a.sha256 for a in arts if a is not None}


def stale_exits(manifest: BundleManifest) -> list[str]:
    """Precisions whose exit thresholds record graphs other than the current chain's."""
    return [p for p, record in sorted(manifest.exits.items())
            if record.graphs and record.graphs != chain_graphs(manifest, record.chain_precision)]


def graph_shas(manifest: BundleManifest) -> dict[str, str]:
    """{path: sha256} of every ONNX graph the manifest lists (to see which ones a stage rewrote)."""
    return {a.path: a.sha256 for a in manifest.all_artifacts() if a.format == "onnx"}


def changed_graphs(before: dict[str, str], manifest: BundleManifest) -> set[str]:
    after = graph_shas(manifest)
    return {path for path, sha in before.items() if after.get(path) != sha}


# ---- pruning (quantize) ---------------------------------------------------------------------------
def prune_stale(bundle: str | Path, manifest: BundleManifest, changed: set[str]) -> list[str]:
    """Remove what no longer belongs to the bundle's graphs, in place (the caller saves the manifest):
    compiled artifacts provably built from another graph, or of unknown provenance when their
    source graph (a path in `changed`) was just rewritten; results measured on other graphs.
    Returns one note per thing removed."""
    notes = []
    for stale in stale_artifacts(manifest):
        a = stale.artifact
        src = source_graph(stale.holder, a.precision, a.format)
        if stale.provable or (src is not None and src.path in changed):
            notes.append(f"{stale.where} {a.format}/{a.precision} {a.path}")
            _remove_artifact(bundle, manifest, stale.holder, a)
    for entry in manifest.depths:
        notes += _drop_stale_results(entry)
    for precision in stale_exits(manifest):
        del manifest.exits[precision]
        notes.append(f"exits {precision}")
    return notes


def _drop_stale_results(entry: Any) -> list[str]:
    notes = []
    for key, _ in _stale_result_keys(entry):
        kind, _, name = key.partition("/")
        if kind == "profile":
            entry.latency_ms.pop(name, None)
            entry.energy_mj.pop(name, None)
        else:
            entry.metrics.pop(name, None)
        del entry.measured_on[key]
        notes.append(f"depth {entry.depth} {key}")
    return notes


def _remove_artifact(bundle: str | Path, manifest: BundleManifest, holder: Any, artifact: Artifact) -> None:
    """Drop the entry, then every file of it that no remaining artifact still lists."""
    holder.artifacts = [a for a in holder.artifacts if a is not artifact]
    still_used = {p for a in manifest.all_artifacts() for p in [a.path, *(c["path"] for c in a.companions)]}
    for rel in [artifact.path, *(c["path"] for c in artifact.companions)]:
        if rel not in still_used:
            confined_path(bundle, rel).unlink(missing_ok=True)
