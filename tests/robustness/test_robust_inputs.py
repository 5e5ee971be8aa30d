"""Input validation at the runtime boundary (Runtime.infer / infer_anytime), per target.

Hypothesis draws arrays of every numeric dtype, right and wrong shapes, empty batches, NaN /
Inf / values that overflow float32, C / Fortran / strided / reversed / broadcast / read-only /
big-endian / unaligned layouts. The documented contract (README "Runtime API"):

- wrong shape, empty batch, non-finite (after float32 conversion), non-numeric -> ConfigError;
- any other numeric dtype and any layout -> converted to float32 C-contiguous, and the answer
  must equal what the engine gives for that converted array, computed independently of the
  runtime (a plain onnxruntime session / OpenVINO compiled model on the bundle's files).

A wrong answer is any accepted input whose output differs from that reference.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from glonet_edge.errors import ConfigError, GlonetError
from glonet_edge.manifest import BundleManifest
from glonet_edge.runtime import Runtime
from robust_support import count, examples

SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                                      HealthCheck.data_too_large])
SHAPE = (1, 8, 8)
DTYPES = ["float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
          "bool", ">f4", ">f8", ">i4"]


# ---- independent references -----------------------------------------------------------------------------
class OrtReference:
    """Plain onnxruntime sessions on the bundle's graphs: depth graphs and the segment chain."""

    def __init__(self, bundle, precision: str = "fp32"):
        import onnxruntime as ort

        m = BundleManifest.load(bundle)
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        make = lambda a: ort.InferenceSession(str(bundle / a.path), so, providers=["CPUExecutionProvider"])  # noqa: E731
        # The graph the onnxruntime target serves: for int8 its own flavour where quantize made one
        # (docs/quantize.md, "INT8 flavours"), else the QDQ graph.
        graph = lambda e: e.artifact("onnxruntime", precision) or e.artifact("onnx", precision)  # noqa: E731
        self.depths = {e.depth: make(graph(e)) for e in m.depths if graph(e)}
        self.segments = [(s.end_depth, s.inputs, make(s.artifact("onnx", "fp32"))) for s in m.segments]

    def __call__(self, x: np.ndarray, depth: int) -> np.ndarray:
        return self.depths[depth].run(None, {"x": x})[0]

    def chain(self, x: np.ndarray, depth: int) -> np.ndarray:
        feeds, y = {"x": x}, None
        for i, (end, _, sess) in enumerate(self.segments):
            if y is not None and end > depth:
                break
            *state, y = sess.run(None, feeds)
            nxt = self.segments[i + 1][1] if i + 1 < len(self.segments) else []
            feeds = dict(zip(nxt, state))
        return y


class OvReference:
    def __init__(self, bundle):
        import openvino as ov

        core = ov.Core()
        m = BundleManifest.load(bundle)
        self.depths = {e.depth: core.compile_model(str(bundle / e.artifact("openvino", "fp32").path), "CPU",
                                                   {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 1})
                       for e in m.depths if e.artifact("openvino", "fp32")}

    def __call__(self, x: np.ndarray, depth: int) -> np.ndarray:
        return np.array(self.depths[depth]([x])[0])


@pytest.fixture(scope="module")
def int8_bundle(fc_served_bundle, tmp_path_factory):
    import shutil

    from glonet_edge.quantize import QuantizeSettings, quantize_bundle

    dst = tmp_path_factory.mktemp("robust-int8") / "fc8"
    shutil.copytree(fc_served_bundle, dst)
    quantize_bundle(dst, QuantizeSettings(calib_size=128), progress=False)
    return dst


TARGETS = ["onnxruntime/fp32", "onnxruntime/int8", "openvino/fp32"]


