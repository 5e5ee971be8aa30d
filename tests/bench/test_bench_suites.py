"""`glonet bench` suites on tiny sweeps: contract keys, sane values, files written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("matplotlib")

from glonet_edge.bench import available_suites, int_list, load_suite, register_suite, result_stem  # noqa: E402
from glonet_edge.bench.train_speed import ratio_rows, target_verdict  # noqa: E402
from glonet_edge.cli import main  # noqa: E402


def _run(argv: list[str], capsys) -> dict:
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def _png_ok(path: Path) -> None:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 2000


@pytest.mark.parametrize("suite", ["train-speed", "depth-accuracy"])
def test_threads_flag_reaches_training(suite, tmp_path, capsys, monkeypatch):
    """--threads is the training thread count even for models small enough that the trainer
    alone would pick one thread (train_model sets torch's threads itself)."""
    from glonet_edge.train import trainer

    seen = []
    real = trainer.cpu_threads

    def spy(model, settings, device):
        seen.append(settings.threads)
        return real(model, settings, device)

    monkeypatch.setattr(trainer, "cpu_threads", spy)
    extra = ["--warmup", "0"] if suite == "train-speed" else ["--seeds", "0", "--models", "glonet-fc"]
    _run(["bench", suite, "--out", str(tmp_path / "o"), "--depths", "2", "--epochs", "1", "--threads", "2",
          "--quiet", "--json", *extra], capsys)
    assert seen and set(seen) == {2}


def test_train_speed_contract(tmp_path, capsys):
    out = tmp_path / "ts"
    result = _run(["bench", "train-speed", "--out", str(out), "--depths", "2,4", "--epochs", "1", "--warmup", "1",
                   "--threads", "1", "--quiet", "--json"], capsys)
    text = (out / "train_speed.json").read_text()
    on_disk = json.loads(text)
    assert on_disk == result
    rows = on_disk["rows"]
    lines = {line.strip().rstrip(",") for line in text.splitlines()}
    assert all(json.dumps(r) in lines for r in rows)  # one line per row
    assert {(r["model"], r["depth"]) for r in rows} == {(m, d) for m in ("glonet-fc", "resnet-fc") for d in (2, 4)}
    for r in rows:
        assert isinstance(r["model"], str) and isinstance(r["depth"], int) and r["width"] == 32
        assert isinstance(r["seconds_per_epoch"], float) and 0 < r["seconds_per_epoch"] < 30
        assert len(r["epoch_seconds"]) == 1  # the warm-up epoch is not reported
    by = {(r["model"], r["depth"]): r["seconds_per_epoch"] for r in rows}
    for ratio in on_disk["ratios"]:
        d = ratio["depth"]
        assert ratio["ratio"] == pytest.approx(by[("glonet-fc", d)] / by[("resnet-fc", d)])
    assert on_disk["cut_loss"] == 0.0 and on_disk["target"]["met"] is None  # no depth >= 50 in this sweep
    assert "--depths 2,4" in on_disk["command"]
    _png_ok(out / "train_speed.png")
    md = (out / "train_speed.md").read_text()
    assert "| depth |" in md and "train_speed.png" in md


def test_ratio_and_target_verdict():
    rows = [{"model": "glonet-fc", "depth": 50, "seconds_per_epoch": 1.0},
            {"model": "resnet-fc", "depth": 50, "seconds_per_epoch": 2.0},
            {"model": "glonet-fc", "depth": 100, "seconds_per_epoch": 3.0},
            {"model": "resnet-fc", "depth": 100, "seconds_per_epoch": 2.0},
            {"model": "glonet-fc", "depth": 10, "seconds_per_epoch": 5.0}]  # no resnet at 10: no ratio
    ratios = ratio_rows(rows, ("glonet-fc", "resnet-fc"))
    assert [(r["depth"], r["ratio"]) for r in ratios] == [(50, 0.5), (100, 1.5)]
    assert ratios[0]["paper_gpu_ratio"] == pytest.approx(55 / 96, abs=1e-3)
    verdict = target_verdict(ratios)
    assert verdict["met"] is False and verdict["worst_ratio"] == 1.5 and verdict["depths_checked"] == [50, 100]
    assert target_verdict(ratios[:1])["met"] is True


def test_depth_accuracy_contract(tmp_path, capsys):
    out = tmp_path / "da"
    result = _run(["bench", "depth-accuracy", "--out", str(out), "--depths", "2,4", "--epochs", "1", "--threads", "1",
                   "--seeds", "0", "--quiet", "--json"], capsys)
    assert {(r["model"], r["depth"]) for r in result["rows"]} == {
        (m, d) for m in ("glonet-fc", "residual-fc", "resnet-fc", "plain-fc") for d in (2, 4)}
    assert all(0.0 <= r["score"] <= 1.0 and r["diverged"] is False for r in result["rows"])
    # The reference recipe (no gradient clipping); GloNet with the toolchain's cut loss.
    assert result["cut_loss"] == 1.0 and result["grad_clip"] == 0.0
    curve = result["precision_curve"]
    assert curve["depth"] == 4 and [s["cut"] for s in curve["scores"]] == [1, 2, 3, 4]
    # The full-depth score of the deepest GloNet is the last point of its cut curve.
    full = next(r["score"] for r in result["rows"] if r["model"] == "glonet-fc" and r["depth"] == 4)
    assert curve["scores"][-1]["score"] == pytest.approx(full)
    v = result["verdicts"]
    assert set(v) >= {"glonet-fc", "residual-fc", "resnet-fc", "plain-fc"}
    assert isinstance(v["glonet-fc"]["flat"], (bool, type(None)))
    _png_ok(out / "depth_accuracy.png")
    assert (out / "depth_accuracy.json").is_file() and "| depth |" in (out / "depth_accuracy.md").read_text()


def test_depth_accuracy_cut_loss_is_for_glonet_only(tmp_path, capsys, monkeypatch):
    """A loss at every depth would turn the baselines into deeply supervised nets."""
    import glonet_edge.train.trainer as trainer

    seen, real = {}, trainer.train_model
    monkeypatch.setattr(trainer, "train_model", lambda model, data, settings, **kw: (
        seen.__setitem__(model.config.model, settings.cut_loss), real(model, data, settings, **kw))[1])
    _run(["bench", "depth-accuracy", "--out", str(tmp_path / "da"), "--depths", "2", "--epochs", "1", "--seeds", "0",
          "--cut-loss", "0.5", "--threads", "1", "--quiet", "--json"], capsys)
    assert seen == {"glonet-fc": 0.5, "residual-fc": 0.0, "resnet-fc": 0.0, "plain-fc": 0.0}


def test_depth_accuracy_records_a_diverged_run(tmp_path, capsys):
    """A run whose loss turns NaN is kept as a data point (majority-class score), not a crash."""
    out = tmp_path / "da"
    result = _run(["bench", "depth-accuracy", "--out", str(out), "--models", "residual-fc", "--depths", "16",
                   "--epochs", "2", "--lr", "1e6", "--seeds", "0", "--threads", "1", "--quiet", "--json"], capsys)
    (row,) = result["rows"]
    assert row["diverged"] is True and row["train_loss"] is None
    assert 0.05 < row["score"] < 0.2  # digits has 10 balanced classes
    assert "Diverged (scored as the majority class): residual-fc depth 16 seed 0" in (out / "depth_accuracy.md").read_text()


def test_memory_contract(tmp_path, capsys):
    out = tmp_path / "mem"
    result = _run(["bench", "memory", "--out", str(out), "--depth", "3", "--width", "16", "--epochs", "1",
                   "--repeats", "1", "--engines", "onnxruntime", "--quiet", "--json"], capsys)
    rows = {r["layout"].split(" (")[0]: r for r in result["rows"]}
    assert set(rows) == {"truncated graphs", "shared weights", "family graph", "segment chain", "full graph", "baseline"}
    assert {r["engine"] for r in result["rows"]} == {"onnxruntime"}
    # Latency is measured, never asserted: only that each serving layout reports it.
    for name in ("shared weights", "family graph"):
        assert rows[name]["shallowest_x_truncated"] > 0 and rows[name]["deepest_x_truncated"] > 0
    storage = result["storage"]
    # Truncated graphs repeat the shallow blocks: more bytes than storing them once.
    assert storage["truncated_family_bytes"] > storage["shared_weights_bytes"] > 0
    assert storage["truncated_family_bytes"] > storage["segments_bytes"] > 0
    assert rows["full graph"]["disk_x_full"] == 1.0
    for r in result["rows"]:
        assert r["rss_added_mb"] > 0 and r["rss_total_mb"] > r["rss_added_mb"]
    _png_ok(out / "memory.png")
    assert (out / "memory.md").is_file() and (out / "bundle" / "manifest.json").is_file()


def test_registry_lists_shipped_suites_and_extends(tmp_path):
    shipped = available_suites()
    assert {"train-speed", "depth-accuracy", "memory"} <= set(shipped)
    for module in shipped.values():
        assert callable(module.add_arguments) and callable(module.run) and module.HELP
    assert result_stem("train-speed") == "train_speed"
    # A registered suite whose module is not shipped is left out, not an error.
    register_suite("not-shipped-yet", "glonet_edge.bench.not_shipped_yet")
    try:
        assert load_suite("not-shipped-yet") is None and "not-shipped-yet" not in available_suites()
    finally:
        from glonet_edge import bench

        bench.SUITES.pop("not-shipped-yet")


def test_int_list_parses_and_rejects():
    import argparse

    assert int_list("50, 10,10") == [10, 50]
    for bad in ("a,b", "0,4", ""):
        with pytest.raises(argparse.ArgumentTypeError):
            int_list(bad)
