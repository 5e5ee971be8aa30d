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


def test_a_new_staged_write_removes_only_orphans_of_dead_writers(tmp_path):
    """A staging dir whose writer is gone (its lock file is free) is removed by the next write;
    one whose lock is held (a live writer, whatever its pid namespace), one without a lock file,
    another host's and another bundle's are left alone."""
    import fcntl
    import os
    import socket

    from glonet_edge.fileio import staged_directory

    host = "".join(c if c.isalnum() or c == "-" else "_" for c in socket.gethostname())
    final = tmp_path / "bundle"
    orphan = tmp_path / f".bundle.staging.{host}.999999.abc"
    live = tmp_path / f".bundle.staging.{host}.999998.def"
    no_lock = tmp_path / f".bundle.staging.{host}.999997.ghi"
    other_host = tmp_path / f".bundle.staging.otherhost.999996.jkl"
    other_name = tmp_path / f".bundle2.staging.{host}.999995.mno"
    for d in (orphan, live, no_lock, other_host, other_name):
        (d / "onnx").mkdir(parents=True)
        if d is not no_lock:
            (tmp_path / f"{d.name}.lock").touch()
    held = os.open(tmp_path / f"{live.name}.lock", os.O_RDWR)
    fcntl.flock(held, fcntl.LOCK_EX)  # a separate open file: conflicts like another process would
    try:
        with staged_directory(final) as stage:
            (stage / "manifest.json").write_text("{}")
    finally:
        os.close(held)
    assert (final / "manifest.json").is_file()
    assert not orphan.exists() and not (tmp_path / f"{orphan.name}.lock").exists()
    assert live.exists() and no_lock.exists() and other_host.exists() and other_name.exists()
    # and the write itself leaves no staging dir or lock file behind
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".bundle.staging.") and str(os.getpid()) in p.name]
