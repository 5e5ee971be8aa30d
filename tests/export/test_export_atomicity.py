"""A failed export leaves the previous bundle (or nothing) in place, never half a bundle."""

from __future__ import annotations

from pathlib import Path

import pytest

from glonet_edge.errors import ArtifactError, ConfigError
from glonet_edge.export import bundle as bundle_mod
from glonet_edge.export import export_bundle, onnx_export
from glonet_edge.fileio import sha256_file
from glonet_edge.manifest import BundleManifest


def _snapshot(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): sha256_file(p) for p in sorted(root.rglob("*")) if p.is_file()}


def _no_leftovers(parent: Path) -> None:
    assert [p.name for p in parent.iterdir() if p.name.startswith(".")] == []


@pytest.fixture()
def previous(fc_run, tmp_path) -> Path:
    out = tmp_path / "bundle"
    export_bundle(fc_run, out, depths=[1, 2], progress=False)
    return out


def test_crash_while_exporting_segments_keeps_previous_bundle(fc_run, previous, monkeypatch):
    before = _snapshot(previous)
    real, calls = onnx_export.export_segment, []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise OSError("disk full (injected)")
        return real(*args, **kwargs)

    monkeypatch.setattr(onnx_export, "export_segment", flaky)
    with pytest.raises(OSError, match="injected"):
        export_bundle(fc_run, previous, depths="all", progress=False)
    assert _snapshot(previous) == before
    m = BundleManifest.load(previous)
    m.verify(previous)
    assert m.depth_values() == [1, 2]
    _no_leftovers(previous.parent)


def test_crash_while_writing_the_manifest_keeps_previous_bundle(fc_run, previous, monkeypatch):
    before = _snapshot(previous)

    def boom(self, bundle_dir):
        raise KeyboardInterrupt  # also covers Ctrl-C: BaseException, not Exception

    monkeypatch.setattr(BundleManifest, "save", boom)
    with pytest.raises(KeyboardInterrupt):
        export_bundle(fc_run, previous, depths=[4, 8], progress=False)
    assert _snapshot(previous) == before
    _no_leftovers(previous.parent)


def test_wrong_graph_is_caught_by_parity_and_nothing_is_written(fc_run, tmp_path, monkeypatch):
    class OffByOne(onnx_export.DepthGraph):  # a "miscompiled" graph: one block short
        def __init__(self, model, depth):
            super().__init__(model, max(1, depth - 1))

    monkeypatch.setattr(onnx_export, "DepthGraph", OffByOne)
    out = tmp_path / "new"
    with pytest.raises(ArtifactError, match="depth graph 2: max \\|onnxruntime - torch\\|"):
        export_bundle(fc_run, out, depths=[1, 2], progress=False)
    assert not out.exists()
    _no_leftovers(tmp_path)


def test_failing_verification_keeps_previous_bundle(fc_run, previous, monkeypatch):
    before = _snapshot(previous)

    def fail(*args, **kwargs):
        raise ArtifactError("parity failed (injected)")

    monkeypatch.setattr(bundle_mod, "verify_family", fail)
    with pytest.raises(ArtifactError, match="injected"):
        export_bundle(fc_run, previous, depths="all", progress=False)
    assert _snapshot(previous) == before


def test_refuses_to_replace_what_is_not_a_bundle(fc_run, tmp_path):
    precious = tmp_path / "home"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="not a bundle"):
        export_bundle(fc_run, precious, progress=False)
    with pytest.raises(ConfigError, match="replace the checkpoint"):
        export_bundle(fc_run, fc_run, progress=False)
    assert (precious / "notes.txt").read_text() == "keep me"


@pytest.mark.parametrize("kwargs, match", [({"opset": 9}, "opset"), ({"depths": [0]}, "not in 1..8"),
                                           ({"segments": [9]}, "not in 1..8"),
                                           ({"dataset": "no-such-data"}, "--data")])
def test_bad_arguments_are_config_errors(fc_run, tmp_path, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        export_bundle(fc_run, tmp_path / "b", progress=False, **kwargs)
    assert not (tmp_path / "b").exists()


def test_a_new_staged_write_removes_only_orphans_of_dead_processes(tmp_path):
    """A staging dir left by a killed process (same host, dead pid) is removed by the next
    write; a live process's, another host's and an unrecognised one are left alone."""
    import os
    import socket
    import subprocess
    import sys

    from glonet_edge.fileio import staged_directory

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    dead_pid = int(dead.stdout)
    host = "".join(c if c.isalnum() or c == "-" else "_" for c in socket.gethostname())
    final = tmp_path / "bundle"
    orphan = tmp_path / f".bundle.staging.{host}.{dead_pid}.abc"
    live = tmp_path / f".bundle.staging.{host}.{os.getppid()}.def"
    other_host = tmp_path / f".bundle.staging.otherhost.{dead_pid}.ghi"
    other_name = tmp_path / f".bundle2.staging.{host}.{dead_pid}.jkl"
    for d in (orphan, live, other_host, other_name):
        (d / "onnx").mkdir(parents=True)
    with staged_directory(final) as stage:
        (stage / "manifest.json").write_text("{}")
    assert (final / "manifest.json").is_file()
    assert not orphan.exists()
    assert live.exists() and other_host.exists() and other_name.exists()
