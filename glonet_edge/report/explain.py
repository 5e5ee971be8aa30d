"""`glonet explain RUN`: how much each block of a trained GloNet contributes to its answer.

A GloNet's head reads a plain sum s_L = h_0 + h_1 + ... + h_L, so every block's part of the
output can be measured on its own. For each block i (0 = the stem, when it is in the sum)
over held-out samples:

- norm: mean ||h_i||, the block output;
- carried_norm: mean ||c_i||, where c_i is what block i adds to the final sum. fc: c_i = h_i;
  cnn: h_i carried through the remaining stage projections (pool + trained 1x1 conv, both
  linear), exactly as the model carries the running sum; vit: the class token of h_i;
- logit contributions z_i = R(c_i) with R the readout made linear on the sum, so that
  sum_i z_i + bias = the model's output exactly. fc: R = the head's weight (the head applied
  to h_i alone, minus its bias). cnn: the ReLU mask (and BatchNorm, in eval mode an affine
  map) of the final sum are frozen at their values for the full sum; vit: the LayerNorm's
  1/sigma is frozen likewise (LayerNorm is scale-invariant, so a first-order split would
  give every block nothing). Per-sample gates frozen at the real sum make each z_i the
  block's direct effect on the actual prediction;
- share_i = mean ||z_i|| / sum_j mean ||z_j||, with z centred over classes (softmax ignores
  a shift common to all logits); cumulative share over blocks 0..k; support_i = mean
  signed contribution to the predicted class's centred logit (regression: to the output).

Self-regulation (the paper): training shrinks the deep blocks' contributions, so depth
does not hurt. The summary compares the deepest quarter of blocks with the shallowest.
Models without a global sum (resnet-*, plain-fc) have no such split and are refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..errors import ConfigError
from ..train.checkpoint import Checkpoint, load_checkpoint
from ..train.models.base import DepthModel

SUPPORTED = ("glonet-fc", "glonet-cnn", "glonet-vit")
Readout = tuple[Callable[[torch.Tensor], torch.Tensor], torch.Tensor]


def check_supported(model_name: str) -> None:
    if model_name not in SUPPORTED:
        raise ConfigError(f"{model_name} has no global sum of block outputs, so its blocks' contributions cannot be "
                          f"separated; explain works on {', '.join(SUPPORTED)} checkpoints")


@torch.no_grad()
def block_terms(model: DepthModel, x: torch.Tensor) -> tuple[list[int], list[torch.Tensor], list[torch.Tensor],
                                                               torch.Tensor, torch.Tensor, torch.Tensor]:
    """For one batch: block indices, ||h_i|| and ||c_i|| per sample, the logit contributions
    z_i (stacked: blocks x batch x outputs), the readout's bias part and the real head output."""
    name = model.config.model
    check_supported(name)
    state = model.embed(x)
    with_stem = name != "glonet-fc" or model.sum_stem
    outputs: list[tuple[int, torch.Tensor]] = [(0, state[0])] if with_stem else []
    for i in range(model.num_blocks):
        state = model.step(i, state)
        outputs.append((i + 1, state[0]))
    final_sum = state[1]
    carried = [_carry(model, idx, h) for idx, h in outputs]
    apply, bias = _linear_readout(model, final_sum)
    z = torch.stack([apply(c) for c in carried])
    norms = [h.flatten(1).norm(dim=1) for _, h in outputs]
    carried_norms = [c.flatten(1).norm(dim=1) for c in carried]
    return [idx for idx, _ in outputs], norms, carried_norms, z, bias, model.head_out(state)


def _carry(model: DepthModel, index: int, h: torch.Tensor) -> torch.Tensor:
    """What block `index` (0 = stem) adds to the final sum, in the head's input space."""
    name = model.config.model
    if name == "glonet-vit":
        return h[:, 0]  # the head reads the class token of the sum
    if name == "glonet-cnn":
        import torch.nn.functional as F

        # Block i (1-based index) enters the sum at step i-1; later stage changes carry it.
        for key, proj in model.sum_proj.items():
            if int(key) > index - 1:
                h = proj(F.avg_pool2d(h, 2, ceil_mode=True, count_include_pad=False))
        return h
    return h


