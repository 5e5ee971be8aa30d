"""`glonet bench own-model`: a timm or torchvision ResNet wrapped as a GloNet, end to end.

Builds `timm_glonet(ARCH)` (or `torchvision_glonet`), random init, nothing downloaded; trains
it with the plain loop of docs/own-model.md (cut loss, AdamW) on an image folder; then times
each stage on it:

    export     export_bundle(model, ..., val=VAL, depths=DEPTHS): tracing, parity checks and
               scoring every depth graph on the validation folder
    quantize   quantize_bundle (the CLI's defaults unless given), calibrated on the training folder
    compile    compile_bundle for each --targets, fp32 and int8

and reports per depth: parameters and MACs (from the manifest), the validation score in fp32
and int8, and the p50 latency of each target/precision at batch 1 (`profile_bundle`, what
`glonet profile` runs). The load average is recorded at the start and at the end.

Without --data a synthetic image folder is written first (six shapes in random colours,
positions and sizes on noise, 32x32; the same as docs/own_model_example.py --synthetic): its
scores say that every depth learns, nothing about real images.

Needs glonet-edge[train,quantize,openvino,images] and timm or torchvision (see .ci/ecosystem
for a venv where torchvision imports).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

HELP = ("a timm/torchvision ResNet wrapped as a GloNet on an image folder (default synthetic shapes): "
        "train, export, quantize and compile time; per-depth params, MACs, score and latency")

SHAPES = ("disc", "square", "ring", "cross", "h-stripes", "v-stripes")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--library", default="timm", choices=("timm", "torchvision"), help="backbone library (default timm)")
    p.add_argument("--arch", default="resnet18", help="model name in that library (default resnet18)")
    p.add_argument("--data", default=None, metavar="DIR",
                   help="image folder with train/ and val/ inside (default: synthetic shapes written to DIR/shapes)")
    p.add_argument("--per-class", type=int, default=200, help="synthetic training images per class (default 200)")
    p.add_argument("--val-per-class", type=int, default=100, help="synthetic validation images per class (default 100)")
    p.add_argument("--image-size", type=int, default=32, help="synthetic image size (default 32)")
    p.add_argument("--epochs", type=int, default=3, help="training epochs (default 3)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate (default 1e-3)")
    p.add_argument("--depths", default="all", help="depths to export: all or a comma list (default all)")
    p.add_argument("--method", default="ort", help="quantization method: ort | nncf (default ort)")
    p.add_argument("--calib-size", type=int, default=512, help="calibration images (default 512)")
    p.add_argument("--max-drop", type=float, default=0.005, help="quantize's --max-drop (default 0.005)")
    p.add_argument("--targets", default="openvino", help="comma list of targets to compile and time (default openvino)")
    p.add_argument("--iterations", type=int, default=100, help="timed calls per depth (default 100)")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--threads", type=int, default=1, help="torch and engine threads (default 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")


def shape_image(label: int, rng: Any, size: int = 32) -> Any:
    """One synthetic picture of SHAPES[label] in a random colour, place and size, on noise."""
    import numpy as np

    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    cy, cx = rng.uniform(size * 0.3, size * 0.7, 2)
    r = rng.uniform(size * 0.15, size * 0.3)
    dy, dx = yy - cy, xx - cx
    period = rng.integers(3, 6)
    mask = [dy ** 2 + dx ** 2 < r ** 2, (abs(dy) < r * 0.8) & (abs(dx) < r * 0.8),
            abs(np.sqrt(dy ** 2 + dx ** 2) - r) < 2, (abs(dy) < 2) & (abs(dx) < r) | (abs(dx) < 2) & (abs(dy) < r),
            (yy // period) % 2 == 0, (xx // period) % 2 == 0][label]
    background, colour = rng.uniform(0, 120, 3), rng.uniform(100, 255, 3)
    pixels = np.where(mask[..., None], colour, background) + rng.normal(0, 25, (size, size, 3))
    return np.clip(pixels, 0, 255).astype(np.uint8)


def write_shapes(root: Path, per_class: int, seed: int, size: int = 32) -> Path:
    """root/<shape>/<i>.png: per_class synthetic images of each of SHAPES."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    for label, name in enumerate(SHAPES):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(shape_image(label, rng, size)).save(root / name / f"{i:04d}.png")
    return root


