"""Calibration data and activation ranges for a depth family.

Calibration samples come from the TRAINING split only; the validation split only judges.
Ranges can be computed once for the whole family: every tensor is keyed by what it computes
(structural_keys), the graphs are merged into one deduplicated family graph, and one pass over
the data gives every distinct tensor's range for several estimators at once (docs/quantize.md).
"""

from __future__ import annotations

import copy
import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from ..compare import cpu_session
from ..errors import ConfigError
from ..manifest import BundleManifest, SegmentEntry
from .settings import TRT_OP_TYPES

Estimator = tuple[str, float]  # ("percentile", p) or ("minmax", 100.0)
Ranges = dict[str, tuple[float, float]]  # {tensor: (low, high)}
# Tried, in this order after the configured one, when a depth fails the accuracy check (range_search):
# on low-margin classifiers the best activation range differs from graph to graph.
SEARCH_ESTIMATORS: tuple[Estimator, ...] = (("percentile", 99.9), ("percentile", 99.95), ("minmax", 100.0),
                                            ("percentile", 99.999))


@dataclass
class Calibration:
    """The data quantize works on: calibration samples (a subset of the training split) and the
    held-out split every score and agreement is measured on."""

    x_calib: np.ndarray  # training split subset
    x_val: np.ndarray
    y_val: np.ndarray
    task: str
    metric_name: str
    batch: int = 64
    calibration_data: str = "training split (never the validation split)"
    validation_data: str = "validation split"

    def batches(self, equal: bool = False) -> Iterable[np.ndarray]:
        """Calibration batches; equal=True drops a short last batch (ORT's histogram calibrators
        stack per-batch outputs and need equal shapes) unless it is the only one."""
        n = len(self.x_calib)
        stop = n - n % self.batch if (equal and n > self.batch) else n
        for i in range(0, stop, self.batch):
            yield self.x_calib[i:i + self.batch]


def load_calibration(manifest: BundleManifest, calib_size: int, seed: int = 0,
                     dataset: str | None = None) -> Calibration:
    """Calibration = a deterministic subset of the TRAINING split; evaluation = validation split.
    `dataset` overrides the path recorded at training time (same seed and split)."""
    from ..data import expect_input_shape, load_recorded

    data_cfg = manifest.model.get("data") or {}
    own = _own_model_calibration(manifest, data_cfg, calib_size, seed, dataset)
    if own is not None:
        return own
    spec = dataset or data_cfg.get("dataset")
    if not spec:
        raise ConfigError("the bundle's model config has no data.dataset; cannot find calibration data "
                          "(re-export from a checkpoint made by `glonet train`)")
    data = load_recorded(spec, data_cfg)
    expect_input_shape("data set", spec, data.x_train, manifest.input_shape)
    return Calibration(_calibration_subset(data.x_train, calib_size, seed), data.x_val, data.y_val, data.task,
                       data.metric_name)


def _calibration_subset(x: np.ndarray, calib_size: int, seed: int) -> np.ndarray:
    """`calib_size` samples of x (all of them if fewer), drawn with `seed`, kept in x's order."""
    n = min(int(calib_size), len(x))
    idx = np.sort(np.random.default_rng(seed).permutation(len(x))[:n])
    return np.ascontiguousarray(x[idx], dtype=np.float32)


def _own_model_calibration(manifest: BundleManifest, data_cfg: dict[str, Any], calib_size: int, seed: int,
                           dataset: str | None) -> Calibration | None:
    """A bundle exported from a model in memory or a --module (docs/own-model.md): every score is
    measured on its validation data, whole (own_model_validation); calibration samples come from
    `dataset` (quantize's --data, the training images) or, without it, from the validation data.
    None (the split below) for a `glonet train` run, or when the recorded path is gone."""
    from ..data import expect_input_shape, load_samples, own_model_validation

    own = own_model_validation(manifest)
    if own is None:
        return None
    x_val, y_val = own
    x_train = x_val
    if dataset:
        x_train = load_samples(dataset, data_cfg.get("image_size"))[0]
        expect_input_shape("calibration data", dataset, x_train, manifest.input_shape)
    recorded = data_cfg["dataset"]
    calibration = f"{dataset} (--data)" if dataset else f"{recorded}: the validation data (no --data given)"
    return Calibration(_calibration_subset(x_train, calib_size, seed), x_val, y_val, manifest.task,
                       manifest.metric_name, calibration_data=calibration,
                       validation_data=f"{recorded}, all {len(y_val)} samples (what export scored)")


