"""`glonet bench memory [BUNDLE]`: what the depth family costs on disk and in RAM.

Layouts of the same family of fp32 ONNX graphs (docs/architecture.md, "Segment chain"):
- truncated graphs: one self-contained graph per depth; block i is stored in every graph
  deeper than i, so disk grows ~ quadratically with the number of exported depths;
- shared weights: the same graphs with every distinct tensor stored once in one file;
- segment chain: segment j runs blocks start..end and carries (h, s); weights stored once;
- full graph: the deepest graph alone (one model, one depth: the reference cost).

Disk bytes come from the bundle's export.json (`measure_storage` at export), else from the
manifest. Resident memory is measured in a fresh Python process per layout (so nothing
loaded earlier is counted): VmRSS after importing onnxruntime, then after creating one
onnxruntime session per file and running each once on one sample (arena allocated). The
difference is what serving that layout adds; the median of --repeats processes is reported.
Without BUNDLE a small glonet-fc is trained and exported into DIR/ first.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HELP = "disk bytes and resident memory of the depth family: truncated graphs, shared weights, segments, one full graph"
MB = 1024 * 1024

# Runs in a fresh interpreter: argv[1] = {"paths": [...], "chain": bool, "input": name, "shape": [...]}
WORKER = r"""
import json, sys
import numpy as np

def rss_bytes():
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import psutil
    return psutil.Process().memory_info().rss

spec = json.loads(sys.argv[1])
import onnxruntime
from glonet_edge.compare import cpu_session
before = rss_bytes()
sessions = [cpu_session(p, threads=1, spin=True) for p in spec["paths"]]
feeds = {spec["input"]: np.zeros([1] + spec["shape"], np.float32)}
for i, sess in enumerate(sessions):
    outs = sess.run(None, feeds)
    if spec["chain"] and i + 1 < len(sessions):
        feeds = dict(zip([n.name for n in sessions[i + 1].get_inputs()], outs[:-1]))
after = rss_bytes()
print(json.dumps({"before": before, "after": after}))
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("bundle", nargs="?", metavar="BUNDLE", default=None,
                   help="bundle to measure (default: train and export a small glonet-fc into DIR/run, DIR/bundle)")
    p.add_argument("--depth", type=int, default=24, help="depth of the self-made glonet-fc (default 24)")
    p.add_argument("--width", type=int, default=128, help="width of the self-made glonet-fc (default 128)")
    p.add_argument("--epochs", type=int, default=3, help="epochs of the self-made glonet-fc (default 3)")
    p.add_argument("--repeats", type=int, default=3, help="fresh processes per layout; median reported (default 3)")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")


def run(args: argparse.Namespace) -> dict[str, Any]:
    from ..errors import ConfigError
    from ..manifest import BundleManifest
    from ..report.environment import environment

    if args.repeats < 1:
        raise ConfigError(f"--repeats must be >= 1, got {args.repeats}")
    out = Path(args.out)
    bundle = Path(args.bundle) if args.bundle else make_bundle(out, args.depth, args.width, args.epochs, args.quiet)
    manifest = BundleManifest.load(bundle)
    manifest.verify(bundle)  # measure the files the manifest vouches for, nothing else
    graphs = {e.depth: e.artifact("onnx", "fp32") for e in manifest.depths}
    missing = [d for d, a in graphs.items() if a is None]
    if missing:
        raise ConfigError(f"{bundle}: depths {missing} have no fp32 ONNX graph; re-export the bundle")
    graph_paths = {d: bundle / a.path for d, a in sorted(graphs.items())}
    segment_paths = [bundle / s.artifact("onnx", "fp32").path for s in manifest.segments
                     if s.artifact("onnx", "fp32") is not None]
    storage = disk_storage(bundle, manifest)
    shared = any(a.companions for a in graphs.values())
    with tempfile.TemporaryDirectory() as tmp:
        layouts = layouts_of(graph_paths, segment_paths, shared, storage, manifest, Path(tmp))
        rows, samples = measure_layouts(layouts, manifest, storage, args.repeats, args.quiet)
    result = {
        "suite": "memory", "bundle": str(bundle), "model": manifest.model.get("model"),
        "model_depth": manifest.max_depth, "width": manifest.model.get("width"), "depths": sorted(graph_paths),
        "segments": len(segment_paths), "storage": storage, "rows": rows, "rss_added_bytes_samples": samples,
        "repeats": args.repeats, "environment": environment(), "command": getattr(args, "command_line", None),
    }
    plot(result, out / "memory.png")
    write_summary(result, out / "memory.md")
    return result


