"""`glonet bench int8-flavours`: which INT8 graph layout ONNX Runtime runs fastest on this CPU.

For each selected depth of a bundle it builds, from the fp32 graph and the same calibration
samples, the TensorRT graph quantize ships (s8/s8 QDQ, inputs of Conv/Gemm/MatMul only) and
every ORT flavour candidate (quantize/flavours.py: u8/s8 vs s8/s8, QDQ vs QOperator,
reduce_range, per-channel vs per-tensor), then times each with onnxruntime on the CPU at every
graph optimization level asked, against fp32 at ORT_ENABLE_ALL (the serving level), in ONE
run: latency ratios at each batch, plus held-out score and top-1 agreement with fp32.

Timings are interleaved: each round times every graph in turn (`--iterations` calls), and the
p50 is taken over all rounds, so machine drift hits every graph alike. No accuracy control
here: this measures layouts; quantize applies accuracy control to the one it ships.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from . import int_list
from .timing import interleaved_ms

HELP = "INT8 graph layouts (QDQ/QOperator, u8/s8, reduce_range) on ONNX Runtime: latency vs fp32, accuracy"
OPT_LEVELS = {"all": "ORT_ENABLE_ALL", "extended": "ORT_ENABLE_EXTENDED", "basic": "ORT_ENABLE_BASIC"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bundle", default=None, help="bundle to measure (default: build a 3x32x32 CNN family in --out)")
    p.add_argument("--depths", type=int_list, default=None, help="depths to measure (default: the deepest)")
    p.add_argument("--batches", type=int_list, default=[1, 32], help="batch sizes (default 1,32)")
    p.add_argument("--flavours", default="all", help="comma list of flavour names, or all (default)")
    p.add_argument("--opt-levels", default="all,basic", help="ORT graph optimization levels: all,extended,basic")
    p.add_argument("--iterations", type=int, default=50, help="timed calls per graph per round (default 50)")
    p.add_argument("--rounds", type=int, default=4, help="interleaved rounds (default 4)")
    p.add_argument("--calib-size", type=int, default=128, help="calibration samples (training split)")
    p.add_argument("--threads", type=int, default=1, help="engine threads (default 1: stable on shared machines)")
    p.add_argument("--cnn-depth", type=int, default=9, help="depth of the CNN family built without --bundle")


def selected_flavours(spec: str) -> list[Any]:
    from ..errors import ConfigError
    from ..quantize.flavours import CANDIDATES, FLAVOURS

    if spec == "all":
        return list(CANDIDATES)
    names = [n.strip() for n in spec.split(",") if n.strip()]
    unknown = [n for n in names if n not in FLAVOURS]
    if unknown:
        raise ConfigError(f"unknown flavour {unknown[0]!r}; known: {', '.join(FLAVOURS)}")
    return [FLAVOURS[n] for n in names]


def build_graphs(src: Path, work: Path, flavours: list[Any], feeds: list[dict[str, Any]]) -> dict[str, Path]:
    """{name: graph}: fp32, the TensorRT graph quantize ships, and each flavour, same calibration."""
    from ..quantize.flavours import TENSORRT_FLAVOUR
    from ..quantize.recipes import ort_quantize

    work.mkdir(parents=True, exist_ok=True)
    graphs = {"fp32": src, TENSORRT_FLAVOUR: work / f"{TENSORRT_FLAVOUR}.onnx"}
    ort_quantize(src, graphs[TENSORRT_FLAVOUR], feeds=list(feeds), calibration="minmax")
    for f in flavours:
        graphs[f.name] = work / f"{f.name}.onnx"
        ort_quantize(src, graphs[f.name], feeds=list(feeds), calibration="minmax", layout=f)
    return graphs


def session(path: Path, level: str, threads: int) -> Any:
    import onnxruntime as ort

    from ..compare import session_options

    so = session_options(threads=threads)
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, OPT_LEVELS[level])
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def accuracy(sessions: dict[str, Any], data: Any, input_name: str) -> dict[str, dict[str, float | None]]:
    """Held-out score and top-1 agreement with fp32 of every graph (batch 256)."""
    from ..compare import predict, session_runner, top1_agreement
    from ..data import score

    outs = {k: predict(session_runner(s), {input_name: data.x_val})[-1] for k, s in sessions.items()}
    ref = outs["fp32"]
    return {k: {"score": float(score(data.task, y, data.y_val)),
                "agreement": top1_agreement(y, ref) if data.task == "classification" else None}
            for k, y in outs.items()}


def measure_depth(graphs: dict[str, Path], data: Any, input_name: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Rows (graph, opt level, batch) with p50 and ratio to fp32 at ORT_ENABLE_ALL, plus accuracy."""
    import numpy as np

    levels = [lv.strip() for lv in args.opt_levels.split(",") if lv.strip()]
    sessions = {(k, lv): session(p, lv, args.threads) for k, p in graphs.items() for lv in levels}
    acc = accuracy({k: s for (k, lv), s in sessions.items() if lv == levels[0]}, data, input_name)
    rows = []
    for b in args.batches:
        x = np.ascontiguousarray(np.resize(data.x_val, (b, *data.x_val.shape[1:])).astype(np.float32))
        calls = {key: (lambda s=s: s.run(None, {input_name: x})) for key, s in sessions.items()}
        p50 = interleaved_ms(calls, args.rounds, args.iterations, warmup=max(1, args.iterations // 5))
        base = p50[("fp32", "all")] if ("fp32", "all") in p50 else p50[("fp32", levels[0])]
        for (k, lv), ms in p50.items():
            rows.append({"graph": k, "opt_level": lv, "batch": b, "p50_ms": ms, "ratio_vs_fp32": ms / base,
                         "score": acc[k]["score"], "agreement": acc[k]["agreement"]})
    return rows


def build_cnn_bundle(out: Path, depth: int) -> Path:
    """A 3x32x32 glonet-cnn family trained on learnable synthetic data (class = the bright
    quadrant), so the accuracy columns mean something; fp32 ONNX only."""
    import numpy as np

    from ..export import export_bundle
    from ..train.trainer import TrainSettings, train_run

    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 1200)
    x = rng.normal(100.0, 30.0, size=(1200, 3, 32, 32)).astype(np.float32)
    for i, k in enumerate(y):
        x[i, :, (k // 2) * 16:(k // 2) * 16 + 16, (k % 2) * 16:(k % 2) * 16 + 16] += 60.0 + 20.0 * (k % 3)
    np.savez(out / "quadrants.npz", X=np.clip(x, 0, 255), y=y)
    run, bundle = out / "cnn_run", out / "cnn_bundle"
    train_run("glonet-cnn", depth, str(out / "quadrants.npz"), run, settings=TrainSettings(epochs=3), progress=False)
    export_bundle(run, bundle, depths="all", progress=False)
    return bundle


def run(args: argparse.Namespace) -> dict[str, Any]:
    from ..manifest import BundleManifest
    from ..quantize.calibration import load_calibration
    from ..report.environment import environment

    out = Path(args.out)
    bundle = Path(args.bundle) if args.bundle else None
    if bundle is None:
        print("building a 3x32x32 glonet-cnn family (train 3 epochs, export)...", file=sys.stderr)
        bundle = build_cnn_bundle(out / "work", args.cnn_depth)
    manifest = BundleManifest.load(bundle)
    data = load_calibration(manifest, args.calib_size)
    feeds = [{manifest.input_name: xb} for xb in data.batches(equal=True)]
    flavours = selected_flavours(args.flavours)
    rows = []
    for d in args.depths or [max(manifest.depth_values())]:
        src = manifest.depth(d).artifact("onnx", "fp32").resolve(bundle)
        graphs = build_graphs(src, out / "work" / f"flavours_d{d}", flavours, feeds)
        rows += [{"depth": d, **r} for r in measure_depth(graphs, data, manifest.input_name, args)]
    result = {"rows": rows, "bundle": str(bundle), "threads": args.threads, "iterations": args.iterations,
              "rounds": args.rounds, "calib_size": len(data.x_calib), "environment": environment()}
    write_summary(result, out / "int8_flavours.md")
    return result


def write_summary(result: dict[str, Any], path: Path) -> None:
    from .summary import markdown_table, write_markdown

    write_markdown(path, "INT8 flavours on ONNX Runtime (CPU)", [
        f"Bundle `{result['bundle']}`, {result['threads']} engine thread(s), {result['rounds']} interleaved rounds of "
        f"{result['iterations']} calls per graph; ratio = p50 / fp32 p50 at ORT_ENABLE_ALL, same batch.",
        "## All rows\n\n" + markdown_table(result["rows"], ["depth", "graph", "opt_level", "batch", "p50_ms",
                                                             "ratio_vs_fp32", "score", "agreement"]),
    ])


def table(result: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
    rows = [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()} for r in result["rows"]]
    return rows, "INT8 flavours: latency ratio vs fp32 (ORT_ENABLE_ALL) and held-out accuracy"
