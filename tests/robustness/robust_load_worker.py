"""Sustained load on one bundle directory: used in-process by test_robust_load.py and as a
worker process (`python robust_load_worker.py CONFIG.json OUT.json`).

Threads: `infer_threads` clients calling Runtime.infer on random batches of 1-4 held-out
samples, one client calling infer_anytime with deadlines from "impossible" to generous, one
switcher pinning random depths with set_depth and handing control back to the policy, and
optionally a power flipper (rewrites the override file the runtime's power source reads:
AC <-> low battery, sometimes garbage) and an opener (Runtime.open / infer / close in a loop on
the same directory). Every answer is checked against the single-threaded reference of the
depth the prediction reports. Returns counts; never raises for a failed request (it counts it).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np

POLICY = {"min_dwell_s": 0, "max_drop": 0.5, "low_battery_max_drop": 1.0}  # AC: best depth; low battery: depth 1
POWER_STATES = ["on_battery=0,battery_pct=95\n", "on_battery=1,battery_pct=5\n"]


def _close(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=1e-5, atol=1e-5)) \
        and bool((a.argmax(1) == b.argmax(1)).all())


def run_load(bundle: str, override: str, reference: str, seconds: float, seed: int = 0, infer_threads: int = 3,
             flip_power: bool = False, opener: bool = False, ready: str | None = None) -> dict:
    from glonet_edge.fileio import atomic_write_text
    from glonet_edge.runtime import Runtime

    ref = np.load(reference)
    x = ref["x"]
    n = len(x)
    rt = Runtime.open(bundle, power=f"file:{override}", poll_interval_s=0, policy=POLICY)
    if ready:
        Path(ready).write_text("ready\n")
    lock = threading.Lock()
    stats: Counter = Counter()
    depths: Counter = Counter()
    errors: list[str] = []
    wrong: list[str] = []
    stop = threading.Event()

    def record(kind: str, pred, i: int, b: int) -> None:
        want = ref[f"{kind}_d{pred.depth}"][i:i + b]
        ok = _close(pred.outputs, want)
        with lock:
            stats[f"{kind}_served"] += 1
            depths[f"{kind}/{pred.depth}"] += 1
            if not pred.reason.startswith(("pinned", "anytime")):
                stats["policy_driven"] += 1
            if not ok:
                wrong.append(f"{kind} depth {pred.depth} rows {i}:{i + b}")

    def failed(exc: BaseException) -> None:
        with lock:
            errors.append(f"{type(exc).__name__}: {exc}"[:300])

    def client(k: int) -> None:
        rng = np.random.default_rng(seed * 100 + k)
        while not stop.is_set():
            b = int(rng.integers(1, 5))
            i = int(rng.integers(0, n - b + 1))
            try:
                pred = rt.infer(x[i:i + b])
            except Exception as exc:  # noqa: BLE001 - counted, and the test fails on it
                failed(exc)
                continue
            record("infer", pred, i, b)

    def anytime() -> None:
        rng = np.random.default_rng(seed * 100 + 99)
        while not stop.is_set():
            b = int(rng.integers(1, 5))
            i = int(rng.integers(0, n - b + 1))
            try:
                pred = rt.infer_anytime(x[i:i + b], deadline_ms=float(rng.choice([1e-3, 0.05, 0.5, 5.0, 1e4])))
            except Exception as exc:  # noqa: BLE001
                failed(exc)
                continue
            record("anytime", pred, i, b)
            with lock:
                stats["anytime_deadline_met"] += bool(pred.deadline_met)

    def switcher() -> None:
        rng = np.random.default_rng(seed * 100 + 98)
        while not stop.is_set():
            depth = int(rng.choice(rt.depths)) if rng.random() < 0.5 else None
            rt.set_depth(depth)
            with lock:
                stats["set_depth_calls"] += 1
            time.sleep(float(rng.uniform(0.002, 0.02)))
        rt.set_depth(None)

    def flipper() -> None:
        rng = np.random.default_rng(seed * 100 + 97)
        k = 0
        while not stop.is_set():
            if rng.random() < 0.1:  # a broken writer: non-atomic garbage (the source must serve stale/unknown)
                with open(override, "w") as fh:
                    fh.write("on_battery=banana")
                with lock:
                    stats["power_garbage_writes"] += 1
            else:
                k += 1
                atomic_write_text(override, POWER_STATES[k % 2])
                with lock:
                    stats["power_flips"] += 1
            time.sleep(float(rng.uniform(0.01, 0.04)))
        atomic_write_text(override, POWER_STATES[0])

    def reopen() -> None:
        rng = np.random.default_rng(seed * 100 + 96)
        while not stop.is_set():
            try:
                with Runtime.open(bundle, power="none", anytime=False, warmup=False) as other:
                    depth = int(rng.choice(other.depths))
                    other.set_depth(depth)
                    pred = other.infer(x[:2])
            except Exception as exc:  # noqa: BLE001
                failed(exc)
                continue
            record("infer", pred, 0, 2)
            with lock:
                stats["runtime_opens"] += 1

    threads = [threading.Thread(target=client, args=(k,)) for k in range(infer_threads)]
    threads += [threading.Thread(target=anytime), threading.Thread(target=switcher)]
    if flip_power:
        threads.append(threading.Thread(target=flipper))
    if opener:
        threads.append(threading.Thread(target=reopen))
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join(timeout=60)
    elapsed = time.perf_counter() - t0
    hung = sum(t.is_alive() for t in threads)
    switches = rt.policy.switches
    rt.close()
    served = stats["infer_served"] + stats["anytime_served"]
    return {"seconds": round(elapsed, 2), "threads": len(threads), "requests_served": served,
            "requests_per_s": round(served / elapsed, 1), **dict(stats), "policy_depth_switches": switches,
            "depths_served": dict(sorted(depths.items())), "errors": len(errors), "error_samples": errors[:5],
            "wrong_answers": len(wrong), "wrong_samples": wrong[:5], "hung_threads": hung}


if __name__ == "__main__":
    result = run_load(**json.loads(Path(sys.argv[1]).read_text()))
    Path(sys.argv[2]).write_text(json.dumps(result))
