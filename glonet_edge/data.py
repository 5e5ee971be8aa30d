"""Data sources (numpy only): scikit-learn digits / diabetes, any .npz with X and y,
CIFAR-10 from a local directory in its binary format (never the pickle format), and image
folders (DIR/<class>/<image>.png|.jpg, one sub-folder per class, read with Pillow).

Arrays keep the shape and units the source gives (digits: 1x8x8 pixels 0..16; CIFAR-10 and
images: channels x height x width, float 0..255): normalisation lives in the model, and so in
every graph. The train/validation split is a deterministic function of the seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .errors import ConfigError

if TYPE_CHECKING:
    from .manifest import BundleManifest

BUILTIN = ("digits", "diabetes")
CIFAR_RECORD = 1 + 3 * 32 * 32
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
IMAGE_MODES = {"L": 1, "RGB": 3}  # Pillow mode -> channels


@dataclass
class Dataset:
    name: str
    task: str  # "classification" | "regression"
    num_outputs: int
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    classes: list[str] | None = None  # an image folder's class names, in label order

    @property
    def input_shape(self) -> list[int]:
        return list(self.x_train.shape[1:])

    @property
    def metric_name(self) -> str:
        return "accuracy" if self.task == "classification" else "r2"


def score(task: str, y_pred: np.ndarray, y_true: np.ndarray) -> float:
    """Accuracy for classification (argmax of logits), R^2 for regression: higher is better."""
    if task == "classification":
        return float(np.mean(np.argmax(y_pred, axis=1) == y_true))
    y_pred = y_pred.reshape(y_true.shape)
    ss_res = float(np.sum((y_true - y_pred) ** 2))
    ss_tot = float(np.sum((y_true - y_true.mean(axis=0)) ** 2)) or 1.0
    return 1.0 - ss_res / ss_tot


def _split(x: np.ndarray, y: np.ndarray, seed: int, val_fraction: float):
    if not 0.0 < val_fraction < 1.0:
        raise ConfigError(f"val_fraction must be in (0, 1), got {val_fraction}")
    perm = np.random.default_rng(seed).permutation(len(x))
    n_val = max(1, int(round(len(x) * val_fraction)))
    val, train = perm[:n_val], perm[n_val:]
    return x[train], y[train], x[val], y[val]


def _check_finite(name: str, x: np.ndarray, y: np.ndarray) -> None:
    for label, arr in (("X", x), ("y", y)):
        if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
            bad = int(np.sum(~np.isfinite(arr)))
            raise ConfigError(f"data set {name}: {label} contains {bad} NaN/Inf values; clean or impute them first.")


def _from_arrays(name: str, x: np.ndarray, y: np.ndarray, seed: int, val_fraction: float,
                 classes: list[str] | None = None) -> Dataset:
    """Integer labels make a classification task, float targets a regression task."""
    if x.ndim < 2 or len(x) != len(y):
        raise ConfigError(f"data set {name}: X must be (N, ...) with N == len(y); got X {x.shape}, y {y.shape}")
    if len(x) < 4:
        raise ConfigError(f"data set {name}: only {len(x)} samples; need at least 4 to split train/validation")
    if not (np.issubdtype(x.dtype, np.number) and np.issubdtype(y.dtype, np.number)):
        raise ConfigError(f"data set {name}: X and y must be numeric, got {x.dtype} and {y.dtype}")
    _check_finite(name, x, y)
    x = x.astype(np.float32)
    if np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.bool_):
        if y.min() < 0:
            raise ConfigError(f"data set {name}: class labels must be 0..C-1, found {int(y.min())}")
        y = y.astype(np.int64).reshape(-1)
        task, num_outputs = "classification", int(y.max()) + 1
    else:
        y = y.astype(np.float32).reshape(len(y), -1)
        task, num_outputs = "regression", y.shape[1]
    if classes is not None:
        num_outputs = len(classes)
    return Dataset(name, task, num_outputs, *_split(x, y, seed, val_fraction), classes)


def _load_cifar10(directory: Path) -> Dataset:
    def read(files: list[Path]) -> tuple[np.ndarray, np.ndarray]:
        xs, ys = [], []
        for f in files:
            raw = np.fromfile(f, dtype=np.uint8)
            if raw.size == 0 or raw.size % CIFAR_RECORD:
                raise ConfigError(f"{f} is not a CIFAR-10 binary batch ({raw.size} bytes is not a multiple of "
                                  f"{CIFAR_RECORD}); it is truncated or in another format")
            rec = raw.reshape(-1, CIFAR_RECORD)
            ys.append(rec[:, 0].astype(np.int64))
            xs.append(rec[:, 1:].reshape(-1, 3, 32, 32).astype(np.float32))
        return np.concatenate(xs), np.concatenate(ys)

    train_files = sorted(directory.glob("data_batch_*.bin"))
    test_file = directory / "test_batch.bin"
    if not train_files or not test_file.is_file():
        raise ConfigError(f"{directory} has no CIFAR-10 binary files (data_batch_1.bin ... and test_batch.bin); "
                          "point --dataset at the extracted 'cifar-10-batches-bin' directory")
    x_train, y_train = read(train_files)
    x_val, y_val = read([test_file])
    if y_train.max() > 9 or y_val.max() > 9:
        raise ConfigError(f"{directory}: labels above 9 found; not CIFAR-10 binary data")
    return Dataset("cifar10", "classification", 10, x_train, y_train, x_val, y_val)


def _read_image(path: Path, image_size: int | None):
    """One image as a Pillow image of the requested size, or a ConfigError naming the file."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.load()
            if image_size is not None:
                img = img.resize((image_size, image_size), Image.Resampling.BILINEAR)
            return img.copy()
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ConfigError(f"{path} is not a readable PNG/JPEG image ({exc}); re-save or remove it") from exc


