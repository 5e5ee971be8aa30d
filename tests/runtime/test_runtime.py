"""The runtime on a real exported bundle with ONNX Runtime: answers, threads, anytime, faults."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

import fake_sysfs
from bundle_helpers import serve_from_threads
from glonet_edge.data import load_dataset
from glonet_edge.errors import ArtifactError, ConfigError
from glonet_edge.runtime import Runtime

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def x_val():
    return load_dataset("digits").x_val[:64]


@pytest.fixture(scope="module")
def reference(fc_served_bundle, x_val):
    """Single-threaded answers of every depth, one sample at a time (batch 1)."""
    with Runtime.open(fc_served_bundle, power="none", anytime=False) as rt:
        out = {}
        for d in rt.depths:
            rt.set_depth(d)
            out[d] = np.stack([rt.infer(x_val[i:i + 1]).outputs[0] for i in range(len(x_val))])
        return out


def test_infer_matches_torch_at_every_depth(fc_served_bundle, fc_run, x_val):
    import torch

    from glonet_edge.train.checkpoint import load_checkpoint

    model = load_checkpoint(fc_run).model
    with Runtime.open(fc_served_bundle, power="none") as rt:
        assert rt.depths == list(range(1, 9))
        for d in rt.depths:
            rt.set_depth(d)
            pred = rt.infer(x_val)
            assert pred.depth == d and pred.reason == "pinned with set_depth"
            with torch.no_grad():
                np.testing.assert_allclose(pred.outputs, model(torch.from_numpy(x_val), depth=d).numpy(), atol=1e-4)
        rt.set_depth(None)
        assert rt.infer(x_val).reason == rt.decision.reason


def test_policy_picks_cheaper_depth_on_low_battery(fc_served_bundle, x_val, tmp_path):
    root = fake_sysfs.laptop(tmp_path / "laptop", ac_online=True, capacity=90, status="Charging")
    with Runtime.open(fc_served_bundle, power="battery", power_root=root, poll_interval_s=0) as rt:
        on_ac = rt.infer(x_val).depth
        fake_sysfs.laptop(tmp_path / "laptop", ac_online=False, capacity=10)
        rt.policy.config = type(rt.policy.config)(min_dwell_s=0)
        low = rt.refresh()
        assert "battery" in low.reason
        pred = rt.infer(x_val)
        assert pred.depth == low.depth <= on_ac
        assert pred.reason == low.reason


def test_eight_threads_with_depth_switches_answer_like_single_thread(fc_served_bundle, x_val, reference):
    rt = Runtime.open(fc_served_bundle, power="none", anytime=False)
    errors, wrong, served = serve_from_threads(rt, x_val, reference)
    rt.close()
    assert errors == [] and wrong == [] and served == 8000


class SlowModel:
    """Wraps a loaded segment and sleeps: a deliberately slow segment."""

    def __init__(self, inner, delay_s: float):
        self.inner, self.delay_s = inner, delay_s

    def run_validated(self, feeds):
        time.sleep(self.delay_s)
        return self.inner.run_validated(feeds)

    def close(self):
        self.inner.close()


def test_infer_anytime_returns_deepest_finished_segment(fc_served_bundle, x_val, reference):
    with Runtime.open(fc_served_bundle, power="none") as rt:
        full = rt.infer_anytime(x_val[:1], deadline_ms=10_000, max_depth=8)
        assert full.depth == 8 and full.segments_run == 8 and full.deadline_met
        # Segment 4 (depth 4 -> 5) now takes 200 ms: a 100 ms deadline must stop at depth 4.
        end, model = rt._chain.segments[4]
        rt._chain.segments[4] = (end, SlowModel(model, 0.2))
        rt._chain.segment_ms[4] = 0.0  # the runtime does not know yet that it is slow
        first = rt.infer_anytime(x_val[:1], deadline_ms=100, max_depth=8)
        assert first.depth == 5 and not first.deadline_met  # it learned the hard way...
        np.testing.assert_allclose(first.outputs[0], reference[5][0], atol=1e-5)
        again = rt.infer_anytime(x_val[:1], deadline_ms=100, max_depth=8)
        assert again.depth == 4 and again.deadline_met  # ...and now stops before the slow segment
        np.testing.assert_allclose(again.outputs[0], reference[4][0], atol=1e-5)
        # A deadline shorter than the first segment still gets the first segment's valid answer.
        end0, model0 = rt._chain.segments[0]
        rt._chain.segments[0] = (end0, SlowModel(model0, 0.01))
        tiny = rt.infer_anytime(x_val[:1], deadline_ms=0.001)
        assert tiny.depth == 1 and tiny.segments_run == 1 and tiny.deadline_met is False
        np.testing.assert_allclose(tiny.outputs[0], reference[1][0], atol=1e-5)


def test_vanishing_sensor_mid_run_keeps_serving(fc_served_bundle, x_val, tmp_path, caplog):
    root = fake_sysfs.laptop(tmp_path / "laptop", capacity=50)
    with Runtime.open(fc_served_bundle, power="battery", power_root=root, poll_interval_s=0) as rt:
        rt.infer(x_val)
        shutil.rmtree(root / "sys/class/power_supply")  # the battery driver goes away
        with caplog.at_level("WARNING"):
            preds = [rt.infer(x_val) for _ in range(20)]
        assert all(p.outputs.shape == (64, 10) for p in preds)
        warnings = [r for r in caplog.records if r.levelname == "WARNING"]
        assert 1 <= len(warnings) <= 2, [r.getMessage() for r in warnings]  # warned once, not per call
        (root / "sys/class/power_supply").mkdir(parents=True)
        (root / "sys/class/power_supply/BAT0").write_bytes(b"\xff\xfe garbage")  # now a file, not a dir
        assert rt.infer(x_val).outputs.shape == (64, 10)


def test_input_validation_at_the_boundary(fc_served_bundle, x_val, reference):
    with Runtime.open(fc_served_bundle, power="none", anytime=False) as rt:
        rt.set_depth(3)
        with pytest.raises(ConfigError, match=r"expects \(batch, 1, 8, 8\)"):
            rt.infer(x_val[0])
        with pytest.raises(ConfigError, match=r"expects \(batch, 1, 8, 8\)"):
            rt.infer(x_val.reshape(64, 64))
        bad = x_val[:2].copy()
        bad[1, 0, 3, 3] = np.nan
        with pytest.raises(ConfigError, match="1 NaN/Inf"):
            rt.infer(bad)
        bad[1, 0, 3, 3], bad[0, 0, 1, 1] = np.inf, -np.inf  # +Inf and -Inf sum to NaN: still caught
        with pytest.raises(ConfigError, match="2 NaN/Inf"):
            rt.infer(bad)
        # Finite values whose sum of squares overflows fail the fast path and must pass the exact
        # check, not be refused as Inf.
        huge = np.full((1, 1, 8, 8), 1e20, np.float32)
        assert not np.isfinite(np.vdot(huge, huge))
        assert rt.infer(huge).outputs.shape == (1, 10)
        with pytest.raises(ConfigError, match="must be real numbers"):
            rt.infer(np.array([["a"]]))
        with pytest.raises(ConfigError, match="empty"):
            rt.infer(x_val[:0])
        with pytest.raises(ConfigError, match="not servable"):
            rt.set_depth(99)
        # Documented conversions: other dtypes and non-contiguous arrays give the same answer.
        as_int = rt.infer(x_val[:4].astype(np.int64)).outputs
        np.testing.assert_array_equal(as_int, rt.infer(x_val[:4]).outputs)
        strided = np.asfortranarray(x_val[:4])
        np.testing.assert_array_equal(rt.infer(strided).outputs, rt.infer(x_val[:4]).outputs)


def test_tampered_bundle_is_refused(fc_served_bundle, tmp_path):
    copy = tmp_path / "b"
    shutil.copytree(fc_served_bundle, copy)
    graph = copy / "onnx" / "depth_003.onnx"
    data = bytearray(graph.read_bytes())
    data[len(data) // 2] ^= 0xFF
    graph.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="depth_003.onnx fails its sha256 check"):
        Runtime.open(copy, power="none")
    with pytest.raises(ArtifactError, match="no 'onnx' int8 artifacts"):
        Runtime.open(fc_served_bundle, power="none", precision="int8")


def test_runtime_serves_without_torch_onnx_nncf(fc_served_bundle):
    code = (
        "import sys\n"
        "for m in ('torch', 'onnx', 'nncf', 'sklearn'): sys.modules[m] = None\n"
        "import numpy as np\n"
        "from glonet_edge.runtime import Runtime\n"
        f"rt = Runtime.open({str(fc_served_bundle)!r}, power='auto')\n"
        "p = rt.infer(np.zeros((2, 1, 8, 8), np.float32))\n"
        "a = rt.infer_anytime(np.zeros((1, 1, 8, 8), np.float32), deadline_ms=1000)\n"
        "assert p.outputs.shape == (2, 10) and a.outputs.shape == (1, 10)\n"
        "assert not any(m in sys.modules and sys.modules[m] is not None for m in ('torch', 'onnx', 'nncf'))\n"
        "print('ok', p.depth)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("ok")