@pytest.fixture(scope="module", params=TARGETS)
def served(request, fc_served_bundle):
    """(target label, Runtime, reference) for each target/precision."""
    label = request.param
    target, precision = label.split("/")
    if target == "openvino":
        pytest.importorskip("openvino")
        bundle = request.getfixturevalue("ov_bundle_src")
        ref = OvReference(bundle)
    elif precision == "int8":
        bundle = request.getfixturevalue("int8_bundle")
        ref = OrtReference(bundle, "int8")
    else:
        bundle = fc_served_bundle
        ref = OrtReference(bundle)
    rt = Runtime.open(bundle, target=target, precision=precision, power="none")
    yield label, rt, ref
    rt.close()


# ---- strategies -----------------------------------------------------------------------------------------
SPECIALS = [np.nan, np.inf, -np.inf, 1e39, -1e39, 3.5e38, 1e-45, -0.0, 65504.0, 70000.0]


@st.composite
def inputs(draw):
    """(array, expected) where expected is "ok" or "refuse", following the documented contract."""
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    batch = draw(st.integers(1, 9) if draw(st.integers(0, 19)) else st.just(0))
    shape_kind = draw(st.sampled_from(["right"] * 12 + ["flat", "no-batch", "extra-axis", "channels-last",
                                                        "wrong-size", "scalar"]))
    shape = {"right": (batch, *SHAPE), "flat": (batch, 64), "no-batch": SHAPE, "extra-axis": (batch, *SHAPE, 1),
             "channels-last": (batch, 8, 8, 1), "wrong-size": (batch, 1, 8, 9), "scalar": ()}[shape_kind]
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    size = int(np.prod(shape))
    if dtype.kind == "f":
        values = rng.uniform(-2, 18, size)
        n_special = draw(st.sampled_from([0, 0, 0, 0, 0, 1, 2]))
        for _ in range(n_special if size else 0):
            values[rng.integers(size)] = draw(st.sampled_from(SPECIALS))
    elif dtype.kind == "b":
        values = rng.integers(0, 2, size)
    else:
        native = dtype.newbyteorder("=")
        info = np.iinfo(native)
        lo, hi = (info.min, info.max) if draw(st.booleans()) else (max(info.min, -2), min(info.max, 17))
        values = rng.integers(lo, hi, size, dtype=native, endpoint=True)
    with np.errstate(over="ignore", invalid="ignore"):
        x = values.astype(dtype).reshape(shape)
    layout = draw(st.sampled_from(["C", "F", "strided", "reversed", "broadcast", "readonly", "unaligned",
                                   "transposed-view"]))
    if layout == "F":
        x = np.asfortranarray(x)
    elif layout == "strided" and x.ndim:
        big = np.repeat(x, 2, axis=0)
        x = big[::2]
    elif layout == "reversed" and x.ndim:
        x = x[::-1].copy()[::-1]
    elif layout == "broadcast" and x.ndim and x.shape[0]:
        x = np.broadcast_to(x[:1], x.shape)
    elif layout == "readonly":
        x = x.copy()
        x.flags.writeable = False
    elif layout == "unaligned" and x.size and dtype.itemsize > 1:
        buf = np.zeros(x.nbytes + 1, np.uint8)
        y = np.frombuffer(buf.data, dtype=x.dtype, count=x.size, offset=1).reshape(x.shape)
        y[...] = x
        x = y
    elif layout == "transposed-view" and x.ndim == 4:
        x = np.ascontiguousarray(x.transpose(0, 1, 3, 2)).transpose(0, 1, 3, 2)
    with np.errstate(over="ignore", invalid="ignore"):
        as32 = np.asarray(x).astype(np.float32)
    refuse = shape_kind != "right" or batch == 0 or not np.isfinite(as32).all()
    return x, ("refuse" if refuse else "ok")


