"""What every model in the registry shares: a depth-cuttable forward written as three steps.

    state = embed(x)                      # input normalisation + stem
    for i in range(k): state = step(i, state)
    y_k = readout(state)

`state` is a tuple of tensors (for a GloNet: the last block output and the running sum).
Export cuts the same three steps into truncated graphs and segment chains, so the torch
model, every ONNX graph and every segment compute the same thing by construction.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from ...errors import ConfigError

State = tuple[torch.Tensor, ...]


@dataclass
class ModelConfig:
    """Everything needed to rebuild a model: saved as RUN/config.json["model_config"]."""

    model: str
    depth: int
    input_shape: list[int]
    num_outputs: int
    task: str = "classification"  # or "regression"
    width: int = 32
    options: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: Any) -> "ModelConfig":
        if not isinstance(d, dict):
            raise ConfigError(f"model config must be an object, got {type(d).__name__}")
        missing = [k for k in ("model", "depth", "input_shape", "num_outputs") if k not in d]
        if missing:
            raise ConfigError(f"model config is missing {missing}; re-create the checkpoint with `glonet train`.")
        cfg = cls(model=d["model"], depth=d["depth"], input_shape=list(d["input_shape"]),
                  num_outputs=d["num_outputs"], task=d.get("task", "classification"),
                  width=d.get("width", 32), options=dict(d.get("options", {})))
        cfg.validate()
        return cfg

    def validate(self) -> None:
        if not isinstance(self.model, str):
            raise ConfigError("model name must be a string")
        if not isinstance(self.depth, int) or isinstance(self.depth, bool) or self.depth < 1:
            raise ConfigError(f"depth must be a positive integer, got {self.depth!r}")
        if not self.input_shape or not all(isinstance(s, int) and s > 0 for s in self.input_shape):
            raise ConfigError(f"input_shape must be a list of positive ints, got {self.input_shape!r}")
        if not isinstance(self.num_outputs, int) or self.num_outputs < 1:
            raise ConfigError(f"num_outputs must be a positive int, got {self.num_outputs!r}")
        if self.task not in ("classification", "regression"):
            raise ConfigError(f"task must be 'classification' or 'regression', got {self.task!r}")
        if not isinstance(self.width, int) or self.width < 1:
            raise ConfigError(f"width must be a positive int, got {self.width!r}")


class InputNorm(nn.Module):
    """(x - mean) / std with statistics from the training split, stored in the weights.

    Folding this into the model means every exported graph takes raw data-source input.
    Built with no shape (`input_shape=()`), it is the identity until `fit` gives it the shape
    of the data, or a state_dict gives it the shape it was fitted with: a model built before
    it has seen any data (a GloNet without `input_shape`) still loads its trained weights.
    """

    def __init__(self, input_shape: list[int] | tuple[int, ...] = ()):
        super().__init__()
        self.register_buffer("mean", torch.zeros(input_shape))
        self.register_buffer("inv_std", torch.ones(input_shape))

    @torch.no_grad()
    def fit(self, x: torch.Tensor) -> None:
        std = x.std(dim=0)
        self.mean = x.mean(dim=0).to(self.mean)
        self.inv_std = torch.where(std > 1e-6, 1.0 / std.clamp_min(1e-6), torch.ones_like(std)).to(self.inv_std)

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any) -> None:
        for name in ("mean", "inv_std"):
            saved, own = state_dict.get(prefix + name), getattr(self, name)
            if saved is not None and own.dim() == 0 and saved.shape != own.shape:
                setattr(self, name, torch.empty(saved.shape, dtype=own.dtype, device=own.device))
        super()._load_from_state_dict(state_dict, prefix, *args)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) * self.inv_std


class DepthModel(nn.Module):
    """Base class: subclasses define embed / step / head_out and `num_blocks`."""

    num_blocks: int

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.input_norm = InputNorm(config.input_shape)
        if config.task == "regression":
            # Targets are standardised for training; the graph returns them in original units.
            self.register_buffer("target_mean", torch.zeros(config.num_outputs))
            self.register_buffer("target_std", torch.ones(config.num_outputs))

    @torch.no_grad()
    def fit_normalisation(self, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
        """Input statistics from training samples x; regression targets y are standardised too."""
        self.input_norm.fit(x)
        if self.config.task == "regression":
            if y is None:
                raise ConfigError("a regression model standardises its targets: pass fit_normalisation(x, y)")
            self.target_mean.copy_(y.mean(dim=0))
            self.target_std.copy_(y.std(dim=0).clamp_min(1e-6))

    @property
    def input_shape(self) -> list[int]:
        """One sample's shape, without the batch dimension."""
        return list(self.config.input_shape)

    def describe(self) -> dict[str, Any]:
        """What a bundle's manifest records as its "model"."""
        return self.config.to_json()

    def embed(self, x: torch.Tensor) -> State:
        raise NotImplementedError

    def step(self, i: int, state: State) -> State:
        raise NotImplementedError

    def head_out(self, state: State) -> torch.Tensor:
        raise NotImplementedError

    def readout(self, state: State) -> torch.Tensor:
        y = self.head_out(state)
        if self.config.task == "regression":
            y = y * self.target_std + self.target_mean
        return y

    def check_depth(self, depth: int | None) -> int:
        if depth is None:
            return self.num_blocks
        if isinstance(depth, bool) or not isinstance(depth, int) or not 1 <= depth <= self.num_blocks:
            raise ConfigError(f"depth must be an int in 1..{self.num_blocks} for this model, got {depth!r}")
        return depth

    def check_input(self, x: torch.Tensor) -> None:
        expected = tuple(self.config.input_shape)
        if tuple(x.shape[1:]) != expected:
            raise ConfigError(f"input has shape {tuple(x.shape)}, expected (batch, {', '.join(map(str, expected))}); "
                              "reshape the data to the model's input_shape.")

    def forward(self, x: torch.Tensor, depth: int | None = None, all_depths: bool = False):
        if all_depths:
            return self.forward_all(x)
        depth = self.check_depth(depth)
        self.check_input(x)
        state = self.embed(x)
        for i in range(depth):
            state = self.step(i, state)
        return self.readout(state)

    @torch.no_grad()
    def dry_run(self, example: torch.Tensor) -> torch.Tensor:
        """The full-depth output for `example` in eval mode, without gradients: blocks that do
        not fit together, or a head that cannot read what they give, are reported here."""
        was_training = self.training
        self.eval()
        try:
            self.check_input(example)
            state = self.embed(example)
            for i in range(self.num_blocks):
                state = self.step(i, state)
            try:
                return self.readout(state)
            except RuntimeError as exc:
                shapes = [tuple(t.shape[1:]) for t in state]
                raise ConfigError(f"the head of this {type(self).__name__} cannot read its state of shapes {shapes} "
                                  f"({exc}); give a head that takes them") from exc
        finally:
            self.train(was_training)

    def forward_all(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Predictions at every depth 1..L from one pass (the readout is cheap)."""
        self.check_input(x)
        state = self.embed(x)
        outs = []
        for i in range(self.num_blocks):
            state = self.step(i, state)
            outs.append(self.readout(state))
        return outs


def activation(name: str) -> nn.Module:
    if name == "leaky_relu":
        return nn.LeakyReLU(0.2)  # the reference code's slope
    if name == "relu":
        return nn.ReLU()
    if name == "gelu":
        return nn.GELU()
    raise ConfigError(f"unknown activation {name!r}; choose leaky_relu, relu or gelu")


@torch.no_grad()
def params_and_macs(model: DepthModel, depth: int) -> tuple[int, int]:
    """Parameters touched and multiply-accumulates done by one sample at `depth`.

    Measured with forward hooks, so it follows whatever the model really runs.
    """
    used, macs = _counted(model, lambda: model(torch.zeros(1, *model.config.input_shape), depth=depth))
    params = 0
    seen: set[int] = set()
    for m in used.values():
        for p in m.parameters(recurse=False):
            if id(p) not in seen:
                seen.add(id(p))
                params += p.numel()
    return params, macs


@torch.no_grad()
def segment_macs(model: DepthModel, start: int, end: int) -> int:
    """Multiply-accumulates of one sample through one segment of the anytime chain: blocks
    start+1 .. end and the head (and the stem when start == 0)."""
    x = torch.zeros(1, *model.config.input_shape)
    before = model.embed(x)
    for i in range(start):
        before = model.step(i, before)

    def run() -> None:
        state = model.embed(x) if start == 0 else before
        for i in range(start, end):
            state = model.step(i, state)
        model.readout(state)

    return _counted(model, run)[1]


def _counted(model: DepthModel, run: Callable[[], Any]) -> tuple[dict[int, nn.Module], int]:
    """(modules used, MACs) while `run()` executes the model in eval mode."""
    used: dict[int, nn.Module] = {}
    macs = 0

    def hook(module: nn.Module, inputs: tuple, output: Any) -> None:
        nonlocal macs
        used[id(module)] = module
        if isinstance(module, nn.Linear):
            macs += output.numel() * module.in_features
        elif isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
            macs += output.numel() * k
        elif hasattr(module, "extra_macs"):
            macs += module.extra_macs(inputs, output)

    handles = [m.register_forward_hook(hook) for m in model.modules() if m is not model]
    was_training = model.training
    model.eval()
    try:
        run()
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return used, int(macs)
