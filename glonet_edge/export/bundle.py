"""`export_bundle`: a checkpoint or a model in memory (see source.py) -> BUNDLE/ with the
depth family, the segment chain and a checksummed manifest.

    BUNDLE/manifest.json
    BUNDLE/onnx/depth_008.onnx           one graph per exported depth, dynamic batch
    BUNDLE/onnx/family.fp32.bin          only with shared_weights: the family's weights, once
    BUNDLE/onnx/family.fp32.onnx         only with shared_weights: every depth in one graph (family_graph.py)
    BUNDLE/segments/segment_00.onnx ...  the anytime chain, cut at the exported depths
    BUNDLE/export.json                   what export measured: scores, errors, bytes, seconds

Only the depth graphs can share a weights file: the segments already store every block
once, and an external-data location may not leave the model's directory ("..").

The whole bundle is built in a staging directory and swapped in only after every graph
passed the checker and matched torch on held-out data, so a failure at any point leaves
the previous bundle (or nothing) in place.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from .. import __version__
from ..data import score
from ..errors import ConfigError
from ..exit_calibration import calibrate_bundle
from ..fileio import atomic_write_json, staged_directory
from ..manifest import (FAMILY_DEPTH_INPUT, FAMILY_FORMAT, MANIFEST_NAME, MAX_FAMILY_DEPTHS, Artifact, BundleManifest,
                        DepthEntry, SegmentEntry)
from ..progress import progress_bar
from ..provenance import current_sha, metrics_key, stamp
from ..train.models.base import DepthModel, params_and_macs, segment_macs
from . import onnx_export
from .family_graph import FAMILY_GRAPH, check_family_graph, merge_family
from .select import DEFAULT_STEP, resolve_depths
from .source import ExportSource, from_model, from_run
from .verify import FamilyCheck, verify_family

logger = logging.getLogger(__name__)

REPORT_NAME = "export.json"
FAMILY_WEIGHTS = "family.fp32.bin"
# Tensors under 1 KiB (biases, norms) stay inside each graph: padding them to the 4 KiB
# alignment would cost more than storing them once per graph.
SHARE_THRESHOLD = 1024
ALIGN = 4096  # external data offsets aligned for mmap (ONNX ExternalData.md)
MIN_OPSET, MAX_OPSET = 13, 20  # 13: per-channel QDQ for the quantize stage; 20: legacy exporter's top


def depth_graph_path(bundle: Path, depth: int) -> Path:
    return bundle / "onnx" / f"depth_{depth:03d}.onnx"


def segment_path(bundle: Path, index: int) -> Path:
    return bundle / "segments" / f"segment_{index:02d}.onnx"


def export_bundle(source: str | Path | DepthModel, out_dir: str | Path, depths: str | Sequence[int] = "all",
                  opset: int = 17, segments: bool | Sequence[int] = True, progress: bool = True,
                  shared_weights: bool = False, dataset: str | None = None, step: float = DEFAULT_STEP, *,
                  example_input: Any = None, val: Any = None, metric: str | None = None, image_size: int | None = None,
                  origin: dict[str, Any] | None = None) -> BundleManifest:
    """Export a model as a bundle at `out_dir` and return its manifest.

    source: a run directory written by `glonet train`, or a model in memory (a GloNet) with
    `val`, its held-out data: (x, y), a DataLoader of (x, y) batches, or a path to an .npz or
    an image folder (resized to image_size, default the model's). example_input: the tracing
    input (default: val's first rows). metric: "accuracy" or "r2" (default: accuracy for
    integer labels). origin: where the model came from, recorded in the manifest.
    depths: "all", "auto" (Pareto front of score vs MACs in `step`s, see select.py) or a list.
    segments: True cuts the chain at the exported depths, False writes none, a list gives
    the cut points. shared_weights: the depth graphs keep their weights in one shared,
    deduplicated file instead of each carrying its own copy. dataset: where to reload a
    run's held-out split when the path in its config does not exist on this machine.
    """
    started = time.perf_counter()
    out_dir = Path(out_dir)
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= MAX_OPSET:
        raise ConfigError(f"opset must be an int in {MIN_OPSET}..{MAX_OPSET} (TensorRT 8.5 on JetPack 5 parses <= 17), "
                          f"got {opset!r}")
    src = _open_source(source, out_dir, dataset, dict(example_input=example_input, val=val, metric=metric,
                                                      image_size=image_size, origin=origin))
    reference = _reference_outputs(src.model, src.x_val)
    cost = {d: params_and_macs(src.model, d) for d in range(1, src.model.num_blocks + 1)}
    # Without training metrics: the same held-out split, scored with torch here.
    train_scores = src.train_scores or {d: score(src.task, reference[d - 1], src.y_val) for d in cost}
    chosen = resolve_depths(depths, len(cost), train_scores, {d: macs for d, (_, macs) in cost.items()}, step)
    cuts = chosen if segments is True else [] if segments is False else resolve_depths(list(segments), len(cost))
    with staged_directory(out_dir, keep_existing=False) as stage:
        graphs, chain = _export_family(src.model, chosen, cuts, src.example, stage, opset, progress)
        t_export = time.perf_counter() - started
        check = verify_family(src.task, src.x_val, src.y_val, reference, graphs, chain, progress=progress)
        storage = measure_storage(graphs, [p for _, p in chain])
        companions = ([_share_family_weights(graphs, opset, src.task, src.x_val, src.y_val, reference)]
                      if shared_weights else [])
        family = _family_graph(graphs, src.x_val) if shared_weights else None
        manifest, manifest_exits = _write_manifest(stage, src, opset, cost, check, graphs, chain, companions, family)
        metric_name = manifest.metric_name
        rows = [{"depth": d, "params": cost[d][0], "macs": cost[d][1], metric_name: check.scores[d],
                 f"checkpoint_{metric_name}": train_scores.get(d), "max_abs_err": check.graph_err[d],
                 "bytes": graphs[d].stat().st_size} for d in chosen]
        atomic_write_json(stage / REPORT_NAME, {
            "bundle": str(out_dir), **{k: v for k, v in src.report.items() if k != "dataset"},
            "model": src.description["model"], "model_depth": len(cost),
            "depths": chosen, "segments": [[e.start_depth, e.end_depth] for e, _ in chain],
            "opset": opset, "exporter": "torch.onnx.export(dynamo=False)", "shared_weights": shared_weights,
            "versions": _versions(),
            "validation": {"dataset": src.report["dataset"], "samples": check.samples, "metric": metric_name,
                           "segment_max_abs_err": check.segment_err, "tolerance": check.tolerance},
            "rows": rows, "storage": storage, "exits": manifest_exits,
            "seconds": {"export": round(t_export, 3), "total": round(time.perf_counter() - started, 3)},
        })
    return manifest


def _open_source(source: str | Path | DepthModel, out_dir: Path, dataset: str | None,
                 in_memory: dict[str, Any]) -> ExportSource:
    """A run directory, or a model in memory with the keywords that only it takes."""
    if isinstance(source, (str, Path)):
        given = [k for k, v in in_memory.items() if v is not None]
        if given:
            raise ConfigError(f"{', '.join(given)} describe a model in memory; a run directory brings its own model "
                              "and data (dataset= reloads its split from elsewhere)")
        _check_out_dir(out_dir, Path(source))
        return from_run(Path(source), dataset)
    if dataset is not None:
        raise ConfigError("dataset= reloads a run directory's split; for a model in memory pass val=")
    if in_memory["val"] is None:
        raise ConfigError("export_bundle(model, ...) needs val=: (x, y), a DataLoader or a path to an .npz or image "
                          "folder, the held-out data every graph is checked and scored on")
    _check_out_dir(out_dir, None)
    return from_model(source, **in_memory)


def _write_manifest(stage: Path, src: ExportSource, opset: int, cost: dict[int, tuple[int, int]], check: FamilyCheck,
                    graphs: dict[int, Path], chain: list[tuple[SegmentEntry, Path]],
                    companions: list[Path], family: Path | None = None) -> tuple[BundleManifest, dict[str, Any]]:
    """The manifest of the staged bundle, with fp32 exit thresholds calibrated on the held-out
    split (docs/adaptive.md); returns it and the exit calibration's report."""
    metric = "accuracy" if src.task == "classification" else "r2"
    manifest = BundleManifest(
        model=src.description, source_checkpoint_sha256=src.sha256, input_shape=list(src.x_val.shape[1:]),
        task=src.task, metric_name=metric, opset=opset,
        depths=[DepthEntry(d, *cost[d], [Artifact.from_file(stage, graphs[d], "onnx", "fp32", companions=companions)],
                           {"fp32": {metric: check.scores[d]}}) for d in sorted(graphs)],
        segments=[entry for entry, _ in chain])
    for entry, path in chain:
        entry.set_artifact(Artifact.from_file(stage, path, "onnx", "fp32"))
    for entry in manifest.depths:  # the scores belong to these graphs (provenance.py)
        stamp(entry, metrics_key("fp32"), current_sha(entry, "fp32"))
    if family is not None:  # recorded on the deepest depth: the family graph answers it and every depth below
        extra = {"depth_input": FAMILY_DEPTH_INPUT, "depths": sorted(graphs)}
        manifest.depths[-1].set_artifact(Artifact.from_file(stage, family, FAMILY_FORMAT, "fp32", extra=extra,
                                                            companions=companions))
    exits = calibrate_bundle(stage, manifest, "fp32", src.x_val, src.y_val)
    manifest.save(stage)
    BundleManifest.load(stage).verify(stage)  # what a reader will see: parses, every sha256 holds
    return manifest, exits


def _export_family(model: DepthModel, chosen: list[int], cuts: list[int], example: torch.Tensor, stage: Path,
                   opset: int, progress: bool) -> tuple[dict[int, Path], list[tuple[SegmentEntry, Path]]]:
    graphs: dict[int, Path] = {}
    chain: list[tuple[SegmentEntry, Path]] = []
    bar = progress_bar(len(chosen) + len(cuts), "export", "graph", enabled=progress)
    try:
        for d in chosen:
            graphs[d] = depth_graph_path(stage, d)
            onnx_export.export_depth_graph(model, d, example, graphs[d], opset)
            if bar is not None:
                bar.update(1)
        start = 0
        for j, end in enumerate(cuts):
            path = segment_path(stage, j)
            inputs, outputs = onnx_export.export_segment(model, start, end, example, path, opset)
            chain.append((SegmentEntry(j, start, end, inputs, outputs, macs=segment_macs(model, start, end)), path))
            start = end
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return graphs, chain


def _check_out_dir(out_dir: Path, run_dir: Path | None) -> None:
    """The bundle directory is replaced as a whole: refuse anything that is not a bundle."""
    if run_dir is not None:
        out_r, run_r = out_dir.resolve(), run_dir.resolve()
        if out_r == run_r or out_r in run_r.parents:
            raise ConfigError(f"--out {out_dir} would replace the checkpoint {run_dir}; choose another directory")
    if out_dir.exists() and not (out_dir.is_dir() and (not any(out_dir.iterdir()) or (out_dir / MANIFEST_NAME).is_file())):
        raise ConfigError(f"--out {out_dir} exists and is not a bundle (no {MANIFEST_NAME}); export replaces the whole "
                          "directory, so point --out at a new or an existing bundle directory")


@torch.no_grad()
def _reference_outputs(model: DepthModel, x: np.ndarray, batch: int = 256) -> list[np.ndarray]:
    """Eager torch output at every depth 1..L for every row of x."""
    per_depth: list[list[np.ndarray]] = [[] for _ in range(model.num_blocks)]
    for lo in range(0, len(x), batch):
        for k, out in enumerate(model.forward_all(torch.from_numpy(x[lo:lo + batch]))):
            per_depth[k].append(out.numpy())
    return [np.concatenate(outs) for outs in per_depth]


def share_weights(graphs: Sequence[Path], weights_name: str = FAMILY_WEIGHTS) -> Path:
    """Move the weights of graphs in one directory into one file, each unique tensor once.

    Every truncated graph repeats the stem, head and all blocks below its depth; here each
    distinct tensor (by content) is written once at a 4 KiB aligned offset, and each graph's
    initializer points at it with its own offset/length (legal ONNX external data, read by
    onnx, onnxruntime, OpenVINO and TensorRT's parser from a path). Graphs are rewritten in
    place; returns the weights file.
    """
    import onnx
    from onnx.external_data_helper import set_external_data

    folder = graphs[0].parent
    if any(p.parent != folder for p in graphs):
        raise ConfigError("graphs sharing one weights file must sit in one directory (locations cannot use '..')")
    target = folder / weights_name
    where: dict[bytes, tuple[int, int]] = {}
    # "xb": never append to an existing file, the offsets recorded below would be wrong.
    with open(target, "xb") as fh:
        for path in graphs:
            model = onnx.load(str(path))
            for tensor in model.graph.initializer:
                if tensor.data_location == onnx.TensorProto.EXTERNAL or len(tensor.raw_data) < SHARE_THRESHOLD:
                    continue
                key = hashlib.sha256(tensor.raw_data).digest()
                if key not in where:
                    fh.write(b"\0" * (-fh.tell() % ALIGN))
                    where[key] = (fh.tell(), len(tensor.raw_data))
                    fh.write(tensor.raw_data)
                offset, length = where[key]
                set_external_data(tensor, weights_name, offset, length)
                tensor.ClearField("raw_data")
            onnx.save_model(model, str(path))
    return target


def _share_family_weights(graphs: dict[int, Path], opset: int, task: str, x: np.ndarray, y: np.ndarray,
                          reference: list[np.ndarray]) -> Path:
    """Move the verified graphs' weights into the shared file, then check them again: the
    checker and onnxruntime must resolve every offset (a subset of rows is enough for that)."""
    weights = share_weights([graphs[d] for d in sorted(graphs)])
    for path in graphs.values():
        onnx_export.check_graph(path, opset, [onnx_export.INPUT_NAME], [onnx_export.OUTPUT_NAME])
    n = min(len(x), 512)
    verify_family(task, x[:n], y[:n], [r[:n] for r in reference], graphs, [])
    return weights


def _family_graph(graphs: dict[int, Path], x: np.ndarray) -> Path | None:
    """The shared-weights family as one graph that answers the depth it is fed (family_graph.py),
    checked against every depth's own graph on held-out rows (check_family_graph); None, said
    once, for more depths than one graph can nest (the shared weights file is still written)."""
    if len(graphs) > MAX_FAMILY_DEPTHS:
        logger.warning("no family graph: %d depths exported, one graph answers at most %d; "
                       "Runtime.open(share_weights=True) needs a bundle exported with fewer --depths",
                       len(graphs), MAX_FAMILY_DEPTHS)
        return None
    path = merge_family(graphs, graphs[max(graphs)].parent / FAMILY_GRAPH)
    check_family_graph(path, graphs, x[:256])
    return path


def measure_storage(graphs: dict[int, Path], segments: Sequence[Path]) -> dict[str, int]:
    """Bytes on disk of each layout, from graphs that still embed their weights: the
    truncated family, the segment chain, the deepest graph alone (the full model when the
    full depth is exported), and the family with one shared weights file (built in a
    temporary directory to measure it, so the numbers exist whichever layout was chosen)."""
    deepest = max(graphs)
    with tempfile.TemporaryDirectory() as tmp:
        copies = [Path(shutil.copy(p, Path(tmp) / p.name)) for p in graphs.values()]
        weights = share_weights(copies)
        shared_bytes = sum(p.stat().st_size for p in (*copies, weights))
        weights_bytes = weights.stat().st_size
    return {"truncated_family_bytes": sum(p.stat().st_size for p in graphs.values()),
            "segments_bytes": sum(p.stat().st_size for p in segments),
            "full_graph_depth": deepest, "full_graph_bytes": graphs[deepest].stat().st_size,
            "shared_weights_bytes": shared_bytes, "shared_weights_file_bytes": weights_bytes}


def _versions() -> dict[str, str]:
    import onnx
    import onnxruntime

    return {"glonet_edge": __version__, "torch": torch.__version__, "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__}
