"""Checkpoint directory (contract): RUN/config.json, RUN/model.safetensors, RUN/metrics.json.

Weights are safetensors only (no pickle). The whole directory is staged and swapped in, so
a crash while saving leaves the previous run or nothing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from ..errors import ArtifactError, ConfigError
from ..fileio import atomic_write_bytes, atomic_write_json, read_json, sha256_file, staged_directory
from .models import DepthModel, ModelConfig, create_model

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

    def to_json(self) -> dict[str, Any]:
        return {"schema_version": self.schema_version, "glonet_edge_version": self.glonet_edge_version,
                **self.model.to_json(), "data": self.data, "training": self.training}

    @classmethod
    def from_json(cls, d: Any) -> "RunConfig":
        if not isinstance(d, dict):
            raise ConfigError("config.json must hold a JSON object")
        version = d.get("schema_version")
        if not isinstance(version, int):
            raise ConfigError("config.json has no integer 'schema_version'; it was not written by glonet train")
        if version > CHECKPOINT_SCHEMA:
            raise ConfigError(f"config.json schema_version {version} is newer than this glonet-edge ({__version__}) "
                              f"reads ({CHECKPOINT_SCHEMA}); upgrade with `pip install -U glonet-edge`")
        data, training = d.get("data", {}), d.get("training", {})
        if not isinstance(data, dict) or not isinstance(training, dict):
            raise ConfigError("config.json 'data' and 'training' must be objects")
        return cls(ModelConfig.from_json(d), dict(data), dict(training), version,
                   str(d.get("glonet_edge_version", "unknown")))


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
        scores = {}
        for k, v in d["score_by_depth"].items():
            if not (isinstance(k, str) and k.isdigit() and isinstance(v, (int, float)) and not isinstance(v, bool)):
                raise ConfigError(f"metrics.json score_by_depth entry {k!r}: {v!r} is not 'depth': number")
            scores[k] = float(v)
        return cls(d["metric"], scores, list(d.get("curve", [])), list(d.get("seconds_per_epoch", [])))


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


def save_checkpoint(out: str | Path, config: RunConfig, model: DepthModel, metrics: RunMetrics) -> Path:
    from safetensors.torch import save

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with staged_directory(out, keep_existing=False) as stage:
        atomic_write_json(stage / CONFIG_NAME, config.to_json())
        atomic_write_bytes(stage / WEIGHTS_NAME, save(state, metadata={"glonet_edge_version": __version__}))
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
    model = create_model(config.model)
    expected = model.state_dict()
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
    model.load_state_dict(state)
    model.eval()
    metrics = None
    if (run / METRICS_NAME).is_file():
        metrics = RunMetrics.from_json(read_json(run / METRICS_NAME, "checkpoint metrics"))
    return Checkpoint(config, metrics, model, run)
