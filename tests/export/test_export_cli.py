"""`glonet export` and `glonet inspect`: tables, JSON, --verify and clear errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from glonet_edge.cli import main
from glonet_edge.fileio import sha256_file
from glonet_edge.manifest import BundleManifest


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_export_command_json_and_table(fc_run, tmp_path, capsys):
    out = tmp_path / "b"
    rc, stdout, _ = _run(capsys, "export", str(fc_run), "--out", str(out), "--depths", "1,3", "--no-segments", "--json")
    assert rc == 0
    result = json.loads(stdout)
    assert result["depths"] == [1, 3] and result["segments"] == []
    assert [r["depth"] for r in result["rows"]] == [1, 3]
    assert BundleManifest.load(out).depth_values() == [1, 3] and not (out / "segments").exists()

    rc, stdout, _ = _run(capsys, "export", str(fc_run), "--out", str(out), "--depths", "2", "--no-progress")
    assert rc == 0
    assert "exported depths [2]" in stdout and f"bundle written to {out}" in stdout
    assert BundleManifest.load(out).depth_values() == [2]


def test_export_command_errors(fc_run, tmp_path, capsys):
    rc, _, err = _run(capsys, "export", str(fc_run), "--out", str(tmp_path / "b"), "--depths", "0,99")
    assert rc == 2 and "not in 1..8" in err
    rc, _, err = _run(capsys, "export", str(tmp_path / "missing"), "--out", str(tmp_path / "b"))
    assert rc == 2 and "does not exist" in err


def test_inspect_matches_files_on_disk(fc_bundle, capsys):
    rc, stdout, _ = _run(capsys, "inspect", str(fc_bundle), "--json", "--verify")
    assert rc == 0
    result = json.loads(stdout)
    assert result["verified"] is True
    m = BundleManifest.load(fc_bundle)
    assert [r["depth"] for r in result["rows"]] == m.depth_values()
    for row in result["rows"]:
        graph = fc_bundle / f"onnx/depth_{row['depth']:03d}.onnx"
        assert row["bytes"] == graph.stat().st_size
        assert row["fp32 accuracy"] == m.depth(row["depth"]).metrics["fp32"]["accuracy"]
    on_disk = {p.relative_to(fc_bundle).as_posix() for p in fc_bundle.rglob("*.onnx")}
    assert {f["path"] for f in result["files"]} == on_disk
    for f in result["files"]:
        path = fc_bundle / f["path"]
        assert f["present"] and f["bytes"] == path.stat().st_size and f["sha256"] == sha256_file(path)
    assert result["total_bytes"] == sum((fc_bundle / p).stat().st_size for p in on_disk)
    assert [(s["start_depth"], s["end_depth"]) for s in result["segments"]] == [(d - 1, d) for d in range(1, 9)]


def test_inspect_table_shows_latency_when_profiled(fc_bundle, tmp_path, capsys):
    copy = tmp_path / "b"
    shutil.copytree(fc_bundle, copy)
    m = BundleManifest.load(copy)
    m.depth(8).latency_ms["onnxruntime/fp32"] = {"p50": 0.125, "p90": 0.2, "batch": 1}
    m.save(copy)
    rc, stdout, _ = _run(capsys, "inspect", str(copy))
    assert rc == 0
    header = stdout.splitlines()[1]
    assert "fp32 accuracy" in header and "p50 ms onnxruntime/fp32" in header
    assert "0.125" in stdout and "segment chain (8 segments)" in stdout


def _edited(src: Path, dst: Path, edit) -> Path:
    shutil.copytree(src, dst)
    path = dst / "manifest.json"
    path.write_text(edit(path.read_text()))
    return dst


def _json_edit(change):
    def edit(text: str) -> str:
        d = json.loads(text)
        change(d)
        return json.dumps(d)
    return edit


@pytest.mark.parametrize("edit, message", [
    (lambda t: t[: len(t) // 2], "not valid JSON"),
    (_json_edit(lambda d: d.update(schema_version=99, producer="glonet-edge 9.0")), "newer glonet-edge"),
    (_json_edit(lambda d: d["depths"][0].update(params="many")), "'params' must be a non-negative int"),
    (_json_edit(lambda d: d["depths"][0]["artifacts"][0].update(sha256="abc")), "64 lowercase hex"),
    (_json_edit(lambda d: d["depths"][0]["artifacts"][0].update(path="../../etc/passwd")), "contains '..'"),
    (_json_edit(lambda d: d.pop("depths")), "'depths' must be a list"),
])
def test_inspect_malformed_manifest(fc_bundle, tmp_path, capsys, edit, message):
    bundle = _edited(fc_bundle, tmp_path / "b", edit)
    rc, stdout, err = _run(capsys, "inspect", str(bundle))
    assert rc == 2 and message in err and "Traceback" not in err
    assert err.startswith("glonet inspect: error:")


def test_inspect_missing_bundle_and_tampered_file(fc_bundle, tmp_path, capsys):
    rc, _, err = _run(capsys, "inspect", str(tmp_path / "nowhere"))
    assert rc == 2 and "does not exist" in err
    copy = tmp_path / "b"
    shutil.copytree(fc_bundle, copy)
    (copy / "onnx/depth_002.onnx").write_bytes(b"not onnx")
    assert _run(capsys, "inspect", str(copy))[0] == 0  # without --verify only the manifest is read
    rc, _, err = _run(capsys, "inspect", str(copy), "--verify")
    assert rc == 2 and "onnx/depth_002.onnx" in err
