"""Shared fixtures for the power, policy and simulation tests (no torch, no onnx)."""

from __future__ import annotations

import pytest

from glonet_edge.manifest import BundleManifest, DepthEntry

# The reference fc GloNet on MNIST: accuracy rises quickly, then stays flat up to depth 32.
DIGITS_CURVE = [0.216, 0.564, 0.755, 0.884, 0.934, 0.950, 0.951, 0.953] + [0.955] * 24


def make_manifest(scores=DIGITS_CURVE, width: int = 32, in_features: int = 64, classes: int = 10,
                  latency=None, energy=None, rejected=None, precision: str = "fp32") -> BundleManifest:
    """A BundleManifest for an fc GloNet family with made-up scores; MACs as the fc model has them."""
    depths = []
    for d, score in enumerate(scores, start=1):
        entry = DepthEntry(depth=d, params=0, macs=in_features * width + d * width * width + width * classes,
                           metrics={precision: {"accuracy": score}})
        if latency is not None:
            entry.latency_ms["onnxruntime/fp32"] = {"p50": latency(d), "p90": latency(d) * 1.2, "batch": 1}
        if energy is not None:
            entry.energy_mj["onnxruntime/fp32"] = energy(d)
        if rejected and d in rejected:
            entry.rejected[precision] = rejected[d]
        depths.append(entry)
    return BundleManifest(model={"model": "fc", "depth": len(scores), "width": width},
                          source_checkpoint_sha256="0" * 64, input_shape=[in_features], task="classification",
                          metric_name="accuracy", depths=depths)


@pytest.fixture
def digits_manifest() -> BundleManifest:
    return make_manifest()


@pytest.fixture
def bundle_dir(tmp_path, digits_manifest):
    path = tmp_path / "bundle"
    path.mkdir()
    digits_manifest.save(path)
    return path


@pytest.fixture
def manifest_factory():
    """make_manifest, for tests that need other scores, latencies or energies."""
    return make_manifest
