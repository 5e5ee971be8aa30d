"""`glonet bench latency`: per-depth latency through the runtime vs the raw engine, and the
cost of a depth switch.

For every target/precision the bundle has, every depth and every batch size, one loop
alternates two calls on the SAME compiled model and the same input:

    runtime_ms     Runtime.infer(x) with the depth pinned (validation, policy check, result)
    raw_engine_ms  CompiledModel.raw_callable()(feeds): the engine's own call, nothing else

Alternating (and swapping which goes first) exposes both to the same machine noise, so the
ratio is meaningful on a shared machine even when absolute numbers drift. Reported: p50 of
each, their ratio, and the per-depth MACs (latency should grow as the MACs do); where the
bundle has both precisions, INT8 over FP32 runtime latency per depth and batch, and the bytes
of each INT8 ONNX graph over its FP32 graph.

Depth switch: `set_depth(k)` to a random other depth, then one `infer`; the switch cost is
that call's latency minus the steady-state p50 of depth k (all depths are loaded and warmed
at open, so a switch should cost nothing but noise). p50/p99 over `--switches` switches, in
`--switch-rounds` rounds (different random sequences): the reported p99 is the median
round's, and the worst round's p99 is reported next to it. On a shared VM one stall of the
whole machine (tens of ms) lands in a round's tail now and then; it is kept visible, not
allowed to stand for what a switch costs.

OpenVINO's own `benchmark_app` on the same IR is run as an external reference when it is on
PATH (it ships with the openvino wheel).

Without --bundle the suite builds a CNN family at CIFAR-10 shape (3x32x32) itself: a
glonet-cnn trained for one epoch on random CIFAR-shaped data (latency does not depend on the
weights' values), exported, quantized (ONNX Runtime INT8) and compiled for ONNX Runtime and
OpenVINO, FP32 and INT8.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from . import int_list

HELP = "per-depth latency through the runtime vs the raw engine (overhead ratio), batch sweep, depth-switch cost"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bundle", default=None, help="bundle to measure (default: build a 3x32x32 CNN family in --out)")
    p.add_argument("--targets", default="onnxruntime,openvino", help="comma list (default: onnxruntime,openvino)")
    p.add_argument("--precisions", default="fp32,int8", help="comma list (default: fp32,int8)")
    p.add_argument("--batches", type=int_list, default=[1, 8, 32], help="batch sweep (default 1,8,32)")
    p.add_argument("--iterations", type=int, default=200, help="timed calls per depth and batch (default 200)")
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--switches", type=int, default=300, help="random depth switches timed per round (default 300)")
    p.add_argument("--switch-rounds", type=int, default=3, help="rounds of --switches switches (default 3)")
    p.add_argument("--cnn-depth", type=int, default=9, help="depth of the CNN family built without --bundle")
    p.add_argument("--threads", type=int, default=1, help="engine threads (default 1: stable on shared machines)")
    p.add_argument("--no-benchmark-app", action="store_true", help="skip OpenVINO's benchmark_app reference")


def build_cnn_bundle(out: Path, depth: int, threads: int) -> Path:
    """A 3x32x32 glonet-cnn family with fp32 + int8 for onnxruntime and openvino."""
    import numpy as np

    from ..export import export_bundle
    from ..quantize import QuantizeSettings, quantize_bundle
    from ..targets.compile import compile_bundle
    from ..train.trainer import TrainSettings, train_run

    out.mkdir(parents=True, exist_ok=True)
    data = out / "cifar_shaped.npz"
    rng = np.random.default_rng(0)
    np.savez(data, X=rng.integers(0, 256, (256, 3, 32, 32)).astype(np.float32), y=rng.integers(0, 10, 256))
    run, bundle = out / "cnn_run", out / "cnn_bundle"
    train_run("glonet-cnn", depth, str(data), run, settings=TrainSettings(epochs=1), progress=False)
    export_bundle(run, bundle, depths="all", progress=False)
    quantize_bundle(bundle, QuantizeSettings(method="ort", calib_size=64), progress=False)
    for target in ("onnxruntime", "openvino"):
        compile_bundle(bundle, target, precisions=["fp32", "int8"], progress=False, threads=threads)
    return bundle


def _p(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def measure_depth(rt: Any, depth: int, x: Any, iterations: int, warmup: int) -> tuple[list[float], list[float]]:
    """Alternating runtime / raw-engine timings (ms) of one depth on one input."""
    rt.set_depth(depth)
    model = rt._models[depth]
    raw = model.raw_callable()
    feeds = {rt.manifest.input_name: x}
    for _ in range(warmup):
        rt.infer(x)
        raw(feeds)
    runtime_ms, raw_ms = [], []
    clock = time.perf_counter
    for i in range(iterations):
        if i % 2:
            t0 = clock(); rt.infer(x); t1 = clock(); raw(feeds); t2 = clock()  # noqa: E702
            runtime_ms.append((t1 - t0) * 1e3)
            raw_ms.append((t2 - t1) * 1e3)
        else:
            t0 = clock(); raw(feeds); t1 = clock(); rt.infer(x); t2 = clock()  # noqa: E702
            raw_ms.append((t1 - t0) * 1e3)
            runtime_ms.append((t2 - t1) * 1e3)
    return runtime_ms, raw_ms


def measure_switches(rt: Any, x: Any, steady_p50: dict[int, float], switches: int, seed: int = 0) -> dict[str, float]:
    import random

    rng = random.Random(seed)
    depths = rt.depths
    set_ms, extra_ms = [], []
    current = depths[0]
    rt.set_depth(current)
    for _ in range(switches):
        nxt = rng.choice([d for d in depths if d != current] or depths)
        t0 = time.perf_counter()
        rt.set_depth(nxt)
        t1 = time.perf_counter()
        rt.infer(x)
        t2 = time.perf_counter()
        set_ms.append((t1 - t0) * 1e3)
        extra_ms.append((t2 - t0) * 1e3 - steady_p50[nxt])
        current = nxt
    return {"switches": switches, "set_depth_p50_ms": _p(set_ms, 0.5), "set_depth_p99_ms": _p(set_ms, 0.99),
            "switch_extra_p50_ms": _p(extra_ms, 0.5), "switch_extra_p99_ms": _p(extra_ms, 0.99)}


def switch_rounds(rt: Any, x: Any, steady_p50: dict[int, float], switches: int, rounds: int) -> dict[str, Any]:
    """measure_switches `rounds` times; the median round by p99, plus every round's p99."""
    if rounds < 1:
        from ..errors import ConfigError

        raise ConfigError(f"--switch-rounds must be >= 1, got {rounds}")
    in_order = [measure_switches(rt, x, steady_p50, switches, seed=i) for i in range(rounds)]
    ranked = sorted(in_order, key=lambda r: r["switch_extra_p99_ms"])
    return {**ranked[len(ranked) // 2], "rounds": rounds,
            "switch_extra_p99_ms_worst_round": ranked[-1]["switch_extra_p99_ms"],
            "switch_extra_p99_ms_by_round": [r["switch_extra_p99_ms"] for r in in_order]}


def benchmark_app_ms(ir: Path, shape: list[int], threads: int) -> float | None:
    """Median latency from OpenVINO's benchmark_app on the same IR, or None if unavailable."""
    exe = shutil.which("benchmark_app")
    if exe is None:
        return None
    # benchmark_app accepts -nthreads only with -hint none; f32 matches what the target compiles.
    cmd = [exe, "-m", str(ir), "-d", "CPU", "-hint", "none", "-nstreams", "1", "-nthreads", str(threads),
           "-api", "sync", "-infer_precision", "f32", "-t", "3", "-shape", f"[{','.join(map(str, shape))}]"]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout
    except (subprocess.SubprocessError, OSError):
        return None
    match = re.search(r"Median:\s+([\d.]+)\s+(ms|us)", out)
    if not match:
        return None
    return float(match.group(1)) / (1000.0 if match.group(2) == "us" else 1.0)


def run(args: argparse.Namespace) -> dict[str, Any]:
    from ..manifest import BundleManifest
    from ..report.environment import environment

    out = Path(args.out)
    bundle = Path(args.bundle) if args.bundle else None
    if bundle is None:
        print("building a 3x32x32 glonet-cnn family (train 1 epoch, export, quantize, compile)...", file=sys.stderr)
        bundle = build_cnn_bundle(out / "work", args.cnn_depth, args.threads)
    manifest = BundleManifest.load(bundle)
    model_name = f"{manifest.model['model']}-{manifest.max_depth} {'x'.join(map(str, manifest.input_shape))}"
    rows, switch_rows, skipped = measure_bundle(bundle, manifest, model_name, args)
    reference = []
    if not args.no_benchmark_app and "openvino" in args.targets:
        reference = benchmark_app_rows(bundle, manifest, rows, args)
    b1 = [r for r in rows if r["batch"] == 1]
    plot(b1, sorted(e.depth for e in manifest.depths), model_name, out / "latency.png")
    result = {"rows": rows, "summary": overhead_summary(b1), "int8_vs_fp32": int8_vs_fp32(rows),
              "int8_file_bytes": int8_file_bytes(manifest), "switch": switch_rows,
              "reference": reference, "skipped": skipped, "bundle": str(bundle), "threads": args.threads,
              "iterations": args.iterations, "environment": environment(), "plot": "latency.png"}
    write_summary(result, model_name, out / "latency.md")
    return result


def measure_bundle(bundle: Path, manifest: Any, model_name: str,
                   args: argparse.Namespace) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[str]]:
    """Rows per target/precision/batch/depth, switch costs per target/precision, and what was
    skipped (a library not installed, a precision the bundle lacks)."""
    import numpy as np

    from ..errors import ConfigError
    from ..runtime import Runtime
    from ..targets import get_target

    rng = np.random.default_rng(0)
    rows, switch_rows, skipped = [], [], []
    for target in [t for t in args.targets.split(",") if t]:
        if not get_target(target).available():
            skipped.append(f"{target}: library not installed")
            continue
        for precision in [p for p in args.precisions.split(",") if p]:
            try:
                rt = Runtime.open(bundle, target=target, precision=precision, power="none", anytime=False,
                                  threads=args.threads)
            except Exception as exc:  # noqa: BLE001 - a missing artifact skips that combination
                skipped.append(f"{target}/{precision}: {exc}")
                continue
            print(f"measuring {target}/{precision}: {len(rt.depths)} depths x batches {args.batches}", file=sys.stderr)
            with rt:
                measured, switches = measure_runtime(rt, manifest, rng, args)
            labels = {"target": target, "precision": precision}
            rows += [{"model": model_name, **labels, **r} for r in measured]
            if switches is not None:
                switch_rows.append({**labels, **switches})
    if not rows:
        raise ConfigError("nothing to measure: " + "; ".join(skipped))
    return rows, switch_rows, skipped


