"""`glonet report`: one self-contained HTML page, checked as text and rendered in headless Chromium."""

from __future__ import annotations

import base64
import html
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("matplotlib")

from glonet_edge.cli import main  # noqa: E402
from glonet_edge.errors import ArtifactError, ConfigError  # noqa: E402
from glonet_edge.export import export_bundle  # noqa: E402
from glonet_edge.manifest import BundleManifest  # noqa: E402
from glonet_edge.report.report import NO_SIMULATION, write_report  # noqa: E402
from glonet_edge.train.trainer import TrainSettings, train_run  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# Appended to a copy of the page: after load, report each <img>'s decoded size, the page's width
# against its viewport's (no sideways scrolling), and the elements sticking out of the viewport
# or overflowing their own box (a long path) outside a scrolling wrapper, to name the culprit,
# to the framing page below.
PROBE = ("<script>window.addEventListener('load', () => parent.postMessage(JSON.stringify({"
         "imgs: [...document.images].map(i => i.complete + ':' + i.naturalWidth + 'x' + i.naturalHeight),"
         "view: window.innerWidth, scroll: document.documentElement.scrollWidth,"
         "overflow: [...document.querySelectorAll('body *')].filter(e => !e.closest('.scroll') && "
         "(e.getBoundingClientRect().right > window.innerWidth + 1 || e.scrollWidth > e.clientWidth + 1))"
         ".map(e => e.tagName + '.' + e.className + ' ' + e.textContent.slice(0, 40))}), '*'));"
         "</script>")
# Headless Chromium's window is at least 500 px wide, so a phone's width is an iframe of that width;
# the page inside posts its measurements here, where --dump-dom sees them.
FRAME = ('<!DOCTYPE html><html><body style="margin:0"><iframe src="{src}" style="border:0;width:{width}px;'
         'height:2000px"></iframe><script>window.addEventListener("message", e => '
         'document.body.setAttribute("data-probe", e.data));</script></body></html>')


