"""`glonet compile`: one driver for every target (targets are interchangeable behind base.Target).

For each selected depth and precision it picks the source graph (fp32/fp16 <- the fp32 ONNX,
int8 <- the QDQ ONNX from `glonet quantize`), asks the target's family builder to build it,
records the artifact (sha256, companions, target metadata, and the sha256 of the graph it was
built from with the tool versions: provenance.py) in the manifest, loads it back and
compares it with onnxruntime on the fp32 graph (a few held-out samples when the data set loads,
random inputs otherwise). Segments are compiled too (fp32 always when asked; int8 where
`quantize --segments` made int8 segment graphs). Everything happens in a staged copy of the
bundle that is swapped in only at the end: a failure at any depth leaves the previous bundle
untouched.

Results: manifest.targets[<target>] (versions, device, settings) and BUNDLE/compile_<target>.json.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..compare import Comparison, compare, cpu_session, tolerance
from ..errors import ArtifactError, ConfigError
from ..fileio import atomic_write_json, staged_directory
from ..manifest import Artifact, BundleManifest
from ..progress import progress_bar
from ..provenance import source_extra, source_graph
from . import get_target
from .base import PRECISIONS, FamilyBuilder, Target


def parse_precisions(value: str | Sequence[str]) -> list[str]:
    items = [p.strip().lower() for p in (value.split(",") if isinstance(value, str) else value) if p.strip()]
    if not items:
        raise ConfigError("no precision given; use e.g. --precision fp32,fp16,int8")
    bad = [p for p in items if p not in PRECISIONS]
    if bad:
        raise ConfigError(f"unknown precision {bad[0]!r}; use one of {', '.join(PRECISIONS)}")
    return list(dict.fromkeys(items))


def sample_inputs(manifest: BundleManifest, n: int = 32, seed: int = 0) -> np.ndarray:
    """Held-out samples when the bundle's data set loads here, else seeded random inputs."""
    try:
        from ..data import load_recorded

        d = manifest.model.get("data") or {}
        data = load_recorded(d["dataset"], d)
        if list(data.x_val.shape[1:]) == list(manifest.input_shape):
            return np.ascontiguousarray(data.x_val[:n])
    except Exception:
        pass
    return np.random.default_rng(seed).normal(size=(n, *manifest.input_shape)).astype(np.float32)


def check_outputs(outs: list[np.ndarray], ref: np.ndarray, task: str, precision: str) -> Comparison:
    """The artifact's last output against `ref`, onnxruntime's on the fp32 graph: within the fp32
    tolerance for fp32 artifacts; fp16 / int8 are recorded (error, top-1 agreement), not judged."""
    return compare(outs[-1], ref, tolerance=tolerance(task, ref) if precision == "fp32" else None)


