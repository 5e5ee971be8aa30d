"""torch -> ONNX for one depth-truncated graph or one segment of the anytime chain.

Both are cut from the model's three steps (`embed`, `step(i)`, `readout`), so a graph of
depth d and the segment chain ending at d compute the same thing by construction; the
exporter is still checked against eager torch (verify.py) because exporters miscompile.

Exporter choice: the legacy TorchScript exporter (`dynamo=False`). It still ships in
torch 2.13 (with a DeprecationWarning), emits the requested opset natively (TensorRT 8.5 on
JetPack 5 parses opset <= 17, while the dynamo exporter builds at 18 and down-converts), and
writes the weights inside the .onnx file. The tracer unrolls the Python loop over blocks, so
each wrapper bakes its depth into the graph.

Segment I/O (positional contract, also recorded per segment in the manifest):
    segment 0 inputs  ["x"]                      later segments ["state_0", "state_1", ...]
    outputs           ["next_state_0", ..., "y"]
The carried state is fed to the next segment in order: outputs[:-1] -> next inputs. The
outputs cannot reuse the input names: an ONNX graph assigns each name once.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from pathlib import Path
from typing import Iterator

import torch
from torch import nn

from ..errors import ArtifactError
from ..train.models.base import DepthModel, State

INPUT_NAME = "x"
OUTPUT_NAME = "y"
BATCH_DIM = "batch"


class DepthGraph(nn.Module):
    """The model with its depth fixed, so the tracer sees a plain x -> y function."""

    def __init__(self, model: DepthModel, depth: int):
        super().__init__()
        self.m = model
        self.depth = depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.m(x, depth=self.depth)


class SegmentGraph(nn.Module):
    """Blocks start+1 .. end: (x or state) -> (state..., y at end)."""

    def __init__(self, model: DepthModel, start: int, end: int):
        super().__init__()
        self.m = model
        self.start = start
        self.end = end

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        state: State = self.m.embed(inputs[0]) if self.start == 0 else tuple(inputs)
        for i in range(self.start, self.end):
            state = self.m.step(i, state)
        return (*state, self.m.readout(state))


def segment_io_names(start: int, num_state: int) -> tuple[list[str], list[str]]:
    inputs = [INPUT_NAME] if start == 0 else [f"state_{i}" for i in range(num_state)]
    outputs = [f"next_state_{i}" for i in range(num_state)] + [OUTPUT_NAME]
    return inputs, outputs


@torch.no_grad()
def state_at(model: DepthModel, x: torch.Tensor, depth: int) -> State:
    """The carried state after `depth` blocks: example input for a segment starting there."""
    state = model.embed(x)
    for i in range(depth):
        state = model.step(i, state)
    return state


@contextlib.contextmanager
def _stdout_discarded() -> Iterator[None]:
    """torch's exporter switches its C++ log on and prints the whole TorchScript graph to the
    process's stdout when an op cannot be exported; the raised error already says what matters."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def _torch_export(module: nn.Module, args: tuple[torch.Tensor, ...], path: Path, input_names: list[str],
                  output_names: list[str], opset: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    dynamic = {name: {0: BATCH_DIM} for name in (*input_names, *output_names)}
    with warnings.catch_warnings():
        # The deprecation notice is about the exporter we chose on purpose (see module doc);
        # the tracer warnings come from DepthModel.check_input comparing shapes in Python,
        # a check that is rightly baked into the graph as a constant.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        try:
            with _stdout_discarded():
                torch.onnx.export(module.eval(), args, str(path), input_names=input_names, output_names=output_names,
                                  dynamic_axes=dynamic, opset_version=opset, do_constant_folding=True, dynamo=False)
        except torch.onnx.OnnxExporterError as exc:  # an op or an argument ONNX cannot express
            raise ArtifactError(f"torch.onnx cannot export {path.name}: {str(exc).splitlines()[0]}") from exc


def export_depth_graph(model: DepthModel, depth: int, example: torch.Tensor, path: Path, opset: int) -> None:
    """Write the graph of `depth` blocks to `path` and check it (see `check_graph`)."""
    _torch_export(DepthGraph(model, depth), (example,), path, [INPUT_NAME], [OUTPUT_NAME], opset)
    check_graph(path, opset, [INPUT_NAME], [OUTPUT_NAME])


def export_segment(model: DepthModel, start: int, end: int, example: torch.Tensor, path: Path,
                   opset: int) -> tuple[list[str], list[str]]:
    """Write the segment running blocks start+1..end; returns its (input, output) names."""
    args = (example,) if start == 0 else state_at(model, example, start)
    inputs, outputs = segment_io_names(start, len(state_at(model, example, 0)))
    _torch_export(SegmentGraph(model, start, end), tuple(args), path, inputs, outputs, opset)
    check_graph(path, opset, inputs, outputs)
    return inputs, outputs


def check_graph(path: Path, opset: int, inputs: list[str], outputs: list[str]) -> None:
    """ONNX checker, strict shape inference, the opset asked for, the I/O names we promise,
    and a symbolic batch dimension on every input and output (an example batch that the
    exporter specialised would silently pin the batch size)."""
    import onnx

    try:
        onnx.checker.check_model(str(path))  # by path: works with external data too
        model = onnx.load(str(path))
        onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ArtifactError(f"exported graph {path.name} is not valid ONNX: {exc}") from exc
    got_opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if got_opset != opset:
        raise ArtifactError(f"exported graph {path.name} has opset {got_opset}, {opset} was asked for")
    got_in = [i.name for i in model.graph.input]
    got_out = [o.name for o in model.graph.output]
    if got_in != inputs or got_out != outputs:
        raise ArtifactError(f"exported graph {path.name} has inputs {got_in} and outputs {got_out}, expected "
                            f"{inputs} and {outputs} (an unused input is dropped by the exporter)")
    for value in (*model.graph.input, *model.graph.output):
        dims = value.type.tensor_type.shape.dim
        if not dims or not dims[0].dim_param:
            raise ArtifactError(f"exported graph {path.name}: {value.name} has no symbolic batch dimension; "
                                "the graph would only accept the example batch size")
