"""Checkpoint directory (contract): RUN/config.json, RUN/model.safetensors, RUN/metrics.json.

Weights are safetensors only (no pickle). The whole directory is staged and swapped in, so
a crash while saving leaves the previous run or nothing. A user's own weights file (for
`glonet export --module`) is read by `read_state_dict`: safetensors, or a `.pt` state_dict
read with torch.load(weights_only=True), which refuses anything that would unpickle code.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from .. import __version__
from ..errors import ArtifactError, ConfigError
from ..fileio import atomic_write_bytes, atomic_write_json, read_json, sha256_bytes, sha256_file, staged_directory
from .models import DepthModel, ModelConfig, create_model

if TYPE_CHECKING:
    from ..data import Dataset

CHECKPOINT_SCHEMA = 1
CONFIG_NAME, WEIGHTS_NAME, METRICS_NAME = "config.json", "model.safetensors", "metrics.json"


@dataclass
class RunConfig:
    """RUN/config.json: the model config plus how it was trained and on which data."""

    model: ModelConfig
    data: dict[str, Any]  # {"dataset": spec, "seed": int, "val_fraction": float}
    training: dict[str, Any]
    schema_version: int = CHECKPOINT_SCHEMA
    glonet_edge_version: str = __version__
    # sha256 of model.safetensors, set by save_checkpoint and checked by load_checkpoint: a flipped
    # byte in the weights still parses as safetensors, so only a checksum catches it. Optional, so
    # checkpoints written before it existed still load.
    weights_sha256: str | None = None

    def to_json(self) -> dict[str, Any]:
        d = {"schema_version": self.schema_version, "glonet_edge_version": self.glonet_edge_version,
             **self.model.to_json(), "data": self.data, "training": self.training}
        if self.weights_sha256 is not None:
            d["weights_sha256"] = self.weights_sha256
        return d

    @classmethod
    def from_json(cls, d: Any) -> "RunConfig":
        if not isinstance(d, dict):
            raise ConfigError("config.json must hold a JSON object")
        version = d.get("schema_version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise ConfigError("config.json has no positive integer 'schema_version'; it was not written by glonet train")
        if version > CHECKPOINT_SCHEMA:
            raise ConfigError(f"config.json schema_version {version} is newer than this glonet-edge ({__version__}) "
                              f"reads ({CHECKPOINT_SCHEMA}); upgrade with `pip install -U glonet-edge`")
        data, training = d.get("data", {}), d.get("training", {})
        if not isinstance(data, dict) or not isinstance(training, dict):
            raise ConfigError("config.json 'data' and 'training' must be objects")
        try:
            model = ModelConfig.from_json(d)
        except (TypeError, ValueError) as exc:  # e.g. "input_shape": 3, "options": [1]; ConfigError passes through
            if isinstance(exc, ConfigError):
                raise
            raise ConfigError(f"config.json model fields are malformed ({exc}); re-create the checkpoint "
                              "with `glonet train`") from exc
        digest = d.get("weights_sha256")
        if digest is not None and not (isinstance(digest, str) and len(digest) == 64
                                       and all(c in "0123456789abcdef" for c in digest)):
            raise ConfigError(f"config.json 'weights_sha256' must be 64 lowercase hex digits, got {str(digest)[:70]!r}")
        return cls(model, dict(data), dict(training), version, str(d.get("glonet_edge_version", "unknown")), digest)


def _finite(v: Any) -> bool:
    """A JSON number that is a finite float (bool is not a number; float(10**400) overflows)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    return abs(v) < 2**1023 if isinstance(v, int) else math.isfinite(v)


