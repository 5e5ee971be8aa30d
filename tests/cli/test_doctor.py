"""`glonet doctor` on device trees laid out as NVIDIA documents them.

Where each expected value comes from:
- /etc/nv_tegra_release: first line "# R<major> (release), REVISION: <minor>.<patch>, GCID: ..., BOARD: ...,
  EABI: aarch64, DATE: ..." (Jetson Linux Developer Guide, Quick Start: "head -1 /etc/nv_tegra_release").
- L4T -> JetPack: NVIDIA's JetPack archive (developer.nvidia.com/embedded/jetpack-archive): L4T 35.4.1 is
  JetPack 5.1.2, L4T 36.4.3 is JetPack 6.2.
- /proc/device-tree/model: the device tree's model string, NUL-terminated (devicetree specification, §2.3.2
  "model" property is a <string>, and strings are NUL-terminated).
- nvpmodel: /var/lib/nvpmodel/status "pmode:NNNN" names a POWER_MODEL ID of /etc/nvpmodel.conf
  (NVIDIA Jetson Linux Developer Guide, "Power Management for Jetson Orin Nano/NX", nvpmodel).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from glonet_edge.cli import main
from glonet_edge.doctor import examine, jetpack_of, l4t_release

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runtime"))
from fake_sysfs import orin_nano_jp6, write, write_bytes  # noqa: E402  (the device trees the power tests use)

JP5_RELEASE = "# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref, EABI: aarch64, DATE: Tue Aug  1 19:57:35 UTC 2023"


def _by_name(report, section):
    return {f["name"]: f for f in report["findings"] if f["section"] == section}


def jetson_jp5(root):
    """An Orin NX on JetPack 5.1.2: same sensors as the JetPack 6 tree, its own release and model."""
    orin_nano_jp6(root, pmode=1)
    write(root, "etc/nv_tegra_release", JP5_RELEASE)
    write_bytes(root, "proc/device-tree/model", b"NVIDIA Orin NX Developer Kit\x00")
    return root


@pytest.mark.parametrize("build, model, l4t, jetpack, mode", [
    (lambda r: orin_nano_jp6(r, pmode=0), "NVIDIA Jetson Orin Nano Developer Kit", "36.4.3", "6.2", "15W"),
    (jetson_jp5, "NVIDIA Orin NX Developer Kit", "35.4.1", "5.1.2", "25W"),
])
def test_jetson_release_model_and_power_mode(tmp_path, build, model, l4t, jetpack, mode):
    report = examine(root=str(build(tmp_path)))
    jetson = _by_name(report, "jetson")
    assert jetson["model"]["value"] == model  # the trailing NUL is not part of the name
    assert jetson["L4T"]["value"] == l4t
    assert jetson["JetPack"]["value"] == jetpack
    assert jetson["power mode"]["value"] == mode
    assert _by_name(report, "power")["jetson"]["ok"] is True


def test_release_parsing_and_unknown_releases():
    assert l4t_release("# R32 (release), REVISION: 7.1, GCID: 29818004, BOARD: t210ref, EABI: aarch64") == "32.7.1"
    assert l4t_release("# R36 (release), REVISION: 3, GCID: 1") == "36.3.0"
    assert l4t_release("not a release line") is None
    assert jetpack_of("36.9.9").startswith("6.x")  # a newer release: the major still says JetPack 6


def test_bare_machine_is_not_a_jetson(tmp_path):
    report = examine(root=str(tmp_path))
    assert _by_name(report, "jetson")["jetson"]["value"].startswith("not a Jetson")
    assert all(f["value"] == "not present" for f in _by_name(report, "power").values())


def test_bundle_artifacts_and_the_fix(fc_served_bundle, tmp_path):
    bundle = tmp_path / "b"
    shutil.copytree(fc_served_bundle, bundle)
    ok = _by_name(examine(root=str(tmp_path), bundle=str(bundle)), "bundle")
    assert ok["onnx fp32"]["ok"] is True and "load here" in ok["onnx fp32"]["value"]
    victim = next(bundle.glob("onnx/depth_*.onnx"))
    victim.write_bytes(victim.read_bytes()[:-1] + b"\0")  # same size, other sha256
    report = examine(root=str(tmp_path), bundle=str(bundle))
    bad = [f for f in report["findings"] if f["section"] == "bundle" and f["ok"] is False]
    assert len(bad) == 1 and victim.name in bad[0]["value"] and "glonet export" in bad[0]["fix"]


def test_cli_json(tmp_path, capsys):
    orin_nano_jp6(tmp_path)
    assert main(["doctor", "--root", str(tmp_path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["schema_version"] == 1
    assert {"platform", "engines", "accelerator", "jetson", "power", "cache"} <= {f["section"] for f in report["findings"]}


def test_each_power_source_is_read_once(tmp_path, monkeypatch):
    from glonet_edge.runtime.power import JetsonSource

    reads = []
    real = JetsonSource.read
    monkeypatch.setattr(JetsonSource, "read", lambda self: reads.append(1) or real(self))
    report = examine(root=str(orin_nano_jp6(tmp_path, pmode=0)))
    assert len(reads) == 1  # the power mode (jetson section) and the power section share one reading
    assert _by_name(report, "jetson")["power mode"]["value"] == "15W"
