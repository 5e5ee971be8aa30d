"""`glonet bench memory [BUNDLE]`: what the depth family costs on disk and in RAM.

Layouts of the same family of fp32 ONNX graphs (docs/architecture.md, "Segment chain"):
- truncated graphs: one self-contained graph per depth; block i is stored in every graph
  deeper than i, so disk grows ~ quadratically with the number of exported depths;
- shared weights: the same graphs with every distinct tensor stored once in one file;
- segment chain: segment j runs blocks start..end and carries (h, s); weights stored once;
- family graph: every depth in one graph that stops at the depth it is fed (export/family_graph.py;
  `Runtime.open(..., share_weights=True)`): each weight once, but every call passes one `If` per
  shallower depth;
- full graph: the deepest graph alone (one model, one depth: the reference cost).

Disk bytes come from the bundle's export.json (`measure_storage` at export), else from the
manifest. Resident memory is measured in a fresh Python process per engine and layout (so
nothing loaded earlier is counted): VmRSS after importing the engine, then after creating
one session (onnxruntime) or compiled model (openvino, from the ONNX file) per file and
running each once on one sample (arena allocated). The difference is what serving that
layout adds; the median of --repeats processes is reported. The same process then times the
shallowest and the deepest depth (p50 of 200 calls): the price in speed of each layout.
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
from dataclasses import dataclass, field
from typing import Any

HELP = ("disk bytes, resident memory and per-depth latency of the depth family: truncated graphs, shared weights, "
        "family graph, segments, one full graph")
MB = 1024 * 1024

# Runs in a fresh interpreter: argv[1] = {"paths": [...], "chain": bool, "input": name, "shape": [...],
# "engine": "onnxruntime" | "openvino", "depth_input": name or null (the family graph's),
# "timed": [[file index, depth fed to depth_input or null], ...]}
WORKER = r"""
import json, sys, time
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

def ort_calls(paths):
    import onnxruntime
    from glonet_edge.compare import cpu_session
    sessions = [cpu_session(p, threads=1, spin=True) for p in paths]
    def call(i, feeds):
        return sessions[i].run(None, feeds)
    return call, [[n.name for n in s.get_inputs()] for s in sessions]

def ov_calls(paths):
    import openvino as ov
    core = ov.Core()
    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": 1, "INFERENCE_PRECISION_HINT": "f32"}
    requests = [core.compile_model(p, "CPU", config).create_infer_request() for p in paths]
    def call(i, feeds):
        req = requests[i]
        for name, arr in feeds.items():
            req.set_tensor(name, ov.Tensor(arr))
        req.infer()
        return [req.get_output_tensor(j).data.copy() for j in range(len(req.model_outputs))]
    return call, [[p.get_any_name() for p in r.model_inputs] for r in requests]

spec = json.loads(sys.argv[1])
__import__(spec["engine"])  # the library itself is not what a layout costs
import glonet_edge.compare  # noqa: F401  nor is our module that opens the sessions
from glonet_edge.manifest import family_depth_feed
before = rss_bytes()
call, inputs = (ort_calls if spec["engine"] == "onnxruntime" else ov_calls)(spec["paths"])
x = np.zeros([1] + spec["shape"], np.float32)
def depth(d):  # the family graph's second input; nothing for the other layouts
    return {spec["depth_input"]: family_depth_feed(d)} if spec["depth_input"] and d is not None else {}
feeds = {spec["input"]: x, **depth(max([d for _, d in spec["timed"] if d is not None], default=None))}
for i in range(len(spec["paths"])):  # each once: arenas and kernels allocated, as in serving
    outs = call(i, feeds)
    if spec["chain"] and i + 1 < len(spec["paths"]):
        feeds = dict(zip(inputs[i + 1], outs[:-1]))
after = rss_bytes()
p50 = []
for i, d in spec["timed"]:
    one = {spec["input"]: x, **depth(d)}
    for _ in range(20):
        call(i, one)
    times = []
    for _ in range(200):
        t0 = time.perf_counter()
        call(i, one)
        times.append(time.perf_counter() - t0)
    p50.append(float(np.median(times)) * 1e3)
