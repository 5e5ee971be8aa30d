"""Property-based fuzzing of every file the package reads.

For each reader: arbitrary text/bytes, structurally valid files with values replaced by
garbage, truncations and byte flips of a real file. The property is always the same: the
reader returns a valid object, or raises an error of the package's own types (GlonetError),
within a time limit. Raw TypeError/KeyError/RecursionError/OverflowError... are failures.

Readers: manifest.json (BundleManifest.from_json / load, then verify), config.json and
metrics.json (RunConfig / RunMetrics / load_checkpoint, safetensors included), power traces
(parse_trace / load_trace), policy TOML/JSON (PolicyConfig), pipeline TOML (PipelineConfig).
The sysfs trees of the power sources are fuzzed in test_robust_fuzz_sysfs.py.
"""

from __future__ import annotations

import copy
import json
import math
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from glonet_edge.errors import GlonetError
from glonet_edge.manifest import BundleManifest
from robust_support import OutsideReads, count, examples, no_hang

SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                                      HealthCheck.data_too_large])

# ---- strategies -----------------------------------------------------------------------------------
weird_text = st.sampled_from([
    "", " ", "\x00", "\ufeff", "é", "\ud7ff", "../../etc/passwd", "/etc/passwd", "C:\\Windows\\x", "nan", "inf",
    "-inf", "1e999", "-0", "0x10", "١٢", "²", "9" * 5000, "a" * 300, "true", "null", "[]", "{}", "\n\r\t",
])
scalars = (st.none() | st.booleans() | st.integers() | st.integers(min_value=-10**400, max_value=10**400)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=20) | weird_text)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=10) | weird_text, inner, max_size=4), max_leaves=12)
escaping_paths = st.sampled_from([
    "../outside/depth_001.onnx", "/tmp/outside/depth_001.onnx", "onnx/../../outside/depth_001.onnx",
    "onnx/../onnx/depth_001.onnx", "./onnx/depth_001.onnx", "onnx//depth_001.onnx", "onnx\\..\\..\\x.onnx",
    "onnx/depth_001.onnx\x00.txt", "", ".", "onnx", "onnx/", "a" * 5000, "/" * 3, "~/x.onnx", "C:/x.onnx",
    "loop/x.onnx", "segments/segment_00.onnx", "manifest.json", "onnx/depth_999.onnx",
])


