"""The record of one engine build, shared by the metadata and the trtexec line made from it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from .options import BuildOptions

Shapes = Dict[str, Dict[str, List[int]]]


@dataclass
class EngineBuild:
    """What one build did: the files it wrote and every setting trtexec needs to repeat it."""

    plan: Path
    graph: Path  # the graph TensorRT parsed (the fp16 companion on TensorRT 11)
    options: BuildOptions
    timing_cache: Path
    tensorrt: str  # the TensorRT version that built it
    strongly_typed: bool = False
    builder_flags: List[str] = field(default_factory=list)
    no_tf32: bool = False
    optimization_level: Optional[int] = None
    shapes: Shapes = field(default_factory=dict)
    dynamic_inputs: List[str] = field(default_factory=list)  # inputs with a dynamic dim in the network
    fp16_graph: Optional[Path] = None  # kept next to the engine (TensorRT 11 fp16)
    converter: Optional[str] = None  # which fp16 converter made it

    @property
    def sidecar(self) -> Path:
        return self.plan.with_suffix(".json")

    @property
    def files(self) -> List[Path]:
        """[engine, metadata sidecar, fp16 graph (TensorRT 11 fp16 only)]."""
        return [self.plan, self.sidecar] + ([self.fp16_graph] if self.fp16_graph is not None else [])
