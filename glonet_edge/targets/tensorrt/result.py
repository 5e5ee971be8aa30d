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
    graph: Path  # the graph TensorRT parsed (the source, or a companion graph)
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
    converter: Optional[str] = None  # which converter made the companion graph
    unfolded_graph: Optional[Path] = None  # kept next to the engine (int8 on TensorRT < 10: float weights -> Q -> DQ)

    @property
    def sidecar(self) -> Path:
        return self.plan.with_suffix(".json")

    @property
    def files(self) -> List[Path]:
        """[engine, metadata sidecar, companion graph (TensorRT 11 fp16, strongly typed int8 with fp16
        fallback, int8 on TensorRT < 10)]."""
        extra = [g for g in (self.fp16_graph, self.unfolded_graph) if g is not None]
        return [self.plan, self.sidecar] + extra
