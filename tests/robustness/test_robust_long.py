"""Long mode only (`pytest --long`): kills at random moments, and readers racing a writer.

- `glonet export` SIGKILLed at a random moment, many times over the same bundle: after every
  kill a complete bundle is there and serves; the stale staging directories SIGKILL leaves
  never break the next export.
- Readers opening and serving the bundle in a loop while a writer re-exports and re-quantizes
  it (swapping the directory each time): every open either succeeds on a verified bundle or
  is refused with a package error; no other error, no wrong answer.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import robust_support
from robust_support import bundle_serves, count, put

pytestmark = pytest.mark.long
REPO = Path(__file__).resolve().parents[2]


def test_export_killed_at_random_moments(fc_run, bundle_copy, x_val, ort_reference):
    from glonet_edge.export import export_bundle

    rng = random.Random(0)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "glonet_edge", "export", str(fc_run), "--out", str(bundle_copy), "--depths", "all",
           "--no-progress"]
    t0 = time.monotonic()
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    full = time.monotonic() - t0  # one uninterrupted run: the kills land uniformly inside it
    kills = 0
    for _ in range(20):
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.05, 1.0) * full)  # import, load, export, verify, swap: somewhere in there
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait(timeout=120)
        bundle_serves(bundle_copy, x_val, ort_reference)
    count("faults_injected", "CLI export: SIGKILL at random moments (long)", kills)
    export_bundle(fc_run, bundle_copy, depths="all", progress=False)
    bundle_serves(bundle_copy, x_val, ort_reference)
    count("faults_survived", "CLI export: SIGKILL at random moments (long)", kills)


def test_readers_while_a_writer_swaps_the_bundle(fc_run, bundle_copy, x_val, ort_reference):
    from glonet_edge.errors import GlonetError
    from glonet_edge.export import export_bundle
    from glonet_edge.quantize import QuantizeSettings, quantize_bundle
    from glonet_edge.runtime import Runtime

    seconds = float(os.environ.get("GLONET_LOAD_SECONDS", 60))
    stop = threading.Event()
    stats = {"opens": 0, "refused": 0, "served": 0, "errors": [], "wrong": 0, "swaps": 0}
    lock = threading.Lock()

    def reader(seed: int) -> None:
        rng = np.random.default_rng(seed)
        while not stop.is_set():
            try:
                with Runtime.open(bundle_copy, power="none", anytime=False, warmup=False) as rt:
                    for _ in range(20):
                        d = int(rng.choice(rt.depths))
                        rt.set_depth(d)
                        y = rt.infer(x_val).outputs
                        ok = np.allclose(y, ort_reference[d], rtol=1e-5, atol=1e-5)
                        with lock:
                            stats["served"] += 1
                            stats["wrong"] += not ok
                with lock:
                    stats["opens"] += 1
            except GlonetError:  # opened mid-swap: the manifest of one bundle, the files of the next
                with lock:
                    stats["refused"] += 1
            except Exception as exc:  # noqa: BLE001
                with lock:
                    stats["errors"].append(f"{type(exc).__name__}: {exc}"[:300])

    def writer() -> None:
        k = 0
        while not stop.is_set():
            if k % 2:
                quantize_bundle(bundle_copy, QuantizeSettings(calib_size=64), progress=False)
            else:
                export_bundle(fc_run, bundle_copy, depths="all", progress=False)
            k += 1
            with lock:
                stats["swaps"] += 1

    threads = [threading.Thread(target=reader, args=(s,)) for s in range(3)] + [threading.Thread(target=writer)]
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join(timeout=120)
    put("load", "readers during swaps (long)", {k: (len(v) if isinstance(v, list) else v) for k, v in stats.items()})
    assert stats["errors"] == [] and stats["wrong"] == 0, stats
    assert stats["opens"] > 0 and stats["swaps"] > 0
    bundle_serves(bundle_copy, x_val, ort_reference)