def estimator_name(est: Estimator) -> str:
    return "minmax" if est[0] == "minmax" else f"percentile {est[1]:g}"


def estimators(method: str = "percentile", percentile: float = 99.99, search: bool = False) -> list[Estimator]:
    """The configured range estimator first, then (search=True) the others of SEARCH_ESTIMATORS."""
    first: Estimator = ("minmax", 100.0) if method == "minmax" else ("percentile", float(percentile))
    out = [first]
    if search:
        out += [e for e in SEARCH_ESTIMATORS if e != first]
    return out


# ---------------------------------------------------------------------------------------------
# structural keys and the family graph
# ---------------------------------------------------------------------------------------------
class NotShareable(Exception):
    pass


def structural_keys(model: Any, input_keys: dict[str, str]) -> dict[str, str]:
    """{tensor name: key}; equal keys <=> the same computation on the same graph input."""
    from onnx import numpy_helper

    keys = dict(input_keys)
    for init in model.graph.initializer:
        arr = numpy_helper.to_array(init)
        keys[init.name] = "i" + hashlib.sha1(f"{arr.dtype}{arr.shape}".encode() + arr.tobytes()).hexdigest()[:24]
    for node in model.graph.node:
        h = hashlib.sha1(f"{node.domain}::{node.op_type}".encode())
        for a in sorted(node.attribute, key=lambda a: a.name):
            if a.g.node or a.graphs:
                raise NotShareable(f"{node.op_type} has a subgraph")
            b = copy.deepcopy(a)
            b.ClearField("doc_string")
            h.update(b.SerializeToString())
        for i in node.input:
            if i and i not in keys:
                raise NotShareable(f"input {i} of {node.name} is not produced before use")
            h.update((keys[i] if i else "-").encode() + b"|")
        base = h.hexdigest()[:24]
        for j, o in enumerate(node.output):
            if o:
                keys[o] = f"n{base}_{j}"
    return keys


def segment_input_keys(seg: SegmentEntry, previous: tuple[Any, dict[str, str]] | None,
                       input_name: str) -> dict[str, str]:
    """Keys of a segment's inputs: the first reads the graph input, the others the previous
    segment's (model, keys) outputs, by name or else by position."""
    if previous is None:
        return {input_name: input_name}
    prev_model, prev_keys = previous
    prev_out = [o.name for o in prev_model.graph.output]
    out = {}
    for pos, name in enumerate(seg.inputs):
        src = name if name in prev_out else (prev_out[pos] if pos < len(prev_out) else None)
        if src is None:
            raise NotShareable(f"segment {seg.index} input {name} has no matching output in segment {seg.index - 1}")
        out[name] = prev_keys[src]
    return out


def _float_outputs(model: Any, keys: dict[str, str]) -> dict[str, int]:
    """{key: elem type} of the float tensors the graph's nodes compute."""
    import onnx

    g = onnx.shape_inference.infer_shapes(model).graph
    types = {vi.name: vi.type.tensor_type.elem_type for vi in [*g.value_info, *g.output, *g.input]
             if vi.type.HasField("tensor_type")}
    init_names = {i.name for i in model.graph.initializer}
    floats = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)
    return {keys[o]: types[o] for n in model.graph.node for o in n.output
            if o and o not in init_names and types.get(o) in floats}


def _merge_graph(model: Any, keys: dict[str, str], name: Callable[[str], str], nodes: list[Any],
                 inits: dict[str, Any], seen: set[str]) -> None:
    """Add the initializers and nodes of `model` not yet in the family, renamed by key."""
    for init in model.graph.initializer:
        k = keys[init.name]
        if k not in inits:
            t = copy.deepcopy(init)
            t.name = name(k)
            inits[k] = t
    for node in model.graph.node:
        outs = [keys[o] for o in node.output if o]
        if outs and all(k in seen for k in outs):
            continue
        new = copy.deepcopy(node)
        new.name = f"n{len(nodes)}"
        del new.input[:]
        new.input.extend(name(keys[i]) if i else "" for i in node.input)
        del new.output[:]
        new.output.extend(name(keys[o]) if o else "" for o in node.output)
        nodes.append(new)
        seen.update(outs)