def _check(label: str, rt: Runtime, ref, x: np.ndarray, expected: str, anytime: bool = False) -> None:
    depth = rt.depths[-1] if anytime else int(np.random.default_rng(x.size).choice(rt.depths))
    if not anytime:
        rt.set_depth(depth)
    count("runtime_inputs_tried", label + (" anytime" if anytime else ""))
    try:
        pred = rt.infer_anytime(x, deadline_ms=1e9, max_depth=depth) if anytime else rt.infer(x)
    except ConfigError:
        count("runtime_inputs_refused", label + (" anytime" if anytime else ""))
        assert expected == "refuse", f"{label}: refused a valid input {x.dtype} {x.shape} {x.flags}"
        return
    assert expected == "ok", f"{label}: accepted an invalid input {x.dtype} {x.shape}"
    with np.errstate(over="ignore", invalid="ignore"):
        canonical = np.ascontiguousarray(x, dtype=np.float32)
    want = ref.chain(canonical, pred.depth) if anytime else ref(canonical, pred.depth)
    assert pred.depth == depth
    assert pred.outputs.shape == want.shape and pred.outputs.dtype == np.float32
    np.testing.assert_allclose(pred.outputs, want, rtol=1e-6, atol=1e-6, err_msg=f"{label}: WRONG ANSWER")


@settings(max_examples=examples(60), **SETTINGS)
@given(case=inputs())
def test_infer_inputs(served, case):
    label, rt, ref = served
    _check(label, rt, ref, *case)


@settings(max_examples=examples(30), **SETTINGS)
@given(case=inputs())
def test_infer_anytime_inputs(fc_served_bundle, case):
    rt = _anytime_rt(fc_served_bundle)
    _check("onnxruntime/fp32", rt, _ANYTIME[1], *case, anytime=True)


_ANYTIME: list = []


def _anytime_rt(bundle):
    if not _ANYTIME:
        _ANYTIME.extend([Runtime.open(bundle, power="none"), OrtReference(bundle)])
    return _ANYTIME[0]


@pytest.mark.parametrize("bad", ["0-d", "object-floats", "object-none", "strings", "bytes", "none", "dict",
                                 "ragged", "datetime", "structured", "nested-object"])
def test_non_numeric_inputs_are_refused(served, x_val, bad):
    label, rt, _ = served
    x = {"0-d": np.float32(1.0), "object-floats": x_val[:2].astype(object), "object-none": np.full((1, *SHAPE), None),
         "strings": np.full((1, *SHAPE), "1.0"), "bytes": b"\x00" * 256, "none": None, "dict": {"x": x_val},
         "ragged": [[1.0, 2.0], [3.0]], "datetime": np.zeros((1, *SHAPE), "M8[s]"),
         "structured": np.zeros((1, *SHAPE), [("a", "f4")]), "nested-object": [[x_val[0]], [None]]}[bad]
    with pytest.raises(ConfigError):
        rt.infer(x)
    count("runtime_inputs_tried", label)
    count("runtime_inputs_refused", label)


def test_lists_are_converted_and_answer_like_arrays(served, x_val):
    label, rt, ref = served
    rt.set_depth(rt.depths[0])
    pred = rt.infer(x_val[:3].tolist())
    np.testing.assert_allclose(pred.outputs, ref(x_val[:3], pred.depth), rtol=1e-6, atol=1e-6)
    count("runtime_inputs_tried", label)


def test_large_batches_are_served(served, x_val):
    """No maximum batch is documented: 20 000 samples in one call answer like 8 at a time."""
    label, rt, ref = served
    rt.set_depth(rt.depths[-1])
    x = np.tile(x_val, (625, 1, 1, 1))
    y = rt.infer(x).outputs
    assert y.shape == (20_000, 10)
    np.testing.assert_allclose(y[:32], ref(x_val, rt.depths[-1]), rtol=1e-5, atol=1e-5)
    count("runtime_inputs_tried", label)


@pytest.mark.parametrize("deadline", [0, -1, float("nan"), "5", None, [1.0]])
def test_bad_deadlines_are_refused(fc_served_bundle, x_val, deadline):
    rt = _anytime_rt(fc_served_bundle)
    with pytest.raises(ConfigError):
        rt.infer_anytime(x_val[:1], deadline_ms=deadline)


