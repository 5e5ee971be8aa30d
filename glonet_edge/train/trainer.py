"""Training loop: one process, or data-parallel under `torchrun` (DDP; gloo on CPU, nccl on GPU)."""

from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..data import Dataset, load_dataset, score
from ..errors import ConfigError
from ..progress import progress_bar
from .checkpoint import RunConfig, RunMetrics, save_checkpoint
from .models import DepthModel, ModelConfig, create_model, params_and_macs


class TrainingDiverged(ConfigError):
    """The loss became NaN/Inf; the model's weights are no longer usable."""


@dataclass
class TrainSettings:
    epochs: int = 40
    batch_size: int = 64
    lr: float = 1e-3
    optimizer: str = "adam"  # or "sgd" (momentum 0.9)
    schedule: str = "cosine"  # or "none"
    weight_decay: float = 0.0
    seed: int = 0
    device: str = "auto"  # "cpu" | "cuda" | "auto"
    grad_clip: float = 5.0
    # Weight of the mean loss over every shallower cut (0 = the paper's plain training).
    cut_loss: float = 1.0
    # CPU intra-op threads; 0 = auto: one thread for small models (SMALL_BATCH_MACS), else torch's default.
    threads: int = 0

    def validate(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError("epochs and batch_size must be >= 1")
        if self.threads < 0:
            raise ConfigError(f"threads must be >= 0 (0 = auto), got {self.threads}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"lr must be a positive number, got {self.lr}")
        if self.optimizer not in ("adam", "sgd"):
            raise ConfigError(f"optimizer must be 'adam' or 'sgd', got {self.optimizer!r}")
        if self.schedule not in ("cosine", "none"):
            raise ConfigError(f"schedule must be 'cosine' or 'none', got {self.schedule!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"device must be auto, cpu or cuda, got {self.device!r}")


def _dist_info() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    return rank, world


def _device(settings: TrainSettings) -> torch.device:
    if settings.device == "cuda" or (settings.device == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ConfigError("--device cuda was asked for but no CUDA GPU is visible; use --device cpu")
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def loss_fn(model: DepthModel, pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if model.config.task == "classification":
        return F.cross_entropy(pred, y)
    # Regression: compare in standardised units so the loss scale does not depend on the target's.
    return F.mse_loss((pred - model.target_mean) / model.target_std, (y - model.target_mean) / model.target_std)


def cut_loss(outputs: Sequence[torch.Tensor], target: torch.Tensor,
             criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
             weight: float = 1.0) -> torch.Tensor:
    """The loss of `glonet train --cut-loss`, for any training loop:

        criterion(y_L, target) + weight * mean(criterion(y_k, target) for k < L)

    `outputs` are the predictions at every depth from one pass, `model(x, all_depths=True)`.
    The shallower cuts are trained to answer on their own, so every depth of the exported
    family is usable; weight 0 is the paper's plain training of the full depth.
    """
    if not outputs:
        raise ConfigError("cut_loss needs the outputs at every depth: model(x, all_depths=True)")
    loss = criterion(outputs[-1], target)
    if weight and len(outputs) > 1:
        loss = loss + weight * torch.stack([criterion(o, target) for o in outputs[:-1]]).mean()
    return loss


@torch.no_grad()
def score_by_depth(model: DepthModel, x: np.ndarray, y: np.ndarray, batch: int = 512) -> dict[str, float]:
    """Validation score at every depth 1..L from one pass per batch."""
    model.eval()
    device = next(model.parameters()).device
    preds: list[list[np.ndarray]] = [[] for _ in range(model.num_blocks)]
    for i in range(0, len(x), batch):
        outs = model.forward_all(torch.from_numpy(x[i:i + batch]).to(device))
        for k, o in enumerate(outs):
            preds[k].append(o.float().cpu().numpy())
    return {str(k + 1): score(model.config.task, np.concatenate(p), y) for k, p in enumerate(preds)}


def _wrap_distributed(model: DepthModel, device: torch.device, distributed: bool) -> torch.nn.Module:
    """The module the loop calls: the model itself, or under torchrun its DDP wrapper."""
    if not distributed:
        return model
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def _optimizer(model: DepthModel, settings: TrainSettings) -> torch.optim.Optimizer:
    params = model.parameters()
    if settings.optimizer == "adam":
        return torch.optim.Adam(params, lr=settings.lr, weight_decay=settings.weight_decay)
    return torch.optim.SGD(params, lr=settings.lr, momentum=0.9, weight_decay=settings.weight_decay)


def _scheduler(opt: torch.optim.Optimizer, settings: TrainSettings, total: int):
    """Cosine decay over `total` optimizer steps, or None for a constant learning rate."""
    if settings.schedule != "cosine":
        return None
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))


def _batch_loss(model: DepthModel, net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
                settings: TrainSettings, epoch: int) -> torch.Tensor:
    """The training loss of one batch (with --cut-loss: over every depth); raises on NaN/Inf."""
    if settings.cut_loss > 0:
        loss = cut_loss(net(x, all_depths=True), y, lambda pred, target: loss_fn(model, pred, target), settings.cut_loss)
    else:
        loss = loss_fn(model, net(x), y)
    if not torch.isfinite(loss):
        raise TrainingDiverged(f"training diverged (loss {loss.item()}) at epoch {epoch + 1}; lower --lr "
                               "or clip gradients (--grad-clip)")
    return loss


def _train_epoch(model: DepthModel, net: torch.nn.Module, x_train: torch.Tensor, y_train: torch.Tensor,
                 perm: torch.Tensor, opt: torch.optim.Optimizer, sched, settings: TrainSettings,
                 steps_per_epoch: int, epoch: int) -> float:
    """One pass over this rank's slice `perm`; returns the mean training loss."""
    model.train()
    loss_sum, n = 0.0, 0
    for i in range(steps_per_epoch):
        idx = perm[i * settings.batch_size:(i + 1) * settings.batch_size]
        if len(idx) == 0:
            continue
        loss = _batch_loss(model, net, x_train[idx], y_train[idx], settings, epoch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if settings.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
        opt.step()
        if sched:
            sched.step()
        loss_sum += float(loss.detach()) * len(idx)
        n += len(idx)
    return loss_sum / max(n, 1)


# Below this many multiply-accumulates per training batch, torch's threads cost more than they
# bring: on the 2-core machine, glonet-fc depth 32 on digits took 0.71-1.17 s per epoch with one
# thread and 7.4-15.1 s with two at load 3-8 (OpenMP workers spin-wait for a busy core);
# BENCHMARKS.md, "Demo timing".
SMALL_BATCH_MACS = 50_000_000


@contextlib.contextmanager
def cpu_threads(model: DepthModel, settings: TrainSettings, device: torch.device) -> Iterator[int]:
    """Set torch's intra-op threads for training on CPU (restored afterwards); yields the count."""
    before = torch.get_num_threads()
    threads = settings.threads
    if threads == 0 and device.type == "cpu" and "OMP_NUM_THREADS" not in os.environ:
        _, macs = params_and_macs(model, model.num_blocks)
        threads = 1 if macs * settings.batch_size < SMALL_BATCH_MACS else before
    threads = threads or before
    torch.set_num_threads(threads)
    try:
        yield threads
    finally:
        torch.set_num_threads(before)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_model(model: DepthModel, data: Dataset, settings: TrainSettings, progress: bool = True,
                desc: str = "train") -> RunMetrics:
    """Train in place; returns metrics with the validation score at every depth."""
    settings.validate()
    device = _device(settings)
    with cpu_threads(model, settings, device):
        return _train(model, data, settings, device, progress, desc)


def _train(model: DepthModel, data: Dataset, settings: TrainSettings, device: torch.device, progress: bool,
           desc: str) -> RunMetrics:
    rank, world = _dist_info()
    torch.manual_seed(settings.seed)
    x_train = torch.from_numpy(data.x_train)
    y_train = torch.from_numpy(data.y_train)
    model.fit_normalisation(x_train, y_train)
    model.to(device)
    net = _wrap_distributed(model, device, world > 1)
    opt = _optimizer(model, settings)
    steps_per_epoch = max(1, math.ceil(len(x_train) / world / settings.batch_size))
    sched = _scheduler(opt, settings, settings.epochs * steps_per_epoch)
    x_train, y_train = x_train.to(device), y_train.to(device)
    gen = torch.Generator().manual_seed(settings.seed)
    metrics = RunMetrics(data.metric_name, {})
    bar = progress_bar(settings.epochs, desc, "epoch", enabled=progress and rank == 0)
    try:
        for epoch in range(settings.epochs):
            # Same permutation on every rank (same generator seed), each rank takes its slice.
            perm = torch.randperm(len(x_train), generator=gen)[rank::world].to(device)
            _sync(device)
            start = time.perf_counter()
            train_loss = _train_epoch(model, net, x_train, y_train, perm, opt, sched, settings, steps_per_epoch, epoch)
            _sync(device)
            metrics.seconds_per_epoch.append(time.perf_counter() - start)
            val = score_by_depth(model, data.x_val, data.y_val)[str(model.num_blocks)]
            metrics.curve.append({"epoch": epoch + 1, "train_loss": train_loss, "val_score": val})
            if bar is not None:
                bar.set_postfix(loss=f"{train_loss:.4f}", **{data.metric_name: f"{val:.4f}"})
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    metrics.score_by_depth = score_by_depth(model, data.x_val, data.y_val)
    model.cpu().eval()
    return metrics


def train_run(model_name: str, depth: int, dataset: str, out: str | Path | None, width: int = 32,
              options: dict | None = None, settings: TrainSettings | None = None, val_fraction: float = 0.2,
              progress: bool = True, image_size: int | None = None) -> tuple[DepthModel, RunMetrics]:
    """`glonet train`: load data, build the model from the registry, train, save RUN (rank 0).
    image_size: an image folder's images are resized to image_size x image_size."""
    settings = settings or TrainSettings()
    settings.validate()
    data = load_dataset(dataset, seed=settings.seed, val_fraction=val_fraction, image_size=image_size)
    spec = str(Path(dataset).resolve()) if dataset not in ("digits", "diabetes") else dataset
    torch.manual_seed(settings.seed)
    config = ModelConfig(model_name, depth, data.input_shape, data.num_outputs, data.task, width, dict(options or {}))
    model = create_model(config)
    metrics = train_model(model, data, settings, progress=progress, desc=f"{model_name} d={depth}")
    rank, world = _dist_info()
    data_record = {"dataset": spec, "seed": settings.seed, "val_fraction": val_fraction}
    if image_size is not None:
        data_record["image_size"] = image_size
    run_config = RunConfig(config, data_record, {**asdict(settings), "world_size": world})
    if out is not None and rank == 0:
        save_checkpoint(out, run_config, model, metrics)
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()
    return model, metrics