def _paths(obj: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path (tuple of keys/indices) into a JSON document, the root included."""
    out = [prefix]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, prefix + (i,))
    return out


def _mutate(doc: Any, path: tuple, op: str, value: Any) -> Any:
    """Replace (or delete, or wrap in a list) the node at `path` of a deep copy of doc."""
    doc = copy.deepcopy(doc)
    if not path:
        return value if op != "wrap" else [doc]
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    last = path[-1]
    if op == "delete":
        del parent[last]
    elif op == "wrap":
        parent[last] = [parent[last]]
    else:
        parent[last] = value
    return doc


@st.composite
def mutated(draw, doc: Any, values=json_values, n_max: int = 3) -> Any:
    """A document with 1..n_max nodes replaced by garbage, deleted or wrapped."""
    for _ in range(draw(st.integers(1, n_max))):
        paths = _paths(doc)
        path = paths[draw(st.integers(0, len(paths) - 1))]
        op = draw(st.sampled_from(["replace", "replace", "delete", "wrap"]) if path else st.just("replace"))
        doc = _mutate(doc, path, op, draw(values))
    return doc


@st.composite
def damaged_bytes(draw, data: bytes) -> bytes:
    """Truncated, byte-flipped, padded, re-encoded or wholly random versions of `data`."""
    kind = draw(st.sampled_from(["truncate", "flip", "insert", "random", "utf16", "bom", "huge", "nested"]))
    if kind == "truncate":
        return data[:draw(st.integers(0, max(0, len(data) - 1)))]
    if kind == "flip":
        b = bytearray(data)
        for _ in range(draw(st.integers(1, 8))):
            i = draw(st.integers(0, len(b) - 1))
            b[i] = draw(st.integers(0, 255))
        return bytes(b)
    if kind == "insert":
        i = draw(st.integers(0, len(data)))
        return data[:i] + draw(st.binary(min_size=1, max_size=16)) + data[i:]
    if kind == "utf16":
        return data.decode("utf-8", "replace").encode("utf-16")
    if kind == "bom":
        return b"\xef\xbb\xbf" + data
    if kind == "huge":
        return data[:-2] + b"," + b'"pad": "' + b"x" * 3_000_000 + b'"}\n'
    if kind == "nested":
        n = draw(st.sampled_from([50, 5000, 200_000]))
        return b"[" * n + b"]" * n
    return draw(st.binary(max_size=512))


def _expect_ok_or_glonet(fn, what: str, seconds: float = 10.0):
    """Run fn; a GlonetError is a valid refusal, anything else (or a hang) fails the test."""
    count("fuzz_inputs", what)
    with no_hang(seconds, what):
        try:
            return fn()
        except GlonetError:
            count("fuzz_refused_clearly", what)
            return None


# ---- manifest.json ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def manifest_doc(fc_served_bundle) -> dict:
    return json.loads((fc_served_bundle / "manifest.json").read_text())


@pytest.fixture(scope="module")
def fuzz_bundle(fc_served_bundle, tmp_path_factory) -> Path:
    """A bundle whose manifest each example replaces, plus bait files OUTSIDE it that carry
    the exact bytes (and so the sha256) of real artifacts, and a symlink loop."""
    root = tmp_path_factory.mktemp("fuzz-manifest")
    bundle = root / "bundle"
    shutil.copytree(fc_served_bundle, bundle)
    (root / "outside").mkdir()
    shutil.copy(bundle / "onnx" / "depth_001.onnx", root / "outside" / "depth_001.onnx")
    (bundle / "loop").symlink_to(bundle / "loop")
    return bundle


def _retarget(doc: dict, bundle: Path) -> dict:
    """Point the escaping bait paths at this bundle's real 'outside' directory."""
    text = json.dumps(doc).replace("/tmp/outside/", str(bundle.parent / "outside") + "/")
    return json.loads(text)


def _load_verify_open(bundle: Path, doc_or_bytes: Any) -> None:
    data = doc_or_bytes if isinstance(doc_or_bytes, bytes) else json.dumps(doc_or_bytes).encode()
    (bundle / "manifest.json").write_bytes(data)
    with OutsideReads(bundle) as reads:
        def run():
            m = BundleManifest.load(bundle)
            m.verify(bundle)
            # Every path that passed verify resolves inside the bundle.
            for a in m.all_artifacts():
                target = (bundle / a.path).resolve()
                assert bundle.resolve() in target.parents, f"{a.path!r} verified but resolves to {target}"
            from glonet_edge.runtime import Runtime

            Runtime.open(bundle, power="none", warmup=True).close()

        _expect_ok_or_glonet(run, "manifest.json")
    assert reads.outside == [], f"read outside the bundle: {reads.outside}"


@settings(max_examples=examples(40), **SETTINGS)
@given(doc=st.data())
def test_manifest_from_json_mutations(manifest_doc, doc):
    d = doc.draw(mutated(manifest_doc))
    m = _expect_ok_or_glonet(lambda: BundleManifest.from_json(d), "manifest.from_json")
    if m is not None:  # what parses serialises back and parses again to the same thing
        assert BundleManifest.from_json(json.loads(json.dumps(m.to_json()))).to_json() == m.to_json()


@settings(max_examples=examples(25), **SETTINGS)
@given(value=json_values)
def test_manifest_from_json_arbitrary(value):
    _expect_ok_or_glonet(lambda: BundleManifest.from_json(value), "manifest.from_json")


@settings(max_examples=examples(30), **SETTINGS)
@given(data=st.data())
def test_manifest_artifact_paths_never_leave_the_bundle(fuzz_bundle, manifest_doc, data):
    """Artifact and companion paths replaced by escaping / odd paths: load + verify + open
    either refuse (GlonetError) or only ever read files inside the bundle."""
    doc = copy.deepcopy(manifest_doc)
    arts = [a for e in doc["depths"] + doc["segments"] for a in e["artifacts"]]
    for _ in range(data.draw(st.integers(1, 3))):
        art = arts[data.draw(st.integers(0, len(arts) - 1))]
        path = data.draw(escaping_paths | st.text(max_size=30))
        if data.draw(st.booleans()):
            art["path"] = path
        else:
            art["companions"] = [{"path": path, "sha256": art["sha256"], "bytes": art["bytes"]}]
    _load_verify_open(fuzz_bundle, _retarget(doc, fuzz_bundle))


@settings(max_examples=examples(30), **SETTINGS)
@given(data=st.data())
def test_manifest_file_bytes(fuzz_bundle, fc_served_bundle, data):
    raw = (fc_served_bundle / "manifest.json").read_bytes()
    _load_verify_open(fuzz_bundle, data.draw(damaged_bytes(raw)))


def test_manifest_missing_or_not_a_file(tmp_path):
    for make in (lambda p: None, lambda p: p.mkdir(), lambda p: p.symlink_to(p)):
        bundle = tmp_path / f"b{len(list(tmp_path.iterdir()))}"
        bundle.mkdir()
        make(bundle / "manifest.json")
        _expect_ok_or_glonet(lambda: BundleManifest.load(bundle), "manifest.json")
        with pytest.raises(GlonetError):
            BundleManifest.load(bundle)
    with pytest.raises(GlonetError, match="does not exist"):
        BundleManifest.load(tmp_path / "nope")


# ---- config.json / metrics.json / model.safetensors -----------------------------------------------------
@pytest.fixture(scope="module")
def run_docs(fc_run) -> tuple[dict, dict]:
    return json.loads((fc_run / "config.json").read_text()), json.loads((fc_run / "metrics.json").read_text())


@settings(max_examples=examples(40), **SETTINGS)
@given(data=st.data())
def test_run_config_and_metrics_from_json(run_docs, data):
    from glonet_edge.train.checkpoint import RunConfig, RunMetrics

    config, metrics = run_docs
    c = _expect_ok_or_glonet(lambda: RunConfig.from_json(data.draw(mutated(config))), "config.json")
    if c is not None:
        json.dumps(c.to_json())
    m = _expect_ok_or_glonet(lambda: RunMetrics.from_json(data.draw(mutated(metrics))), "metrics.json")
    if m is not None:  # an accepted metrics file can be written back and names its best depth
        assert str(m.best_depth) in m.score_by_depth
        json.dumps(m.to_json(), allow_nan=False)


@pytest.fixture(scope="module")
def fuzz_run(fc_run, tmp_path_factory) -> Path:
    dst = tmp_path_factory.mktemp("fuzz-run") / "run"
    shutil.copytree(fc_run, dst)
    return dst


@settings(max_examples=examples(30), **SETTINGS)
@given(data=st.data())
def test_load_checkpoint_with_damaged_json(fc_run, fuzz_run, run_docs, data):
    """load_checkpoint with config.json / metrics.json damaged as bytes or as values: a
    Checkpoint whose model matches the weights, or a GlonetError, within the time limit
    (a config claiming depth 10**9 or width 10**6 must not start building that model)."""
    from glonet_edge.train.checkpoint import load_checkpoint

    for name in ("config.json", "metrics.json"):
        shutil.copy(fc_run / name, fuzz_run / name)
    name = data.draw(st.sampled_from(["config.json", "metrics.json"]))
    doc = run_docs[0] if name == "config.json" else run_docs[1]
    if data.draw(st.booleans()):
        blob = data.draw(damaged_bytes((fc_run / name).read_bytes()))
    else:
        big = st.sampled_from([10**9, 10**6, 2**31, 2**63, -1, 0, 3, 7, 9, 1000])
        blob = json.dumps(data.draw(mutated(doc, values=json_values | big))).encode()
    (fuzz_run / name).write_bytes(blob)
    ckpt = _expect_ok_or_glonet(lambda: load_checkpoint(fuzz_run), f"checkpoint {name}", seconds=20)
    if ckpt is not None:
        assert ckpt.model.num_blocks == ckpt.config.model.depth


def test_load_checkpoint_refuses_huge_config_quickly(fc_run, tmp_path):
    from glonet_edge.train.checkpoint import load_checkpoint

    for field, value in (("depth", 10**9), ("width", 10**6), ("input_shape", [10**6, 10**6]),
                         ("num_outputs", 10**9)):
        run = tmp_path / f"run-{field}"
        shutil.copytree(fc_run, run)
        cfg = json.loads((run / "config.json").read_text())
        cfg[field] = value
        (run / "config.json").write_text(json.dumps(cfg))
        with no_hang(10, f"load_checkpoint with {field}={value}"):
            with pytest.raises(GlonetError):
                load_checkpoint(run)
        count("faults_refused", "checkpoint: huge config")


@settings(max_examples=examples(25), **SETTINGS)
@given(data=st.data())
def test_load_checkpoint_with_damaged_weights(fc_run, fuzz_run, data):
    from glonet_edge.train.checkpoint import load_checkpoint

    for name in ("config.json", "metrics.json"):
        shutil.copy(fc_run / name, fuzz_run / name)
    raw = (fc_run / "model.safetensors").read_bytes()
    kind = data.draw(st.sampled_from(["bytes", "header", "weights"]))
    n = int.from_bytes(raw[:8], "little")
    if kind == "header":  # rewrite the JSON header: shapes, dtypes, offsets, names
        header = json.loads(raw[8:8 + n])
        bad = json.dumps(data.draw(mutated(header, n_max=2))).encode()
        blob = len(bad).to_bytes(8, "little") + bad + raw[8 + n:]
    elif kind == "weights":  # flip bits in the tensor data: still perfectly valid safetensors
        b = bytearray(raw)
        for _ in range(data.draw(st.integers(1, 4))):
            b[data.draw(st.integers(8 + n, len(b) - 1))] ^= 1 << data.draw(st.integers(0, 7))
        blob = bytes(b)
    else:
        blob = data.draw(damaged_bytes(raw))
    assume(blob != raw)
    (fuzz_run / "model.safetensors").write_bytes(blob)
    ckpt = _expect_ok_or_glonet(lambda: load_checkpoint(fuzz_run), "model.safetensors", seconds=20)
    if ckpt is not None:  # accepted: then it really is the same model (e.g. metadata-only change)
        import torch

        ref = load_checkpoint(fc_run).model.state_dict()
        for k, v in ckpt.model.state_dict().items():
            assert torch.equal(v, ref[k]), k


def test_checkpoint_is_never_unpickled(fc_run, tmp_path):
    """A pickle (what torch.save writes) in place of the weights is refused, never executed."""
    from glonet_edge.train.checkpoint import load_checkpoint

    run = tmp_path / "run"
    shutil.copytree(fc_run, run)
    marker = tmp_path / "pwned"

    # A hand-written protocol-0 pickle that would run `os.system("touch MARKER")` if unpickled.
    payload = b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR."
    (run / "model.safetensors").write_bytes(payload)
    with pytest.raises(GlonetError):
        load_checkpoint(run)
    assert not marker.exists()


# ---- power traces -------------------------------------------------------------------------------------
TRACE_COLUMNS = ["t_s", "on_battery", "battery_pct", "power_w", "power_budget_w", "power_mode", "temp_c",
                 "battery_pc", "T_S", "extra", "", "t_s "]
TRACE_CELLS = st.sampled_from(["", "0", "1", "1.5", "-1", "20", "100", "100.6", "nan", "inf", "-inf", "1e999",
                               "yes", "maybe", "15W", "MAXN", '"a,b"', '"', "\x00", "é", " 3 ", "1e-320"]) \
    | st.text(max_size=8) | st.floats(allow_nan=True, allow_infinity=True).map(repr)


VALID_CELLS = {"on_battery": st.sampled_from(["0", "1", "true", "no", ""]),
               "battery_pct": st.floats(0, 100).map(repr) | st.just(""),
               "power_w": st.floats(0, 1000).map(repr), "power_budget_w": st.floats(0, 100).map(repr),
               "power_mode": st.sampled_from(["15W", "MAXN", "7W"]), "temp_c": st.floats(-40, 150).map(repr),
               "extra": st.text(max_size=5).filter(lambda c: "," not in c and '"' not in c and "\n" not in c
                                                   and "\r" not in c)}


@st.composite
def trace_texts(draw) -> str:
    """Half plausible traces (valid header and times, mostly valid cells: the accepted ones
    are then checked), half anything goes."""
    plausible = draw(st.booleans())
    header = draw(st.lists(st.sampled_from(TRACE_COLUMNS), min_size=1, max_size=6))
    if plausible:
        header = ["t_s"] + list(dict.fromkeys(c for c in header if c in VALID_CELLS))
    elif draw(st.booleans()) and "t_s" not in header:
        header = ["t_s"] + header
    rows = []
    t = 0.0
    for _ in range(draw(st.integers(1 if plausible else 0, 6))):
        t += draw(st.sampled_from([1.0, 0.5, 2.5] if plausible else [1.0, 0.0, -1.0, 0.5]))
        cells = []
        for c in header:
            if c == "t_s" and (plausible or draw(st.booleans())):
                cells.append(repr(t))
            elif plausible and c in VALID_CELLS and draw(st.integers(0, 9)):
                cells.append(draw(VALID_CELLS[c]))
            else:
                cells.append(draw(TRACE_CELLS))
        if draw(st.integers(0, 9)) == 0:
            cells = cells[:-1]
        rows.append(",".join(cells))
    lines = ["# provenance: fuzz"] * draw(st.integers(0, 1)) + [",".join(header)] + rows
    return draw(st.sampled_from(["\n", "\r\n"])).join(lines)


def _check_trace(trace) -> None:
    assert len(trace.times) == len(trace.states) >= 1
    assert all(math.isfinite(t) for t in trace.times)
    assert all(b > a for a, b in zip(trace.times, trace.times[1:]))
    for s in trace.states:
        s.validated()  # every accepted state is physically plausible


@settings(max_examples=examples(60), **SETTINGS)
@given(text=trace_texts() | st.text(max_size=200))
def test_parse_trace(text):
    from glonet_edge.runtime.power import TraceSource, parse_trace

    trace = _expect_ok_or_glonet(lambda: parse_trace(text, "fuzz.csv"), "trace csv")
    if trace is not None:
        _check_trace(trace)
        source = TraceSource(trace)
        for _ in range(len(trace) + 1):
            source.step().validated()


@settings(max_examples=examples(30), **SETTINGS)
@given(data=st.data())
def test_load_trace_bytes(tmp_path_factory, data):
    from glonet_edge.runtime.power import load_trace
    from glonet_edge.runtime.power.trace import TRACES_DIR

    raw = (TRACES_DIR / "laptop_discharge.csv").read_bytes()
    path = Path(tempfile.mkdtemp(dir=tmp_path_factory.getbasetemp())) / "trace.csv"
    blob = data.draw(damaged_bytes(raw) | st.binary(max_size=300))
    if data.draw(st.integers(0, 20)) == 0:
        blob = raw + b"\n" + b"9" * 200_000 + b",1,50,3\n"  # a 200 kB cell (csv's field limit is 128 kB)
    path.write_bytes(blob)
    trace = _expect_ok_or_glonet(lambda: load_trace(path), "trace file")
    if trace is not None:
        _check_trace(trace)


# ---- policy TOML / JSON ---------------------------------------------------------------------------------
def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if v != v else ("inf" if v == math.inf else "-inf" if v == -math.inf else repr(v))
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"
    return '"none"'


POLICY_KEYS = ["schema_version", "accuracy_floor", "ac_max_drop", "max_drop", "low_battery_max_drop",
               "battery_low_pct", "battery_band_pct", "temp_throttle_c", "temp_band_c", "economy_power_budget_w",
               "latency_budget_ms", "energy_budget_mj", "score_margin", "cost_margin", "min_dwell_s", "max_dorp",
               "policy"]
toml_scalars = (st.integers(-2**63, 2**63 - 1) | st.floats(allow_nan=True, allow_infinity=True) | st.booleans()
                | st.sampled_from(["off", "none", "OFF", "0.5", "", "1979-05-27T07:32:00Z"]) | st.text(max_size=6))
def _toml_arrays(inner):
    return st.lists(inner, max_size=3)


toml_values = st.recursive(toml_scalars, _toml_arrays, max_leaves=5)


@st.composite
def policy_texts(draw) -> str:
    items = draw(st.dictionaries(st.sampled_from(POLICY_KEYS), toml_values
                                 | st.floats(0, 1) | st.floats(0, 100), max_size=6))
    body = "\n".join(f"{k} = {_toml_value(v)}" for k, v in items.items())
    if draw(st.booleans()):
        body = "[policy]\n" + body
    if draw(st.integers(0, 5)) == 0:
        body = "a = " + "[" * 5000 + "]" * 5000
    return body


@settings(max_examples=examples(60), **SETTINGS)
@given(text=policy_texts() | st.text(max_size=100))
def test_policy_toml(text, manifest_factory_table):
    from glonet_edge.runtime.policy import DepthPolicy, PolicyConfig
    from glonet_edge.runtime.power import PowerState

    cfg = _expect_ok_or_glonet(lambda: PolicyConfig.from_toml_text(text), "policy toml")
    if cfg is not None:  # an accepted config drives the policy without errors, in every tier
        policy = DepthPolicy(manifest_factory_table, cfg, clock=lambda: 0.0)
        for state in (PowerState("t"), PowerState("t", on_battery=True, battery_pct=5.0),
                      PowerState("t", temp_c=150.0), PowerState("t", power_budget_w=5.0, on_battery=False)):
            assert policy.update(state).depth in {r.depth for r in manifest_factory_table}


@settings(max_examples=examples(40), **SETTINGS)
@given(value=json_values | st.dictionaries(st.sampled_from(POLICY_KEYS), json_values, max_size=5))
def test_policy_json(value, tmp_path_factory):
    from glonet_edge.runtime.policy import PolicyConfig

    text = json.dumps(value)
    _expect_ok_or_glonet(lambda: PolicyConfig.from_json_text(text), "policy json")
    path = Path(tempfile.mkdtemp(dir=tmp_path_factory.getbasetemp())) / "policy.json"
    path.write_text(text)
    _expect_ok_or_glonet(lambda: PolicyConfig.from_file(path), "policy json")


def test_policy_file_unreadable(tmp_path):
    from glonet_edge.runtime.policy import PolicyConfig

    (tmp_path / "p.toml").write_bytes(b"\xff\xfe\x00max_drop = 1")
    (tmp_path / "p.json").write_bytes(b"\xff\xfe{}")
    (tmp_path / "dir.toml").mkdir()
    for name in ("p.toml", "p.json", "dir.toml", "missing.toml", "missing.json"):
        with pytest.raises(GlonetError):
            PolicyConfig.from_file(tmp_path / name)


@pytest.fixture(scope="module")
def manifest_factory_table():
    from glonet_edge.runtime.policy import COST_MODELS, estimate_costs, family_table
    from glonet_edge.manifest import DepthEntry

    scores = [0.2, 0.56, 0.75, 0.88, 0.93, 0.95, 0.951, 0.953]
    m = BundleManifest(model={"model": "glonet-fc", "depth": 8}, source_checkpoint_sha256="0" * 64,
                       input_shape=[64], task="classification", metric_name="accuracy",
                       depths=[DepthEntry(d, 0, 2048 + d * 1024, metrics={"fp32": {"accuracy": s}})
                               for d, s in enumerate(scores, start=1)])
    return estimate_costs(family_table(m, "onnxruntime", "fp32"), COST_MODELS["orin-nano-cpu"])


# ---- pipeline TOML --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def demo_sections() -> dict:
    import tomllib

    from glonet_edge.pipeline import DEMO_CONFIG

    return tomllib.loads(DEMO_CONFIG.read_text())


@settings(max_examples=examples(50), **SETTINGS)
@given(data=st.data())
def test_pipeline_toml(demo_sections, tmp_path_factory, data):
    from glonet_edge.pipeline import DEMO_CONFIG, PipelineConfig

    path = Path(tempfile.mkdtemp(dir=tmp_path_factory.getbasetemp())) / "glonet.toml"
    kind = data.draw(st.sampled_from(["values", "bytes", "text"]))
    if kind == "values":
        doc = data.draw(mutated(demo_sections, values=toml_values))
        if not isinstance(doc, dict):
            doc = {"x": doc}
        lines = []
        for name, section in doc.items():
            if isinstance(section, dict):
                lines.append(f"[{json.dumps(name)}]")
                lines += [f"{json.dumps(k)} = {_toml_value(v)}" for k, v in section.items()]
            else:
                lines.insert(0, f"{json.dumps(name)} = {_toml_value(section)}")
        path.write_text("\n".join(lines))
    elif kind == "bytes":
        path.write_bytes(data.draw(damaged_bytes(DEMO_CONFIG.read_bytes())))
    else:
        path.write_text(data.draw(st.text(max_size=200)))
    cfg = _expect_ok_or_glonet(lambda: PipelineConfig.from_toml(path), "pipeline toml")
    if cfg is not None:
        assert {"train", "export"} <= set(cfg.stages())
        assert isinstance(cfg.workdir, Path)