print(json.dumps({"before": before, "after": after, "p50_ms": p50}))
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("bundle", nargs="?", metavar="BUNDLE", default=None,
                   help="bundle to measure (default: train and export a small glonet-fc into DIR/run, DIR/bundle)")
    p.add_argument("--depth", type=int, default=24, help="depth of the self-made glonet-fc (default 24)")
    p.add_argument("--width", type=int, default=128, help="width of the self-made glonet-fc (default 128)")
    p.add_argument("--epochs", type=int, default=3, help="epochs of the self-made glonet-fc (default 3)")
    p.add_argument("--repeats", type=int, default=3, help="fresh processes per layout; median reported (default 3)")
    p.add_argument("--engines", default="onnxruntime,openvino",
                   help="engines to load the layouts with, comma-separated (default onnxruntime,openvino; "
                        "openvino is skipped where it is not installed)")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")


def run(args: argparse.Namespace) -> dict[str, Any]:
    from ..errors import ConfigError
    from ..manifest import BundleManifest
    from ..report.environment import environment

    if args.repeats < 1:
        raise ConfigError(f"--repeats must be >= 1, got {args.repeats}")
    engines = _engines(args.engines)
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
    with tempfile.TemporaryDirectory() as tmp:
        layouts = layouts_of(bundle, graph_paths, segment_paths, storage, manifest, Path(tmp))
        rows, samples = measure_layouts(layouts, engines, manifest, storage, args.repeats, args.quiet)
    result = {
        "suite": "memory", "bundle": str(bundle), "model": manifest.model.get("model"),
        "model_depth": manifest.max_depth, "width": manifest.model.get("width"), "depths": sorted(graph_paths),
        "segments": len(segment_paths), "storage": storage, "engines": engines, "rows": rows,
        "rss_added_bytes_samples": samples, "repeats": args.repeats, "environment": environment(),
        "command": getattr(args, "command_line", None),
    }
    plot(result, out / "memory.png")
    write_summary(result, out / "memory.md")
    return result


@dataclass
class Layout:
    """Files loaded together, as the runtime would serve them."""

    files: list[Path]
    disk: int  # bytes on disk
    chain: bool = False  # run as a chain, each file's outputs feeding the next
    # (file index, the depth to feed the family graph or None) of the shallowest and the deepest
    # depth, timed after loading: what serving one depth costs in this layout
    timed: list[tuple[int, int | None]] = field(default_factory=list)
    depth_input: str | None = None  # the family graph's input that picks the depth


def layouts_of(bundle: Path, graph_paths: dict[int, Path], segment_paths: list[Path], storage: dict[str, int],
               manifest: Any, tmp: Path) -> dict[str, Layout]:
    """The layouts to load, in the order measured; extra files (a shared-weights copy, the
    family graph when the bundle has none, the baseline's identity graph) go to `tmp`."""
    from ..manifest import FAMILY_DEPTH_INPUT, MAX_FAMILY_DEPTHS

    shallow, deepest = min(graph_paths), max(graph_paths)
    files = list(graph_paths.values())
    per_depth = [(0, None), (len(files) - 1, None)]
    shared = any(manifest.depth(d).artifact("onnx", "fp32").companions for d in graph_paths)
    # export measures the self-contained family even when it then shares the weights.
    layouts = {"truncated graphs (shared weights)" if shared else "truncated graphs": Layout(
        files, storage["shared_weights_bytes"] if shared else storage["truncated_family_bytes"], timed=per_depth)}
    if not shared and "shared_weights_bytes" in storage:
        layouts["shared weights"] = Layout(shared_copy(graph_paths, tmp), storage["shared_weights_bytes"],
                                           timed=per_depth)
    if len(graph_paths) <= MAX_FAMILY_DEPTHS:  # deeper families have no family graph (manifest.MAX_FAMILY_DEPTHS)
        family, family_bytes = family_graph(bundle, manifest, graph_paths, tmp)
        layouts["family graph (one graph, stops at the depth fed)"] = Layout(
            [family], family_bytes, timed=[(0, shallow), (0, deepest)], depth_input=FAMILY_DEPTH_INPUT)
    if segment_paths:
        layouts["segment chain"] = Layout(segment_paths, storage["segments_bytes"], chain=True)
    layouts[f"full graph (depth {deepest})"] = Layout([graph_paths[deepest]], storage["full_graph_bytes"],
                                                      timed=[(0, None)])
    # What the engine itself takes for a first model (thread pools, allocators, kernels):
    # every layout pays it once, so the rows above it differ by the model's own memory.
    baseline = identity_graph(tmp / "identity.onnx", manifest.input_name, manifest.input_shape, manifest.opset)
    layouts["baseline (identity graph)"] = Layout([baseline], baseline.stat().st_size)
    return layouts