@dataclass
class RunMetrics:
    """RUN/metrics.json: validation score of every depth 1..L, curve and epoch times."""

    metric: str
    score_by_depth: dict[str, float]
    curve: list[dict[str, float]] = field(default_factory=list)
    seconds_per_epoch: list[float] = field(default_factory=list)
    schema_version: int = CHECKPOINT_SCHEMA

    @property
    def best_depth(self) -> int:
        return int(max(self.score_by_depth, key=lambda k: (self.score_by_depth[k], -int(k))))

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["best_depth"] = self.best_depth
        d["mean_seconds_per_epoch"] = (sum(self.seconds_per_epoch) / len(self.seconds_per_epoch)
                                       if self.seconds_per_epoch else None)
        return d

    @classmethod
    def from_json(cls, d: Any) -> "RunMetrics":
        if not isinstance(d, dict) or not isinstance(d.get("score_by_depth"), dict) or not isinstance(d.get("metric"), str):
            raise ConfigError("metrics.json must have 'metric' and a 'score_by_depth' object")
        if not d["score_by_depth"]:
            raise ConfigError("metrics.json 'score_by_depth' is empty; it needs the score of every depth")
        scores = {}
        for k, v in d["score_by_depth"].items():
            # isascii: "²".isdigit() is True but int("²") fails; |v| bound: float(10**400) overflows
            if not (isinstance(k, str) and k.isascii() and k.isdigit() and len(k) <= 9 and int(k) >= 1
                    and _finite(v)):
                raise ConfigError(f"metrics.json score_by_depth entry {str(k)[:20]!r}: {str(v)[:20]!r} is not "
                                  "'depth': finite number")
            scores[k] = float(v)
        curve, seconds = d.get("curve", []), d.get("seconds_per_epoch", [])
        if not isinstance(curve, list) or not all(isinstance(c, dict) and all(_finite(v) for v in c.values())
                                                  for c in curve):
            raise ConfigError("metrics.json 'curve' must be a list of objects of finite numbers (one per epoch)")
        if not isinstance(seconds, list) or not all(_finite(s) and s >= 0 for s in seconds):
            raise ConfigError("metrics.json 'seconds_per_epoch' must be a list of non-negative numbers")
        return cls(d["metric"], scores, list(curve), list(seconds))


@dataclass
class Checkpoint:
    config: RunConfig
    metrics: RunMetrics | None
    model: DepthModel
    path: Path

    @property
    def sha256(self) -> str:
        """Identity of the trained weights, recorded in every bundle made from them."""
        return sha256_file(self.path / WEIGHTS_NAME)

    def reload_data(self, dataset: str | None = None) -> "Dataset":
        """The data set this checkpoint was trained on, split exactly as in training (same
        seed and fraction); `dataset` overrides the recorded spec when the data moved."""
        from ..data import load_recorded

        data_cfg = self.config.data
        spec = dataset or data_cfg.get("dataset")
        if not isinstance(spec, str) or not spec:
            raise ConfigError(f"{self.path}/config.json records no data set; pass the one it was trained on with --data")
        try:
            data = load_recorded(spec, data_cfg)
        except ConfigError as exc:
            raise ConfigError(f"cannot reload the held-out split of {spec!r} ({exc}); pass --data with where that "
                              "data set is on this machine") from exc
        cfg = self.config.model
        if data.input_shape != list(cfg.input_shape) or data.task != cfg.task:
            raise ConfigError(f"data set {spec!r} gives {data.task} samples of shape {data.input_shape}, the "
                              f"checkpoint expects {cfg.task} samples of shape {cfg.input_shape}; pass the data set "
                              "it was trained on with --data")
        return data


def save_checkpoint(out: str | Path, config: RunConfig, model: DepthModel, metrics: RunMetrics) -> Path:
    from safetensors.torch import save

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    blob = save(state, metadata={"glonet_edge_version": __version__})
    config = replace(config, weights_sha256=sha256_bytes(blob))
    with staged_directory(out, keep_existing=False) as stage:
        atomic_write_json(stage / CONFIG_NAME, config.to_json())
        atomic_write_bytes(stage / WEIGHTS_NAME, blob)
        atomic_write_json(stage / METRICS_NAME, metrics.to_json())
    return Path(out)