@pytest.fixture(scope="module")
def run_and_bundle(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("report")
    run = root / "run"
    train_run("glonet-fc", 4, "digits", run, settings=TrainSettings(epochs=2), progress=False)
    bundle = root / "bundle"
    export_bundle(run, bundle, depths="all", progress=False)
    return run, bundle


@pytest.fixture(scope="module")
def profiled_bundle(run_and_bundle, tmp_path_factory) -> Path:
    """The bundle with what quantize / profile / a power meter add to the manifest."""
    bundle = tmp_path_factory.mktemp("profiled") / "bundle"
    shutil.copytree(run_and_bundle[1], bundle)
    manifest = BundleManifest.load(bundle)
    for e in manifest.depths:
        fp32 = e.metrics["fp32"]["accuracy"]
        e.metrics["int8"] = {"accuracy": fp32 - 0.002 * e.depth}
        e.latency_ms = {"onnxruntime/fp32": {"p50": 0.1 * e.depth, "p90": 0.12 * e.depth, "batch": 1},
                        "onnxruntime/int8": {"p50": 0.07 * e.depth, "p90": 0.08 * e.depth, "batch": 1}}
        e.energy_mj = {"onnxruntime/fp32": 0.5 * e.depth}
    manifest.depths[-1].rejected["int8"] = "int8 accuracy 0.1 below fp32 (max drop 0.005)"
    manifest.save(bundle)
    return bundle


def _images(page: str) -> list[bytes]:
    srcs = re.findall(r'<img[^>]*\ssrc="([^"]*)"', page)
    assert len(srcs) == page.count("<img")
    prefix = "data:image/png;base64,"
    assert all(s.startswith(prefix) for s in srcs), "every image is an embedded PNG"
    return [base64.b64decode(s[len(prefix):], validate=True) for s in srcs]


def assert_self_contained(page: str) -> None:
    assert not re.search(r"""(?:src|href|action)\s*=\s*["']?\s*(?:https?:)?//""", page, re.I), "no remote resources"
    assert not re.search(r"https?://", page), "no URLs at all"
    for needle in ("<link", "<script", "url(", "@import", "<iframe", "<object"):
        assert needle not in page.lower()
    for png in _images(page):
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 2000


def test_bundle_report_has_every_section(profiled_bundle, run_and_bundle, tmp_path, capsys):
    out = tmp_path / "report.html"
    assert main(["report", str(profiled_bundle), "--out", str(out)]) == 0
    page = out.read_text(encoding="utf-8")
    assert_self_contained(page)
    for section in ("tradeoff", "family", "quantization", "adaptive", "explain", "training", "environment"):
        assert f'id="{section}"' in page
    assert "onnxruntime/int8" in page and "mJ onnxruntime/fp32" in page
    assert "int8 accuracy 0.1 below fp32 (max drop 0.005)" in page and 'class="rejected"' in page
    assert "Segment chain" in page and "shared weights file" in page
    assert str(run_and_bundle[0]) in page  # the source checkpoint was found through export.json
    assert len(_images(page)) == 4  # trade-off, exit depths and accuracy vs cost, explain, training


def test_run_report_and_missing_source_run(run_and_bundle, tmp_path):
    run, bundle = run_and_bundle
    page_info = write_report(run, tmp_path / "run.html")
    page = (tmp_path / "run.html").read_text(encoding="utf-8")
    assert_self_contained(page)
    assert 'id="training"' in page and 'id="explain"' in page and 'id="family"' not in page
    assert page_info["explain"]["summary"]["blocks_for_90pct_share"] >= 0

    moved = tmp_path / "elsewhere" / "bundle"
    shutil.copytree(bundle, moved)
    export = json.loads((moved / "export.json").read_text())
    export["run"] = str(tmp_path / "gone")
    (moved / "export.json").write_text(json.dumps(export))
    info = write_report(moved, tmp_path / "moved.html", explain=False)
    assert "run" not in info and any("not on this machine" in n for n in info["notes"])
    info = write_report(moved, tmp_path / "given.html", run_dir=run, explain=False)
    assert info["run"]["path"] == str(run) and info["notes"] == [NO_SIMULATION]  # the only note

    other = tmp_path / "other-run"
    train_run("glonet-fc", 2, "digits", other, settings=TrainSettings(epochs=1), progress=False)
    info = write_report(moved, tmp_path / "other.html", run_dir=other, explain=False)
    assert any("not the one this bundle was exported from" in n for n in info["notes"])


def test_simulate_results_are_included(run_and_bundle, tmp_path):
    sim = tmp_path / "sim"
    sim.mkdir()
    policies = {name: {"inferences": 10 * i + 1, "mean_score": 0.9, "energy_j": 1.5, "depth_switches": i}
                for i, name in enumerate(("power-aware", "full-depth", "min-depth"))}
    (sim / "simulate.json").write_text(json.dumps({"policies": policies}))
    assert main(["report", str(run_and_bundle[1]), "--out", str(tmp_path / "r.html"), "--sim", str(sim),
                 "--no-explain"]) == 0
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert 'id="power"' in page and "power-aware" in page and "switches" in page
    assert NO_SIMULATION not in page


def test_missing_simulation_is_said_on_the_page_and_stderr(run_and_bundle, tmp_path, capsys):
    out = tmp_path / "r.html"
    assert main(["report", str(run_and_bundle[1]), "--out", str(out), "--no-explain"]) == 0
    page = out.read_text(encoding="utf-8")
    assert NO_SIMULATION in page and 'id="power"' not in page
    captured = capsys.readouterr()
    assert NO_SIMULATION in captured.err and NO_SIMULATION not in captured.out
    with pytest.raises(ArtifactError, match="--sim"):
        write_report(run_and_bundle[1], out, simulate=tmp_path / "nowhere", explain=False)


def test_compiled_targets_are_summarised_not_dumped_as_json(run_and_bundle):
    from glonet_edge.report.report import _section_family, gather

    info = gather(run_and_bundle[1], explain=False)
    info["manifest"]["targets"] = {"openvino": {
        "target": "openvino", "openvino": "2026.4.1-22982-e213a147257-releases/2026/4", "device": "CPU",
        "devices": {"CPU": "Intel(R) Xeon(R) Processor"}, "precisions": ["fp32"], "depths": [1, 2, 3, 4],
        "compile_config": {"fp32": {"PERFORMANCE_HINT": "LATENCY"}}, "compiled_with": "glonet-edge 0.1.0"}}
    for e in info["manifest"]["depths"]:
        e["artifacts"].append({"format": "openvino", "precision": "fp32", "path": f"openvino/d{e['depth']}.xml",
                               "sha256": "0" * 64, "bytes": 10})
    section = _section_family(info).split("Compiled targets")[1]
    assert "{" not in section and "PERFORMANCE_HINT" not in section  # no raw JSON
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", section)
    assert cells == ["openvino", "CPU", "fp32", "1, 2, 3, 4", "4 openvino graphs",
                     "openvino 2026.4.1-22982; built by glonet-edge 0.1.0"]


def test_neither_bundle_nor_run_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="neither a bundle"):
        write_report(tmp_path, tmp_path / "x.html")