def family_graph(bundle: Path, manifest: Any, graph_paths: dict[int, Path], tmp: Path) -> tuple[Path, int]:
    """The bundle's family graph (`glonet export --shared-weights`) and its bytes with the
    weights file; for other bundles the one that export would write, made in `tmp` from copies
    of the graphs sharing one weights file (the layout the runtime serves: with the weights
    inline in its branch graphs, ONNX Runtime holds far more, BENCHMARKS.md "Memory")."""
    import shutil

    from ..export.bundle import share_weights
    from ..export.family_graph import FAMILY_GRAPH, merge_family
    from ..manifest import FAMILY_FORMAT

    art = manifest.depth(max(graph_paths)).artifact(FAMILY_FORMAT, "fp32")
    if art is not None and art.extra.get("depth_input"):  # not an older export's graph with an output per depth
        return bundle / art.path, art.total_bytes
    folder = tmp / "family"
    folder.mkdir()
    copies = [Path(shutil.copy(p, folder / p.name)) for p in graph_paths.values()]
    shared = {c["path"] for d in graph_paths for c in manifest.depth(d).artifact("onnx", "fp32").companions}
    # Graphs that already read one weights file keep pointing at it, copied next to them.
    weights = ([Path(shutil.copy(bundle / rel, folder / Path(rel).name)) for rel in shared] if shared
               else [share_weights(copies)])
    path = merge_family(dict(zip(graph_paths, copies)), folder / FAMILY_GRAPH)
    return path, path.stat().st_size + sum(w.stat().st_size for w in weights)


def measure_layouts(layouts: dict[str, Layout], engines: list[str], manifest: Any, storage: dict[str, int],
                    repeats: int, quiet: bool) -> tuple[list[dict[str, Any]], dict[str, list[int]]]:
    """A row per engine and layout (median of `repeats` fresh processes) and every process's RSS delta."""
    rows, samples = [], {}
    for engine in engines:
        reference = None  # the truncated graphs' p50s: the per-depth speed every layout is held to
        for name, layout in layouts.items():
            if layout.chain and engine != "onnxruntime":
                continue  # the chain's inputs are fed by name, as the ONNX Runtime sessions see them
            runs = [measure_rss(layout, engine, manifest.input_name, manifest.input_shape) for _ in range(repeats)]
            deltas = [m["after"] - m["before"] for m in runs]
            samples[f"{engine}: {name}"] = deltas
            row = {"engine": engine, "layout": name, "files": len(layout.files), "disk_bytes": layout.disk,
                   "disk_x_full": layout.disk / storage["full_graph_bytes"],
                   "rss_added_mb": statistics.median(deltas) / MB,
                   "rss_total_mb": statistics.median(m["after"] for m in runs) / MB}
            row.update(_latency_columns([statistics.median(m["p50_ms"][i] for m in runs)
                                         for i in range(len(layout.timed))], reference))
            if reference is None and row["p50_shallowest_ms"] is not None:
                reference = [row["p50_shallowest_ms"], row["p50_deepest_ms"]]
            rows.append(row)
            if not quiet:
                print(f"{engine} {name}: {layout.disk} B on disk, +{row['rss_added_mb']:.1f} MB resident",
                      file=sys.stderr)
    return rows, samples


