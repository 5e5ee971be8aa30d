"""Helpers for tests/ownmodel (a uniquely named module: conftest.py files share a name).

A user's own model, as a user would write it: a plain-torch CNN whose stages change width
and resolution (so it needs adapters), in a module file the test writes, trained with a
plain PyTorch loop on an image folder the test writes.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import sys
from pathlib import Path
from types import ModuleType

import numpy as np

IMAGE_SIZE = 16
CLASSES = ("circle", "square", "stripes")

MODEL_SOURCE = '''
import torch
from torch import nn

from glonet_edge import GloNet
from glonet_edge.glonet import PoolConv


def conv(cin, cout, stride):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.BatchNorm2d(cout), nn.ReLU())


def build():
    """A 16x16 RGB classifier: 8 -> 16 -> 32 channels, 16 -> 8 -> 4 pixels; adapters pool
    every block to the last block's 32x4x4 before the sum."""
    torch.manual_seed(0)
    blocks = [conv(8, 8, 1), conv(8, 16, 2), conv(16, 16, 1), conv(16, 32, 2)]
    adapters = [PoolConv(8, 32, 4), PoolConv(16, 32, 4), PoolConv(16, 32, 4), None]
    head = nn.Sequential(nn.Flatten(), nn.Linear(32 * 4 * 4, 3))
    return GloNet(stem=conv(3, 8, 1), blocks=blocks, head=head, adapters=adapters)


def not_a_module():
    return 42


def plain_sequential():
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 3))


def broken():
    raise RuntimeError("the backbone config is missing")
'''


def write_model_module(directory: Path, name: str) -> Path:
    """The user's model file, directory/name.py (a name of its own per test: modules are cached)."""
    path = directory / f"{name}.py"
    path.write_text(MODEL_SOURCE)
    return path


def import_file(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def image(label: int, rng: np.random.Generator, size: int = IMAGE_SIZE) -> np.ndarray:
    """A noisy picture of class `label`: a disc, a square or stripes, in a random colour."""
    yy, xx = np.mgrid[:size, :size]
    c = size / 2 + rng.uniform(-2, 2, 2)
    shape = [(yy - c[0]) ** 2 + (xx - c[1]) ** 2 < (size / 3) ** 2,
             (abs(yy - c[0]) < size / 4) & (abs(xx - c[1]) < size / 4),
             (xx // 2) % 2 == 0][label]
    colour = rng.uniform(120, 255, 3)
    pixels = shape[..., None] * colour + rng.normal(30, 12, (size, size, 3))
    return np.clip(pixels, 0, 255).astype(np.uint8)


def write_image_folder(root: Path, per_class: int, seed: int, size: int = IMAGE_SIZE) -> Path:
    """root/<class>/<i>.png (and every third one .jpg), RGB."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for label, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            suffix = ".jpg" if i % 3 == 2 else ".png"
            Image.fromarray(image(label, rng, size), "RGB").save(root / name / f"{i:03d}{suffix}")
    return root


def train_plain(model, x_train: np.ndarray, y_train: np.ndarray, epochs: int, weights: Path) -> None:
    """The README's loop (plain PyTorch, the cut loss; bench/own_model.train), then a safetensors file."""
    from safetensors.torch import save_file

    from glonet_edge.bench.own_model import train

    train(model, x_train, y_train, epochs, batch_size=16, lr=3e-3, seed=0)
    save_file(model.state_dict(), str(weights))


def cli(*argv: str, cwd: Path | None = None) -> tuple[int, str, str]:
    """`glonet ARGV` in this process: (exit code, stdout, stderr)."""
    from glonet_edge.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), contextlib.ExitStack() as stack:
        if cwd is not None:
            stack.enter_context(contextlib.chdir(cwd))
        rc = main(list(argv))
    return rc, out.getvalue(), err.getvalue()


def quantize(bundle: Path, data: Path, method: str = "ort", max_drop: float = 0.05) -> dict:
    """The one place these tests quantize: through the CLI, so a moved module changes nothing here."""
    import json

    rc, _, err = cli("quantize", str(bundle), "--method", method, "--data", str(data), "--max-drop", str(max_drop),
                     "--calib-size", "32", "--no-progress")
    assert rc == 0, err
    return json.loads((bundle / "quantize.json").read_text())  # stdout: NNCF prints its own progress there


def forget_module(name: str) -> None:
    sys.modules.pop(name, None)