@pytest.mark.parametrize("depth", [0, -1, 9, 99, "3", 3.5, None.__class__])
def test_bad_pins_are_refused(fc_served_bundle, depth):
    rt = _anytime_rt(fc_served_bundle)
    with pytest.raises(GlonetError):
        rt.set_depth(depth)
    rt.set_depth(None)


# ---- bugs this suite found (fixed): each test fails if the fix is undone -----------------------------------
@pytest.mark.parametrize("dtype", ["complex64", "m8[s]"])
def test_complex_and_timedelta_inputs_are_refused(fc_served_bundle, x_val, dtype):
    rt = _anytime_rt(fc_served_bundle)
    x = (x_val[:2] + 1j * x_val[:2]) if dtype == "complex64" else x_val[:2].astype("int64").astype(dtype)
    try:
        rt.infer(x.astype(dtype))
    except ConfigError:
        return
    raise AssertionError(f"{dtype} input was accepted and cast to float32")


def test_unpin_between_the_two_reads_of_the_pin(fc_served_bundle, x_val):
    """Deterministic replay of the thread interleaving: the first read of the pin sees 3, the
    second (as if another thread had just called set_depth(None)) sees None."""
    rt = Runtime.open(fc_served_bundle, power="none", anytime=False)

    class Interleaved(Runtime):
        reads: list = []

        @property
        def _pinned(self):
            return self.reads.pop(0) if self.reads else self.__dict__.get("_pin")

        @_pinned.setter
        def _pinned(self, value):
            self.__dict__["_pin"] = value

    rt.__class__ = Interleaved
    Interleaved.reads = [3, None]
    pred = rt.infer(x_val[:1])
    assert pred.depth in rt.depths


def test_argument_types_are_checked(fc_served_bundle, x_val):
    rt = _anytime_rt(fc_served_bundle)
    problems = []
    try:
        rt.infer_anytime(x_val[:1], deadline_ms=5.0, max_depth="8")
    except ConfigError:
        pass
    except Exception as exc:  # noqa: BLE001
        problems.append(f"max_depth='8': {type(exc).__name__}")
    for call in (lambda: rt.set_depth(True), lambda: rt.infer_anytime(x_val[:1], deadline_ms=True)):
        try:
            call()
            problems.append("a bool was accepted")
        except ConfigError:
            pass
    rt.set_depth(None)
    assert problems == [], problems


def test_engine_errors_are_package_errors(bundle_copy):
    import json

    doc = json.loads((bundle_copy / "manifest.json").read_text())
    doc["input"]["shape"] = [64]
    (bundle_copy / "manifest.json").write_text(json.dumps(doc))
    try:
        Runtime.open(bundle_copy, power="none")
    except GlonetError:
        return
    except Exception as exc:  # noqa: BLE001
        raise AssertionError(f"raw {type(exc).__module__}.{type(exc).__name__} escaped") from exc


def test_read_only_input_on_openvino(ov_bundle_src, x_val):
    pytest.importorskip("openvino")
    x = x_val[:2].copy()
    x.flags.writeable = False
    with Runtime.open(ov_bundle_src, target="openvino", power="none") as rt:
        y = rt.infer(x).outputs
    assert y.shape == (2, 10)


def test_policy_file_errors_are_package_errors(fc_served_bundle, tmp_path):
    (tmp_path / "bad.json").write_bytes(b"\xff\xfe{")
    for path in (tmp_path / "missing.json", tmp_path / "bad.json"):
        try:
            Runtime.open(fc_served_bundle, power="none", policy=path)
        except GlonetError:
            continue
        except Exception as exc:  # noqa: BLE001
            raise AssertionError(f"{path.name}: raw {type(exc).__name__}") from exc