def _latency_columns(p50: list[float], reference: list[float] | None) -> dict[str, float | None]:
    """p50 of the shallowest and deepest depth (one p50 for the full graph alone), and their
    ratios to the truncated graphs' (> 1: slower than serving that depth's own graph)."""
    cols: dict[str, float | None] = dict.fromkeys(("p50_shallowest_ms", "p50_deepest_ms", "shallowest_x_truncated",
                                                   "deepest_x_truncated"))  # every row has every column
    if len(p50) == 1:
        cols["p50_deepest_ms"] = p50[0]
    elif len(p50) == 2:
        cols.update({"p50_shallowest_ms": p50[0], "p50_deepest_ms": p50[1]})
        if reference is not None:
            cols.update({"shallowest_x_truncated": p50[0] / reference[0], "deepest_x_truncated": p50[1] / reference[1]})
    return cols


def _engines(spec: str) -> list[str]:
    from ..errors import ConfigError
    from ..targets import get_target

    names = [n.strip() for n in spec.split(",") if n.strip()]
    unknown = [n for n in names if n not in ("onnxruntime", "openvino")]
    if unknown or not names:
        raise ConfigError(f"--engines takes onnxruntime and/or openvino, got {spec!r}")
    return [n for n in names if n == "onnxruntime" or get_target(n).available()]


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


def measure_rss(layout: Layout, engine: str, input_name: str, shape: list[int]) -> dict[str, Any]:
    """VmRSS of a fresh process before and after loading `layout` with `engine`, and the p50
    of each of its timed depths."""
    from ..errors import ArtifactError

    spec = json.dumps({"paths": [str(p) for p in layout.files], "chain": layout.chain, "input": input_name,
                       "shape": list(shape), "engine": engine, "timed": [list(t) for t in layout.timed],
                       "depth_input": layout.depth_input})
    proc = subprocess.run([sys.executable, "-c", WORKER, spec], capture_output=True, text=True, timeout=600,
                          env=_single_thread_env())
    if proc.returncode != 0:
        raise ArtifactError(f"loading {len(layout.files)} graphs in a fresh {engine} process failed: "
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

    names = [f"{r['engine']}: {r['layout']}" for r in result["rows"]]
    fig, (ax_disk, ax_rss) = new_figure(2, width=6.4, height=5.0)
    ax_disk.barh(names, [r["disk_bytes"] / MB for r in result["rows"]], color="tab:blue")
    ax_disk.set(xlabel="MB on disk", title=f"disk: {len(result['depths'])} depths of {result['model']}")
    ax_rss.barh(names, [r["rss_added_mb"] for r in result["rows"]], color="tab:orange")
    ax_rss.set(xlabel="MB resident added (all loaded)", title="resident memory, fresh process")
    ax_rss.set_yticklabels([])
    for ax in (ax_disk, ax_rss):
        ax.invert_yaxis()
    return finish(fig, path)


def write_summary(result: dict[str, Any], path: Path) -> None:
    from .summary import markdown_table, write_result_markdown

    title = f"memory: depth family of {result['model']} depth {result['model_depth']}"
    write_result_markdown(path, title, result, [
        f"Bundle {result['bundle']}: {len(result['depths'])} exported depths, {result['segments']} segments, width "
        f"{result['width']}. Disk from export's measure_storage; resident memory added by loading each file in "
        f"{' and '.join(result['engines'])} (one session / compiled model per file, 1 thread) and running each once "
        f"(median of {result['repeats']} fresh processes); then p50 of 200 calls at the shallowest and the deepest "
        "depth, and their ratio to the truncated graphs' (x_truncated > 1: slower than that depth's own graph).",
        markdown_table(result["rows"]),
        "![memory](memory.png)",
    ])