def _chromium(*args: str) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
                              capture_output=True, text=True, timeout=120)


def _simulation(root: Path) -> Path:
    """A simulate output with every column the power table shows and a timeline to plot."""
    sim = root / "sim"
    sim.mkdir()
    timeline = {"t_s": [0.0, 3600.0, 7200.0], "depth": [4, 2, 1], "battery_pct": [100.0, 50.0, 0.0], "tier": [0, 1, 2]}
    policy = {"inferences": 2098271744, "inferences_per_charge": 1049135872, "mean_score": 0.97491,
              "mean_depth": 2.04, "energy_per_inference_mj": 0.0772, "total_energy_j": 162036.2,
              "depth_switches": 12, "battery_empty_at_s": 19512.0, "timeline": timeline}
    policies = {name: policy for name in ("power-aware", "full-depth", "min-depth", "adaptive")}
    (sim / "simulate.json").write_text(json.dumps({"metric": "accuracy", "policies": policies}))
    return sim


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium installed (apt-get install chromium)")
@pytest.mark.parametrize("width", [1400, 390])  # a desktop window and a phone
def test_report_renders_in_headless_chromium(profiled_bundle, tmp_path, width):
    out = tmp_path / "report.html"
    write_report(profiled_bundle, out, simulate=_simulation(tmp_path))
    page = out.read_text(encoding="utf-8")
    (tmp_path / "probe.html").write_text(page.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    frame = tmp_path / "frame.html"
    frame.write_text(FRAME.format(src="probe.html", width=width), encoding="utf-8")
    dom = _chromium("--virtual-time-budget=5000", f"--window-size={width + 100},2100", "--dump-dom", frame.as_uri())
    found = re.search(r'data-probe="([^"]*)"', dom.stdout)
    assert found, f"page did not load: {dom.stderr[-500:]}"
    probe = json.loads(html.unescape(found.group(1)))
    images = probe["imgs"]
    assert len(images) == page.count("<img") == 5  # trade-off, exits, power, explain, training
    for img in images:
        complete, size = img.split(":")
        width_px, height = map(int, size.split("x"))
        assert complete == "true" and width_px > 100 and height > 100, f"an image did not decode: {images}"
    assert probe["view"] == width, "the page is not laid out at the width asked for"
    assert probe["scroll"] <= width and not probe["overflow"], f"the page scrolls sideways: {probe}"

    shot = tmp_path / "shot.png"
    frame.write_text(FRAME.format(src=out.name, width=width), encoding="utf-8")
    _chromium(f"--screenshot={shot}", f"--window-size={max(width, 500)},2000", frame.as_uri())
    from matplotlib.image import imread

    pixels = imread(shot)[:, :width]
    assert pixels.shape[0] == 2000 and pixels.shape[1] == width
    assert pixels.std() > 0.05, "the screenshot is blank"
