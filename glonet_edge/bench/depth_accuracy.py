"""`glonet bench depth-accuracy`: held-out score vs depth for GloNet and the baselines.

The paper's MNIST figure: a GloNet keeps ~96 % from depth 5 to 200, a ResNet falls from
95.5 % to 11 % at depth 200 and a plain MLP collapses by depth 60. The paper's "ResNet" there
is its reference code's residual MLP, h_i = h_{i-1} + LeakyReLU(W_i h_{i-1}) with no
normalisation (registered here as residual-fc); resnet-fc is the BatchNorm ResNetv2 of the
speed table, run too because it is the baseline a practitioner would pick.

Training follows the reference code's recipe unless told otherwise: Adam lr 1e-3, batch 128,
no gradient clipping and 80 epochs on digits, which is the reference's optimizer-step count
(2 MNIST epochs, ~940 steps). GloNet gets `glonet train`'s default cut loss (1: the mean loss
of the shallower cuts is added), since that is how this toolchain trains GloNets; the
baselines have a single exit and train on the plain loss whatever --cut-loss says (a loss at
every depth would make them deeply supervised networks, not the baselines). `--cut-loss 0` is
the reference's plain GloNet training; BENCHMARKS.md reports both. The learning rate follows a cosine schedule (the reference keeps it constant;
with a constant rate the final score of every model jitters by ~1.5 points between seeds on
digits' 359 held-out samples). `--grad-clip 5` (what `glonet train` uses) is worth trying:
it rescues residual-fc on digits, which says the collapse comes from the residual stream
exploding at initialisation (its output std grows ~1.2x per block), not from depth as such.

A run whose loss turns NaN/Inf is recorded as diverged and scored as the best constant
predictor, the most frequent class (a diverged network answers a constant; this is an upper
bound on what it would score). The second curve is GloNet's
tunable precision: the score at every cut k of the deepest GloNet trained, from its
score_by_depth (one forward pass, no retraining).

Verdicts written to the JSON (never asserted: the suite reports what happens):
- glonet_flat: every GloNet depth >= --flat-from scores within --tolerance of its best;
- per baseline: drop from its best to its deepest score, and the first depth after its best
  that is more than --tolerance below it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

from . import int_list, seed_list

HELP = "held-out score vs depth of glonet-fc and the paper's baselines, and GloNet's score at every cut"
DEFAULT_DEPTHS = [2, 4, 8, 16, 32, 64, 128, 200]
DEFAULT_MODELS = ["glonet-fc", "residual-fc", "resnet-fc", "plain-fc"]
# The GloNet paper's reference fc on MNIST: score at cut k = 1..8, as the paper reports it.
PAPER_CUTS = [0.216, 0.564, 0.755, 0.884, 0.934, 0.950, 0.951, 0.953]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--depths", type=int_list, default=DEFAULT_DEPTHS, metavar="D1,D2,...",
                   help=f"depth sweep (default {','.join(map(str, DEFAULT_DEPTHS))})")
    p.add_argument("--models", default=",".join(DEFAULT_MODELS),
                   help=f"comma list of fc models (default {','.join(DEFAULT_MODELS)})")
    p.add_argument("--dataset", default="digits", help="data spec as for `glonet train` (default digits)")
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--epochs", type=int, default=80, help="default 80: the reference's step count on digits")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--grad-clip", type=float, default=0.0,
                   help="gradient-norm clip; 0 (default) is the reference's unclipped training")
    p.add_argument("--schedule", choices=("cosine", "none"), default="cosine", help="learning-rate schedule")
    p.add_argument("--cut-loss", type=float, default=1.0,
                   help="GloNet's cut loss (default 1.0, as `glonet train`; 0 = the reference's plain training); "
                        "the baselines always train on the plain loss")
    p.add_argument("--seeds", type=seed_list, default=[0, 1, 2], metavar="S1,S2,...",
                   help="seeds to train each point with (each also draws its own held-out split); the mean "
                        "is plotted (default 0,1,2)")
    p.add_argument("--flat-from", type=int, default=8, help="GloNet must be flat from this depth (default 8)")
    p.add_argument("--tolerance", type=float, default=0.01, help="'flat' / 'degraded' threshold (default 0.01 = 1 point)")
    p.add_argument("--device", choices=("cpu", "cuda", "auto"), default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--quiet", action="store_true", help="no per-run progress lines on stderr")


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from ..errors import ConfigError
    from ..report.environment import environment

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if not m.endswith("-fc")]
    if unknown or not models:
        raise ConfigError(f"--models takes fc models ({', '.join(DEFAULT_MODELS)}), got {args.models!r}")
    if args.threads:
        torch.set_num_threads(args.threads)
    rows, cuts, metric = sweep(models, args)
    curves = mean_curves(rows)
    result = {
        "suite": "depth-accuracy", "dataset": args.dataset, "metric": metric, "models": models,
        "depths": args.depths, "seeds": args.seeds, "width": args.width, "epochs": args.epochs,
        "batch_size": args.batch_size, "lr": args.lr, "cut_loss": args.cut_loss, "grad_clip": args.grad_clip,
        "schedule": args.schedule, "device": args.device,
        "rows": rows, "curves": curves,
        "precision_curve": ({"model": "glonet-fc", "depth": max(args.depths), "seed": args.seeds[0],
                             "scores": [{"cut": int(k), "score": v} for k, v in cuts.items()]} if cuts else None),
        "verdicts": verdicts(curves, args.flat_from, args.tolerance),
        "environment": environment(), "command": getattr(args, "command_line", None),
    }
    out = Path(args.out)
    plot(result, out / "depth_accuracy.png")
    write_summary(result, out / "depth_accuracy.md")
    return result


def sweep(models: list[str], args: argparse.Namespace) -> tuple[list[dict[str, Any]], dict[str, float], str | None]:
    """Train every model at every depth for every seed: the rows, glonet-fc's score at every cut
    (deepest depth, first seed) and the data set's metric name."""
    from ..data import load_dataset
    from ..train.trainer import TrainSettings

    rows: list[dict[str, Any]] = []
    cuts: dict[str, float] = {}
    total = len(models) * len(args.depths) * len(args.seeds)
    metric = None
    for seed in args.seeds:
        data = load_dataset(args.dataset, seed=seed)
        metric = data.metric_name
        settings = TrainSettings(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, cut_loss=args.cut_loss,
                                 grad_clip=args.grad_clip, schedule=args.schedule, seed=seed, device=args.device,
                                 threads=args.threads or 0)  # train_model sets threads itself: --threads must reach it
        settings.validate()
        plain = replace(settings, cut_loss=0.0)
        majority = max(Counter(data.y_val.tolist()).values()) / len(data.y_val) if data.task == "classification" else None
        for depth in args.depths:
            for name in models:
                chosen = settings if name.startswith("glonet") else plain
                row, score_by_depth = train_one(name, depth, seed, data, chosen, majority, args.width)
                rows.append(row)
                cut_curve_run = name == "glonet-fc" and seed == args.seeds[0] and depth == max(args.depths)
                if cut_curve_run and score_by_depth is not None:
                    cuts = score_by_depth
                if not args.quiet:
                    print(f"[{len(rows)}/{total}] {name} depth {depth} seed {seed}: {metric} {row['score']:.4f}"
                          + (" (diverged)" if row["diverged"] else ""), file=sys.stderr)
    return rows, cuts, metric


