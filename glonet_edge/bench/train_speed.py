"""`glonet bench train-speed`: seconds per training epoch, GloNet vs ResNetv2, over a depth sweep.

GloNet needs no BatchNorm, so each block is one layer + activation where a ResNetv2 block is
BN + activation + layer: fewer kernels and no batch statistics. Paper Table 1 (SGEMM
regression, GPU): GloNet / ResNetv2 = 0.64 at depth 10 down to 0.43 at depth 1000.

Fairness: both models are trained by the same `train_model` loop with the same data, batch
order (same seed), batch size, optimizer, learning rate, gradient clipping and width, with
cut_loss = 0 (the paper's plain training: a cut loss would make GloNet compute a readout at
every depth). The trainer times the training loop only (the per-epoch validation runs
after the clock stops); the first `--warmup` epochs are dropped (allocator, kernel and
autotuning warm-up) and the median of the remaining `--epochs` is reported. The two models
alternate which goes first at each depth so slow drift on a shared machine hits both.

Families: `fc` (glonet-fc vs resnet-fc, default on digits) and `cnn` (glonet-cnn vs
resnet-cnn, ResNet-20 v2 shape, default on synthetic CIFAR-10-shaped tensors: speed does
not depend on the pixel values). `--dataset synthetic` for `fc` gives SGEMM-shaped rows
(14 features, one regression target), the shape of the paper's Table 1.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

from . import int_list

HELP = "seconds per training epoch of GloNet vs ResNetv2 (BatchNorm) over a depth sweep"
FAMILIES = {"fc": ("glonet-fc", "resnet-fc"), "cnn": ("glonet-cnn", "resnet-cnn")}
DEFAULT_DEPTHS = {"fc": [10, 24, 50, 100, 200], "cnn": [6, 18, 54]}
DEFAULT_DATASET = {"fc": "digits", "cnn": "synthetic"}
# The target: GloNet faster than ResNetv2 at every depth >= this.
TARGET_MIN_DEPTH = 50
# Paper Table 1 (SGEMM, GPU), seconds per epoch: depth -> (ResNetv2, GloNet).
PAPER_TABLE1 = {10: (42, 27), 24: (65, 39), 50: (96, 55), 100: (147, 86), 200: (231, 121), 600: (410, 175),
                1000: (675, 289)}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--family", choices=sorted(FAMILIES), default="fc",
                   help="fc: glonet-fc vs resnet-fc; cnn: glonet-cnn vs resnet-cnn (default: fc)")
    p.add_argument("--depths", type=int_list, default=None, metavar="D1,D2,...",
                   help="depth sweep (default fc: 10,24,50,100,200; cnn: 6,18,54, multiples of 3); "
                        "the paper's GPU shape is 10,24,50,100,200,600,1000 with --device cuda")
    p.add_argument("--width", type=int, default=32, help="fc hidden width, the same for both models (default 32; "
                                                           "the cnn uses 16/32/64 channels)")
    p.add_argument("--dataset", default=None,
                   help="digits, any `glonet train` data spec, or 'synthetic' (fc: SGEMM-shaped 14-feature "
                        "regression; cnn: CIFAR-10-shaped 3x32x32 images). Default: fc digits, cnn synthetic")
    p.add_argument("--samples", type=int, default=None,
                   help="training rows of a synthetic data set (default: fc 2048, cnn 512)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--epochs", type=int, default=3, help="timed epochs per model and depth; the median is reported")
    p.add_argument("--warmup", type=int, default=1, help="untimed epochs first (default 1)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--optimizer", choices=("adam", "sgd"), default="adam")
    p.add_argument("--device", choices=("cpu", "cuda", "auto"), default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--quiet", action="store_true", help="no per-run progress lines on stderr")


def synthetic_dataset(family: str, samples: int, seed: int = 0):
    """Random data in the paper's shapes; the values do not matter for speed."""
    import numpy as np

    from ..data import Dataset

    rng = np.random.default_rng(seed)
    n_val = max(32, samples // 10)
    if family == "cnn":
        x = rng.integers(0, 256, (samples + n_val, 3, 32, 32)).astype(np.float32)
        y = rng.integers(0, 10, samples + n_val).astype(np.int64)
        return Dataset("synthetic-cifar10", "classification", 10, x[:samples], y[:samples], x[samples:], y[samples:])
    x = rng.normal(size=(samples + n_val, 14)).astype(np.float32)
    y = (x @ rng.normal(size=(14, 1)) + 0.1 * rng.normal(size=(samples + n_val, 1))).astype(np.float32)
    return Dataset("synthetic-sgemm", "regression", 1, x[:samples], y[:samples], x[samples:], y[samples:])


def _check(args: argparse.Namespace, depths: list[int]) -> None:
    from ..errors import ConfigError

    if args.family == "cnn" and any(d % 3 for d in depths):
        raise ConfigError(f"cnn depths count blocks over 3 stages and must be multiples of 3, got {depths}")
    if args.epochs < 1 or args.warmup < 0:
        raise ConfigError("--epochs must be >= 1 and --warmup >= 0")
    if args.samples is not None and args.samples < args.batch_size:
        raise ConfigError(f"--samples {args.samples} is smaller than one batch ({args.batch_size})")


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from ..data import load_dataset
    from ..report.environment import environment
    from ..train.models import ModelConfig, create_model
    from ..train.trainer import TrainSettings, train_model

    depths = args.depths or DEFAULT_DEPTHS[args.family]
    _check(args, depths)
    if args.threads:
        torch.set_num_threads(args.threads)
    spec = args.dataset or DEFAULT_DATASET[args.family]
    samples = args.samples or (512 if args.family == "cnn" else 2048)
    data = synthetic_dataset(args.family, samples) if spec == "synthetic" else load_dataset(spec)
    models = FAMILIES[args.family]
    settings = TrainSettings(epochs=args.warmup + args.epochs, batch_size=args.batch_size, lr=args.lr,
                             optimizer=args.optimizer, schedule="none", cut_loss=0.0, device=args.device, seed=0,
                             threads=args.threads or 0)  # train_model sets threads itself: --threads must reach it
    # The cnn's width is fixed by its stages (16/32/64 channels): record the first stage's.
    width = args.width if args.family == "fc" else 16
    rows: list[dict[str, Any]] = []
    total = len(depths) * len(models)
    for di, depth in enumerate(depths):
        order = models if di % 2 == 0 else models[::-1]
        for name in order:
            torch.manual_seed(0)
            model = create_model(ModelConfig(name, depth, data.input_shape, data.num_outputs, data.task, args.width))
            metrics = train_model(model, data, settings, progress=False, desc=f"{name} d={depth}")
            timed = metrics.seconds_per_epoch[args.warmup:]
            rows.append({"model": name, "depth": depth, "width": width,
                         "seconds_per_epoch": statistics.median(timed), "epoch_seconds": timed})
            if not args.quiet:
                print(f"[{len(rows)}/{total}] {name} depth {depth}: {rows[-1]['seconds_per_epoch']:.4f} s/epoch",
                      file=sys.stderr)
    rows.sort(key=lambda r: (models.index(r["model"]), r["depth"]))
    ratios = ratio_rows(rows, models)
    result = {
        "suite": "train-speed", "family": args.family, "models": list(models), "dataset": data.name,
        "train_samples": len(data.x_train), "batch_size": args.batch_size, "optimizer": args.optimizer, "lr": args.lr,
        "cut_loss": 0.0, "warmup_epochs": args.warmup, "timed_epochs": args.epochs, "device": str(args.device),
        "rows": rows, "ratios": ratios, "target": target_verdict(ratios), "environment": environment(),
        "command": getattr(args, "command_line", None),
    }
    out = Path(args.out)
    plot(result, out / "train_speed.png")
    write_summary(result, out / "train_speed.md")
    return result


def ratio_rows(rows: list[dict[str, Any]], models: tuple[str, str]) -> list[dict[str, Any]]:
    """Per depth: GloNet and ResNetv2 seconds per epoch and their ratio (< 1: GloNet faster)."""
    glonet, resnet = models
    by = {(r["model"], r["depth"]): r["seconds_per_epoch"] for r in rows}
    out = []
    for depth in sorted({r["depth"] for r in rows}):
        g, r = by.get((glonet, depth)), by.get((resnet, depth))
        if g is None or r is None:
            continue
        row = {"depth": depth, f"{glonet}_s": g, f"{resnet}_s": r, "ratio": g / r}
        if glonet == "glonet-fc" and depth in PAPER_TABLE1:
            paper_r, paper_g = PAPER_TABLE1[depth]
            row["paper_gpu_ratio"] = round(paper_g / paper_r, 3)
        out.append(row)
    return out


def target_verdict(ratios: list[dict[str, Any]]) -> dict[str, Any]:
    """GloNet faster than ResNetv2 at every depth >= TARGET_MIN_DEPTH of the sweep?"""
    checked = [r for r in ratios if r["depth"] >= TARGET_MIN_DEPTH]
    return {"min_depth": TARGET_MIN_DEPTH, "depths_checked": [r["depth"] for r in checked],
            "met": all(r["ratio"] < 1.0 for r in checked) if checked else None,
            "worst_ratio": max((r["ratio"] for r in checked), default=None)}


def table(result: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
    verdict = result["target"]
    met = {True: "met", False: "NOT met", None: "not checked"}[verdict["met"]]
    return result["ratios"], (f"train-speed {result['family']} on {result['dataset']} ({result['device']}): "
                              f"target GloNet faster at depth >= {verdict['min_depth']}: {met}")


def plot(result: dict[str, Any], path: Path) -> bytes:
    from ..report.plots import depth_axis, finish, new_figure, plain_log

    glonet, resnet = result["models"]
    fig, (ax, ax_ratio) = new_figure(2, width=5.2)
    for name, style in ((glonet, "o-"), (resnet, "s--")):
        pts = [(r["depth"], r["seconds_per_epoch"]) for r in result["rows"] if r["model"] == name]
        ax.plot(*zip(*pts), style, label=name)
    depths = [r["depth"] for r in result["rows"]]
    depth_axis(ax, depths)
    plain_log(ax)
    ax.set(ylabel="seconds per epoch (median)", title=f"training speed, {result['dataset']}, {result['device']}")
    ax.legend()
    ax_ratio.plot([r["depth"] for r in result["ratios"]], [r["ratio"] for r in result["ratios"]], "o-",
                  label="measured")
    paper = [(r["depth"], r["paper_gpu_ratio"]) for r in result["ratios"] if "paper_gpu_ratio" in r]
    if paper:
        ax_ratio.plot(*zip(*paper), "x:", color="gray", label="paper Table 1 (GPU)")
    ax_ratio.axhline(1.0, color="black", lw=0.8)
    depth_axis(ax_ratio, depths)
    ax_ratio.set(ylabel=f"{glonet} / {resnet}", ylim=(0, max(1.1, *(r["ratio"] * 1.1 for r in result["ratios"]))),
                 title="time ratio (< 1: GloNet faster)")
    ax_ratio.legend()
    return finish(fig, path)


def write_summary(result: dict[str, Any], path: Path) -> None:
    from .summary import markdown_table, write_result_markdown

    glonet, resnet = result["models"]
    verdict = result["target"]
    if verdict["met"] is None:
        line = f"No depth >= {verdict['min_depth']} in the sweep: the target was not checked."
    else:
        line = (f"Target (GloNet faster at every depth >= {verdict['min_depth']}): "
                f"{'met' if verdict['met'] else 'NOT met'}; worst ratio {verdict['worst_ratio']:.3f}.")
    write_result_markdown(path, f"train-speed: {glonet} vs {resnet}", result, [
        f"{result['dataset']} ({result['train_samples']} training rows), batch {result['batch_size']}, "
        f"{result['optimizer']} lr {result['lr']}, cut_loss 0, device {result['device']}; median of "
        f"{result['timed_epochs']} timed epochs after {result['warmup_epochs']} warm-up (training loop only).",
        markdown_table(result["ratios"]),
        line,
        "![train speed](train_speed.png)",
    ])
