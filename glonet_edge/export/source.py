"""What export starts from, whichever way the model came:

- a run directory written by `glonet train` (its config, weights and held-out split);
- a model in memory (a GloNet, or any model of the embed / step / readout contract) with
  validation data: (x, y), a DataLoader of (x, y) batches, or an .npz / image folder path;
- on the command line, a build function (`--module pkg.mod:build_fn`) plus a weights file,
  which becomes the model in memory.

The manifest records where the model came from (the run, or the module and the weights'
sha256) and the validation data's size and sha256.
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data import load_samples
from ..errors import ConfigError
from ..train.checkpoint import load_checkpoint
from ..train.models.base import DepthModel

METRICS = {"accuracy": "classification", "r2": "regression"}


@dataclass
class ExportSource:
    model: DepthModel  # eval mode, on the CPU; never the caller's own object
    description: dict[str, Any]  # the manifest's "model"
    sha256: str  # identity of the weights: the manifest's source_checkpoint_sha256
    task: str
    x_val: np.ndarray
    y_val: np.ndarray
    train_scores: dict[int, float] | None  # score by depth measured in training, when known
    report: dict[str, Any]  # export.json's account of the source
    example: torch.Tensor  # the tracing input, batch 2 (a batch of 1 may get pinned)


def from_run(run_dir: Path, dataset: str | None) -> ExportSource:
    ckpt = load_checkpoint(run_dir)
    data = ckpt.reload_data(dataset)
    scores = {int(k): v for k, v in ckpt.metrics.score_by_depth.items()} if ckpt.metrics is not None else None
    return ExportSource(ckpt.model.eval(), ckpt.config.to_json(), ckpt.sha256, ckpt.config.model.task, data.x_val,
                        data.y_val, scores, {"run": str(run_dir), "dataset": dataset or ckpt.config.data["dataset"]},
                        _example(None, data.x_val))


def from_model(model: Any, val: Any, example_input: Any, metric: str | None, image_size: int | None,
               origin: dict[str, Any] | None) -> ExportSource:
    """A copy of `model` (the caller's keeps its mode, device and shape) with its validation data."""
    if not isinstance(model, DepthModel):
        raise ConfigError(f"export_bundle got a {type(model).__name__}; pass a run directory or a model with the "
                          "embed / step / readout contract: wrap yours in glonet_edge.GloNet(stem=..., blocks=..., head=...)")
    known = model.input_shape
    # An image folder is resized to the model's size, else to the example's.
    shape = known or (list(_as_numpy(example_input).shape[1:]) if example_input is not None else [])
    x, y, spec, classes = validation_arrays(val, image_size or (shape[-1] if len(shape) == 3 else None))
    task = _task(metric, y)
    example = _example(example_input, x)
    model = copy.deepcopy(model).cpu().eval()
    if known and known != list(example.shape[1:]):
        raise ConfigError(f"the validation samples have shape {list(example.shape[1:])}, the model expects {known}")
    model.config.input_shape = list(example.shape[1:])
    y = y.astype(np.int64).reshape(-1) if task == "classification" else y.astype(np.float32).reshape(len(y), -1)
    num_outputs = int(np.prod(model.dry_run(example).shape[1:]))
    data = {"dataset": spec, "seed": 0, "val_fraction": 0.2, "samples": len(x), "sha256": arrays_sha256(x, y)}
    if classes is not None:  # an image folder: how to read it again (quantize calibrates on it)
        data.update(image_size=int(x.shape[-1]), classes=classes)
    description = {**model.describe(), "input_shape": list(example.shape[1:]), "num_outputs": num_outputs,
                   "task": task, "source": origin or {"from": "memory"}, "data": data}
    return ExportSource(model, description, state_dict_sha256(model), task, x, y, None,
                        {"source": description["source"], "dataset": spec}, example)


def validation_arrays(val: Any, image_size: int | None) -> tuple[np.ndarray, np.ndarray, str | None, list[str] | None]:
    """(x float32, y, the data's path or None, class names or None) from any accepted form."""
    if isinstance(val, (str, Path)):
        x, y, classes = load_samples(str(val), image_size)
        spec, batches = str(Path(val).resolve()), [(x, y)]
    elif isinstance(val, (tuple, list)) and len(val) == 2 and isinstance(val[0], (np.ndarray, torch.Tensor)):
        spec, classes, batches = None, None, [val]
    elif hasattr(val, "__iter__"):
        spec, classes, batches = None, None, list(val)
    else:
        raise ConfigError(f"val must be (x, y), a DataLoader of (x, y) batches or a path to an .npz or image "
                          f"folder, got {type(val).__name__}")
    if not batches or not all(isinstance(b, (tuple, list)) and len(b) >= 2 for b in batches):
        raise ConfigError("val gives no (x, y) batches; every batch must be a pair (inputs, labels or targets)")
    x = np.concatenate([_as_numpy(b[0]) for b in batches])
    y = np.concatenate([_as_numpy(b[1]) for b in batches])
    if len(x) == 0 or len(x) != len(y) or x.ndim < 2:
        raise ConfigError(f"val must hold N >= 1 samples with N labels; got x {x.shape}, y {y.shape}")
    if not (np.issubdtype(x.dtype, np.number) and np.issubdtype(y.dtype, np.number)):
        raise ConfigError(f"val x and y must be numeric, got {x.dtype} and {y.dtype}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ConfigError("val holds NaN/Inf values; clean them first")
    return np.ascontiguousarray(x, dtype=np.float32), y, spec, classes


def _as_numpy(value: Any) -> np.ndarray:
    return value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)


def _task(metric: str | None, y: np.ndarray) -> str:
    """metric "accuracy" (class labels) or "r2" (targets); by default integer labels mean accuracy."""
    if metric is None:
        metric = "accuracy" if np.issubdtype(y.dtype, np.integer) else "r2"
    if metric not in METRICS:
        raise ConfigError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
    if metric == "accuracy" and not (np.issubdtype(y.dtype, np.integer) and y.min() >= 0):
        raise ConfigError(f"metric 'accuracy' needs class labels 0..C-1 as integers; val gives {y.dtype} labels")
    return METRICS[metric]


def _example(example_input: Any, x: np.ndarray) -> torch.Tensor:
    """The tracing input, batch 2; its sample shape must be val's."""
    example = x[:2] if example_input is None else np.ascontiguousarray(_as_numpy(example_input), dtype=np.float32)
    if example.ndim < 2 or example.shape[1:] != x.shape[1:]:
        raise ConfigError(f"example_input has shape {tuple(example.shape)}, but the validation samples have shape "
                          f"{tuple(x.shape[1:])}; give a batch (N, {', '.join(map(str, x.shape[1:]))})")
    return torch.from_numpy(example[np.arange(2) % len(example)])


def arrays_sha256(x: np.ndarray, y: np.ndarray) -> str:
    """Identity of a data set: dtypes, shapes and bytes of x and y."""
    digest = hashlib.sha256()
    for a in (x, y):
        digest.update(f"{a.dtype.str}{a.shape}".encode())
        digest.update(np.ascontiguousarray(a).tobytes())
    return digest.hexdigest()


def state_dict_sha256(model: nn.Module) -> str:
    """Identity of a model's weights: every tensor's name, dtype, shape and bytes, by name."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}{t.dtype}{tuple(t.shape)}".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def build_from_module(spec: str) -> DepthModel:
    """`pkg.mod:build_fn` -> build_fn(), which must return a GloNet (or another DepthModel).
    The working directory is importable, as with `python -m`."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"--module {spec!r} must look like pkg.mod:build_fn (a module path, a colon, a function)")
    if str(Path.cwd()) not in sys.path and "" not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # the user's code: any error while importing it
        raise ConfigError(f"--module {spec}: cannot import {module_name} ({type(exc).__name__}: {exc}); run from "
                          "the directory that holds it or put it on PYTHONPATH") from exc
    build = getattr(module, attr, None)
    if not callable(build):
        raise ConfigError(f"--module {spec}: {module_name} has no function {attr}")
    try:
        model = build()
    except Exception as exc:
        raise ConfigError(f"--module {spec}: {attr}() raised {type(exc).__name__}: {exc}") from exc
    if not isinstance(model, nn.Module):
        raise ConfigError(f"--module {spec}: {attr}() returned a {type(model).__name__}, not a torch.nn.Module; "
                          "return the model, e.g. glonet_edge.GloNet(stem=..., blocks=[...], head=...)")
    if not isinstance(model, DepthModel):
        raise ConfigError(f"--module {spec}: {attr}() returned a {type(model).__name__}, which cannot be cut by "
                          "depth; wrap it: glonet_edge.GloNet(stem=..., blocks=[...], head=...)")
    return model
