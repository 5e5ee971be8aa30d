"""Checksums catch tampering; the shared-weights family loads in onnxruntime; the 32-block run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import onnx
import pytest

from glonet_edge.errors import ArtifactError
from glonet_edge.export import export_bundle
from glonet_edge.manifest import BundleManifest

from export_helpers import assert_family_matches_torch


def _flip_byte(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("rel", ["onnx/depth_003.onnx", "segments/segment_05.onnx"])
def test_a_changed_byte_is_caught(fc_bundle, tmp_path, rel):
    copy = tmp_path / "b"
    shutil.copytree(fc_bundle, copy)
    m = BundleManifest.load(copy)
    m.verify(copy)
    target = copy / rel
    _flip_byte(target, target.stat().st_size // 2)
    with pytest.raises(ArtifactError, match="sha256"):
        m.verify(copy)


def test_32_block_family_all_depths_with_shared_weights(fc32_run, tmp_path):
    out = tmp_path / "fc32"
    m = export_bundle(fc32_run, out, depths="all", shared_weights=True, progress=False)
    assert m.depth_values() == list(range(1, 33)) and len(m.segments) == 32
    report = json.loads((out / "export.json").read_text())
    storage = report["storage"]
    # Block i is repeated in every graph deeper than i; the chain and the shared file store it once.
    assert storage["segments_bytes"] < storage["shared_weights_bytes"] < storage["truncated_family_bytes"]
    assert storage["full_graph_bytes"] < storage["segments_bytes"]

    shared = out / "onnx" / "family.fp32.bin"
    assert shared.stat().st_size == storage["shared_weights_file_bytes"]
    for e in m.depths:
        a = e.artifact("onnx", "fp32")
        assert [c["path"] for c in a.companions] == ["onnx/family.fp32.bin"]
        graph = onnx.load(str(out / a.path), load_external_data=False)
        external = [t for t in graph.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
        assert external, f"depth {e.depth} keeps no weights in the shared file"
        for t in external:
            info = {kv.key: kv.value for kv in t.external_data}
            assert info["location"] == "family.fp32.bin" and int(info["offset"]) % 4096 == 0
    assert_family_matches_torch(fc32_run, out)  # onnxruntime resolves every offset

    m.verify(out)
    data = bytearray(shared.read_bytes())
    data[5000] ^= 0x01
    shared.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="family.fp32.bin"):
        m.verify(out)