def family_graph(graphs: list[tuple[Any, dict[str, str]]], input_name: str = "x",
                 op_types: tuple[str, ...] | None = TRT_OP_TYPES):
    """Merge graphs [(model, keys)] into one deduplicated graph whose outputs are the distinct
    float tensors that are inputs or outputs of `op_types` nodes (all float tensors if None),
    named by key -- the tensors ORT's calibrator would look at. Returns (model, [output keys])."""
    from onnx import helper

    name = lambda k: k if k == input_name else f"t_{k}"  # noqa: E731
    nodes: list[Any] = []
    inits: dict[str, Any] = {}
    float_outs: dict[str, int] = {}
    seen: set[str] = set()
    wanted: set[str] = set()
    for model, keys in graphs:
        # keys, not names: a segment's state input is the previous segment's output tensor
        wanted.update(keys[t] for n in model.graph.node if op_types is None or n.op_type in op_types
                      for t in [*n.input, *n.output] if t and t in keys)
        _merge_graph(model, keys, name, nodes, inits, seen)
        float_outs.update(_float_outputs(model, keys))
    outputs = {k: t for k, t in float_outs.items() if k in wanted}
    first = graphs[0][0]
    x_vi = next(i for i in first.graph.input if i.name == input_name)
    graph = helper.make_graph(nodes, "glonet_family", [copy.deepcopy(x_vi)],
                              [helper.make_tensor_value_info(name(k), t, None) for k, t in outputs.items()],
                              list(inits.values()))
    model = helper.make_model(graph, opset_imports=list(first.opset_import), ir_version=first.ir_version)
    return model, list(outputs)  # (outputs carry no shapes, which ORT accepts and the checker does not)


# ---------------------------------------------------------------------------------------------
# ranges
# ---------------------------------------------------------------------------------------------
TensorPass = Callable[[np.ndarray], Iterator[tuple[str, np.ndarray]]]


def _percentile_range(hist: np.ndarray, amax: float, lo: float, hi: float, percentile: float) -> tuple[float, float]:
    """As ORT's Percentile calibrator: a histogram of |v|, cut (100 - p) / 2 % at both ends."""
    total = hist.sum()
    if total == 0 or amax <= 0:
        return lo, hi
    bins = len(hist)
    cut = (100.0 - percentile) / 200.0
    edges = np.linspace(0.0, amax, bins + 1)
    cdf = np.cumsum(hist) / total
    left = float(edges[min(int(np.searchsorted(cdf, cut)), bins)])
    right = float(edges[min(int(np.searchsorted(cdf, 1.0 - cut)) + 1, bins)])
    return max(left, lo), min(right, hi)


def _min_max(data: Calibration, tensors: TensorPass) -> tuple[dict[str, float], dict[str, float]]:
    lo: dict[str, float] = {}
    hi: dict[str, float] = {}
    for xb in data.batches():
        for k, r in tensors(xb):
            lo.setdefault(k, np.inf)
            hi.setdefault(k, -np.inf)
            if r.size:
                lo[k] = min(lo[k], float(np.nanmin(r)))
                hi[k] = max(hi[k], float(np.nanmax(r)))
    return lo, hi


def _abs_histograms(data: Calibration, tensors: TensorPass, amax: dict[str, float], bins: int) -> dict[str, np.ndarray]:
    hist = {k: np.zeros(bins, np.int64) for k in amax}
    for xb in data.batches():
        for k, r in tensors(xb):
            if k in hist and amax[k] > 0:
                hist[k] += np.histogram(np.abs(r), bins=bins, range=(0.0, amax[k]))[0]
    return hist


