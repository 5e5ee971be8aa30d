"""ONNX Runtime options for serving a depth family in one model's memory (BENCHMARKS.md, "Memory").

    PYTHONPATH=. python benchmarks/cpu-2026-12-01/ort_sharing_study.py BUNDLE

BUNDLE: exported with `glonet export --shared-weights` (depth graphs sharing
onnx/family.fp32.bin, and the family graph onnx/family.fp32.onnx). Prints, per option, the
VmRSS a fresh process adds by loading it and running every depth once, then the p50 ratio
to the per-depth sessions at every depth (both loaded in one process, alternated, 5 rounds
of 200 calls, median ratio per depth). One intra-op thread everywhere.

Options: per-depth sessions (what the runtime does); per-depth sessions whose weights are
OrtValues the process owns once, given to every session with SessionOptions.add_initializer
(with ORT's prepacking, with "session.disable_prepacking", and with that and no CPU memory
arena: no weight held twice and no arena, the floor of any layout with a session per depth);
the family graph in one session, asking for one output, with and without
RunOptions.only_execute_path_to_fetches; the deepest graph alone (RSS only), with and
without the arena.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

OPTIONS = ["per-depth sessions", "add_initializer + prepacking", "add_initializer, prepacking disabled",
           "add_initializer, prepacking disabled, no arena", "family graph",
           "family graph + only_execute_path_to_fetches", "full graph alone", "full graph alone, no arena"]


def rss() -> int:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmRSS:"))


def options(ort, option: str = ""):
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads, so.log_severity_level = 1, 1, 3
    if "prepacking disabled" in option:
        so.add_session_config_entry("session.disable_prepacking", "1")
    # "no arena": activations from plain malloc/free, so what a session holds between calls is
    # the least ORT can hold for it (a floor for any per-depth-session layout)
    so.enable_cpu_mem_arena = "no arena" not in option
    return so


def shared_weights(onnx, graphs: dict[int, Path], ort) -> tuple[list, dict[int, list]]:
    """Every external initializer once, as an OrtValue over one read of the weights file."""
    raw = np.fromfile(next(iter(graphs.values())).parent / "family.fp32.bin", dtype=np.uint8)
    values, per_depth = {}, {}
    for depth, path in graphs.items():
        per_depth[depth] = []
        for t in onnx.load(str(path), load_external_data=False).graph.initializer:
            where = {e.key: e.value for e in t.external_data}
            if where:
                key = (int(where["offset"]), int(where["length"]))
                if key not in values:
                    array = raw[key[0]:key[0] + key[1]].view(np.float32).reshape(list(t.dims))
                    values[key] = ort.OrtValue.ortvalue_from_numpy(array)
                per_depth[depth].append((t.name, values[key]))
    return [raw, values], per_depth


def load(option: str, bundle: Path) -> tuple[dict, list]:
    """{depth: call()} for one option, and what must stay alive with it."""
    import onnx
    import onnxruntime as ort

    graphs = {int(p.stem.split("_")[1]): p for p in sorted((bundle / "onnx").glob("depth_*.onnx"))}
    x = {"x": np.random.default_rng(0).random((1, *json.loads((bundle / "manifest.json").read_text())["input"]["shape"]),
                                              dtype=np.float32)}
    cpu = ["CPUExecutionProvider"]
    if option.startswith("family graph"):
        session = ort.InferenceSession(str(bundle / "onnx" / "family.fp32.onnx"), options(ort, option), providers=cpu)
        run = ort.RunOptions()
        run.only_execute_path_to_fetches = option.endswith("fetches")
        return {d: (lambda n=f"y_{d:03d}": session.run([n], x, run)) for d in graphs}, [session]
    if option.startswith("full graph alone"):
        graphs = {max(graphs): graphs[max(graphs)]}
    keep, per_depth = shared_weights(onnx, graphs, ort) if option.startswith("add_initializer") else ([], {})
    sessions = {}
    for depth, path in graphs.items():
        so = options(ort, option)
        for name, value in per_depth.get(depth, []):
            so.add_initializer(name, value)
        sessions[depth] = ort.InferenceSession(str(path), so, providers=cpu)
    return {d: (lambda s=s: s.run(None, x)) for d, s in sessions.items()}, [keep, sessions]


def child(option: str, bundle: Path) -> None:
    import onnx  # noqa: F401  imported before measuring: the library is not what an option costs
    import onnxruntime  # noqa: F401

    before = rss()
    calls, _keep = load(option, bundle)
    for call in calls.values():
        call()
    print(json.dumps({"rss_added_mb": (rss() - before) / 2**20}))


def p50(call, n: int = 200) -> float:
    for _ in range(20):
        call()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def latency_ratios(option: str, bundle: Path) -> tuple[dict[int, float], float]:
    """Median p50 ratio per depth, and the largest |difference| of any depth's answer."""
    (base, _), (other, _alive) = load(OPTIONS[0], bundle), load(option, bundle)  # _alive: the shared weights
    worst = max(float(np.abs(other[d]()[0] - base[d]()[0]).max()) for d in base)
    ratios: dict[int, list[float]] = {d: [] for d in base}
    for _ in range(5):
        for d in base:
            ratios[d].append(p50(other[d]) / p50(base[d]))
    return {d: float(np.median(r)) for d, r in ratios.items()}, worst


def main(bundle: Path) -> None:
    for option in OPTIONS:
        runs = [json.loads(subprocess.run([sys.executable, __file__, "--child", option, str(bundle)], check=True,
                                          capture_output=True, text=True).stdout)["rss_added_mb"] for _ in range(3)]
        line = f"{option}: +{np.median(runs):.1f} MB RSS (median of 3 processes)"
        if option != OPTIONS[0] and not option.startswith("full graph alone"):
            r, worst = latency_ratios(option, bundle)
            line += (f"; max |answer - per-depth session's| {worst:.3g}; p50 / per-depth sessions: median {np.median(list(r.values())):.2f}, depth {min(r)} "
                     f"{r[min(r)]:.2f}, depth {max(r)} {r[max(r)]:.2f}, range {min(r.values()):.2f}-{max(r.values()):.2f}")
        print(line, flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "--child":
        child(sys.argv[2], Path(sys.argv[3]))
    else:
        main(Path(sys.argv[1]))
