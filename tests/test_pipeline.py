"""glonet pipeline: named passes from one TOML, skipped when unchanged, resumed after a failure."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")

from glonet_edge.errors import ConfigError  # noqa: E402
from glonet_edge.pipeline import DEMO_CONFIG, Pipeline, PipelineConfig  # noqa: E402

SMALL = {
    "train": {"model": "glonet-fc", "depth": 4, "epochs": 3},
    "export": {"depths": "all", "segments": True},
    "quantize": {"method": "ort", "calib_size": 128},
    "compile": {"targets": ["onnxruntime"], "precisions": ["fp32", "int8"]},
    "profile": {"targets": ["onnxruntime"], "precisions": ["fp32"], "batches": [1], "iterations": 5, "warmup": 1},
}


def _statuses(results):
    return {r.name: r.status for r in results}


def test_passes_skip_when_unchanged_rerun_when_changed_and_resume_after_failure(tmp_path, monkeypatch):
    import glonet_edge.targets.compile as compile_mod

    cfg = PipelineConfig.from_dict(json.loads(json.dumps(SMALL)), tmp_path / "w")
    first = Pipeline(cfg, progress=False).run()
    assert set(_statuses(first).values()) == {"ran"}
    manifest = json.loads((tmp_path / "w" / "bundle" / "manifest.json").read_text())
    assert "onnxruntime/fp32" in manifest["depths"][0]["latency_ms"]
    assert any(a["precision"] == "int8" for a in manifest["depths"][0]["artifacts"])

    assert set(_statuses(Pipeline(cfg, progress=False).run()).values()) == {"skipped"}

    changed = json.loads(json.dumps(SMALL))
    changed["profile"]["iterations"] = 6
    st = _statuses(Pipeline(PipelineConfig.from_dict(changed, tmp_path / "w"), progress=False).run())
    assert st == {"train": "skipped", "export": "skipped", "quantize": "skipped", "compile": "skipped", "profile": "ran"}

    # A failing compile leaves the bundle intact; the next run resumes at compile.
    changed["compile"]["precisions"] = ["fp32"]
    before = (tmp_path / "w" / "bundle" / "manifest.json").read_bytes()

    def boom(*a, **k):
        raise RuntimeError("injected compile failure")

    monkeypatch.setattr(compile_mod, "compile_bundle", boom)
    with pytest.raises(RuntimeError, match="injected"):
        Pipeline(PipelineConfig.from_dict(changed, tmp_path / "w"), progress=False).run()
    assert (tmp_path / "w" / "bundle" / "manifest.json").read_bytes() == before
    monkeypatch.undo()
    st = _statuses(Pipeline(PipelineConfig.from_dict(changed, tmp_path / "w"), progress=False).run())
    assert st == {"train": "skipped", "export": "skipped", "quantize": "skipped", "compile": "ran", "profile": "ran"}

    # Someone edits the bundle by hand: everything from export on runs again.
    mpath = tmp_path / "w" / "bundle" / "manifest.json"
    mpath.write_text(mpath.read_text().replace('"producer"', '"producer" ', 1))
    st = _statuses(Pipeline(PipelineConfig.from_dict(changed, tmp_path / "w"), progress=False).run())
    assert st["train"] == "skipped" and st["export"] == "ran" and st["profile"] == "ran"


def test_config_errors_name_the_problem(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown section\(s\) \['trian'\]"):
        PipelineConfig.from_dict({"trian": {}, "train": {}, "export": {}}, tmp_path)
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['epoch'\] in \[train\]"):
        PipelineConfig.from_dict({"train": {"epoch": 3}, "export": {}}, tmp_path)
    with pytest.raises(ConfigError, match=r"the \[export\] section is required"):
        PipelineConfig.from_dict({"train": {}}, tmp_path)
    bad = tmp_path / "bad.toml"
    bad.write_text("[train\nmodel = 1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        PipelineConfig.from_toml(bad)
    demo = PipelineConfig.from_toml(DEMO_CONFIG, workdir=tmp_path / "demo")
    assert demo.stages() == ["train", "export", "quantize", "compile", "profile", "simulate", "report"]


def test_quantize_section_takes_every_quantize_setting(tmp_path):
    """[quantize] keys and their value types are QuantizeSettings' fields, not a copy of them."""
    from dataclasses import asdict

    from glonet_edge.quantize import QuantizeSettings

    every = asdict(QuantizeSettings(dataset="digits", range_search=False))
    cfg = PipelineConfig.from_dict({"train": {}, "export": {}, "quantize": every}, tmp_path)
    assert QuantizeSettings(**cfg.sections["quantize"]) == QuantizeSettings(dataset="digits", range_search=False)
    with pytest.raises(ConfigError, match=r"\[quantize\] min_agreement must be a number"):
        PipelineConfig.from_dict({"train": {}, "export": {}, "quantize": {"min_agreement": "high"}}, tmp_path)
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['max_dorp'\] in \[quantize\]"):
        PipelineConfig.from_dict({"train": {}, "export": {}, "quantize": {"max_dorp": 0.01}}, tmp_path)
