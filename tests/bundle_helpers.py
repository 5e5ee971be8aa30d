"""Tiny bundles and helpers for the quantize and targets tests (a uniquely named module next to
tests/conftest.py, importable from every test directory; conftest.py files share one name).

Tiny bundles are made WITHOUT the export module by default: train a tiny model with the
trainer, export each depth with the legacy torch.onnx exporter (opset 17, dynamic batch, input
"x", output "y"), export a segment chain, and write a BundleManifest.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

# Two shared cores: keep every engine to one or two threads so parallel runs don't thrash.
os.environ.setdefault("OMP_NUM_THREADS", "2")
CALIB = 2000  # more than digits' training split: calibrate on all of it (deterministic, still train-only)


def _export_onnx(module, example, path: Path, input_names, output_names) -> None:
    import torch

    import warnings

    dyn = {n: {0: "batch"} for n in [*input_names, *output_names]}
    # As in glonet_edge/export/onnx_export.py: the tracer warns about the models' Python shape
    # checks (static dims by design); the graphs are checked against torch by the tests.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(module, example, str(path), input_names=list(input_names), output_names=list(output_names),
                          dynamic_axes=dyn, opset_version=17, dynamo=False, do_constant_folding=True)


def make_bundle(root: Path, model_name: str, depth: int, dataset: str, depths: list[int], epochs: int = 5,
                segments: list[tuple[int, int]] | None = None, width: int = 32, val_fraction: float = 0.2, lr: float = 3e-3) -> Path:
    """Train `model_name` at `depth` on `dataset`, export `depths` and a segment chain into root/bundle."""
    import torch
    from torch import nn

    from glonet_edge.manifest import Artifact, BundleManifest, DepthEntry, SegmentEntry
    from glonet_edge.train.models import params_and_macs
    from glonet_edge.train.trainer import TrainSettings, train_run

    export_bundle = None
    try:  # prefer the real exporter once it exists with the agreed signature
        from glonet_edge.export.bundle import export_bundle  # type: ignore
    except Exception:
        export_bundle = None

    torch.set_num_threads(1)  # tiny models train ~15x faster single-threaded on shared cores
    run = root / "run"
    model, metrics = train_run(model_name, depth, dataset, out=run, width=width,
                               settings=TrainSettings(epochs=epochs, lr=lr, seed=0), progress=False, val_fraction=val_fraction)
    bundle = root / "bundle"
    # The local exporter is the default so these tests do not move with the export module;
    # GLONET_TEST_USE_EXPORT=1 runs them on bundles made by glonet_edge.export.bundle instead.
    if export_bundle is not None and os.environ.get("GLONET_TEST_USE_EXPORT") == "1":
        try:
            export_bundle(run, bundle, depths=depths)
            return bundle
        except TypeError:
            pass  # signature differs: fall back to the local exporter

    class Trunc(nn.Module):
        def __init__(self, net, d):
            super().__init__()
            self.net, self.d = net, d

        def forward(self, x):
            return self.net(x, depth=self.d)

    class Segment(nn.Module):
        def __init__(self, net, start, end):
            super().__init__()
            self.net, self.start, self.end = net, start, end

        def forward(self, *inputs):
            state = self.net.embed(inputs[0]) if self.start == 0 else tuple(inputs)
            for i in range(self.start, self.end):
                state = self.net.step(i, state)
            return (*state, self.net.readout(state))

    model.eval()
    (bundle / "onnx").mkdir(parents=True, exist_ok=True)
    example = torch.zeros(2, *model.config.input_shape)
    import json

    config = json.loads((run / "config.json").read_text())
    from glonet_edge.fileio import sha256_file

    manifest = BundleManifest(model=config, source_checkpoint_sha256=sha256_file(run / "model.safetensors"),
                              input_shape=list(model.config.input_shape), task=model.config.task,
                              metric_name=metrics.metric)
    for d in depths:
        path = bundle / "onnx" / f"depth_{d:03d}.onnx"
        _export_onnx(Trunc(model, d), (example,), path, ["x"], ["y"])
        params, macs = params_and_macs(model, d)
        entry = DepthEntry(d, params, macs, [Artifact.from_file(bundle, path, "onnx", "fp32")],
                           {"fp32": {metrics.metric: metrics.score_by_depth[str(d)]}})
        manifest.depths.append(entry)
    if segments:
        (bundle / "segments").mkdir(exist_ok=True)
        n_state = len(model.embed(example))
        state_names = [f"state_{i}" for i in range(n_state)]
        for j, (a, b) in enumerate(segments):
            path = bundle / "segments" / f"segment_{j:02d}.onnx"
            inputs = ["x"] if a == 0 else state_names
            with torch.no_grad():
                ex = (example,) if a == 0 else tuple(model.embed(example))
                for i in range(0, a):
                    ex = model.step(i, ex)
            outputs = [f"next_{n}" for n in state_names] + ["y"]  # export module's convention
            _export_onnx(Segment(model, a, b), tuple(ex), path, inputs, outputs)
            manifest.segments.append(SegmentEntry(j, a, b, inputs, outputs,
                                                  [Artifact.from_file(bundle, path, "onnx", "fp32")]))
    manifest.save(bundle)
    return bundle


def make_image_npz(path: Path, n: int = 480, shape=(3, 32, 32), classes: int = 4, seed: int = 0) -> Path:
    """Synthetic image classification data: class = which quadrant holds a bright blob, plus noise."""
    rng = np.random.default_rng(seed)
    c, h, w = shape
    y = rng.integers(0, classes, n)
    x = rng.normal(100.0, 30.0, size=(n, c, h, w)).astype(np.float32)
    for i, k in enumerate(y):
        r0, c0 = (k // 2) * (h // 2), (k % 2) * (w // 2)
        x[i, :, r0:r0 + h // 2, c0:c0 + w // 2] += 60.0 + 20.0 * (k % 3)
    np.savez(path, X=np.clip(x, 0, 255), y=y.astype(np.int64))
    return path


def tree_digest(root: Path) -> dict[str, str]:
    """{relative path: sha256} of every file under root (to prove a failed stage changed nothing)."""
    from glonet_edge.fileio import sha256_file

    return {p.relative_to(root).as_posix(): sha256_file(p) for p in sorted(root.rglob("*")) if p.is_file()}


def no_staging_left(bundle: Path) -> bool:
    return not [p for p in bundle.parent.iterdir() if ".staging." in p.name or ".old." in p.name]


def serve_from_threads(rt, x: np.ndarray, reference: dict, clients: int = 8, calls: int = 1000) -> tuple[list, list, int]:
    """`clients` threads each call rt.infer on single rows of x while another thread switches the
    depth (or unpins it); returns (errors, rows answered unlike reference[depth], calls served).
    Each prediction must equal the single-threaded answer of the depth it reports."""
    import threading
    import time

    errors, wrong, served = [], [], [0]
    lock = threading.Lock()
    stop = threading.Event()

    def client(seed: int) -> None:
        rng = np.random.default_rng(seed)
        for _ in range(calls):
            i = int(rng.integers(len(x)))
            try:
                pred = rt.infer(x[i:i + 1])
            except Exception as exc:  # noqa: BLE001 - any error fails the caller's test
                errors.append(repr(exc))
                continue
            if not np.array_equal(pred.outputs[0], reference[pred.depth][i]):
                wrong.append((pred.depth, i))
            with lock:
                served[0] += 1

    def switcher() -> None:
        rng = np.random.default_rng(99)
        while not stop.is_set():
            rt.set_depth(int(rng.choice(rt.depths)) if rng.random() < 0.8 else None)
            time.sleep(0.0005)

    sw = threading.Thread(target=switcher)
    sw.start()
    threads = [threading.Thread(target=client, args=(seed,)) for seed in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    sw.join()
    return errors, wrong, served[0]
