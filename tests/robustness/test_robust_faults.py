"""Fault injection during export, quantize and compile.

Faults: an exception mid-stage, disk full (OSError ENOSPC from the atomic write helper, from
onnx.save / openvino.save_model, and a real kernel EFBIG via RLIMIT_FSIZE on the CLI), Ctrl-C
(KeyboardInterrupt in-process, SIGINT to `python -m glonet_edge export`), SIGKILL mid-export
and SIGKILL at the moment the new bundle is swapped in.

After every fault: the previous bundle is byte-identical, manifest.verify passes, Runtime.open
serves the same answers as before, no staging / swap directory is left (SIGKILL cannot clean
up: its leftover must not break the next run, which is then run and checked).
"""

from __future__ import annotations

import errno
import os
import resource
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from glonet_edge import fileio
from glonet_edge.errors import GlonetError
from robust_support import bundle_serves, count, leftovers, snapshot

REPO = Path(__file__).resolve().parents[2]


class Injected(RuntimeError):
    pass


def _after_nth(n: int, exc: BaseException, real=None):
    """A stand-in that calls `real` n-1 times, then raises exc (every later call too)."""
    calls = [0]

    def fn(*args, **kwargs):
        calls[0] += 1
        if calls[0] >= n:
            raise exc
        return real(*args, **kwargs) if real is not None else None

    fn.calls = calls
    return fn


def _survived(bundle: Path, before: dict, x, reference, what: str) -> None:
    count("faults_injected", what)
    assert snapshot(bundle) == before, f"{what}: the previous bundle changed"
    assert leftovers(bundle.parent) == [], f"{what}: left {leftovers(bundle.parent)}"
    bundle_serves(bundle, x, reference)
    count("faults_survived", what)


ENOSPC = OSError(errno.ENOSPC, "No space left on device (injected)")