def family_range_sets(graphs: list[tuple[Any, dict[str, str]]], data: Calibration, input_name: str = "x",
                      range_estimators: list[Estimator] | None = None, bins: int = 2048) -> dict[Estimator, Ranges]:
    """Calibration ranges {estimator: {key: (low, high)}} for every distinct float tensor of the
    merged family, for several estimators from the same passes: every percentile is read off one
    histogram per tensor, so searching estimators costs no extra pass over the data."""
    range_estimators = list(range_estimators or [("percentile", 99.99)])
    model, keys = family_graph(graphs, input_name)
    sess = cpu_session(model, optimize=False)  # ORT's calibrator runs with ORT_DISABLE_ALL too
    names = [o.name for o in sess.get_outputs()]

    def tensors(xb: np.ndarray) -> Iterator[tuple[str, np.ndarray]]:
        return zip([*keys, input_name], [*sess.run(names, {input_name: xb}), xb])

    lo, hi = _min_max(data, tensors)
    valid = [k for k in lo if np.isfinite(lo[k])]
    result = {e: {k: (lo[k], hi[k]) for k in valid} for e in range_estimators if e[0] == "minmax"}
    percentiles = [e for e in range_estimators if e[0] == "percentile"]
    if percentiles:
        amax = {k: max(abs(lo[k]), abs(hi[k])) for k in valid}
        hist = _abs_histograms(data, tensors, amax, bins)
        for e in percentiles:
            result[e] = {k: _percentile_range(hist[k], amax[k], lo[k], hi[k], e[1]) for k in valid}
    return result


def ranges_for(model: Any, keys: dict[str, str], family: Ranges) -> Ranges:
    init_names = {i.name for i in model.graph.initializer}
    names = {i.name for i in model.graph.input} | {o for n in model.graph.node for o in n.output if o}
    return {n: family[keys[n]] for n in names if n not in init_names and keys.get(n) in family}


@dataclass
class RangeTable:
    """Activation ranges computed before quantizing, {graph ("d4", "s1"): {estimator: ranges}};
    a graph not in it calibrates on its own feeds."""
    per_graph: dict[str, dict[Estimator, Ranges]] = field(default_factory=dict)
    shared: bool = False
    note: str | None = None
    timing: dict[str, Any] = field(default_factory=dict)


def _keyed_graphs(depth_graphs: dict[int, Path], segment_graphs: list[tuple[SegmentEntry, Path]],
                  input_name: str) -> tuple[dict[str, Any], dict[str, dict[str, str]]]:
    import onnx

    models: dict[str, Any] = {}
    keys: dict[str, dict[str, str]] = {}
    for d, path in depth_graphs.items():
        models[f"d{d}"] = onnx.load(str(path))
        keys[f"d{d}"] = structural_keys(models[f"d{d}"], {input_name: input_name})
    previous = None
    for seg, path in segment_graphs:
        k = f"s{seg.index}"
        models[k] = onnx.load(str(path))
        keys[k] = structural_keys(models[k], segment_input_keys(seg, previous, input_name))
        previous = (models[k], keys[k])
    return models, keys


def precompute_ranges(depth_graphs: dict[int, Path], segment_graphs: list[tuple[SegmentEntry, Path]],
                      data: Calibration, range_estimators: list[Estimator], share: bool,
                      input_name: str = "x") -> RangeTable:
    """Every estimator's ranges for every graph: from one pass over the merged family (share),
    or from one pass per depth graph (segments then calibrate on the chain's own inputs)."""
    try:
        models, keys = _keyed_graphs(depth_graphs, segment_graphs, input_name)
    except NotShareable as exc:
        return RangeTable(note=f"calibration ranges not precomputed: {exc}")
    started = time.perf_counter()
    table = RangeTable(shared=share)
    if share:
        family = family_range_sets([(m, keys[k]) for k, m in models.items()], data, input_name, range_estimators)
        table.per_graph = {k: {e: ranges_for(m, keys[k], family[e]) for e in range_estimators}
                           for k, m in models.items()}
        table.timing.update(calibration_passes=1, distinct_tensors=len(family[range_estimators[0]]))
    else:
        for k, m in models.items():
            if k.startswith("d"):
                own = family_range_sets([(m, keys[k])], data, input_name, range_estimators)
                table.per_graph[k] = {e: ranges_for(m, keys[k], own[e]) for e in range_estimators}
        table.timing["calibration_passes"] = len(table.per_graph)
    table.timing["calibration_s"] = time.perf_counter() - started
    table.timing["graph_tensors"] = sum(len(r[range_estimators[0]]) for r in table.per_graph.values())
    return table