def load_checkpoint(run: str | Path) -> Checkpoint:
    """Rebuild the model from RUN; every broken file gives an ArtifactError/ConfigError naming it."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    run = Path(run)
    if not run.is_dir():
        raise ArtifactError(f"checkpoint directory {run} does not exist; create it with `glonet train --out {run}`")
    config = RunConfig.from_json(read_json(run / CONFIG_NAME, "checkpoint config"))
    weights = run / WEIGHTS_NAME
    if not weights.is_file():
        raise ArtifactError(f"{weights} is missing; the checkpoint is incomplete, re-run `glonet train`")
    try:
        state = load_file(weights)
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ArtifactError(f"{weights} is corrupt or truncated ({exc}); re-run `glonet train`") from exc
    # Check config.json against the weights BEFORE allocating anything: a corrupt config
    # (depth 10**9, width 10**6) would otherwise build a model for minutes or exhaust memory.
    # Every block holds at least one tensor, so depth <= tensors in the file bounds the loop,
    # and the shapes are compared on the meta device, where no storage is allocated.
    if config.model.depth > len(state):
        raise ArtifactError(f"{weights} holds {len(state)} tensors, too few for config.json's depth "
                            f"{config.model.depth}; the files come from different runs (or config.json is corrupt)")
    try:
        with torch.device("meta"):
            expected = create_model(config.model).state_dict()
    except ConfigError:
        raise
    except (TypeError, ValueError, RuntimeError, KeyError) as exc:
        raise ConfigError(f"config.json describes a model that cannot be built ({exc}); re-create the checkpoint "
                          "with `glonet train`") from exc
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ArtifactError(f"{weights} does not match config.json ({config.model.model}, depth {config.model.depth}): "
                            f"missing {missing[:5]}, unexpected {unexpected[:5]}; the files come from different runs")
    for k, v in state.items():
        if v.shape != expected[k].shape:
            raise ArtifactError(f"{weights}: tensor {k} has shape {tuple(v.shape)}, config.json implies "
                                f"{tuple(expected[k].shape)}; the files come from different runs")
        if v.is_floating_point() and not torch.isfinite(v).all():
            raise ArtifactError(f"{weights}: tensor {k} holds NaN/Inf; the training diverged, re-train with a lower --lr")
    if config.weights_sha256 is not None and sha256_file(weights) != config.weights_sha256:
        raise ArtifactError(f"{weights} fails its sha256 check against config.json (corrupt, or the files come "
                            "from different runs); re-run `glonet train`")
    model = create_model(config.model)
    model.load_state_dict(state)
    model.eval()
    metrics = None
    if (run / METRICS_NAME).is_file():
        metrics = RunMetrics.from_json(read_json(run / METRICS_NAME, "checkpoint metrics"))
    return Checkpoint(config, metrics, model, run)


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors by name from a .safetensors file or a torch.save'd state_dict (.pt/.pth, also a
    Lightning-style {"state_dict": {...}}), never unpickling code: torch.load runs with
    weights_only=True, whose restricted unpickler refuses any global that is not a tensor type."""
    import re

    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"weights file {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            state = load_file(path)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except (SafetensorError, OSError, RuntimeError, ValueError, EOFError) as exc:
        raise ArtifactError(f"{path} is not a readable weights file ({str(exc).splitlines()[0]}); write it with "
                            "safetensors.torch.save_file(model.state_dict(), ...) or torch.save(model.state_dict(), ...)") from exc
    except Exception as exc:
        # weights_only's restricted unpickler refuses code with an UnpicklingError (matched by name:
        # this module never touches the pickle machinery itself).
        if type(exc).__name__ != "UnpicklingError":
            raise
        found = re.search(r"GLOBAL (\S+)", str(exc))
        what = f"it pickles {found.group(1)}" if found else "it holds pickled Python objects"
        raise ArtifactError(f"refused {path}: {what}, and loading that would run code; save the weights alone: "
                            "safetensors.torch.save_file(model.state_dict(), 'model.safetensors')") from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise ArtifactError(f"{path} does not hold a state_dict (names -> tensors); save model.state_dict()")
    return state


def load_weights(model: nn.Module, path: str | Path) -> str:
    """Load a weights file into `model` (every key must match) and return the file's sha256."""
    state = read_state_dict(path)
    expected = set(model.state_dict())
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise ArtifactError(f"{path} does not fit the model: missing keys {_listed(missing)}, unexpected keys "
                            f"{_listed(unexpected)}; save the state_dict of this same model")
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise ArtifactError(f"{path}: tensors {_listed(bad)} hold NaN/Inf; the training diverged")
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:  # shapes: torch names each tensor with both shapes
        detail = "; ".join(line.strip() for line in str(exc).splitlines()[1:]) or str(exc)
        raise ArtifactError(f"{path} does not fit the model: {detail}") from exc
    return sha256_file(path)


def _listed(keys: list[str], limit: int = 10) -> str:
    shown = ", ".join(keys[:limit])
    return f"[{shown}{f', ... {len(keys) - limit} more' if len(keys) > limit else ''}]" if keys else "[]"