def measure_runtime(rt: Any, manifest: Any, rng: Any,
                    args: argparse.Namespace) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """One open runtime: a row per batch and depth, then the depth-switch cost at batch 1."""
    import numpy as np

    macs = {e.depth: e.macs for e in manifest.depths}
    rows, steady = [], {}
    for batch in args.batches:
        x = rng.random((batch, *manifest.input_shape), dtype=np.float32) * 255
        for depth in rt.depths:
            runtime_ms, raw_ms = measure_depth(rt, depth, x, args.iterations, args.warmup)
            r50, w50 = statistics.median(runtime_ms), statistics.median(raw_ms)
            rows.append({"depth": depth, "batch": batch, "macs": macs[depth] * batch, "runtime_ms": r50,
                         "raw_engine_ms": w50, "overhead_ratio": r50 / w50,
                         "runtime_p90_ms": _p(runtime_ms, 0.9), "raw_engine_p90_ms": _p(raw_ms, 0.9)})
            if batch == 1:
                steady[depth] = r50
    x1 = rng.random((1, *manifest.input_shape), dtype=np.float32) * 255
    switches = switch_rounds(rt, x1, steady, args.switches, args.switch_rounds) if steady else None
    return rows, switches


def benchmark_app_rows(bundle: Path, manifest: Any, rows: list[dict[str, Any]],
                       args: argparse.Namespace) -> list[dict[str, Any]]:
    """OpenVINO's benchmark_app on the deepest IR of each precision vs our batch-1 runtime."""
    reference = []
    for precision in [p for p in args.precisions.split(",") if p]:
        full = manifest.depth(manifest.max_depth).artifact("openvino", precision)
        if full is None:
            continue
        ms = benchmark_app_ms(full.resolve(bundle), [1, *manifest.input_shape], args.threads)
        ours = [r for r in rows if r["target"] == "openvino" and r["precision"] == precision
                and r["depth"] == manifest.max_depth and r["batch"] == 1]
        if ms is not None and ours:
            reference.append({"tool": "benchmark_app", "precision": precision, "depth": manifest.max_depth,
                              "median_ms": ms, "runtime_ms": ours[0]["runtime_ms"],
                              "ratio_runtime_vs_benchmark_app": ours[0]["runtime_ms"] / ms})
    return reference