Layouts = dict[str, tuple[list[Path], bool, int]]  # name -> (files, run as a chain, bytes on disk)


def layouts_of(graph_paths: dict[int, Path], segment_paths: list[Path], shared: bool, storage: dict[str, int],
               manifest: Any, tmp: Path) -> Layouts:
    """The layouts to load, in the order measured; extra files (a shared-weights copy, the
    baseline's identity graph) are written to `tmp`."""
    deepest = max(graph_paths)
    # export measures the self-contained family even when it then shares the weights.
    layouts: Layouts = {
        "truncated graphs (shared weights)" if shared else "truncated graphs":
            (list(graph_paths.values()), False,
             storage["shared_weights_bytes"] if shared else storage["truncated_family_bytes"]),
    }
    if not shared and "shared_weights_bytes" in storage:
        layouts["shared weights"] = (shared_copy(graph_paths, tmp), False, storage["shared_weights_bytes"])
    if segment_paths:
        layouts["segment chain"] = (segment_paths, True, storage["segments_bytes"])
    layouts[f"full graph (depth {deepest})"] = ([graph_paths[deepest]], False, storage["full_graph_bytes"])
    # What onnxruntime itself takes for a first session (thread pools, allocators, kernels):
    # every layout pays it once, so the rows above it differ by the model's own memory.
    baseline = identity_graph(tmp / "identity.onnx", manifest.input_name, manifest.input_shape, manifest.opset)
    layouts["onnxruntime baseline (identity graph)"] = ([baseline], False, baseline.stat().st_size)
    return layouts


def measure_layouts(layouts: Layouts, manifest: Any, storage: dict[str, int], repeats: int,
                    quiet: bool) -> tuple[list[dict[str, Any]], dict[str, list[int]]]:
    """A row per layout (median of `repeats` fresh processes) and every process's RSS delta."""
    rows, samples = [], {}
    for name, (paths, chain, disk) in layouts.items():
        deltas, afters = [], []
        for _ in range(repeats):
            m = measure_rss(paths, chain, manifest.input_name, manifest.input_shape)
            deltas.append(m["after"] - m["before"])
            afters.append(m["after"])
        samples[name] = deltas
        rows.append({"layout": name, "files": len(paths), "disk_bytes": disk,
                     "disk_x_full": disk / storage["full_graph_bytes"],
                     "rss_added_mb": statistics.median(deltas) / MB, "rss_total_mb": statistics.median(afters) / MB})
        if not quiet:
            print(f"{name}: {disk} B on disk, +{rows[-1]['rss_added_mb']:.1f} MB resident", file=sys.stderr)
    return rows, samples


def make_bundle(out: Path, depth: int, width: int, epochs: int, quiet: bool) -> Path:
    """A small glonet-fc on digits, every depth exported with its segment chain."""
    from ..export import export_bundle
    from ..train.trainer import TrainSettings, train_run

    if not quiet:
        print(f"training glonet-fc depth {depth} width {width} on digits and exporting every depth ...", file=sys.stderr)
    run_dir, bundle = out / "run", out / "bundle"
    train_run("glonet-fc", depth, "digits", run_dir, width=width, settings=TrainSettings(epochs=epochs), progress=False)
    export_bundle(run_dir, bundle, depths="all", progress=False)
    return bundle