def build_model(library: str, arch: str, num_classes: int) -> Any:
    from .. import backbones

    return getattr(backbones, f"{library}_glonet")(arch, num_classes=num_classes)


def train(model: Any, x: Any, y: Any, epochs: int, batch_size: int, lr: float, seed: int) -> list[float]:
    """The plain loop of docs/own-model.md; seconds per epoch."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from .. import cut_loss

    torch.manual_seed(seed)
    model.fit_normalisation(torch.from_numpy(x))
    loader = DataLoader(TensorDataset(torch.from_numpy(x), torch.from_numpy(y)), batch_size=batch_size, shuffle=True)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    seconds = []
    for _ in range(epochs):
        started = time.perf_counter()
        for xb, yb in loader:
            loss = cut_loss(model(xb, all_depths=True), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
        seconds.append(time.perf_counter() - started)
    model.eval()
    return seconds


def _load() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from safetensors.torch import save_file

    from ..data import load_samples
    from ..errors import ConfigError
    from ..manifest import BundleManifest
    from ..report.environment import environment

    if args.epochs < 1 or args.per_class < 1 or args.val_per_class < 1 or args.threads < 1:
        raise ConfigError("--epochs, --per-class, --val-per-class and --threads must be >= 1")
    load_start = _load()
    started = time.perf_counter()
    out = Path(args.out)
    say = _reporter(started, not args.quiet)
    data, synthetic = _image_folders(args, out, say)
    train_dir, val_dir = data / "train", data / "val"
    x, y, classes = load_samples(str(train_dir))
    n_val = len(load_samples(str(val_dir))[1])

    torch.set_num_threads(args.threads)
    model = build_model(args.library, args.arch, len(classes))
    say(f"training {args.library} {args.arch} ({model.num_blocks} blocks) on {len(y)} images, {args.epochs} epochs")
    epoch_seconds = train(model, x, y, args.epochs, args.batch_size, args.lr, args.seed)
    save_file(model.state_dict(), str(out / "model.safetensors"))
    bundle = out / "bundle"
    timings = {"train_s": round(sum(epoch_seconds), 2), **_export_and_quantize(args, model, bundle, data, say)}
    latency = _compile_and_profile(args, bundle, timings, say)

    manifest = BundleManifest.load(bundle)
    result = {
        "suite": "own-model", "library": args.library, "arch": args.arch, "num_blocks": model.num_blocks,
        "input_shape": list(manifest.input_shape), "classes": classes, "metric": manifest.metric_name,
        "data": {"path": str(data), "synthetic": synthetic, "train_images": int(len(y)), "val_images": int(n_val)},
        "epochs": args.epochs, "epoch_seconds": [round(s, 2) for s in epoch_seconds], "timings": timings,
        "rows": _rows(manifest, latency), "batch": 1, "iterations": args.iterations, "threads": args.threads,
        "load_start": load_start, "load_end": _load(), "total_s": round(time.perf_counter() - started, 2),
        "bundle": str(bundle), "environment": environment(), "command": getattr(args, "command_line", None),
    }
    write_summary(result, out / "own_model.md")
    return result


def _reporter(started: float, enabled: bool) -> Callable[[str], None]:
    def say(text: str) -> None:
        if enabled:
            print(f"[own-model {time.perf_counter() - started:6.1f} s] {text}", file=sys.stderr, flush=True)
    return say


def _image_folders(args: argparse.Namespace, out: Path, say: Callable[[str], None]) -> tuple[Path, bool]:
    """The image folder (train/, val/) to use: --data, or synthetic shapes written under OUT."""
    if args.data is not None:
        return Path(args.data), False
    data = out / "shapes"
    say(f"writing synthetic shapes into {data}")
    write_shapes(data / "train", args.per_class, seed=args.seed, size=args.image_size)
    write_shapes(data / "val", args.val_per_class, seed=args.seed + 1, size=args.image_size)
    return data, True


def _export_and_quantize(args: argparse.Namespace, model: Any, bundle: Path, data: Path,
                         say: Callable[[str], None]) -> dict[str, float]:
    from ..export import export_bundle
    from ..quantize import QuantizeSettings, quantize_bundle

    progress = not args.quiet
    depths = "all" if args.depths == "all" else [int(d) for d in args.depths.split(",") if d.strip()]
    say("export")
    t0 = time.perf_counter()
    export_bundle(model, bundle, val=str(data / "val"), depths=depths, progress=progress)
    timings = {"export_s": round(time.perf_counter() - t0, 2)}
    say(f"quantize ({args.method})")
    t0 = time.perf_counter()
    quantize_bundle(bundle, QuantizeSettings(method=args.method, calib_size=args.calib_size, max_drop=args.max_drop,
                                             dataset=str(data / "train")), progress=progress)
    timings["quantize_s"] = round(time.perf_counter() - t0, 2)
    return timings


def _compile_and_profile(args: argparse.Namespace, bundle: Path, timings: dict[str, float],
                         say: Callable[[str], None]) -> dict[str, dict[int, float]]:
    """Compile each target (time added to `timings`) and profile fp32 and int8 at batch 1."""
    from ..targets.compile import compile_bundle
    from ..targets.profile import profile_bundle

    progress = not args.quiet
    latency: dict[str, dict[int, float]] = {}
    for target in [t.strip() for t in args.targets.split(",") if t.strip()]:
        say(f"compile {target}")
        t0 = time.perf_counter()
        compile_bundle(bundle, target, precisions=["fp32", "int8"], progress=progress, threads=args.threads)
        timings[f"compile_{target}_s"] = round(time.perf_counter() - t0, 2)
        for precision in ("fp32", "int8"):
            say(f"profile {target}/{precision}")
            prof = profile_bundle(bundle, target, precision, batches=[1], iterations=args.iterations,
                                  warmup=args.warmup, threads=args.threads, energy="none", progress=progress)
            latency[f"{target}/{precision}"] = {r["depth"]: r["p50"] for r in prof["rows"] if r["batch"] == 1}
    return latency


def _rows(manifest: Any, latency: dict[str, dict[int, float]]) -> list[dict[str, Any]]:
    metric = manifest.metric_name
    rows = []
    for e in manifest.depths:
        row: dict[str, Any] = {"depth": e.depth, "params": e.params, "macs": e.macs,
                               "fp32_score": e.metrics.get("fp32", {}).get(metric),
                               "int8_score": e.metrics.get("int8", {}).get(metric),
                               "int8_rejected": "int8" in e.rejected}
        for key, by_depth in latency.items():
            row[f"{key}_p50_ms"] = by_depth.get(e.depth)
        rows.append(row)
    return rows


def write_summary(result: dict[str, Any], path: Path) -> None:
    from .summary import markdown_table, write_result_markdown

    d = result["data"]
    shape = "x".join(map(str, result["input_shape"]))
    what = "synthetic shapes (scores say nothing about real images)" if d["synthetic"] else d["path"]
    t = result["timings"]
    write_result_markdown(path, f"own model: {result['library']} {result['arch']} as a GloNet, {shape}", result, [
        f"Data: {what}; {d['train_images']} training / {d['val_images']} validation images, "
        f"{len(result['classes'])} classes. Training: {result['epochs']} epochs, "
        f"{', '.join(f'{s:g}' for s in result['epoch_seconds'])} s per epoch.",
        "Stage times (s): " + ", ".join(f"{k[:-2]} {v:g}" for k, v in t.items()) + ".",
        f"Load average (1, 5, 15 min) at start {result['load_start']}, at end {result['load_end']}. Latency: p50 "
        f"at batch {result['batch']}, {result['iterations']} calls per depth, {result['threads']} thread(s).",
        markdown_table(result["rows"]),
    ])
