"""glonet profile: latency p50/p90 per depth into the manifest, a batch sweep, energy where metered."""

from __future__ import annotations

import json

import pytest

from glonet_edge.errors import ConfigError
from glonet_edge.manifest import BundleManifest
from glonet_edge.targets import profile as P
from glonet_edge.targets.compile import compile_bundle


def test_profile_writes_latency_sweep_and_energy(fc_int8_bundle):
    compile_bundle(fc_int8_bundle, "onnxruntime", ["fp32", "int8"], progress=False, verify=False)
    counter = {"uj": 1_000_000.0}

    def fake_meter():  # a meter that gains 2 mJ per read
        counter["uj"] += 2000.0
        return counter["uj"]

    r = P.profile_bundle(fc_int8_bundle, "onnxruntime", "int8", batches=[8, 2], iterations=5, warmup=2,
                         energy=fake_meter, progress=False)
    assert r["batches"] == [1, 2, 8]
    m = BundleManifest.load(fc_int8_bundle)
    m.verify(fc_int8_bundle)
    served = [e for e in m.depths if "int8" not in e.rejected]
    for e in served:
        lat = e.latency_ms["onnxruntime/int8"]
        assert lat["batch"] == 1 and 0 < lat["p50"] <= lat["p90"]
        assert e.energy_mj["onnxruntime/int8"] == pytest.approx(2.0 / 7)  # (2 mJ) / (5 timed + 2 warm-up)
    out = json.loads((fc_int8_bundle / "profile_onnxruntime_int8.json").read_text())
    assert {(row["depth"], row["batch"]) for row in out["rows"]} == {(e.depth, b) for e in served for b in (1, 2, 8)}
    assert all(row["raw_p50"] > 0 for row in out["rows"])


def test_profile_needs_compiled_artifacts(fc_bundle):
    with pytest.raises(ConfigError, match="glonet compile BUNDLE --target openvino --precision fp16"):
        P.profile_bundle(fc_bundle, "openvino", "fp16", iterations=1, progress=False)
    with pytest.raises(ConfigError, match="--batches"):
        P.parse_batches("1,x")
    with pytest.raises(ConfigError, match="energy meter"):
        P.profile_bundle(fc_bundle, "onnxruntime", "fp32", energy="watts", iterations=1, progress=False)


def test_rapl_reader_handles_missing_and_wraparound(tmp_path):
    assert P.rapl_reader(tmp_path / "nothing") is None
    root = tmp_path / "intel-rapl:0"
    root.mkdir()
    (root / "energy_uj").write_text("900\n")
    (root / "max_energy_range_uj").write_text("1000\n")
    read = P.rapl_reader(root)
    assert read() == 900
    (root / "energy_uj").write_text("100\n")  # wrapped: 1000 + 100
    assert read() == 1100
    (root / "energy_uj").write_text("garbage")
    assert read() is None


def test_energy_reader_selection():
    assert P.energy_reader("none") == (None, "none")
    fn = lambda: 1.0  # noqa: E731
    assert P.energy_reader(fn)[0] is fn
    reader, name = P.energy_reader("auto")  # whatever this machine has; never raises
    assert name in ("rapl", "nvml", "none")


def test_cli_profile(fc_bundle, capsys):
    from glonet_edge.cli import main

    compile_bundle(fc_bundle, "openvino", ["fp32"], depths=[1, 16], segments=False, progress=False, verify=False)
    assert main(["profile", str(fc_bundle), "--target", "openvino", "--precision", "fp32", "--depths", "1,16",
                 "--batches", "1,4", "--iterations", "3", "--warmup", "1", "--energy", "none", "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "latency (ms) of openvino/fp32" in text and "p50" in text
    m = BundleManifest.load(fc_bundle)
    assert "openvino/fp32" in m.depth(16).latency_ms and "openvino/fp32" not in m.depth(4).latency_ms
