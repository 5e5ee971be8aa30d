"""Fuzzing the power sources: every file of each fake device tree (tests/runtime/fake_sysfs.py,
laid out like the real devices) replaced by garbage, emptied, made huge, non-UTF-8, turned into
a directory, a FIFO, a dangling link, a link loop or a link to /dev/zero, before the source is
opened or while it is being read. Also the override file / $GLONET_POWER, and NVML / jtop
with bindings that hand back garbage.

Property: a source's read() returns a PowerState or raises SensorError; probe() answers a
bool; open_power_source(spec) refuses with a GlonetError or gives a source whose read() never
raises and only returns plausible states (validated) -- the documented fallback is a stale or
"unknown" state. All within a time limit.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import types
from pathlib import Path

import fake_sysfs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from glonet_edge.errors import GlonetError
from glonet_edge.runtime.power import (
    JetsonSource, JtopSource, NvmlSource, OverrideSource, PowerState, PowerSupplySource, RaplSource, SensorError,
    ThermalSource, auto_source, open_power_source,
)
from robust_support import count, examples, no_hang

SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
SENSORS = {"jetson": JetsonSource, "battery": PowerSupplySource, "thermal": ThermalSource, "rapl": RaplSource}
DEVICES = {
    "orin_nano_jp6": lambda r: fake_sysfs.orin_nano_jp6(r),
    "agx_orin_jp6": lambda r: fake_sysfs.agx_orin_jp6(r),
    "jetson_nano_jp4": lambda r: fake_sysfs.jetson_jp4(r, "nano"),
    "jetson_tx2_jp4": lambda r: fake_sysfs.jetson_jp4(r, "tx2"),
    "laptop": lambda r: fake_sysfs.laptop(r),
    "laptop_on_ac": lambda r: fake_sysfs.laptop(r, ac_online=True, status="Charging"),
}

GARBAGE = [
    b"", b"\n", b"\x00", b"\x00\x00\x00\n", b"\xff\xfe\xfd", b"\xc3\x28", b"nan", b"NaN\n", b"inf", b"-inf",
    b"1e999", b"-1e999", b"1e308", b"-1e308", b"-5", b"0", b"-0", b"1", b"-1", b"abc", b"12 mA", b"  42  \n",
    b"9" * 5000, b"pmode:" + b"9" * 5000, b"pmode:0099", b"pmode:", b"Battery", b"Mains", b"USB", b"Discharging",
    b"Device", b"NC", b"VDD_IN", b"passive", b"-256000", b"999999999", b"< POWER_MODEL ID=7 NAME=1e999W >",
    b"< POWER_MODEL ID=" + b"9" * 5000 + b" NAME=15W >\n< PM_CONFIG DEFAULT=" + b"9" * 5000 + b" >",
    b"< POWER_MODEL ID=0 NAME=15W >\n< PM_CONFIG DEFAULT=3 >", "é°\u202e".encode(),
]
STRUCTURAL = ["delete", "directory", "fifo", "dangling", "loop", "devzero", "huge"]


@pytest.fixture(scope="module", autouse=True)
def _template_dir(tmp_path_factory):
    _TEMPLATE_BASE[:] = [tmp_path_factory.mktemp("sysfs-templates")]
    yield
    _TEMPLATES.clear()


_TEMPLATE_BASE: list[Path] = []


def _templates() -> dict[str, tuple[Path, list[str]]]:
    """One pristine tree per device, built once per module: {device: (root, [files])}."""
    if not _TEMPLATES:
        base = _TEMPLATE_BASE[0]
        for name, build in DEVICES.items():
            root = build(base / name)
            files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
            _TEMPLATES[name] = (root, files)
    return _TEMPLATES


_TEMPLATES: dict[str, tuple[Path, list[str]]] = {}


def _damage(path: Path, how: str | bytes) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(how, bytes):
        path.write_bytes(how)
    elif how == "delete":
        pass
    elif how == "directory":
        path.mkdir()
        (path / "temp").write_text("1\n")
    elif how == "fifo":
        os.mkfifo(path)
    elif how == "dangling":
        path.symlink_to(path.parent / "does-not-exist")
    elif how == "loop":
        path.symlink_to(path)
    elif how == "devzero":
        path.symlink_to("/dev/zero")
    elif how == "huge":
        path.write_bytes(b"9" * 3_000_000 + b"\n")


damages = st.sampled_from(GARBAGE) | st.sampled_from(STRUCTURAL) | st.binary(max_size=64)
NVPMODEL_GARBAGE = st.sampled_from([
    b"pmode:" + b"9" * 5000, b"pmode:0099", b"pmode:", b"pmode:-1", b"pmode:1e3",
    b"< POWER_MODEL ID=" + b"9" * 5000 + b" NAME=15W >\n< PM_CONFIG DEFAULT=" + b"9" * 5000 + b" >",
    b"< POWER_MODEL ID=0 NAME=" + b"9" * 400 + b"W >\n< PM_CONFIG DEFAULT=0 >",
    b"< POWER_MODEL ID=0 NAME=15W >\n< PM_CONFIG DEFAULT=3 >", b"< POWER_MODEL ID=0 NAME=>",
])


def _draw_damage(data, files: list[str]) -> tuple[str, object]:
    """A file (half the time one the sources parse specially) and what to do to it."""
    special = [f for f in files if "nvpmodel" in f]
    rel = data.draw(st.sampled_from(special) if special and data.draw(st.integers(0, 3)) == 0
                    else st.sampled_from(files))
    how = data.draw(NVPMODEL_GARBAGE if "nvpmodel" in rel and data.draw(st.booleans()) else damages)
    return rel, how


def _read_all(root: Path, environ: dict, specs=("auto", *SENSORS)) -> None:
    """Every sensor directly (SensorError allowed), then auto and each explicit spec."""
    for name, cls in SENSORS.items():
        source = cls(root)
        assert source.probe() in (True, False)
        try:
            state = source.read()
            assert isinstance(state, PowerState)
            state.validated()
        except SensorError:
            count("fuzz_refused_clearly", f"sysfs {name}")
        count("fuzz_inputs", f"sysfs {name}")
    for spec in specs:
        try:
            source = open_power_source(spec, root=root, environ=environ, max_stale_s=0.0)
        except GlonetError:
            continue
        for _ in range(2):
            state = source.read()  # never raises: a state, stale or unknown
            assert isinstance(state, PowerState)
            state.validated()
    raw = auto_source(root, environ)  # never raises; its read() may raise SensorError only
    try:
        raw.read().validated()
    except SensorError:
        pass


@settings(max_examples=examples(60), **SETTINGS)
@given(data=st.data())
def test_sysfs_files_damaged_before_open(data, tmp_path_factory):
    device = data.draw(st.sampled_from(sorted(DEVICES)))
    template, files = _templates()[device]
    root = Path(tempfile.mkdtemp(dir=tmp_path_factory.getbasetemp())) / device
    shutil.copytree(template, root, symlinks=True)
    for _ in range(data.draw(st.integers(1, 3))):
        rel, how = _draw_damage(data, files)
        _damage(root / rel, how)
    with no_hang(15, f"power sources on a damaged {device} tree"):
        _read_all(root, {})
    shutil.rmtree(root.parent, ignore_errors=True)


SWEEP_FAST = [b"", b"\xff\xfe\xfd", b"nan", b"1e999", b"-5", b"9" * 5000, "directory", "fifo", "devzero", "loop"]


@pytest.mark.parametrize("device", sorted(DEVICES))
def test_sysfs_sweep_every_file(device, tmp_path):
    """Deterministic sweep: every file of the tree, one at a time, through a fixed list of
    damages (all of GARBAGE and STRUCTURAL in long mode), read by every source."""
    import robust_support

    template, files = _templates()[device]
    root = tmp_path / device
    shutil.copytree(template, root, symlinks=True)
    sweep = GARBAGE + STRUCTURAL if robust_support.LONG else SWEEP_FAST
    cases = 0
    with no_hang(120, f"sweeping the {device} tree"):
        for rel in files:
            original = (template / rel).read_bytes()
            extra = [b"pmode:" + b"9" * 5000, GARBAGE[-2], GARBAGE[-3]] if "nvpmodel" in rel else []
            for how in sweep + extra:
                _damage(root / rel, how)
                _read_all(root, {}, specs=())
                cases += 1
                _damage(root / rel, original)
    count("fuzz_inputs", "sysfs sweep cases", cases)


@settings(max_examples=examples(40), **SETTINGS)
@given(data=st.data())
def test_sysfs_files_damaged_while_serving(data, tmp_path_factory):
    """Opened on a healthy tree, then a file turns to garbage between reads: reads keep
    returning states (the last good one marked stale, or unknown), never raising."""
    device = data.draw(st.sampled_from(sorted(DEVICES)))
    template, files = _templates()[device]
    root = Path(tempfile.mkdtemp(dir=tmp_path_factory.getbasetemp())) / device
    shutil.copytree(template, root, symlinks=True)
    sources = [open_power_source("auto", root=root, environ={})]
    sources += [open_power_source(spec, root=root) for spec, cls in SENSORS.items() if cls(root).probe()]
    first = [s.read() for s in sources]
    assert all(not s.stale for s in first)
    for _ in range(data.draw(st.integers(1, 3))):
        rel, how = _draw_damage(data, files)
        _damage(root / rel, how)
    with no_hang(15, f"reading a {device} tree damaged mid-run"):
        for s in sources:
            for _ in range(2):
                state = s.read()
                assert isinstance(state, PowerState)
                state.validated()
                count("fuzz_inputs", "sysfs mid-run read")
    shutil.rmtree(root.parent, ignore_errors=True)


@settings(max_examples=examples(60), **SETTINGS)
@given(text=st.text(max_size=80) | st.sampled_from([
    "on_battery=1,battery_pct=20", "on_battery=2", "battery_pct=1e999", "battery_pct=nan", "temp_c=-300",
    "power_mode=\x00", "on_battery", "=1", ",,,", "on_battery=1,on_battery=0", '{"on_battery": true}',
    '{"battery_pct": 1' + "0" * 400 + "}", '{"battery_pct": 1' + "0" * 5000 + "}", "[" * 10000, '{"x": 1}',
    '{"on_battery": [1]}', '{"battery_pct": {"a": 1}}', "source=evil", "timestamp=1",
]))
def test_override_env_and_file(text, tmp_path_factory):
    environ = {"GLONET_POWER": text}
    with no_hang(10, "override"):
        try:
            state = OverrideSource(env_var="GLONET_POWER", environ=environ).read()
            state.validated()
        except SensorError:
            count("fuzz_refused_clearly", "override env")
        count("fuzz_inputs", "override env")
        try:
            open_power_source("env", environ=environ).read().validated()
        except GlonetError:
            pass
        auto_source("/nonexistent-root", environ).read().validated()
        path = Path(tempfile.mkdtemp(dir=tmp_path_factory.getbasetemp())) / "power.override"
        path.write_bytes(text.encode("utf-8", "surrogatepass"))
        try:
            OverrideSource(path=path).read().validated()
        except SensorError:
            count("fuzz_refused_clearly", "override file")
        count("fuzz_inputs", "override file")
        try:
            open_power_source(f"file:{path}").read().validated()
        except GlonetError:
            pass


def test_override_file_that_is_not_a_regular_file(tmp_path):
    for how in ["delete", "directory", "fifo", "dangling", "loop", "devzero", b"\xff\xfe", "huge"]:
        path = tmp_path / f"override-{len(list(tmp_path.iterdir()))}"
        _damage(path, how)
        with no_hang(10, f"override file ({how})"):
            try:  # refused, or (an empty FIFO) an override that pins nothing
                assert OverrideSource(path=path).read().is_unknown, how
            except SensorError:
                pass
            try:
                source = open_power_source(f"file:{path}")
            except GlonetError:
                continue
            source.read().validated()


# ---- NVML and jtop: bindings handing back garbage -----------------------------------------------------
odd = st.one_of(st.none(), st.integers(-10**30, 10**30), st.floats(allow_nan=True, allow_infinity=True),
                st.text(max_size=5), st.binary(max_size=5), st.lists(st.integers(), max_size=2),
                st.just(Exception("NVMLError_GpuIsLost")), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))


def _fake_module(name: str, values: dict) -> types.ModuleType:
    mod = types.ModuleType(name)

    def make(key):
        def fn(*args):
            v = values.get(key)
            if isinstance(v, Exception):
                raise v
            return v
        return fn

    for key in values:
        setattr(mod, key, make(key))
    return mod


@settings(max_examples=examples(50), **SETTINGS)
@given(values=st.fixed_dictionaries({
    "nvmlDeviceGetPowerUsage": odd, "nvmlDeviceGetEnforcedPowerLimit": odd, "nvmlDeviceGetTemperature": odd,
    "nvmlDeviceGetCurrentClocksEventReasons": odd, "nvmlDeviceGetName": odd,
    "nvmlDeviceGetTotalEnergyConsumption": odd}))
def test_nvml_garbage(values):
    fake = _fake_module("pynvml", {**values, "nvmlInit": None, "nvmlShutdown": None, "nvmlDeviceGetCount": 1,
                                   "nvmlDeviceGetHandleByIndex": object()})
    saved = sys.modules.get("pynvml")
    sys.modules["pynvml"] = fake
    try:
        with no_hang(10, "nvml"):
            try:
                NvmlSource().read().validated()
            except SensorError:
                count("fuzz_refused_clearly", "nvml bindings")
            count("fuzz_inputs", "nvml bindings")
            open_power_source(NvmlSource()).read().validated()
    finally:
        if saved is None:
            sys.modules.pop("pynvml", None)
        else:
            sys.modules["pynvml"] = saved


@settings(max_examples=examples(50), **SETTINGS)
@given(power=odd | st.fixed_dictionaries({"tot": odd | st.fixed_dictionaries({"power": odd}),
                                          "rail": odd | st.dictionaries(st.text(max_size=3), odd, max_size=2)}),
       temperature=odd | st.dictionaries(st.text(max_size=4), odd | st.fixed_dictionaries(
           {"temp": odd, "online": odd}), max_size=3),
       mode=odd)
def test_jtop_garbage(power, temperature, mode):
    class FakeJtop:
        def __init__(self):
            self.power, self.temperature = power, temperature
            self.nvpmodel = types.SimpleNamespace(name=mode) if mode is not None else None

        def start(self):
            pass

        def ok(self):
            return True

        def close(self):
            pass

    fake = types.ModuleType("jtop")
    fake.jtop = FakeJtop
    saved = sys.modules.get("jtop")
    sys.modules["jtop"] = fake
    try:
        with no_hang(10, "jtop"):
            try:
                JtopSource().read().validated()
            except SensorError:
                count("fuzz_refused_clearly", "jtop bindings")
            count("fuzz_inputs", "jtop bindings")
            open_power_source(JtopSource()).read().validated()
    finally:
        if saved is None:
            sys.modules.pop("jtop", None)
        else:
            sys.modules["jtop"] = saved