# ---- the atomic write helper itself ----------------------------------------------------------------------
@pytest.mark.parametrize("fail", ["write", "fsync", "replace"])
def test_atomic_write_failure_keeps_the_old_file_and_no_temp(tmp_path, monkeypatch, fail):
    target = tmp_path / "manifest.json"
    fileio.atomic_write_text(target, "old\n")
    real_fdopen, real_fsync, real_replace = os.fdopen, os.fsync, os.replace

    if fail == "write":
        class Full:
            def __init__(self, fh):
                self.fh = fh

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self.fh.close()

            def write(self, data):
                self.fh.write(data[: len(data) // 2])  # half of it lands, then the disk is full
                raise OSError(errno.ENOSPC, "No space left on device (injected)")

        monkeypatch.setattr(os, "fdopen", lambda fd, mode: Full(real_fdopen(fd, mode)))
    elif fail == "fsync":
        monkeypatch.setattr(os, "fsync", _after_nth(1, OSError(errno.EIO, "I/O error (injected)")))
    else:
        monkeypatch.setattr(os, "replace", _after_nth(1, ENOSPC))
    with pytest.raises(OSError):
        fileio.atomic_write_text(target, "new and much longer content\n" * 100)
    monkeypatch.setattr(os, "fdopen", real_fdopen)
    monkeypatch.setattr(os, "fsync", real_fsync)
    monkeypatch.setattr(os, "replace", real_replace)
    count("faults_injected", f"atomic write: {fail} fails")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]
    count("faults_survived", f"atomic write: {fail} fails")


# ---- export ---------------------------------------------------------------------------------------------
@pytest.fixture
def previous(bundle_copy) -> tuple[Path, dict]:
    return bundle_copy, snapshot(bundle_copy)


EXPORT_FAULTS = {
    "exception exporting segment 3": ("glonet_edge.export.onnx_export", "export_segment", 3, Injected("mid-export")),
    "ENOSPC writing depth graph 5": ("glonet_edge.export.onnx_export", "export_depth_graph", 5, ENOSPC),
    "ENOSPC in the atomic write helper": ("glonet_edge.fileio", "atomic_write_bytes", 1, ENOSPC),
    "Ctrl-C during verification": ("glonet_edge.export.bundle", "verify_family", 1, KeyboardInterrupt()),
    "exception measuring storage": ("glonet_edge.export.bundle", "measure_storage", 1, Injected("late")),
}


@pytest.mark.parametrize("fault", sorted(EXPORT_FAULTS))
def test_export_fault_keeps_previous_bundle(fc_run, previous, monkeypatch, x_val, ort_reference, fault):
    import importlib

    from glonet_edge.export import export_bundle

    module, name, n, exc = EXPORT_FAULTS[fault]
    mod = importlib.import_module(module)
    monkeypatch.setattr(mod, name, _after_nth(n, exc, getattr(mod, name)))
    bundle, before = previous
    with pytest.raises(type(exc)):
        export_bundle(fc_run, bundle, depths="all", progress=False)
    monkeypatch.undo()
    _survived(bundle, before, x_val, ort_reference, f"export: {fault}")
    export_bundle(fc_run, bundle, depths="all", progress=False)  # and the next run works
    bundle_serves(bundle, x_val, ort_reference)


def test_export_into_a_new_directory_leaves_nothing_on_failure(fc_run, tmp_path, monkeypatch):
    from glonet_edge.export import export_bundle, onnx_export

    monkeypatch.setattr(onnx_export, "export_segment", _after_nth(2, ENOSPC, onnx_export.export_segment))
    with pytest.raises(OSError):
        export_bundle(fc_run, tmp_path / "new", depths="all", progress=False)
    count("faults_injected", "export to a new dir: ENOSPC")
    assert list(tmp_path.iterdir()) == []
    count("faults_survived", "export to a new dir: ENOSPC")


# ---- quantize -------------------------------------------------------------------------------------------
def _quantize(bundle: Path):
    from glonet_edge.quantize import QuantizeSettings, quantize_bundle

    return quantize_bundle(bundle, QuantizeSettings(calib_size=64, segments=True), progress=False)


QUANTIZE_FAULTS = {
    "exception recording depth 4": ("glonet_edge.manifest.Artifact", "from_file", 4, Injected("mid-quantize")),
    "ENOSPC writing int8 graph 3": ("glonet_edge.quantize.recipes", "ort_quantize", 3, ENOSPC),
    "ENOSPC in the atomic write helper": ("glonet_edge.fileio", "atomic_write_bytes", 1, ENOSPC),
    "Ctrl-C scoring a graph": ("glonet_edge.quantize.accuracy", "engine_outputs", 6, KeyboardInterrupt()),
}


def _patch(monkeypatch, where: str, name: str, fn_factory) -> None:
    import importlib

    mod = importlib.import_module(where)
    monkeypatch.setattr(mod, name, fn_factory(getattr(mod, name)))


@pytest.mark.parametrize("fault", sorted(QUANTIZE_FAULTS))
def test_quantize_fault_keeps_previous_bundle(previous, monkeypatch, x_val, ort_reference, fault):
    where, name, n, exc = QUANTIZE_FAULTS[fault]
    if where.endswith(".Artifact"):  # classmethod: keep the class binding for the calls that pass
        from glonet_edge.manifest import Artifact

        real = Artifact.from_file
        calls = [0]

        def from_file(*args, **kwargs):
            calls[0] += 1
            if calls[0] >= n:
                raise exc
            return real(*args, **kwargs)

        monkeypatch.setattr(Artifact, "from_file", from_file)
    else:
        _patch(monkeypatch, where, name, lambda real: _after_nth(n, exc, real))
    bundle, before = previous
    with pytest.raises(type(exc)):
        _quantize(bundle)
    monkeypatch.undo()
    _survived(bundle, before, x_val, ort_reference, f"quantize: {fault}")
    _quantize(bundle)
    bundle_serves(bundle, x_val, ort_reference)
    bundle_serves(bundle, x_val, None, precision="int8")


def test_quantize_leaves_the_root_logger_alone(bundle_copy):
    import logging

    before = logging.getLogger().level
    _quantize(bundle_copy)
    assert logging.getLogger().level == before, f"root logger level {before} -> {logging.getLogger().level}"


# ---- compile (OpenVINO) -----------------------------------------------------------------------------------
def _compile(bundle: Path):
    pytest.importorskip("openvino")
    from glonet_edge.targets.compile import compile_bundle

    return compile_bundle(bundle, "openvino", ["fp32"], depths=[1, 4, 8], segments=False, progress=False,
                          verify=False)


COMPILE_FAULTS = {
    "exception building depth 4": ("glonet_edge.targets.openvino.OpenVINOTarget", "build", 2, Injected("mid-compile")),
    "ENOSPC in openvino.save_model": ("openvino", "save_model", 2, ENOSPC),
    "ENOSPC in the atomic write helper": ("glonet_edge.fileio", "atomic_write_bytes", 1, ENOSPC),
    "Ctrl-C converting depth 8": ("openvino", "convert_model", 3, KeyboardInterrupt()),
}


@pytest.mark.parametrize("fault", sorted(COMPILE_FAULTS))
def test_compile_fault_keeps_previous_bundle(ov_bundle, monkeypatch, x_val, ort_reference, fault):
    pytest.importorskip("openvino")
    where, name, n, exc = COMPILE_FAULTS[fault]
    if where.endswith("OpenVINOTarget"):
        from glonet_edge.targets.openvino import OpenVINOTarget

        real = OpenVINOTarget.build
        calls = [0]

        def build(self, *args, **kwargs):
            calls[0] += 1
            if calls[0] >= n:
                raise exc
            return real(self, *args, **kwargs)

        monkeypatch.setattr(OpenVINOTarget, name, build)
    else:
        _patch(monkeypatch, where, name, lambda real: _after_nth(n, exc, real))
    bundle, before = ov_bundle, snapshot(ov_bundle)
    with pytest.raises(type(exc)):
        _compile(bundle)
    monkeypatch.undo()
    _survived(bundle, before, x_val, ort_reference, f"compile: {fault}")
    bundle_serves(bundle, x_val, ort_reference, target="openvino")
    _compile(bundle)
    bundle_serves(bundle, x_val, ort_reference, target="openvino")


# ---- the CLI, interrupted for real -------------------------------------------------------------------------
SITE_HOOK = textwrap.dedent('''
    """Injected with PYTHONPATH into `python -m glonet_edge ...` by test_robust_faults.py:
    every graph export appends a line to $GLONET_TEST_MARKER then sleeps, so the test can
    signal the process mid-export; GLONET_TEST_KILL_ON_SWAP=1 SIGKILLs it at the swap instead."""
    import importlib.abc, importlib.util, os, signal, sys, time

    MARKER = os.environ.get("GLONET_TEST_MARKER")
    DELAY = float(os.environ.get("GLONET_TEST_DELAY", "0.4"))


    def _slow(real):
        def slow(*args, **kwargs):
            out = real(*args, **kwargs)
            with open(MARKER, "a") as fh:
                fh.write("graph\\n")
            time.sleep(DELAY)
            return out
        return slow


    def _kill_on_swap(module):
        real_replace, real_exchange = module.os.replace, module._exchange

        def killing_exchange(a, b):  # the new bundle is complete: die right after swapping it in
            done = real_exchange(a, b)
            if done:
                os.kill(os.getpid(), signal.SIGKILL)
            return done

        class _Os:  # only the module's view of os: SIGKILL right after moving the bundle aside
            def __getattr__(self, name):
                return getattr(os, name)

            @staticmethod
            def replace(src, dst):
                real_replace(src, dst)
                if ".old." in os.fspath(dst):
                    os.kill(os.getpid(), signal.SIGKILL)

        module._exchange = killing_exchange
        module.os = _Os()


    class _Hook(importlib.abc.MetaPathFinder):
        targets = {"glonet_edge.export.onnx_export", "glonet_edge.fileio"}

        def find_spec(self, name, path, target=None):
            if name not in self.targets:
                return None
            self.targets = self.targets - {name}
            sys.meta_path.remove(self)
            try:
                spec = importlib.util.find_spec(name)
            finally:
                if self.targets:
                    sys.meta_path.insert(0, self)
            real_exec = spec.loader.exec_module

            def exec_module(module):
                real_exec(module)
                if name.endswith("onnx_export") and MARKER:
                    for fn in ("export_depth_graph", "export_segment"):
                        setattr(module, fn, _slow(getattr(module, fn)))
                if name.endswith("fileio") and os.environ.get("GLONET_TEST_KILL_ON_SWAP") == "1":
                    _kill_on_swap(module)

            spec.loader.exec_module = exec_module
            return spec


    sys.meta_path.insert(0, _Hook())
''')


def _cli_export(run: Path, out: Path, tmp: Path, preexec=None, **env_extra) -> subprocess.Popen:
    site = tmp / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(SITE_HOOK)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(REPO)]), "OMP_NUM_THREADS": "1",
           **env_extra}
    return subprocess.Popen([sys.executable, "-m", "glonet_edge", "export", str(run), "--out", str(out),
                             "--depths", "all", "--no-progress"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=preexec)


def _wait_for_graphs(proc: subprocess.Popen, marker: Path, n: int, timeout: float = 90) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if marker.exists() and len(marker.read_text().splitlines()) >= n:
            return
        if proc.poll() is not None:
            raise AssertionError(f"export ended early (rc={proc.returncode}): {proc.stderr.read()[-2000:]}")
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("export never reached the graphs")


@pytest.mark.parametrize("sig", ["SIGINT", "SIGKILL"])
def test_cli_export_interrupted_by_a_signal(fc_run, previous, tmp_path, x_val, ort_reference, sig):
    from glonet_edge.export import export_bundle

    bundle, before = previous
    marker = tmp_path / "marker"
    proc = _cli_export(fc_run, bundle, tmp_path, GLONET_TEST_MARKER=str(marker))
    try:
        _wait_for_graphs(proc, marker, 3)  # three graphs are in the staging directory now
        staged = [p for p in bundle.parent.iterdir() if ".staging." in p.name]
        assert staged and any((s / "onnx").glob("*.onnx") for s in staged), "export is not mid-way"
        proc.send_signal(getattr(signal, sig))
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    count("faults_injected", f"CLI export: {sig} mid-export")
    assert snapshot(bundle) == before
    bundle_serves(bundle, x_val, ort_reference)
    if sig == "SIGINT":
        assert proc.returncode == 130, err[-2000:]
        assert "interrupted" in err
        assert leftovers(bundle.parent) == []
    else:
        assert proc.returncode == -signal.SIGKILL
        stale = leftovers(bundle.parent)
        assert stale and all(".staging." in s for s in stale)  # SIGKILL cannot clean up...
        export_bundle(fc_run, bundle, depths="all", progress=False)  # ...the next run does, and works
        bundle_serves(bundle, x_val, ort_reference)
        assert leftovers(bundle.parent) == []
    count("faults_survived", f"CLI export: {sig} mid-export")


def test_cli_export_killed_at_the_swap(fc_run, previous, tmp_path, x_val, ort_reference):
    """SIGKILL at the instant the new bundle replaces the old one: a bundle is there (old or
    new, both complete) -- never a missing directory. (Without an atomic exchange, the
    bundle would be renamed aside first and the kill would leave no bundle at all.)"""
    bundle, _ = previous
    proc = _cli_export(fc_run, bundle, tmp_path, GLONET_TEST_KILL_ON_SWAP="1")
    _, err = proc.communicate(timeout=120)
    count("faults_injected", "CLI export: SIGKILL at the swap")
    assert proc.returncode == -signal.SIGKILL, err[-2000:]
    assert bundle.is_dir(), f"no bundle after a kill at the swap; left: {sorted(p.name for p in bundle.parent.iterdir())}"
    bundle_serves(bundle, x_val, ort_reference)
    count("faults_survived", "CLI export: SIGKILL at the swap")


def test_cli_export_with_the_disk_full_for_real(fc_run, previous, tmp_path, x_val, ort_reference):
    """RLIMIT_FSIZE: the kernel refuses (EFBIG) any write past 30 kB, as a full disk would,
    in every writer (torch's exporter, onnx, json): the export fails and changes nothing."""
    bundle, before = previous
    assert max(p.stat().st_size for p in (bundle / "onnx").iterdir()) > 30_000  # deep graphs cannot be written

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG instead of being killed
        resource.setrlimit(resource.RLIMIT_FSIZE, (30_000, 30_000))

    proc = _cli_export(fc_run, bundle, tmp_path, preexec=limit)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert "File too large" in err or "EFBIG" in err or "error" in err.lower(), err[-2000:]
    _survived(bundle, before, x_val, ort_reference, "CLI export: disk full (RLIMIT_FSIZE, EFBIG)")