def _combos(b1: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return sorted({(r["target"], r["precision"]) for r in b1})


def overhead_summary(b1: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per target/precision at batch 1: the runtime's overhead and how latency grows with depth."""
    summary = []
    for target, precision in _combos(b1):
        sel = [r for r in b1 if r["target"] == target and r["precision"] == precision]
        full = max(sel, key=lambda r: r["depth"])
        first = min(sel, key=lambda r: r["depth"])
        summary.append({"target": target, "precision": precision,
                        "median_overhead_pct": 100 * (statistics.median(r["overhead_ratio"] for r in sel) - 1),
                        # one call at every depth of the family, through the runtime vs raw
                        "family_overhead_pct": 100 * (sum(r["runtime_ms"] for r in sel)
                                                      / sum(r["raw_engine_ms"] for r in sel) - 1),
                        "max_overhead_pct": 100 * (max(r["overhead_ratio"] for r in sel) - 1),
                        "max_overhead_depth": max(sel, key=lambda r: r["overhead_ratio"])["depth"],
                        "full_depth_ms": full["runtime_ms"],
                        "latency_ratio_full_vs_first": full["runtime_ms"] / first["runtime_ms"],
                        "macs_ratio_full_vs_first": full["macs"] / first["macs"]})
    return summary


def int8_vs_fp32(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per target, batch and depth: the runtime's INT8 latency over its FP32 latency (same run)."""
    out = []
    for target, batch in sorted({(r["target"], r["batch"]) for r in rows}):
        sel = [r for r in rows if r["target"] == target and r["batch"] == batch]
        fp32 = {r["depth"]: r["runtime_ms"] for r in sel if r["precision"] == "fp32"}
        int8 = {r["depth"]: r["runtime_ms"] for r in sel if r["precision"] == "int8"}
        for depth in sorted(set(fp32) & set(int8)):
            out.append({"target": target, "batch": batch, "depth": depth, "fp32_ms": fp32[depth],
                        "int8_ms": int8[depth], "int8_over_fp32": int8[depth] / fp32[depth]})
    return out


def int8_file_bytes(manifest: Any) -> list[dict[str, Any]]:
    """Per depth: bytes of the FP32 graph and of each INT8 ONNX graph (the TensorRT-style QDQ
    graph, ONNX Runtime's own flavour), with external data, and their ratio to FP32."""
    from ..manifest import ORT_FORMAT

    rows = []
    for entry in manifest.depths:
        fp32 = entry.artifact("onnx", "fp32")
        if fp32 is None:
            continue
        for fmt in ("onnx", ORT_FORMAT):
            int8 = entry.artifact(fmt, "int8")
            if int8 is not None:
                rows.append({"depth": entry.depth, "int8_format": fmt, "fp32_bytes": fp32.total_bytes,
                             "int8_bytes": int8.total_bytes, "int8_over_fp32": int8.total_bytes / fp32.total_bytes})
    return rows


def plot(b1: list[dict[str, Any]], depths: list[int], model_name: str, path: Path) -> None:
    """Batch-1 latency per depth, and the runtime's overhead over the raw engine."""
    from ..report.plots import depth_axis, finish, new_figure

    fig, axes = new_figure(ncols=2, width=12)
    for target, precision in _combos(b1):
        sel = sorted((r for r in b1 if r["target"] == target and r["precision"] == precision), key=lambda r: r["depth"])
        axes[0].plot([r["depth"] for r in sel], [r["runtime_ms"] for r in sel], marker="o", label=f"{target}/{precision}")
        axes[1].plot([r["depth"] for r in sel], [100 * (r["overhead_ratio"] - 1) for r in sel], marker="o",
                     label=f"{target}/{precision}")
    depth_axis(axes[0], depths, log=False)
    depth_axis(axes[1], depths, log=False)
    axes[0].set_ylabel("batch-1 latency p50 (ms)")
    axes[1].set_ylabel("runtime overhead vs raw engine (%)")
    axes[1].axhline(5, color="grey", linestyle="--", linewidth=1)
    for ax in axes:
        ax.legend(fontsize=8)
    axes[0].set_title(f"{model_name}: latency per depth")
    axes[1].set_title("runtime vs raw engine (same compiled model)")
    finish(fig, path)


def write_summary(result: dict[str, Any], model_name: str, path: Path) -> None:
    from .summary import markdown_table, write_markdown

    write_markdown(path, "Latency: runtime vs raw engine", [
        f"Bundle `{result['bundle']}` ({model_name}), {result['iterations']} alternating calls per depth and batch, "
        f"{result['threads']} engine thread(s).",
        "## Batch 1, per target/precision\n\n" + markdown_table(result["summary"]),
        "## INT8 vs FP32\n\n" + (markdown_table(result["int8_vs_fp32"]) if result["int8_vs_fp32"]
                                            else "(no int8)"),
        "## INT8 ONNX file bytes vs FP32\n\n" + (markdown_table(result["int8_file_bytes"])
                                                if result["int8_file_bytes"] else "(no int8)"),
        "## Depth switch\n\n" + (markdown_table(result["switch"]) if result["switch"] else "(none)"),
        "## External reference\n\n" + (markdown_table(result["reference"]) if result["reference"]
                                        else "(benchmark_app not run)"),
        "## All rows\n\n" + markdown_table(result["rows"], ["target", "precision", "depth", "batch", "macs",
                                                             "runtime_ms", "raw_engine_ms", "overhead_ratio"]),
    ])


def table(result: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
    rows = [{**s, **{k: v for sw in result["switch"] if (sw["target"], sw["precision"]) == (s["target"], s["precision"])
                     for k, v in sw.items() if k in ("switch_extra_p99_ms", "switch_extra_p99_ms_worst_round")}}
            for s in result["summary"]]
    return rows, "runtime overhead over the raw engine (batch 1) and depth-switch cost"
