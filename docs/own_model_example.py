"""Your own model end to end: a timm ResNet-18 wrapped as a GloNet, trained with a plain
PyTorch loop on an image folder, saved for `glonet export --module`.

    python own_model_example.py --data shapes --out run --synthetic    # synthetic 32x32 shapes
    glonet export --module own_model_example:build --weights run/model.safetensors \\
        --val shapes/val --out bundle                                   # from this directory

Needs `pip install glonet-edge[train,timm,images]`. `--synthetic` writes a synthetic image
folder (six shapes in random colours, positions and sizes on noise), so the numbers it
gives say nothing about real images.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from safetensors.torch import save_file

from glonet_edge.backbones import timm_glonet
from glonet_edge.bench.own_model import SHAPES, write_shapes  # the synthetic shapes of `glonet bench own-model`
from glonet_edge.bench.own_model import train as train_plain
from glonet_edge.data import load_samples


def build() -> torch.nn.Module:
    """What `glonet export --module own_model_example:build` calls."""
    return timm_glonet("resnet18", num_classes=len(SHAPES))


def train(data: Path, out: Path, epochs: int, seed: int = 0) -> None:
    """The plain loop of the README (fit the normalisation, train every depth with the cut loss;
    glonet_edge.bench.own_model.train), then model.safetensors for `glonet export --weights`."""
    x, y, _ = load_samples(str(data))
    model = build()
    train_plain(model, x, y, epochs, batch_size=64, lr=1e-3, seed=seed)
    out.mkdir(parents=True, exist_ok=True)
    save_file(model.state_dict(), str(out / "model.safetensors"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="image folder with train/ and val/ inside")
    parser.add_argument("--out", type=Path, required=True, help="where model.safetensors goes")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--synthetic", action="store_true", help="first write synthetic shapes into --data")
    args = parser.parse_args()
    if args.synthetic:
        write_shapes(args.data / "train", per_class=200, seed=0)
        write_shapes(args.data / "val", per_class=250, seed=1)
    train(args.data / "train", args.out, args.epochs)


if __name__ == "__main__":
    main()
