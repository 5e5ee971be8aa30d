"""`glonet compile`: one driver for every target (targets are interchangeable behind base.Target).

For each selected depth and precision it picks the source graph (fp32/fp16 <- the fp32 ONNX,
int8 <- the QDQ ONNX from `glonet quantize`), asks the target to build it, records the artifact
(sha256, companions, target metadata) in the manifest, loads it back and checks it against
onnxruntime on the fp32 graph (a few held-out samples when the data set loads, random inputs
otherwise). Segments are compiled too (fp32 always when asked; int8 where `quantize --segments`
made int8 segment graphs). Everything happens in a staged copy of the bundle that is swapped
in only at the end: a failure at any depth leaves the previous bundle untouched.

Results: manifest.targets[<target>] (versions, device, settings) and BUNDLE/compile_<target>.json.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..progress import progress_bar
from ..errors import ArtifactError, ConfigError
from ..fileio import atomic_write_json, staged_directory
from ..manifest import Artifact, BundleManifest
from . import get_target
from .base import PRECISIONS, Target


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
        from ..data import load_dataset

        d = manifest.model.get("data") or {}
        data = load_dataset(d["dataset"], seed=int(d.get("seed", 0)), val_fraction=float(d.get("val_fraction", 0.2)))
        if list(data.x_val.shape[1:]) == list(manifest.input_shape):
            return np.ascontiguousarray(data.x_val[:n])
    except Exception:
        pass
    return np.random.default_rng(seed).normal(size=(n, *manifest.input_shape)).astype(np.float32)


def _reference(onnx_path: Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    ort_target = get_target("onnxruntime")
    return ort_target.load(onnx_path, "fp32", threads=1).run(feeds)


def check_outputs(outs: list[np.ndarray], ref: list[np.ndarray], task: str) -> dict[str, float]:
    y, r = outs[-1], ref[-1]
    res = {"max_abs_diff": float(np.max(np.abs(y - r))) if y.size else 0.0}
    if task == "classification" and y.ndim == 2:
        res["top1_agreement"] = float(np.mean(np.argmax(y, 1) == np.argmax(r, 1)))
    return res


def _source(entry: Any, precision: str) -> Artifact | None:
    return entry.artifact("onnx", "int8" if precision == "int8" else "fp32")


def compile_bundle(bundle_dir: str | Path, target: str, precisions: Sequence[str] = ("fp32",), device: str | None = None,
                   depths: Sequence[int] | None = None, segments: bool = True, verify: bool = True,
                   progress: bool = True, **options: Any) -> dict[str, Any]:
    t: Target = get_target(target)
    t.require()  # MissingDependencyError naming the extra
    precisions = parse_precisions(precisions)
    for p in precisions:
        t.check_precision(p)
    device = t.check_device(device)
    t.check_available(device)
    bundle_dir = Path(bundle_dir)
    manifest = BundleManifest.load(bundle_dir)
    selected = list(depths) if depths else manifest.depth_values()
    for d in selected:
        manifest.depth(d)
    inputs = sample_inputs(manifest) if verify else None
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    bar = progress_bar(len(selected) * len(precisions), f"compile {t.name}", "graph", progress)

    with staged_directory(bundle_dir) as stage:
        subdir = t.bundle_subdir(device=device, **options)
        out_dir = stage / subdir
        family_opts = t.begin_family(out_dir, device=device, **options)
        builds: list[dict[str, Any]] = []

        def build_one(kind: str, index: int, entry: Any, stem: str, precision: str) -> dict[str, Any]:
            row: dict[str, Any] = {kind: index, "precision": precision, "target": t.name}
            if precision == "int8" and getattr(entry, "rejected", {}).get("int8"):
                row.update(status="skipped", reason=f"int8 rejected by quantize: {entry.rejected['int8']}")
                return row
            src_art = _source(entry, precision)
            if src_art is None:
                if precision == "int8":
                    raise ConfigError(f"{kind} {index} has no int8 QDQ graph; run `glonet quantize {bundle_dir}` first")
                raise ArtifactError(f"{kind} {index} has no fp32 ONNX graph; re-run `glonet export`")
            src = src_art.resolve(stage)  # sha256 checked before anything is built from it
            refuse = t.refuse_source(src_art.extra, precision)
            if refuse:
                row.update(status="skipped", reason=refuse)
                return row
            t0 = time.perf_counter()
            files = t.build(src, out_dir, precision, stem=stem, device=device, **family_opts)
            row["build_s"] = time.perf_counter() - t0
            if t.artifact_format == "onnx":
                art = src_art  # the graph itself is the artifact
            else:
                extra = t.artifact_extra(precision, device=device, source=src_art, files=files, **family_opts)
                art = Artifact.from_file(stage, files[0], t.artifact_format, precision, extra=extra, companions=files[1:])
                entry.set_artifact(art)
            row.update(status="ok", path=art.path, bytes=art.bytes + sum(c["bytes"] for c in art.companions))
            builds.append({"kind": kind, "index": index, "stem": stem, "precision": precision, "source": src,
                           "files": files})
            if verify:
                in_names = list(getattr(entry, "inputs", [manifest.input_name]))
                if in_names == [manifest.input_name]:
                    feeds = {manifest.input_name: inputs}
                    model = t.load(files[0], precision, device=device, **{k: v for k, v in options.items()
                                                                         if k in t.load_options})
                    ref_src = _source(entry, "fp32").resolve(stage)
                    row.update(check_outputs(model.run(feeds), _reference(ref_src, feeds), manifest.task))
                    model.close()
            return row

        for d in selected:
            entry = manifest.depth(d)
            for p in precisions:
                rows.append(build_one("depth", d, entry, f"depth_{d:03d}", p))
                if bar is not None:
                    bar.update(1)
        if segments and manifest.segments:
            for s in manifest.segments:
                for p in precisions:
                    if p == "int8" and s.artifact("onnx", "int8") is None:
                        continue  # int8 segments exist only after `quantize --segments`
                    rows.append(build_one("segment", s.index, s, f"segment_{s.index:02d}", p))
        extra_files = t.end_family(out_dir, builds, device=device, **family_opts)
        info = t.manifest_info(device=device, precision=precisions[0], precisions=precisions, **options)
        info.update({"precisions": precisions, "depths": selected, "subdir": subdir,
                     "compiled_with": f"glonet-edge {__import__('glonet_edge').__version__}"})
        if extra_files:
            info["files"] = {k: str(Path(v).resolve().relative_to(stage.resolve())) for k, v in extra_files.items()}
        manifest.targets[t.name] = info
        manifest.save(stage)
        result = {"bundle": str(bundle_dir), "target": t.name, "device": device, "precisions": precisions,
                  "seconds": time.perf_counter() - started, "rows": rows, "target_info": info}
        result.update(t.family_result(out_dir, builds, **family_opts))
        atomic_write_json(stage / f"compile_{t.name}.json", result)
    if bar is not None:
        bar.close()
    return result