def _linear_readout(model: DepthModel, final_sum: torch.Tensor) -> Readout:
    """(R, bias) with head_out(final sum) == sum_i R(c_i) + bias, gates frozen at the final sum."""
    name = model.config.model
    weight, head_bias = model.head.weight, model.head.bias
    if name == "glonet-fc":
        return (lambda c: c @ weight.T), head_bias.expand(final_sum.shape[0], -1)
    if name == "glonet-cnn":
        norm = model.final_norm
        if isinstance(norm, torch.nn.BatchNorm2d):  # eval mode: scale * s + shift per channel
            scale = (norm.weight / torch.sqrt(norm.running_var + norm.eps))[None, :, None, None]
            shift = (norm.bias - norm.running_mean * scale.flatten())[None, :, None, None]
        else:
            scale, shift = torch.ones(1), torch.zeros(1)
        mask = ((scale * final_sum + shift) > 0).to(final_sum.dtype)
        bias = (mask * shift).mean(dim=(2, 3)) @ weight.T + head_bias
        return (lambda c: (mask * scale * c).mean(dim=(2, 3)) @ weight.T), bias
    ln = model.final_norm  # glonet-vit
    cls = final_sum[:, 0]
    inv_sigma = torch.rsqrt(cls.var(dim=-1, unbiased=False, keepdim=True) + ln.eps)
    bias = ln.bias @ weight.T + head_bias
    return (lambda c: ((c - c.mean(dim=-1, keepdim=True)) * inv_sigma * ln.weight) @ weight.T), bias.expand(len(cls), -1)


def held_out(ckpt: Checkpoint, dataset: str | None = None) -> np.ndarray:
    """The checkpoint's validation inputs, rebuilt from its recorded data spec, seed and split."""
    return ckpt.reload_data(dataset).x_val


@torch.no_grad()
def explain_model(model: DepthModel, x: np.ndarray, batch: int = 128) -> dict[str, Any]:
    """Per-block statistics over the rows of x (see the module docstring)."""
    check_supported(model.config.model)
    if len(x) == 0:
        raise ConfigError("no samples to explain the model on")
    model.eval()
    classification = model.config.task == "classification"
    sums: dict[str, np.ndarray] = {}
    max_err = 0.0
    indices: list[int] = []
    for lo in range(0, len(x), batch):
        xb = torch.from_numpy(np.ascontiguousarray(x[lo:lo + batch]))
        indices, norms, carried_norms, z, bias, out = block_terms(model, xb)
        max_err = max(max_err, float((z.sum(0) + bias - out).abs().max()))
        if classification:
            z = z - z.mean(dim=-1, keepdim=True)  # softmax ignores a shift common to all classes
            predicted = out.argmax(dim=1)
            support = z[:, torch.arange(len(xb)), predicted]
        else:
            support = z.sum(dim=-1)
        batch_stats = {"norm": torch.stack(norms).sum(1), "carried_norm": torch.stack(carried_norms).sum(1),
                       "logit_norm": z.norm(dim=-1).sum(1), "support": support.sum(1)}
        for key, value in batch_stats.items():
            sums[key] = sums.get(key, 0.0) + value.double().numpy()
    means = {k: v / len(x) for k, v in sums.items()}
    shares = means["logit_norm"] / means["logit_norm"].sum()
    cumulative = np.cumsum(shares)
    blocks = [{"block": idx, "name": "stem" if idx == 0 else f"block {idx}", "norm": float(means["norm"][j]),
               "carried_norm": float(means["carried_norm"][j]), "logit_norm": float(means["logit_norm"][j]),
               "share": float(shares[j]), "cumulative_share": float(cumulative[j]),
               "support": float(means["support"][j])} for j, idx in enumerate(indices)]
    return {"model": model.config.model, "depth": model.num_blocks, "task": model.config.task, "samples": len(x),
            "blocks": blocks, "decomposition_max_abs_err": max_err, "summary": self_regulation(blocks)}


