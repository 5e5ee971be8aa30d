"""Building one TensorRT engine, as small steps (after Polygraphy's loaders): network flags, the
graph to parse, the parsed network, the builder config, the optimization profile, the timing
cache, and the serialized plan. `build_engine` runs them in order and returns what it did
(an EngineBuild), from which the metadata and the trtexec line are made.

docs/targets.md (TensorRT) explains each rule the steps apply and the version it comes from.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from ...errors import ArtifactError, ConfigError
from ...fileio import atomic_write_bytes
from . import cuda, device
from .fp16 import convert_fp16, convert_qdq_fp16
from .library import has_flag, load_trt, logger, trt_major
from .metadata import write_metadata
from .options import BatchProfile, BuildOptions
from .result import EngineBuild, Shapes


def engine_path(out_dir: Path, stem: str, precision: str) -> Path:
    return Path(out_dir) / f"{stem}.{precision}.plan"


def timing_cache_path(out_dir: Path, gpu_index: int = 0) -> Path:
    """One timing cache per (TensorRT version, GPU) in the engine directory."""
    trt = load_trt()
    return Path(out_dir) / f"timing_{device.engine_dir_name(str(trt.__version__), device.gpu_info(gpu_index))}.cache"


# ---- steps ------------------------------------------------------------------------------------
def check_dla(trt: Any, builder: Any, opts: BuildOptions) -> None:
    """DLA runs fp16 / int8 only, on a core that exists; int8 on DLA before TensorRT 10 is warned."""
    dla = opts.device.dla_core
    if dla is None:
        return
    if opts.precision == "fp32":
        raise ConfigError("DLA runs fp16 or int8 only; use --precision fp16 or int8 with --device DLA")
    cores = int(getattr(builder, "num_DLA_cores", 0) or 0)
    if cores <= dla:
        raise ConfigError(f"device DLA:{dla} asked for but this GPU has {cores} DLA cores (DLA exists on Jetson "
                          "Orin/Xavier; not in TensorRT 11.0-11.3 or on Thor)")
    if opts.precision == "int8" and trt_major(trt) < 10:
        warnings.warn(f"DLA with int8 on TensorRT {trt.__version__}: DLA does not support explicit quantization "
                      "(Q/DQ) before TensorRT 10, so with GPU_FALLBACK the quantized layers run on the GPU, "
                      "silently; check with `trtexec --useDLACore=... --dumpLayerInfo` or use fp16 on DLA",
                      RuntimeWarning, stacklevel=3)


def network_flags(trt: Any, opts: BuildOptions) -> Tuple[int, bool]:
    """(creation flags, strongly typed): EXPLICIT_BATCH before 10; STRONGLY_TYPED for int8 from 10."""
    major, dla = trt_major(trt), opts.device.dla_core
    net = trt.NetworkDefinitionCreationFlag
    if major < 10 and has_flag(net, "EXPLICIT_BATCH"):
        return 1 << int(net.EXPLICIT_BATCH), False
    want_strong = opts.strongly_typed
    if want_strong is None:
        want_strong = not (dla is not None and major == 10)  # DLA on 10: weakly typed (INT8 + FP16 flags)
    if opts.precision != "int8" or not has_flag(net, "STRONGLY_TYPED") or not (want_strong or major >= 11):
        return 0, False
    if dla is not None and not opts.fp16_fallback:
        warnings.warn(f"DLA with a strongly typed int8 network on TensorRT {trt.__version__} and fp16_fallback=False: "
                      "layers outside Q/DQ pairs stay fp32, which DLA cannot run, so they fall back to the GPU",
                      RuntimeWarning, stacklevel=3)
    return 1 << int(net.STRONGLY_TYPED), True


def fp16_conversion(trt: Any, record: EngineBuild) -> Optional[Tuple[Callable[[Path, Path], str], str]]:
    """(converter, companion suffix) when the graph itself must carry fp16: an fp16 engine where
    TensorRT has no FP16 flag (11), and a strongly typed int8 engine whose layers outside the
    Q/DQ pairs may run fp16 (fp16_fallback); None when the source graph is parsed as it is."""
    opts = record.options
    if opts.precision == "fp16" and not has_flag(trt.BuilderFlag, "FP16"):
        return convert_fp16, "fp16"
    if opts.precision == "int8" and record.strongly_typed and opts.fp16_fallback:
        return convert_qdq_fp16, "int8.fp16"
    return None


def unfold_weights(src: Path, dst: Path) -> str:
    """Write `src` with its integer weight initializers -> DQ unfolded to float -> Q -> DQ, the
    layout TensorRT < 10 parses (a shipped int8 graph stores INT8 weights, docs/quantize.md)."""
    import onnx

    from ...quantize.qdq_rewrite import unfold_weight_quantizers

    onnx.save(unfold_weight_quantizers(onnx.load(str(src))), str(dst))
    return "unfold_weight_quantizers"


def has_integer_weights(onnx_path: Path) -> bool:
    """Whether a DequantizeLinear of the graph reads an integer initializer (a stored INT8 weight)."""
    import onnx

    model = onnx.load(str(onnx_path))
    ints = {t.name for t in model.graph.initializer if t.data_type in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8)}
    return any(n.op_type == "DequantizeLinear" and n.input[0] in ints for n in model.graph.node)


Conversion = Tuple[Callable[[Path, Path], str], str, str]


def graph_conversion(trt: Any, record: EngineBuild, onnx_path: Path) -> Optional[Conversion]:
    """(converter, companion suffix, EngineBuild field naming the companion): the fp16 conversions
    (fp16_conversion), or for an int8 engine on TensorRT < 10 whose graph stores INT8 weight
    initializers, the graph with float weights -> Q -> DQ (unfold_weights); None: parse the source."""
    conversion = fp16_conversion(trt, record)
    if conversion is not None:
        return conversion[0], conversion[1], "fp16_graph"
    if record.options.precision == "int8" and trt_major(trt) < 10 and has_integer_weights(onnx_path):
        return unfold_weights, "int8.unfolded", "unfolded_graph"
    return None


@contextlib.contextmanager
def graph_to_parse(trt: Any, onnx_path: Path, out_dir: Path, stem: str, record: EngineBuild) -> Iterator[Path]:
    """The ONNX graph TensorRT parses: the source, or its conversion (graph_conversion), which is
    kept as {stem}.<suffix>.onnx next to the engine once the engine is written (record.fp16_graph
    or record.unfolded_graph), so trtexec builds from the same graph."""
    conversion = graph_conversion(trt, record, onnx_path)
    if conversion is None:
        yield onnx_path
        return
    convert, suffix, field_name = conversion
    tmp = out_dir / f".{stem}.{suffix}.tmp.onnx"
    try:
        record.converter = convert(onnx_path, tmp)
        yield tmp  # an exception in the build is raised here: nothing below runs
        record.graph = out_dir / f"{stem}.{suffix}.onnx"
        setattr(record, field_name, record.graph)
        os.replace(tmp, record.graph)
    finally:
        tmp.unlink(missing_ok=True)


def parse_network(trt: Any, builder: Any, flags: int, graph: Path, source_name: str, precision: str) -> Tuple[Any, Any]:
    """(network, parser); the parser owns the weights the network points to, so both are kept."""
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger(trt))
    if parser.parse_from_file(str(graph)):
        return network, parser
    errs = [str(parser.get_error(i)) for i in range(parser.num_errors)]
    hints = []
    if precision == "int8":
        hints.append("int8: run `glonet quantize` with the TensorRT recipe (symmetric INT8 Q/DQ)")
    if trt_major(trt) < 9:
        hints.append(f"TensorRT {trt.__version__} parses ONNX opset <= 17: re-export with opset 17")
    raise ArtifactError(f"TensorRT {trt.__version__} cannot parse {source_name}:\n  " + "\n  ".join(errs[:10])
                        + "".join(f"\n({h})" for h in hints))


def create_config(trt: Any, builder: Any, record: EngineBuild) -> Any:
    """Workspace, precision flags (only those this TensorRT has), optimization level, DLA."""
    opts = record.options
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, opts.workspace_mib << 20)

    def set_flag(name: str) -> None:
        if has_flag(trt.BuilderFlag, name):
            config.set_flag(getattr(trt.BuilderFlag, name))
            record.builder_flags.append(name)

    if opts.precision == "fp32" and has_flag(trt.BuilderFlag, "TF32") and not opts.tf32:
        config.clear_flag(trt.BuilderFlag.TF32)
        record.no_tf32 = True
    if opts.precision == "fp16":
        set_flag("FP16")
    if opts.precision == "int8" and not record.strongly_typed:
        set_flag("INT8")  # TensorRT 8.x needs it for Q/DQ to take effect
        if opts.fp16_fallback:
            set_flag("FP16")  # non-quantized layers may run fp16
    if hasattr(config, "builder_optimization_level"):
        record.optimization_level = config.builder_optimization_level = opts.optimization_level
    if opts.device.dla_core is not None:
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = opts.device.dla_core
        set_flag("GPU_FALLBACK")
    return config


def profile_shapes(network: Any, batch: BatchProfile) -> Shapes:
    """min/opt/max per network input; see _input_shapes for a batch dim the graph fixed."""
    shapes: Shapes = {}
    for i in range(network.num_inputs):
        t = network.get_input(i)
        shapes[t.name] = _input_shapes(t.name, tuple(int(d) for d in t.shape), batch)
    return shapes


def dynamic_inputs(network: Any) -> List[str]:
    """The network inputs with a dynamic dimension (-1)."""
    inputs = (network.get_input(i) for i in range(network.num_inputs))
    return [t.name for t in inputs if any(int(d) < 0 for d in t.shape)]


def _input_shapes(name: str, dims: Tuple[int, ...], batch: BatchProfile) -> Dict[str, List[int]]:
    """A dynamic batch dim gets the requested range; a batch dim the graph fixed (d0 > 0) gets
    (d0, d0, d0) when d0 is inside the range (TensorRT rejects a profile that disagrees with a
    static dim), else ConfigError."""
    if not dims:
        return {"min": [], "opt": [], "max": []}
    if any(d < 0 for d in dims[1:]):
        raise ConfigError(f"input {name} has dynamic non-batch dims {dims}; export with a fixed sample shape")
    d0, rest = dims[0], list(dims[1:])
    if d0 <= 0:
        return {"min": [batch.min, *rest], "opt": [batch.opt, *rest], "max": [batch.max, *rest]}
    if not batch.min <= d0 <= batch.max:
        raise ConfigError(f"input {name!r} has a fixed batch dimension {d0} ({dims}) but the requested batch range "
                          f"is {batch.min}..{batch.max}; re-export with a dynamic batch (dynamic axis 0) or compile "
                          f"with a batch range that contains {d0}")
    if batch.min != batch.max:
        warnings.warn(f"input {name!r} has a fixed batch dimension {d0}: the engine gets the static profile "
                      f"{d0}/{d0}/{d0} instead of {batch.min}/{batch.opt}/{batch.max} (run() pads smaller batches and "
                      "splits larger ones); re-export with a dynamic batch for a batch range", RuntimeWarning, stacklevel=4)
    return {k: [d0, *rest] for k in ("min", "opt", "max")}


def add_profile(builder: Any, config: Any, shapes: Shapes, source_name: str) -> None:
    profile = builder.create_optimization_profile()
    for name, s in shapes.items():
        profile.set_shape(name, tuple(s["min"]), tuple(s["opt"]), tuple(s["max"]))
    if config.add_optimization_profile(profile) < 0:
        raise ConfigError(f"TensorRT rejected the optimization profile for {source_name}: "
                          + "; ".join(f"{n} min {s['min']} opt {s['opt']} max {s['max']}" for n, s in shapes.items())
                          + " (each needs 1 <= min <= opt <= max, element-wise)")


def read_timing_cache(config: Any, blob: bytes) -> Any:
    """config.create_timing_cache(blob), None for a blob TensorRT cannot read: the binding returns
    None or raises, depending on what is wrong with it (Polygraphy's loader catches both)."""
    try:
        return config.create_timing_cache(blob)
    except Exception:  # the binding raises RuntimeError / TypeError / its own error types
        return None


def load_timing_cache(config: Any, cache_path: Path) -> Any:
    """The family's timing cache; a corrupt or foreign one (unreadable, or set_timing_cache ->
    False: another TensorRT version / GPU) is replaced by a fresh cache."""
    blob = cache_path.read_bytes() if cache_path.is_file() else b""
    cache = read_timing_cache(config, blob) if blob else None
    if blob and (cache is None or config.set_timing_cache(cache, False) is False):
        why = "unreadable (corrupt)" if cache is None else "made by another TensorRT version or GPU"
        warnings.warn(f"TensorRT timing cache {cache_path} is {why}; starting a fresh one (it is overwritten "
                      "after this build)", RuntimeWarning, stacklevel=3)
        cache = None
    if cache is None:
        cache = config.create_timing_cache(b"")
        if cache is None or config.set_timing_cache(cache, False) is False:
            raise ArtifactError("TensorRT could not create an empty timing cache")
    return cache


def save_timing_cache(config: Any, cache_path: Path) -> None:
    cache = config.get_timing_cache()
    if cache is not None:
        atomic_write_bytes(cache_path, bytes(memoryview(cache.serialize())))


def serialize(trt: Any, builder: Any, network: Any, config: Any, source_name: str, precision: str) -> bytes:
    plan = builder.build_serialized_network(network, config)
    if plan is None:  # TensorRT reports a failed build by returning None, not by raising
        raise ArtifactError(f"TensorRT {trt.__version__} failed to build an engine for {source_name} ({precision}); "
                            "see the TensorRT log above (unsupported layer, workspace too small, or a QDQ placement it "
                            "has no int8 kernel for: lint the graph with glonet_edge.quantize.qdq_lint)")
    return bytes(memoryview(plan))


# ---- the build ---------------------------------------------------------------------------------
def build_engine(onnx_path: Path, out_dir: Path, opts: BuildOptions) -> EngineBuild:
    """Build and write one engine (plan) from an ONNX graph; returns what the build did."""
    trt = load_trt()
    onnx_path, out_dir = Path(onnx_path), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = opts.stem or onnx_path.name.split(".")[0]
    cache_path = opts.timing_cache or timing_cache_path(out_dir, opts.device.gpu_index)
    record = EngineBuild(engine_path(out_dir, stem, opts.precision), onnx_path, opts, cache_path, str(trt.__version__))
    cuda.set_current_device(opts.device.gpu_index, opts.cuda)  # TensorRT builds on the current device
    builder = trt.Builder(logger(trt))
    check_dla(trt, builder, opts)
    net_flags, record.strongly_typed = network_flags(trt, opts)
    with graph_to_parse(trt, onnx_path, out_dir, stem, record) as graph:
        network, _parser = parse_network(trt, builder, net_flags, graph, onnx_path.name, opts.precision)
        config = create_config(trt, builder, record)
        record.shapes = profile_shapes(network, opts.batch)
        record.dynamic_inputs = dynamic_inputs(network)
        add_profile(builder, config, record.shapes, onnx_path.name)
        load_timing_cache(config, cache_path)
        atomic_write_bytes(record.plan, serialize(trt, builder, network, config, onnx_path.name, opts.precision))
    save_timing_cache(config, cache_path)
    write_metadata(trt, record, onnx_path)
    return record
