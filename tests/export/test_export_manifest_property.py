"""BundleManifest.from_json on random valid and randomly damaged manifests (hypothesis)."""

from __future__ import annotations

import copy
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from glonet_edge.errors import ConfigError
from glonet_edge.manifest import BundleManifest

HEX = "0123456789abcdef"
finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
sha = st.text(HEX, min_size=64, max_size=64)
names = st.text("abcdefghij_/.", min_size=1, max_size=12)


@st.composite
def artifacts(draw):
    a = {"format": draw(st.sampled_from(["onnx", "openvino", "tensorrt"])),
         "precision": draw(st.sampled_from(["fp32", "fp16", "int8"])),
         "path": draw(names), "sha256": draw(sha), "bytes": draw(st.integers(0, 2**40))}
    if draw(st.booleans()):
        a["extra"] = draw(st.dictionaries(names, st.integers() | names, min_size=1, max_size=2))
    if draw(st.booleans()):
        a["companions"] = [{"path": draw(names), "sha256": draw(sha), "bytes": draw(st.integers(0, 2**40))}]
    return a


@st.composite
def manifests(draw):
    """Valid manifest dicts, in the exact shape BundleManifest.to_json writes."""
    depth = draw(st.integers(1, 40))
    chosen = sorted(draw(st.sets(st.integers(1, depth), max_size=6)))
    cuts = sorted(draw(st.sets(st.integers(1, depth), max_size=4)))
    entries = []
    for d in chosen:
        e = {"depth": d, "params": draw(st.integers(0, 10**9)), "macs": draw(st.integers(0, 10**12)),
             "artifacts": draw(st.lists(artifacts(), max_size=2)),
             "metrics": draw(st.dictionaries(st.sampled_from(["fp32", "int8"]),
                                             st.dictionaries(st.sampled_from(["accuracy", "r2"]), finite, max_size=1),
                                             max_size=2))}
        if draw(st.booleans()):
            e["latency_ms"] = {"openvino/int8": {"p50": draw(finite), "p90": draw(finite), "batch": 1}}
        if draw(st.booleans()):
            e["energy_mj"] = {"tensorrt/fp16": draw(finite)}
        if draw(st.booleans()):
            e["rejected"] = {"int8": draw(names)}
        entries.append(e)
    segments, start = [], 0
    for i, end in enumerate(cuts):
        segments.append({"index": i, "start_depth": start, "end_depth": end,
                         "inputs": ["x"] if i == 0 else ["state_0", "state_1"],
                         "outputs": ["next_state_0", "next_state_1", "y"],
                         "artifacts": draw(st.lists(artifacts(), max_size=1))})
        start = end
    return {
        "schema_version": 1, "producer": draw(names),
        "model": {"model": draw(st.sampled_from(["glonet-fc", "glonet-cnn"])), "depth": depth, "width": 32},
        "source_checkpoint_sha256": draw(sha),
        "input": {"name": "x", "shape": draw(st.lists(st.integers(1, 64), min_size=1, max_size=3)), "dtype": "float32"},
        "output": {"name": "y", "task": draw(st.sampled_from(["classification", "regression"]))},
        "metric_name": draw(st.sampled_from(["accuracy", "r2"])),
        "opset": draw(st.integers(13, 20)),
        "depths": entries, "segments": segments,
        "targets": draw(st.dictionaries(st.sampled_from(["tensorrt", "openvino"]),
                                        st.dictionaries(names, names, max_size=2), max_size=2)),
    }


# Arbitrary JSON values. Integers stay within 64 bits: manifest._is_number overflows on
# larger ones (see test_huge_integer_metric_is_a_config_error below).
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6)


def _paths(node, prefix=()):
    """Every (container, key) location in a nested JSON value."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in items:
        yield prefix + (key,)
        yield from _paths(child, prefix + (key,))


@st.composite
def damaged(draw):
    d = copy.deepcopy(draw(manifests()))
    for _ in range(draw(st.integers(1, 3))):
        paths = list(_paths(d))
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = d
        for key in path[:-1]:
            parent = parent[key]
        op = draw(st.sampled_from(["replace", "delete", "add"]))
        if op == "replace":
            parent[path[-1]] = draw(json_values)
        elif op == "delete":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(st.text(max_size=6))] = draw(json_values)
        else:
            parent.append(draw(json_values))
    return d


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(manifests())
def test_valid_manifests_round_trip_exactly(d):
    m = BundleManifest.from_json(d)
    assert m.to_json() == d
    assert BundleManifest.from_json(json.loads(json.dumps(m.to_json()))) == m


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(damaged())
def test_damaged_manifests_raise_only_config_error(d):
    try:
        m = BundleManifest.from_json(d)
    except ConfigError:
        return
    # Accepted: what it reads must survive its own round trip unchanged.
    again = BundleManifest.from_json(m.to_json())
    assert again.to_json() == m.to_json()


def test_huge_integer_metric_is_a_config_error():
    d = {"schema_version": 1, "model": {"model": "glonet-fc", "depth": 1}, "source_checkpoint_sha256": "0" * 64,
         "input": {"shape": [1]}, "output": {"task": "classification"}, "metric_name": "accuracy",
         "depths": [{"depth": 1, "params": 1, "macs": 1, "metrics": {"fp32": {"accuracy": 10**400}}}]}
    with pytest.raises(ConfigError):
        BundleManifest.from_json(d)