def self_regulation(blocks: list[dict[str, Any]]) -> dict[str, Any]:
    """Do deep blocks fade? Shallowest vs deepest quarter of the blocks 1..L (stem excluded)."""
    inner = [b for b in blocks if b["block"] > 0]
    quarter = max(1, len(inner) // 4)
    shallow, deep = inner[:quarter], inner[-quarter:]
    mean = lambda rows, key: float(np.mean([r[key] for r in rows]))  # noqa: E731
    k90 = next(b["block"] for b in blocks if b["cumulative_share"] >= 0.9 - 1e-9)
    half = len(inner) // 2
    summary = {
        "quarter_blocks": quarter,
        "shallow_mean_share": mean(shallow, "share"), "deep_mean_share": mean(deep, "share"),
        "shallow_mean_carried_norm": mean(shallow, "carried_norm"), "deep_mean_carried_norm": mean(deep, "carried_norm"),
        "second_half_share": float(sum(b["share"] for b in inner[half:])),
        "blocks_for_90pct_share": k90,
    }
    summary["deep_fades"] = bool(len(inner) >= 2 and summary["deep_mean_share"] < summary["shallow_mean_share"])
    return summary


def explain_run(run: str | Path, dataset: str | None = None, samples: int = 512) -> dict[str, Any]:
    """Load RUN, score its blocks on up to `samples` held-out rows; adds score_at_depth."""
    ckpt = load_checkpoint(run)
    check_supported(ckpt.config.model.model)
    if samples < 1:
        raise ConfigError(f"--samples must be >= 1, got {samples}")
    x = held_out(ckpt, dataset)[:samples]
    result = {"run": str(run), **explain_model(ckpt.model, x)}
    if ckpt.metrics is not None:
        result["metric"] = ckpt.metrics.metric
        for b in result["blocks"]:
            b["score_at_depth"] = ckpt.metrics.score_by_depth.get(str(b["block"])) if b["block"] else None
    return result


def plot(result: dict[str, Any], path: str | Path | None = None) -> bytes:
    """Left: ||h_i|| and ||c_i|| per block (log). Right: share per block, cumulative share and
    the held-out score when cut after block k."""
    from .plots import finish, integer_x, new_figure, plain_log

    blocks = result["blocks"]
    idx = [b["block"] for b in blocks]
    fig, (ax_norm, ax_share) = new_figure(2, width=5.4)
    ax_norm.plot(idx, [b["norm"] for b in blocks], "o-", ms=3, label="||h_i|| (block output)")
    if any(abs(b["carried_norm"] - b["norm"]) > 1e-6 * max(1.0, b["norm"]) for b in blocks):
        ax_norm.plot(idx, [b["carried_norm"] for b in blocks], "s--", ms=3, label="||c_i|| (reaches the head)")
    plain_log(ax_norm)
    ax_norm.set(xlabel="block (0 = stem)", ylabel="mean norm over held-out samples",
                title=f"{result['model']} depth {result['depth']}: block contributions")
    ax_norm.legend()
    ax_share.bar(idx, [b["share"] for b in blocks], color="tab:blue", alpha=0.6, label="share of the logit")
    ax_share.plot(idx, [b["cumulative_share"] for b in blocks], "k-", label="cumulative share")
    scored = [(b["block"], b["score_at_depth"]) for b in blocks if b.get("score_at_depth") is not None]
    if scored:
        ax_share.plot(*zip(*scored), "g.-", ms=3, label=f"held-out {result.get('metric', 'score')} at cut k")
    ax_share.set(ylim=(0, 1.05), xlabel="block (0 = stem)", title="self-regulation: deep blocks fade" if result["summary"]["deep_fades"]
                 else "share per block (deep blocks do not fade)")
    ax_share.legend(loc="center right")
    integer_x(ax_norm)
    integer_x(ax_share)
    return finish(fig, path)


def table_rows(result: dict[str, Any], limit: int = 24) -> list[dict[str, Any]]:
    """Rows for the console: every block when few, else a log-spaced sample plus the last."""
    blocks = result["blocks"]
    if len(blocks) > limit:
        keep = {0, 1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, blocks[-1]["block"]}
        blocks = [b for b in blocks if b["block"] in keep]
    columns = ["block", "norm", "carried_norm", "share", "cumulative_share", "support", "score_at_depth"]
    return [{c: b.get(c) for c in columns} for b in blocks]