def train_one(name: str, depth: int, seed: int, data: Any, settings: Any, majority: float | None,
              width: int) -> tuple[dict[str, Any], dict[str, float] | None]:
    """One model trained and scored: its row, and its score at every cut (None when it diverged;
    a diverged classifier scores as the majority class, a diverged regressor is an error)."""
    import time

    import torch

    from ..train.models import ModelConfig, create_model
    from ..train.trainer import TrainingDiverged, train_model

    torch.manual_seed(seed)
    model = create_model(ModelConfig(name, depth, data.input_shape, data.num_outputs, data.task, width))
    started = time.perf_counter()
    try:
        metrics = train_model(model, data, settings, progress=False, desc=f"{name} d={depth}")
    except TrainingDiverged:
        if majority is None:
            raise
        return ({"model": name, "depth": depth, "seed": seed, "score": majority, "diverged": True,
                 "train_loss": None, "seconds": round(time.perf_counter() - started, 3)}, None)
    return ({"model": name, "depth": depth, "seed": seed, "score": metrics.score_by_depth[str(depth)],
             "diverged": False, "train_loss": metrics.curve[-1]["train_loss"],
             "seconds": round(time.perf_counter() - started, 3)}, metrics.score_by_depth)


def mean_curves(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Per model and depth: mean, min and max score over seeds."""
    curves: dict[str, list[dict[str, Any]]] = {}
    for name in dict.fromkeys(r["model"] for r in rows):
        points = []
        for depth in sorted({r["depth"] for r in rows if r["model"] == name}):
            scores = [r["score"] for r in rows if r["model"] == name and r["depth"] == depth]
            points.append({"depth": depth, "mean": statistics.fmean(scores), "min": min(scores), "max": max(scores)})
        curves[name] = points
    return curves


def verdicts(curves: dict[str, list[dict[str, Any]]], flat_from: int, tolerance: float) -> dict[str, Any]:
    out: dict[str, Any] = {"tolerance": tolerance}
    for name, points in curves.items():
        best = max(points, key=lambda p: p["mean"])
        deepest = points[-1]
        # First depth past the best that falls more than `tolerance` below it.
        degraded = next((p["depth"] for p in points if p["depth"] > best["depth"]
                         and p["mean"] < best["mean"] - tolerance), None)
        v = {"best_score": best["mean"], "best_depth": best["depth"], "deepest_depth": deepest["depth"],
             "deepest_score": deepest["mean"], "drop_at_deepest": best["mean"] - deepest["mean"],
             "first_degraded_depth": degraded, "degrades_at_deepest": best["mean"] - deepest["mean"] > tolerance}
        if name == "glonet-fc":
            window = [p for p in points if p["depth"] >= flat_from]
            v["flat_from"] = flat_from
            v["worst_in_window"] = min((p["mean"] for p in window), default=None)
            v["flat"] = (all(p["mean"] >= best["mean"] - tolerance for p in window) if window else None)
        out[name] = v
    return out


def table(result: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
    """One row per depth, one column per model (mean score over seeds)."""
    rows: dict[int, dict[str, Any]] = {}
    for name, points in result["curves"].items():
        for p in points:
            rows.setdefault(p["depth"], {"depth": p["depth"]})[name] = p["mean"]
    return [rows[d] for d in sorted(rows)], f"depth-accuracy on {result['dataset']} ({result['metric']}, held out)"


def plot(result: dict[str, Any], path: Path) -> bytes:
    from ..report.plots import depth_axis, finish, new_figure, plain_log

    fig, (ax, ax_cut) = new_figure(2, width=5.2)
    for name, points in result["curves"].items():
        depths = [p["depth"] for p in points]
        ax.plot(depths, [p["mean"] for p in points], "o-", label=name)
        if len(result["seeds"]) > 1:
            ax.fill_between(depths, [p["min"] for p in points], [p["max"] for p in points], alpha=0.2)
    depth_axis(ax, result["depths"])
    ax.set(ylabel=f"held-out {result['metric']}", ylim=(0, 1.02),
           title=f"score vs depth, {result['dataset']}, GloNet cut loss {result['cut_loss']:g}")
    ax.legend()
    curve = result["precision_curve"]
    if curve:
        ks = [s["cut"] for s in curve["scores"]]
        ax_cut.plot(ks, [s["score"] for s in curve["scores"]], ".-", label=f"glonet-fc depth {curve['depth']}")
        ax_cut.plot(range(1, len(PAPER_CUTS) + 1), PAPER_CUTS, "x:", color="gray", label="paper, MNIST")
        plain_log(ax_cut, "x")
        ax_cut.set(xlabel="cut k (blocks used)", ylabel=f"held-out {result['metric']}", ylim=(0, 1.02),
                   title="tunable precision: one GloNet cut at every k")
        ax_cut.legend()
    else:
        ax_cut.set_axis_off()
    return finish(fig, path)


def write_summary(result: dict[str, Any], path: Path) -> None:
    from .summary import markdown_table, write_result_markdown

    rows, _ = table(result)
    lines = []
    for name, v in result["verdicts"].items():
        if name == "tolerance":
            continue
        text = (f"- {name}: best {v['best_score']:.4f} at depth {v['best_depth']}, {v['deepest_score']:.4f} at "
                f"depth {v['deepest_depth']} (drop {v['drop_at_deepest']:.4f}); ")
        text += (f"first more than {result['verdicts']['tolerance']:g} below its best at depth {v['first_degraded_depth']}"
                 if v["first_degraded_depth"] else f"never more than {result['verdicts']['tolerance']:g} below its best "
                                                   "after it")
        if "flat" in v:
            text += (f"; flat from depth {v['flat_from']}: {'yes' if v['flat'] else 'NO'} "
                     f"(worst {v['worst_in_window']:.4f})" if v["flat"] is not None else "")
        lines.append(text + ".")
    curve = result["precision_curve"]
    cut_table = ""
    if curve:
        shown = [s for s in curve["scores"] if s["cut"] <= 8 or s["cut"] in (16, 24, 32, 64, 128, curve["depth"])]
        cut_table = (f"Tunable precision, glonet-fc depth {curve['depth']} cut at k (paper MNIST k = 1..8: "
                     f"{', '.join(map(str, PAPER_CUTS))}):\n\n" + markdown_table(shown))
    diverged = [f"{r['model']} depth {r['depth']} seed {r['seed']}" for r in result["rows"] if r.get("diverged")]
    write_result_markdown(path, f"depth-accuracy: score vs depth ({', '.join(result['models'])})", result, [
        f"{result['dataset']}, width {result['width']}, {result['epochs']} epochs, batch {result['batch_size']}, "
        f"adam lr {result['lr']} ({result.get('schedule', 'cosine')}), gradient clip "
        f"{result.get('grad_clip') or 'none'}, GloNet cut loss {result['cut_loss']:g} (baselines: plain loss), "
        f"seeds {result['seeds']}; held-out "
        f"{result['metric']} at full depth, mean over seeds."
        + (f" Diverged (scored as the majority class): {', '.join(diverged)}." if diverged else ""),
        markdown_table(rows),
        "\n".join(lines),
        cut_table,
        "![depth accuracy](depth_accuracy.png)",
    ])
