"""`glonet bench torch-latency`: per-depth latency (and NVML energy) of the PyTorch model itself.

For GPUs without an engine in this package's reach (no TensorRT or onnxruntime-gpu
installed), this measures what the depth knob buys on the accelerator directly: the same
trained (or freshly initialised — latency does not depend on weight values) model is run at
every depth with CUDA-event timing, and, where NVML is readable, the GPU's energy counter
(nvmlDeviceGetTotalEnergyConsumption, mJ) is read around a long loop of calls, giving
energy per inference. On CPU the timing uses perf_counter and no energy is reported.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

from . import int_list

HELP = "per-depth latency and NVML energy per inference of the torch model on CPU or CUDA"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", default=None, help="checkpoint RUN to measure (default: a fresh model of --model/--depth)")
    p.add_argument("--model", default="glonet-cnn", help="registry name when no --run (default glonet-cnn)")
    p.add_argument("--depth", type=int, default=27, help="depth when no --run (default 27: ResNet-56 shaped cnn)")
    p.add_argument("--input-shape", default="3,32,32", help="input shape when no --run (default 3,32,32)")
    p.add_argument("--depths", type=int_list, default=None, help="depths to measure (default: 8 spread over 1..L)")
    p.add_argument("--batches", type=int_list, default=[1, 64], help="batch sizes (default 1,64)")
    p.add_argument("--iterations", type=int, default=200)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--energy-seconds", type=float, default=2.0, help="loop length for one NVML energy reading")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cuda")


def _nvml_energy():
    """A callable returning the GPU's energy counter in mJ, or None without NVML."""
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
        return lambda: float(pynvml.nvmlDeviceGetTotalEnergyConsumption(handle))
    except Exception:  # noqa: BLE001 - no NVML, no GPU, or no energy counter on this GPU
        return None


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from ..report.environment import environment
    from .summary import markdown_table, write_markdown

    model, device = load_model(args)
    depths = args.depths or sorted({max(1, round(model.num_blocks * f)) for f in (0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.85, 1)})
    energy = _nvml_energy() if device.type == "cuda" else None
    rows = []
    with torch.inference_mode():
        for batch in args.batches:
            x = torch.rand(batch, *model.config.input_shape, device=device)
            for depth in depths:
                print(f"depth {depth} batch {batch}", file=sys.stderr)
                rows.append(measure(model, x, depth, device, energy, args))
    out = Path(args.out)
    plot(rows, depths, args.batches, energy is not None, out / "torch_latency.png")
    env = environment()  # torch is imported, so it names the GPU when CUDA is visible
    env["torch"] = torch.__version__
    write_markdown(out / "torch_latency.md", "PyTorch per-depth latency and energy",
                   [f"{model.config.model} depth {model.num_blocks}, device {args.device}"
                    + (f" ({env.get('gpu')})" if device.type == "cuda" else ""), markdown_table(rows)])
    return {"rows": rows, "environment": env, "energy_source": "nvml" if energy else None}


def load_model(args: argparse.Namespace) -> tuple[Any, Any]:
    """The checkpoint's model (--run) or a fresh one, in eval mode on --device."""
    import torch

    from ..errors import ConfigError
    from ..train.models import ModelConfig, create_model

    if args.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda but no CUDA GPU is visible; use --device cpu")
    if args.run:
        from ..train.checkpoint import load_checkpoint

        model = load_checkpoint(args.run).model
    else:
        shape = [int(s) for s in args.input_shape.split(",")]
        model = create_model(ModelConfig(args.model, args.depth, shape, 10))
    model.eval()
    device = torch.device(args.device)
    model.to(device)
    return model, device


def measure(model: Any, x: Any, depth: int, device: Any, energy: Callable[[], float] | None,
            args: argparse.Namespace) -> dict[str, Any]:
    """One row: p50/p90 latency of `model` at `depth` on `x`, and NVML energy when readable."""
    import torch

    from ..train.models import params_and_macs

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(args.warmup):
        model(x, depth=depth)
    sync()
    times = []
    for _ in range(args.iterations):
        t0 = time.perf_counter()
        model(x, depth=depth)
        sync()
        times.append((time.perf_counter() - t0) * 1e3)
    batch = x.shape[0]
    row = {"model": model.config.model, "depth": depth, "batch": batch, "device": args.device,
           "macs": params_and_macs(model.cpu(), depth)[1] * batch, "p50_ms": statistics.median(times),
           "p90_ms": sorted(times)[int(0.9 * (len(times) - 1))]}
    model.to(device)
    if energy is not None:
        n, start_mj, t0 = 0, energy(), time.perf_counter()
        while time.perf_counter() - t0 < args.energy_seconds:
            model(x, depth=depth)
            n += 1
        sync()
        used = energy() - start_mj
        row["energy_mj_per_inference"] = used / (n * batch)
        row["mean_power_w"] = used / 1e3 / (time.perf_counter() - t0)
    return row


def plot(rows: list[dict[str, Any]], depths: list[int], batches: list[int], has_energy: bool, path: Path) -> None:
    """Latency per depth, and NVML energy per inference when there is a counter, one line a batch."""
    from ..report.plots import depth_axis, finish, new_figure

    fig, axes = new_figure(ncols=2, width=12)
    for batch in batches:
        sel = [r for r in rows if r["batch"] == batch]
        axes[0].plot([r["depth"] for r in sel], [r["p50_ms"] for r in sel], marker="o", label=f"batch {batch}")
        if has_energy:
            axes[1].plot([r["depth"] for r in sel], [r["energy_mj_per_inference"] for r in sel], marker="o",
                         label=f"batch {batch}")
    for ax in axes:
        depth_axis(ax, depths, log=False)
        if ax.get_lines():
            ax.legend(fontsize=8)
    axes[0].set_ylabel("latency p50 (ms)")
    axes[1].set_ylabel("NVML energy per inference (mJ)" if has_energy else "(no NVML energy counter)")
    finish(fig, path)