def disk_storage(bundle: Path, manifest: Any) -> dict[str, int]:
    """export.json's storage numbers; from the manifest's recorded bytes when it is absent."""
    from ..export.bundle import REPORT_NAME
    from ..fileio import read_json

    report = bundle / REPORT_NAME
    if report.is_file():
        storage = read_json(report, "export report").get("storage")
        if isinstance(storage, dict) and "truncated_family_bytes" in storage:
            return storage
    graphs = [e.artifact("onnx", "fp32") for e in manifest.depths]
    companions = {c["path"]: c["bytes"] for a in graphs for c in a.companions}
    deepest = max(manifest.depths, key=lambda e: e.depth)
    family = "shared_weights_bytes" if companions else "truncated_family_bytes"
    return {family: sum(a.bytes for a in graphs) + sum(companions.values()),
            "segments_bytes": sum(s.artifact("onnx", "fp32").bytes for s in manifest.segments
                                  if s.artifact("onnx", "fp32") is not None),
            "full_graph_depth": deepest.depth,
            "full_graph_bytes": deepest.artifact("onnx", "fp32").bytes + sum(companions.values())}


def shared_copy(graphs: dict[int, Path], tmp: Path) -> list[Path]:
    """The graphs copied into tmp with one shared weights file (export's `share_weights`)."""
    import shutil

    from ..export.bundle import share_weights

    copies = [Path(shutil.copy(p, tmp / p.name)) for p in graphs.values()]
    share_weights(copies)
    return copies


def identity_graph(path: Path, input_name: str, shape: list[int], opset: int) -> Path:
    """A one-node graph with the bundle's input: loads onnxruntime without any model weights."""
    import onnx
    from onnx import TensorProto, helper

    dims = ["batch", *shape]
    graph = helper.make_graph([helper.make_node("Identity", [input_name], ["y"])], "identity",
                              [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, dims)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, dims)])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]), str(path))
    return path


def measure_rss(paths: list[Path], chain: bool, input_name: str, shape: list[int]) -> dict[str, int]:
    """VmRSS of a fresh process before and after loading `paths` with onnxruntime."""
    from ..errors import ArtifactError

    spec = json.dumps({"paths": [str(p) for p in paths], "chain": chain, "input": input_name, "shape": list(shape)})
    proc = subprocess.run([sys.executable, "-c", WORKER, spec], capture_output=True, text=True, timeout=600,
                          env=_single_thread_env())
    if proc.returncode != 0:
        raise ArtifactError(f"loading {len(paths)} graphs in a fresh onnxruntime process failed: "
                            f"{proc.stderr.strip()[-800:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _single_thread_env() -> dict[str, str]:
    import os

    # Thread pools are part of what a process holds: pin them so layouts compare alike.
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def table(result: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
    return result["rows"], (f"memory of {result['model']} depth {result['model_depth']}: {len(result['depths'])} depths, "
                            f"{result['segments']} segments (RSS: median of {result['repeats']} fresh processes)")


def plot(result: dict[str, Any], path: Path) -> bytes:
    from ..report.plots import finish, new_figure

    names = [r["layout"] for r in result["rows"]]
    fig, (ax_disk, ax_rss) = new_figure(2, width=5.4, height=4.2)
    ax_disk.barh(names, [r["disk_bytes"] / MB for r in result["rows"]], color="tab:blue")
    ax_disk.set(xlabel="MB on disk", title=f"disk: {len(result['depths'])} depths of {result['model']}")
    ax_rss.barh(names, [r["rss_added_mb"] for r in result["rows"]], color="tab:orange")
    ax_rss.set(xlabel="MB resident added (onnxruntime, all loaded)", title="resident memory, fresh process")
    ax_rss.set_yticklabels([])
    for ax in (ax_disk, ax_rss):
        ax.invert_yaxis()
    return finish(fig, path)


def write_summary(result: dict[str, Any], path: Path) -> None:
    from .summary import markdown_table, write_result_markdown

    title = f"memory: depth family of {result['model']} depth {result['model_depth']}"
    write_result_markdown(path, title, result, [
        f"Bundle {result['bundle']}: {len(result['depths'])} exported depths, {result['segments']} segments, width "
        f"{result['width']}. Disk from export's measure_storage; resident memory added by creating one onnxruntime "
        f"session per file and running each once (median of {result['repeats']} fresh processes).",
        markdown_table(result["rows"]),
        "![memory](memory.png)",
    ])
