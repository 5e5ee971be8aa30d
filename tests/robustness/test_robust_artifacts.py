"""Corrupted artifacts and path confinement.

Every damaged bundle is refused on load (Runtime.open, BundleManifest.verify and
targets.load_artifact) with an ArtifactError/ConfigError: truncated ONNX/IR files, files
swapped between depths, changed bytes, missing files, companions (OpenVINO .bin) damaged or
escaping, symlinks leading out of the bundle, '..' and absolute paths in the manifest. A
manifest path that escapes is refused even when the file it points at is byte-identical to the
real artifact (same sha256). And the stages that WRITE (quantize, compile, export) never write
outside the bundle, whatever the manifest or the bundle's symlinks say.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from glonet_edge.errors import ArtifactError, ConfigError, GlonetError
from glonet_edge.manifest import BundleManifest
from glonet_edge.runtime import Runtime
from robust_support import OutsideReads, bundle_serves, count, leftovers, rerecord, snapshot

REFUSED = (ArtifactError, ConfigError)


def _refused(bundle: Path, match: str | None = None, target: str = "onnxruntime", what: str = "") -> None:
    """verify() and Runtime.open() both refuse the bundle, reading nothing outside it."""
    with OutsideReads(bundle) as reads:
        with pytest.raises(REFUSED, match=match):
            BundleManifest.load(bundle).verify(bundle)
        with pytest.raises(REFUSED, match=match):
            Runtime.open(bundle, target=target, power="none")
    assert reads.outside == [], reads.outside
    count("corrupt_artifacts_refused", what or target)


def _edit_manifest(bundle: Path, fn) -> None:
    doc = json.loads((bundle / "manifest.json").read_text())
    fn(doc)
    (bundle / "manifest.json").write_text(json.dumps(doc))


def _art(doc: dict, depth: int) -> dict:
    return next(e for e in doc["depths"] if e["depth"] == depth)["artifacts"][0]


# ---- damaged files ------------------------------------------------------------------------------------
@pytest.mark.parametrize("cut", [0, 1, 100, 0.5, -1])
def test_truncated_onnx_is_refused(bundle_copy, cut):
    graph = bundle_copy / "onnx" / "depth_005.onnx"
    data = graph.read_bytes()
    graph.write_bytes(data[:int(len(data) * cut) if isinstance(cut, float) else cut])
    _refused(bundle_copy, "depth_005.onnx has \\d+ bytes", what="onnx truncated")


@pytest.mark.parametrize("cut", [1, 100, 0.5, -1])
def test_truncated_onnx_with_a_matching_manifest_is_refused_by_the_engine(bundle_copy, cut):
    """Checksums re-recorded to match the damaged file: the engine's own load must refuse it
    with an ArtifactError (never crash, never serve garbage)."""
    graph = bundle_copy / "segments" / "segment_03.onnx" if cut == 100 else bundle_copy / "onnx" / "depth_005.onnx"
    data = graph.read_bytes()
    graph.write_bytes(data[:int(len(data) * cut) if isinstance(cut, float) else cut])
    rerecord(bundle_copy)
    with pytest.raises(ArtifactError, match="onnxruntime cannot load"):
        Runtime.open(bundle_copy, power="none")
    count("corrupt_artifacts_refused", "onnx truncated, checksum re-recorded")


@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_changed_byte_is_refused(bundle_copy, where):
    for rel in ("onnx/depth_002.onnx", "segments/segment_06.onnx"):
        path = bundle_copy / rel
        data = bytearray(path.read_bytes())
        i = {"first": 0, "middle": len(data) // 2, "last": len(data) - 1}[where]
        data[i] ^= 0x01
        path.write_bytes(bytes(data))
    _refused(bundle_copy, "fails its sha256 check", what="onnx byte flipped")


def test_files_swapped_between_depths_are_refused(bundle_copy):
    a, b = bundle_copy / "onnx" / "depth_003.onnx", bundle_copy / "onnx" / "depth_004.onnx"
    tmp = a.read_bytes()
    a.write_bytes(b.read_bytes())
    b.write_bytes(tmp)
    _refused(bundle_copy, "depth_00[34].onnx has", what="onnx swapped")


def test_same_size_files_swapped_are_refused_by_checksum(bundle_copy):
    """Segments 1..7 are one block each, so their graphs have equal sizes: only sha256 tells."""
    a, b = bundle_copy / "segments" / "segment_02.onnx", bundle_copy / "segments" / "segment_05.onnx"
    assert a.stat().st_size == b.stat().st_size
    tmp = a.read_bytes()
    a.write_bytes(b.read_bytes())
    b.write_bytes(tmp)
    _refused(bundle_copy, "fails its sha256 check", what="segment swapped")


def test_missing_files_are_refused(bundle_copy):
    (bundle_copy / "onnx" / "depth_006.onnx").unlink()
    _refused(bundle_copy, "depth_006.onnx listed in the manifest is missing", what="onnx missing")


def test_missing_segment_is_refused(bundle_copy):
    (bundle_copy / "segments" / "segment_07.onnx").unlink()
    _refused(bundle_copy, "segment_07.onnx listed in the manifest is missing", what="segment missing")


def test_artifact_replaced_by_a_directory_is_refused(bundle_copy):
    path = bundle_copy / "onnx" / "depth_006.onnx"
    path.unlink()
    path.mkdir()
    _refused(bundle_copy, "missing", what="onnx is a directory")


def test_newer_schema_is_refused_with_upgrade_message(bundle_copy):
    _edit_manifest(bundle_copy, lambda d: d.update(schema_version=99))
    with pytest.raises(ConfigError, match="pip install -U glonet-edge"):
        Runtime.open(bundle_copy, power="none")


# ---- paths that leave the bundle ------------------------------------------------------------------------
@pytest.fixture
def bait(bundle_copy) -> Path:
    """Outside the bundle: byte-identical copies of its depth-1 graph and segment 0, so a path
    leading there would pass the sha256 check if confinement did not stop it first."""
    outside = bundle_copy.parent.parent / "outside"
    outside.mkdir()
    shutil.copy(bundle_copy / "onnx" / "depth_001.onnx", outside / "depth_001.onnx")
    shutil.copy(bundle_copy / "segments" / "segment_00.onnx", outside / "segment_00.onnx")
    return outside


@pytest.mark.parametrize("form", ["dotdot", "absolute", "inner-dotdot", "backslash", "drive"])
def test_manifest_path_leaving_the_bundle_is_refused(bundle_copy, bait, form):
    rel = {"dotdot": "../../outside/depth_001.onnx", "absolute": str(bait / "depth_001.onnx"),
           "inner-dotdot": "onnx/../../../outside/depth_001.onnx",
           "backslash": "onnx\\..\\..\\..\\outside\\depth_001.onnx", "drive": "C:/outside/depth_001.onnx"}[form]
    _edit_manifest(bundle_copy, lambda d: _art(d, 1).update(path=rel))
    _refused(bundle_copy, "absolute|'\\.\\.'|outside the bundle", what=f"manifest path {form}")


def test_symlink_to_an_identical_file_outside_is_refused(bundle_copy, bait):
    graph = bundle_copy / "onnx" / "depth_001.onnx"
    graph.unlink()
    graph.symlink_to(bait / "depth_001.onnx")
    _refused(bundle_copy, "outside the bundle", what="symlink out (file)")


def test_symlinked_directory_outside_is_refused(bundle_copy, bait):
    """segments/ moved out of the bundle (files intact, checksums still match) and linked back."""
    shutil.move(str(bundle_copy / "segments"), str(bait / "segments"))
    (bundle_copy / "segments").symlink_to(bait / "segments")
    _refused(bundle_copy, "outside the bundle", what="symlink out (directory)")


def test_symlink_inside_the_bundle_is_served(bundle_copy, x_val, ort_reference):
    """Links that stay inside the bundle are fine (e.g. a deduplicating copy tool)."""
    (bundle_copy / "store").mkdir()
    graph = bundle_copy / "onnx" / "depth_002.onnx"
    graph.rename(bundle_copy / "store" / "g.onnx")
    graph.symlink_to("../store/g.onnx")
    bundle_serves(bundle_copy, x_val, ort_reference)


def test_symlink_loop_is_refused(bundle_copy):
    graph = bundle_copy / "onnx" / "depth_001.onnx"
    graph.unlink()
    graph.symlink_to(graph)
    _refused(bundle_copy, "cannot be resolved|missing", what="symlink loop")


# ---- companions (OpenVINO IR .bin) ------------------------------------------------------------------------
def test_openvino_bundle_loads(ov_bundle, x_val, ort_reference):
    bundle_serves(ov_bundle, x_val, ort_reference, target="openvino")


@pytest.mark.parametrize("damage", ["truncate-bin", "flip-bin", "missing-bin", "swap-bin", "truncate-xml",
                                    "companion-dotdot", "companion-absolute", "companion-symlink-out"])
def test_openvino_companion_damage_is_refused(ov_bundle, damage):
    ir = ov_bundle / "openvino"
    binf, xml = ir / "depth_004.fp32.bin", ir / "depth_004.fp32.xml"
    if damage == "truncate-bin":
        binf.write_bytes(binf.read_bytes()[:-16])
    elif damage == "flip-bin":
        data = bytearray(binf.read_bytes())
        data[len(data) // 3] ^= 0x80
        binf.write_bytes(bytes(data))
    elif damage == "missing-bin":
        binf.unlink()
    elif damage == "swap-bin":
        shutil.copy(ir / "depth_008.fp32.bin", binf)
    elif damage == "truncate-xml":
        xml.write_bytes(xml.read_bytes()[:200])
    else:
        outside = ov_bundle.parent / "outside"
        outside.mkdir()
        shutil.copy(binf, outside / binf.name)
        if damage == "companion-symlink-out":
            binf.unlink()
            binf.symlink_to(outside / binf.name)
        else:
            rel = "../outside/depth_004.fp32.bin" if damage == "companion-dotdot" else str(outside / binf.name)
            _edit_manifest(ov_bundle, lambda d: _ov_art(d, 4)["companions"][0].update(path=rel))
    _refused(ov_bundle, None, target="openvino", what=f"openvino {damage}")


def _ov_art(doc: dict, depth: int) -> dict:
    entry = next(e for e in doc["depths"] if e["depth"] == depth)
    return next(a for a in entry["artifacts"] if a["format"] == "openvino")


@pytest.mark.parametrize("damage", ["truncate-bin", "truncate-xml", "empty-xml", "garbage-bin"])
def test_openvino_damage_with_a_matching_manifest_is_refused_by_the_engine(ov_bundle, damage):
    ir = ov_bundle / "openvino"
    binf, xml = ir / "depth_004.fp32.bin", ir / "depth_004.fp32.xml"
    if damage == "truncate-bin":
        binf.write_bytes(binf.read_bytes()[: binf.stat().st_size // 2])
    elif damage == "truncate-xml":
        xml.write_bytes(xml.read_bytes()[: xml.stat().st_size // 2])
    elif damage == "empty-xml":
        xml.write_bytes(b"")
    else:
        binf.write_bytes(b"\x00" * 3)
    rerecord(ov_bundle)
    with pytest.raises(ArtifactError, match="OpenVINO cannot compile"):
        Runtime.open(ov_bundle, target="openvino", power="none")
    count("corrupt_artifacts_refused", f"openvino {damage}, checksum re-recorded")


def test_load_artifact_checks_companions(ov_bundle):
    """targets.load_artifact (what the runtime uses) refuses the same damage directly."""
    from glonet_edge.targets import get_target, load_artifact

    m = BundleManifest.load(ov_bundle)
    art = m.depth(4).artifact("openvino", "fp32")
    model = load_artifact(ov_bundle, art, "openvino")
    model.close()
    art.companions[0]["path"] = "../outside.bin"
    with pytest.raises(ArtifactError, match="'\\.\\.'"):
        load_artifact(ov_bundle, art, get_target("openvino"))
    onnx_art = m.depth(4).artifact("onnx", "fp32")
    with pytest.raises(ConfigError, match="format 'onnx'"):
        load_artifact(ov_bundle, onnx_art, "openvino")


# ---- stages that write: never outside the bundle -------------------------------------------------------
@pytest.fixture
def outside_dir(bundle_copy) -> Path:
    d = bundle_copy.parent.parent / "outside-w"
    d.mkdir()
    shutil.copy(bundle_copy / "onnx" / "depth_002.onnx", d / "depth_002.onnx")
    (d / "keep.txt").write_text("must not change\n")
    return d


def _stage_refuses(bundle: Path, outside: Path, run, what: str) -> None:
    before_bundle, before_outside = snapshot(bundle), snapshot(outside)
    with pytest.raises(GlonetError):
        run()
    assert snapshot(outside) == before_outside, "a stage wrote outside the bundle"
    assert snapshot(bundle) == before_bundle, "a refused stage changed the bundle"
    assert leftovers(bundle.parent) == []
    count("write_confinement_refused", what)


@pytest.mark.parametrize("stage", ["quantize", "compile"])
@pytest.mark.parametrize("form", ["dotdot", "absolute"])
def test_writing_stages_refuse_an_escaping_manifest_path(bundle_copy, outside_dir, stage, form):
    rel = "../../outside-w/depth_002.onnx" if form == "dotdot" else str(outside_dir / "depth_002.onnx")
    _edit_manifest(bundle_copy, lambda d: _art(d, 2).update(path=rel))
    _stage_refuses(bundle_copy, outside_dir, _writer(stage, bundle_copy), f"{stage}: manifest path {form}")


@pytest.mark.parametrize("stage", ["quantize", "compile"])
def test_writing_stages_refuse_a_symlinked_output_directory(bundle_copy, outside_dir, stage):
    """bundle/openvino (where compile writes) or bundle/onnx (where quantize writes its int8
    graphs) is a link to a directory outside: the stage must not write through it."""
    if stage == "compile":
        (bundle_copy / "openvino").symlink_to(outside_dir)
    else:
        onnx_dir = bundle_copy / "onnx"
        for p in onnx_dir.iterdir():
            shutil.copy(p, outside_dir / p.name)
        shutil.rmtree(onnx_dir)
        onnx_dir.symlink_to(outside_dir)
    _stage_refuses(bundle_copy, outside_dir, _writer(stage, bundle_copy), f"{stage}: symlinked output dir")


def test_export_over_a_bundle_with_an_outward_symlink_leaves_the_target_alone(fc_run, bundle_copy, outside_dir,
                                                                                x_val, ort_reference):
    from glonet_edge.export import export_bundle

    (bundle_copy / "openvino").symlink_to(outside_dir)
    before = snapshot(outside_dir)
    export_bundle(fc_run, bundle_copy, depths="all", progress=False)
    assert snapshot(outside_dir) == before
    assert not (bundle_copy / "openvino").exists()
    bundle_serves(bundle_copy, x_val, ort_reference)
    count("write_confinement_refused", "export: replaced an outward link, target untouched")


def _writer(stage: str, bundle: Path):
    if stage == "quantize":
        from glonet_edge.quantize import QuantizeSettings, quantize_bundle

        return lambda: quantize_bundle(bundle, QuantizeSettings(calib_size=64), progress=False)
    pytest.importorskip("openvino")
    from glonet_edge.targets.compile import compile_bundle

    return lambda: compile_bundle(bundle, "openvino", ["fp32"], segments=False, progress=False, verify=False)


def test_reads_stay_inside_the_bundle_when_serving(bundle_copy, x_val):
    """A whole open + infer + anytime reads (from Python) only bundle files and libraries."""
    with OutsideReads(bundle_copy) as reads:
        with Runtime.open(bundle_copy, power="none") as rt:
            rt.infer(x_val)
            rt.infer_anytime(x_val, deadline_ms=1000)
    assert reads.outside == []