def _load_image_folder(directory: Path, image_size: int | None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Every image of DIR/<class>/, label = the class's index in sorted order. All images must
    share one mode (L or RGB) and, without image_size, one size."""
    from .errors import require

    require("PIL", "images")
    classes = sorted(d.name for d in directory.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise ConfigError(f"{directory} has no class sub-folders; an image folder holds one sub-folder of PNG/JPEG "
                          "files per class (DIR/<class>/<image>.png), a CIFAR-10 directory its data_batch_*.bin files")
    if image_size is not None and (isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1):
        raise ConfigError(f"--image-size must be a positive int, got {image_size!r}")
    pixels, labels, first = [], [], None
    for label, name in enumerate(classes):
        files = sorted(f for f in (directory / name).iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
        if not files:
            raise ConfigError(f"class folder {directory / name} has no .png/.jpg/.jpeg images; add some or remove it")
        for path in files:
            img = _read_image(path, image_size)
            if img.mode not in IMAGE_MODES:
                raise ConfigError(f"{path} is a {img.mode} image; only L (grey) and RGB are read: convert it")
            if first is None:
                first = (path, img.mode, img.size)
            elif img.mode != first[1]:
                raise ConfigError(f"{path} is a {img.mode} image but {first[0]} is {first[1]}; convert every image "
                                  "to one mode (all RGB or all L)")
            elif img.size != first[2]:
                raise ConfigError(f"{path} is {img.size[0]}x{img.size[1]} but {first[0]} is {first[2][0]}x"
                                  f"{first[2][1]}; pass --image-size N to resize every image to NxN")
            pixels.append(np.asarray(img, dtype=np.float32).reshape(img.size[1], img.size[0], -1).transpose(2, 0, 1))
            labels.append(label)
    return np.stack(pixels), np.asarray(labels, dtype=np.int64), classes


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            if "X" not in z or "y" not in z:
                raise ConfigError(f"{path} must contain arrays named 'X' and 'y'; it has {sorted(z.files)}")
            return z["X"], z["y"]
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(f"{path} could not be read as an .npz without pickle ({exc}); save it with np.savez") from exc


def load_samples(spec: str, image_size: int | None = None) -> tuple[np.ndarray, np.ndarray, list[str] | None]:
    """Every sample of an .npz (X, y) or an image folder, unsplit (what `--val` reads), and the
    image folder's class names (None for an .npz)."""
    path = Path(spec)
    if path.is_dir():
        return _load_image_folder(path, image_size)
    if path.suffix == ".npz" and path.is_file():
        return (*_read_npz(path), None)
    raise ConfigError(f"{spec!r} is neither an .npz with X and y nor an image folder (DIR/<class>/<image>.png)")


def load_dataset(spec: str, seed: int = 0, val_fraction: float = 0.2, image_size: int | None = None) -> Dataset:
    """`digits`, `diabetes`, a path to an .npz with X and y, a CIFAR-10 binary directory, or an
    image folder (resized to image_size x image_size when given)."""
    if spec == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        return _from_arrays("digits", d.images[:, None].astype(np.float32), d.target.astype(np.int64), seed, val_fraction)
    if spec == "diabetes":
        from sklearn.datasets import load_diabetes

        d = load_diabetes()
        return _from_arrays("diabetes", d.data.astype(np.float32), d.target.astype(np.float32), seed, val_fraction)
    path = Path(spec)
    if path.is_dir() and any(path.glob("*.bin")):
        return _load_cifar10(path)
    if path.is_dir() or (path.suffix == ".npz" and path.is_file()):
        x, y, classes = load_samples(spec, image_size)
        return _from_arrays(path.stem if path.is_file() else path.name, x, y, seed, val_fraction, classes)
    raise ConfigError(f"unknown data set {spec!r}: use one of {', '.join(BUILTIN)}, a path to an .npz with X and y, "
                      "a directory with CIFAR-10 binary batches, or an image folder (DIR/<class>/<image>.png)")


def load_recorded(spec: str, record: dict) -> Dataset:
    """`spec` split exactly as the run that recorded `record` (its `data`: seed, val_fraction,
    image_size) split it, so the held-out samples are the ones training never saw."""
    return load_dataset(spec, seed=int(record.get("seed", 0)), val_fraction=float(record.get("val_fraction", 0.2)),
                        image_size=record.get("image_size"))


def own_model_validation(manifest: BundleManifest) -> tuple[np.ndarray, np.ndarray] | None:
    """The validation data of a bundle exported from a model in memory or a --module
    (docs/own-model.md): the data set export recorded, whole, so every score is measured on all
    of it (the scores export recorded), never on a split of it. None for a `glonet train` run
    (its held-out split is load_recorded's), or when the recorded path is gone."""
    source = manifest.model.get("source") or {}
    data_cfg = manifest.model.get("data") or {}
    recorded = data_cfg.get("dataset")
    if source.get("from") not in ("memory", "module") or not recorded or not Path(recorded).exists():
        return None
    x, y, _ = load_samples(recorded, data_cfg.get("image_size"))
    expect_input_shape("validation data", recorded, x, manifest.input_shape)
    if manifest.task == "classification":
        y = y.astype(np.int64).reshape(-1)
    else:
        y = y.astype(np.float32).reshape(len(y), -1)
    return np.ascontiguousarray(x, np.float32), y


def expect_input_shape(what: str, spec: str, x: np.ndarray, shape: list[int], fix: str = "") -> None:
    """ConfigError unless the samples of `x` (read from `spec`) have the bundle's input `shape`;
    `fix` is added to the message."""
    if list(x.shape[1:]) != list(shape):
        raise ConfigError(f"{what} {spec} gives samples of shape {list(x.shape[1:])}, the bundle expects {shape}"
                          + (f"; {fix}" if fix else ""))
