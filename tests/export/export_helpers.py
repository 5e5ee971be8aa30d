"""Independent checks for the export tests: onnxruntime straight from the files on disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from glonet_edge.data import load_dataset
from glonet_edge.manifest import BundleManifest
from glonet_edge.train.checkpoint import load_checkpoint


def session(path: Path) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def held_out(run: Path) -> tuple[np.ndarray, np.ndarray]:
    cfg = load_checkpoint(run).config.data
    data = load_dataset(cfg["dataset"], seed=cfg["seed"], val_fraction=cfg["val_fraction"])
    return data.x_val, data.y_val


def assert_family_matches_torch(run: Path, bundle: Path, rows: int = 64) -> None:
    """Every depth graph vs torch on held-out rows (<= 1e-4, relative for regression), with a
    batch size other than the export's; every segment prefix vs the truncated graph."""
    ckpt = load_checkpoint(run)
    manifest = BundleManifest.load(bundle)
    x = held_out(run)[0][:rows]
    regression = ckpt.config.model.task == "regression"
    graph_out = {}
    with torch.no_grad():
        for entry in manifest.depths:
            path = bundle / entry.artifact("onnx", "fp32").path
            graph = onnx.load(str(path), load_external_data=False)
            assert graph.graph.input[0].type.tensor_type.shape.dim[0].dim_param, "batch dim must be symbolic"
            assert [o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")] == [manifest.opset]
            want = ckpt.model(torch.from_numpy(x), depth=entry.depth).numpy()
            got = session(path).run(["y"], {"x": x})[0]
            tol = 1e-4 * max(1.0, float(np.abs(want).max())) if regression else 1e-4
            assert np.abs(got - want).max() <= tol, f"depth {entry.depth}"
            graph_out[entry.depth] = got
    feeds = {"x": x}
    for seg in manifest.segments:
        sess = session(bundle / seg.artifact("onnx", "fp32").path)
        assert [i.name for i in sess.get_inputs()] == seg.inputs
        assert [o.name for o in sess.get_outputs()] == seg.outputs
        outs = sess.run(None, feeds)
        if seg.end_depth in graph_out:
            want = graph_out[seg.end_depth]
            tol = 1e-4 * max(1.0, float(np.abs(want).max())) if regression else 1e-4
            assert np.abs(outs[-1] - want).max() <= tol, f"segment prefix to depth {seg.end_depth}"
        if seg.index + 1 < len(manifest.segments):
            feeds = dict(zip(manifest.segments[seg.index + 1].inputs, outs[:-1]))
