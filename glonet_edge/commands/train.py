"""glonet train: fit a model from the registry on a data set and write a checkpoint RUN/."""

from __future__ import annotations

import argparse
import json

from ._output import add_json_flag, emit


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a GloNet (or a baseline) and write RUN/{config.json,model.safetensors,metrics.json}",
                       description="Train a model from the registry. Runs on one process, or data-parallel under "
                                   "`torchrun --nproc_per_node N -m glonet_edge train ...` (gloo on CPU, nccl on GPU).")
    p.add_argument("--model", default="glonet-fc", help="registry name: glonet-fc, glonet-cnn, glonet-vit, resnet-fc, resnet-cnn, residual-fc, plain-fc")
    p.add_argument("--depth", type=int, default=32, help="number of blocks L (cnn: a multiple of 3)")
    p.add_argument("--width", type=int, default=32, help="hidden width (fc) or token dim (vit); cnn uses 16/32/64")
    p.add_argument("--dataset", default="digits",
                   help="digits | diabetes | path/to/data.npz (X, y) | CIFAR-10 binary directory | image folder "
                        "(DIR/<class>/<image>.png|.jpg, one sub-folder per class)")
    p.add_argument("--image-size", type=int, default=None, metavar="N",
                   help="resize an image folder's images to NxN (default: keep their size, which must be one)")
    p.add_argument("--out", required=True, help="checkpoint directory to write")
    p.add_argument("--epochs", type=int, default=40, help="passes over the training split (default 40)")
    p.add_argument("--batch-size", type=int, default=64, help="samples per optimisation step (default 64)")
    p.add_argument("--lr", type=float, default=1e-3, help="learning rate, cosine-decayed (default 1e-3)")
    p.add_argument("--threads", type=int, default=0,
                   help="CPU threads for torch (default 0 = auto: 1 for small models, where more threads "
                        "only wait on each other, else torch's default)")
    p.add_argument("--optimizer", choices=("adam", "sgd"), default="adam")
    p.add_argument("--schedule", choices=("cosine", "none"), default="cosine")
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--cut-loss", type=float, default=1.0,
                   help="weight of the mean loss over all shallower cuts (tuned default 1.0; 0 = the paper's plain training)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="model option, e.g. norm=bn, activation=relu, sum_stem=false, patch=2, heads=4 (repeatable)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_json_flag(p)
    p.set_defaults(func=run)


def parse_options(items: list[str]) -> dict:
    from ..errors import ConfigError

    options = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--option {item!r} must look like KEY=VALUE")
        key, value = item.split("=", 1)
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


def run(args: argparse.Namespace) -> int:
    from ..train.trainer import TrainSettings, train_run

    settings = TrainSettings(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, optimizer=args.optimizer,
                             schedule=args.schedule, weight_decay=args.weight_decay, seed=args.seed, device=args.device,
                             cut_loss=args.cut_loss, threads=args.threads)
    model, metrics = train_run(args.model, args.depth, args.dataset, args.out, width=args.width,
                               options=parse_options(args.option), settings=settings, val_fraction=args.val_fraction,
                               progress=not (args.quiet or args.json), image_size=args.image_size)
    import os

    if int(os.environ.get("RANK", "0")) != 0:
        return 0
    scores = metrics.score_by_depth
    rows = [{"depth": int(k), metrics.metric: v} for k, v in scores.items()]
    shown = rows if len(rows) <= 16 else [r for r in rows if r["depth"] in _sample_depths(len(rows))]
    emit(args, metrics.to_json(), shown, title=f"{args.model} depth {args.depth} on {args.dataset}: "
         f"best {metrics.metric} {scores[str(metrics.best_depth)]:.4f} at depth {metrics.best_depth}, "
         f"{sum(metrics.seconds_per_epoch) / len(metrics.seconds_per_epoch):.3f} s/epoch")
    if not args.json:
        print(f"checkpoint written to {args.out}")
    return 0


def _sample_depths(n: int) -> set[int]:
    picks = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, n}
    return {d for d in picks if d <= n}