class _FamilyCompile:
    """The builds of one `compile_bundle` call, inside the staged bundle."""

    def __init__(self, family: FamilyBuilder, bundle_dir: Path, manifest: BundleManifest, stage: Path,
                 inputs: np.ndarray | None):
        self.family, self.target = family, family.target
        self.bundle_dir, self.manifest, self.stage, self.inputs = bundle_dir, manifest, stage, inputs
        self.out_dir = stage / family.subdir
        self._references: dict[Path, np.ndarray] = {}  # fp32 graph -> its output on `inputs`, once per graph

    def source_or_skip(self, kind: str, index: int, entry: Any, precision: str) -> tuple[Artifact | None, str | None]:
        """(the graph to build from, None), or (None, why this build is skipped)."""
        if precision == "int8" and getattr(entry, "rejected", {}).get("int8"):
            return None, f"int8 rejected by quantize: {entry.rejected['int8']}"
        src_art = self.family.source(entry, precision)
        if src_art is None:
            if precision == "int8":
                raise ConfigError(f"{kind} {index} has no int8 QDQ graph; run `glonet quantize {self.bundle_dir}` first")
            raise ArtifactError(f"{kind} {index} has no fp32 ONNX graph; re-run `glonet export`")
        reason = self.family.refuse(src_art.extra, precision)
        return (None, reason) if reason else (src_art, None)

    def build(self, kind: str, index: int, entry: Any, stem: str, precision: str) -> dict[str, Any]:
        row: dict[str, Any] = {kind: index, "precision": precision, "target": self.target.name}
        src_art, reason = self.source_or_skip(kind, index, entry, precision)
        if src_art is None:
            row.update(status="skipped", reason=reason)
            return row
        src = src_art.resolve(self.stage)  # sha256 checked before anything is built from it
        t0 = time.perf_counter()
        files = self.family.build(src, self.out_dir, precision, stem)
        row["build_s"] = time.perf_counter() - t0
        art = self.record(entry, src_art, files, precision)
        row.update(status="ok", path=art.path, bytes=art.total_bytes)
        if self.inputs is not None and list(getattr(entry, "inputs", [self.manifest.input_name])) == [self.manifest.input_name]:
            row.update(self.verify(entry, files[0], precision))
        return row

    def record(self, entry: Any, src_art: Artifact, files: list[Path], precision: str) -> Artifact:
        if self.target.artifact_format == "onnx":
            return src_art  # the graph itself is the artifact
        # The graph it is built from and the tool versions: an engine of an older graph is never served.
        extra = source_extra(src_art, self.target.artifact_extra(precision, files=files))
        art = Artifact.from_file(self.stage, files[0], self.target.artifact_format, precision, extra=extra,
                                 companions=files[1:])
        entry.set_artifact(art)
        return art

    def verify(self, entry: Any, artifact: Path, precision: str) -> dict[str, Any]:
        feeds = {self.manifest.input_name: self.inputs}
        with self.family.load(artifact, precision) as model:
            outs = model.run(feeds)
        c = check_outputs(outs, self.reference(source_graph(entry, "fp32").resolve(self.stage), feeds),
                          self.manifest.task, precision)
        return {"max_abs_err": c.max_abs_err, "tolerance": c.tolerance, "top1_agreement": c.top1_agreement, "ok": c.ok}

    def reference(self, graph: Path, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """onnxruntime's last output of the fp32 `graph` on the fixed check inputs, computed once
        for every precision built from it."""
        if graph not in self._references:
            self._references[graph] = cpu_session(graph, threads=1).run(None, feeds)[-1]
        return self._references[graph]

    def every_graph(self, depths: list[int], precisions: list[str], segments: bool, bar: Any) -> list[dict[str, Any]]:
        rows = []
        for d in depths:
            for p in precisions:
                rows.append(self.build("depth", d, self.manifest.depth(d), f"depth_{d:03d}", p))
                if bar is not None:
                    bar.update(1)
        for s in (self.manifest.segments if segments else []):
            for p in precisions:
                if p == "int8" and s.artifact("onnx", "int8") is None:
                    continue  # int8 segments exist only after `quantize --segments`
                rows.append(self.build("segment", s.index, s, f"segment_{s.index:02d}", p))
        return rows


def _checked_target(target: str, precisions: Sequence[str], device: str | None) -> tuple[Target, list[str], str]:
    t = get_target(target)
    t.require()  # MissingDependencyError naming the extra
    precisions = parse_precisions(precisions)
    for p in precisions:
        t.check_precision(p)
    device = t.check_device(device)
    t.check_available(device)
    return t, precisions, device


def compile_bundle(bundle_dir: str | Path, target: str, precisions: Sequence[str] = ("fp32",), device: str | None = None,
                   depths: Sequence[int] | None = None, segments: bool = True, verify: bool = True,
                   progress: bool = True, **options: Any) -> dict[str, Any]:
    t, precisions, device = _checked_target(target, precisions, device)
    bundle_dir = Path(bundle_dir)
    manifest = BundleManifest.load(bundle_dir)
    selected = list(depths) if depths else manifest.depth_values()
    for d in selected:
        manifest.depth(d)
    started = time.perf_counter()
    bar = progress_bar(len(selected) * len(precisions), f"compile {t.name}", "graph", progress)
    with staged_directory(bundle_dir) as stage:
        inputs = sample_inputs(manifest) if verify else None
        run = _FamilyCompile(t.family(device, **options), bundle_dir, manifest, stage, inputs)
        flavours = run.family.prepare(stage, manifest, selected, precisions)
        rows = run.every_graph(selected, precisions, segments, bar)
        info = t.manifest_info(device=device, precision=precisions[0], precisions=precisions, **options)
        info.update({"precisions": precisions, "depths": selected, "subdir": run.family.subdir,
                     "compiled_with": f"glonet-edge {__import__('glonet_edge').__version__}"})
        extra_files = run.family.finish(run.out_dir)
        if extra_files:
            info["files"] = {k: str(Path(v).resolve().relative_to(stage.resolve())) for k, v in extra_files.items()}
        manifest.targets[t.name] = info
        manifest.save(stage)
        result = {"bundle": str(bundle_dir), "target": t.name, "device": device, "precisions": precisions,
                  "seconds": time.perf_counter() - started, "rows": rows, "target_info": info, **run.family.result()}
        if flavours:
            result["made_int8_flavours"] = flavours
        atomic_write_json(stage / f"compile_{t.name}.json", result)
    if bar is not None:
        bar.close()
    return result
