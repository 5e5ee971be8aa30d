"""Load: threads AND processes sharing one bundle directory, sustained for a bounded time,
with power-state changes injected (an override file flipped between AC and low battery, and
sometimes garbage, read with poll_interval_s=0) and set_depth switches.

Fast mode: a few seconds (GLONET_LOAD_SECONDS overrides); `pytest --long`: 60 s. Every answer
is checked against the single-threaded reference outputs of the depth the prediction reports.
The figures (requests served, errors, wrong answers, switches, per process) are written to the
robustness figures file and printed at the end of the run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import robust_support
from robust_load_worker import POWER_STATES, run_load
from robust_support import put

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def _seconds() -> float:
    if os.environ.get("GLONET_LOAD_SECONDS"):
        return float(os.environ["GLONET_LOAD_SECONDS"])
    return 60.0 if robust_support.LONG else 4.0


@pytest.fixture
def reference_file(fc_served_bundle, x_val, tmp_path) -> Path:
    """Single-threaded reference answers of every depth (graphs and segment chain)."""
    from glonet_edge.runtime import Runtime

    arrays = {"x": x_val}
    with Runtime.open(fc_served_bundle, power="none") as rt:
        for d in rt.depths:
            rt.set_depth(d)
            arrays[f"infer_d{d}"] = rt.infer(x_val).outputs
            arrays[f"anytime_d{d}"] = rt.infer_anytime(x_val, deadline_ms=1e9, max_depth=d).outputs
    path = tmp_path / "reference.npz"
    np.savez(path, **arrays)
    return path


def _rising_scores(bundle: Path) -> None:
    """This small checkpoint scores best at depth 1, so every tier would serve depth 1. Give the
    manifest a GloNet-like rising curve (scores are metadata, not checksummed) so AC serves
    the deepest depth and low battery depth 1: then power flips really move the depth."""
    doc = json.loads((bundle / "manifest.json").read_text())
    for e in doc["depths"]:
        e["metrics"]["fp32"][doc["metric_name"]] = 0.5 + 0.05 * e["depth"]
    (bundle / "manifest.json").write_text(json.dumps(doc))


def test_threads_and_processes_share_one_bundle_under_power_changes(bundle_copy, reference_file, tmp_path):
    seconds = _seconds()
    _rising_scores(bundle_copy)
    override = tmp_path / "power.override"
    override.write_text(POWER_STATES[0])
    workers, outs = [], []
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), str(REPO)]), "OMP_NUM_THREADS": "1",
           "GLONET_THREADS": "1"}
    for k in range(2):
        cfg, out, ready = tmp_path / f"w{k}.json", tmp_path / f"w{k}.out.json", tmp_path / f"w{k}.ready"
        cfg.write_text(json.dumps({"bundle": str(bundle_copy), "override": str(override),
                                   "reference": str(reference_file), "seconds": seconds, "seed": k + 1,
                                   "infer_threads": 2, "ready": str(ready)}))
        workers.append((subprocess.Popen([sys.executable, str(HERE / "robust_load_worker.py"), str(cfg), str(out)],
                                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True), ready))
        outs.append(out)
    deadline = time.monotonic() + 120
    while not all(r.exists() for _, r in workers):
        assert time.monotonic() < deadline, "workers never became ready"
        for p, _ in workers:
            assert p.poll() is None, p.communicate()[1][-2000:]
        time.sleep(0.05)

    main = run_load(str(bundle_copy), str(override), str(reference_file), seconds, seed=0, infer_threads=3,
                    flip_power=True, opener=True)
    per_process = {"main (3 infer + anytime + switcher + power flipper + opener threads)": main}
    for k, ((proc, _), out) in enumerate(zip(workers, outs)):
        _, err = proc.communicate(timeout=seconds + 120)
        assert proc.returncode == 0, err[-3000:]
        per_process[f"worker {k + 1} (2 infer + anytime + switcher threads)"] = json.loads(out.read_text())

    totals = {key: sum(p.get(key, 0) for p in per_process.values())
              for key in ("requests_served", "infer_served", "anytime_served", "policy_driven", "errors",
                          "wrong_answers", "set_depth_calls", "runtime_opens", "hung_threads",
                          "policy_depth_switches")}
    figures = {"seconds": seconds, "processes": len(per_process),
               "threads": sum(p["threads"] for p in per_process.values()),
               "power_flips": main.get("power_flips", 0), "power_garbage_writes": main.get("power_garbage_writes", 0),
               **totals, "requests_per_s": round(sum(p["requests_per_s"] for p in per_process.values()), 1),
               "per_process": per_process}
    put("load", "fast" if not robust_support.LONG else "long", figures)
    path = tmp_path / "load_figures.json"
    path.write_text(json.dumps(figures, indent=2))
    print(f"\nload figures ({path}):\n{json.dumps({k: v for k, v in figures.items() if k != 'per_process'}, indent=1)}")

    assert totals["wrong_answers"] == 0, [p["wrong_samples"] for p in per_process.values()]
    assert totals["errors"] == 0, [p["error_samples"] for p in per_process.values()]
    assert totals["hung_threads"] == 0
    for name, p in per_process.items():
        assert p["infer_served"] > 0 and p["anytime_served"] > 0, name
    # The power changes really moved the depth (AC: best depth, low battery: depth 1).
    assert main["power_flips"] >= 5 and main["policy_depth_switches"] >= 2, main
    assert len({k for k in main["depths_served"] if k.startswith("infer/")}) >= 2
