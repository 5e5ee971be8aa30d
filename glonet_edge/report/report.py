"""`glonet report RUN_OR_BUNDLE`: one self-contained HTML page about a model and its family.

Sections (each only when its data exists):
- the accuracy / latency / energy trade-off per depth (manifest metrics, latency_ms, energy_mj);
- the chosen family: depths, params, MACs, artifacts and bytes, segment chain, disk layouts;
- quantization: int8 / fp16 scores against fp32 per depth, rejected precisions and why;
- adaptive serving: exit-depth distribution and accuracy vs mean cost, per precision;
- block contributions (`glonet explain`) and training (score at every cut, learning curve),
  when a checkpoint is given or the bundle's source checkpoint is reachable (export.json
  names it and its weights match the manifest's sha256);
- the power policies of `glonet simulate` when its output directory is given (--sim DIR) or
  sits in the pipeline's place (BUNDLE/../simulate/simulate.json); a note says when there is none;
- the environment: where the report was made and where the bundle was exported.

The page needs nothing but itself: plots are PNG embedded as base64 `data:` URIs, the style
is inline, there are no scripts, links or fonts to fetch (it opens offline, from e-mail or
an artifact store).
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any, Sequence

from .. import __version__
from ..errors import ArtifactError, ConfigError, GlonetError
from ..fileio import atomic_write_text, read_json, sha256_file
from ..manifest import MANIFEST_NAME, BundleManifest

EXPORT_REPORT = "export.json"  # written by export_bundle next to the manifest
NO_SIMULATION = "no simulation found; run glonet simulate BUNDLE --out DIR and pass --sim DIR"

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2em auto; max-width: 1150px;
       color: #1d2329; padding: 0 1em; line-height: 1.4; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 2px solid #dde3ea; padding-bottom: 0.2em; margin-top: 1.8em; }
.sub { color: #5b6770; margin-top: 0; } .note { color: #5b6770; font-size: 0.92em; }
nav a { margin-right: 1em; color: #2160a8; display: inline-block; }  /* a link wraps whole */
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.88em; }
th, td { border: 1px solid #d5dbe1; padding: 0.25em 0.6em; text-align: right; vertical-align: top; }
th { background: #f0f3f6; } td.text, th.text { text-align: left; }
tr.rejected td { background: #fff1f0; }
img { max-width: 100%; border: 1px solid #e3e7eb; margin: 0.5em 0; }
.kv td:first-child { text-align: left; font-weight: 600; background: #f7f9fa; }
.kv td { text-align: left; }
.scroll { overflow-x: auto; max-width: 100%; }
p, h1, h2, h3 { overflow-wrap: anywhere; }  /* a long path breaks rather than widening a phone's page */
/* A two-panel figure shrunk to a phone's width is unreadable: there it keeps a legible size and
   pans inside its wrapper (the page itself never scrolls sideways). */
@media (max-width: 700px) { .plot img { max-width: none; width: 720px; } body { margin: 1em auto; } }
.kv td + td { overflow-wrap: anywhere; }  /* long paths and hashes wrap instead of widening */
"""


# ---- gathering ----------------------------------------------------------------------------
def _is_bundle(path: Path) -> bool:
    return (path / MANIFEST_NAME).is_file()


def _is_run(path: Path) -> bool:
    return (path / "config.json").is_file() and (path / "model.safetensors").is_file()


def source_run(bundle: Path, manifest: BundleManifest) -> tuple[Path | None, str]:
    """The checkpoint a bundle was exported from, if it is still on this machine, unchanged."""
    report = bundle / EXPORT_REPORT
    if not report.is_file():
        return None, f"{bundle} has no {EXPORT_REPORT} naming its source checkpoint"
    named = read_json(report, "export report").get("run")
    if not isinstance(named, str):
        return None, f"{EXPORT_REPORT} names no source checkpoint"
    # As recorded (absolute, or relative to where export ran), else beside the bundle.
    candidates = [Path(named), bundle.parent / Path(named).name]
    run = next((c for c in candidates if _is_run(c)), None)
    if run is None:
        return None, f"the source checkpoint {named} is not on this machine (pass it with --run)"
    if sha256_file(run / "model.safetensors") != manifest.source_checkpoint_sha256:
        return None, f"the checkpoint at {named} has changed since the export (sha256 differs); pass the right one with --run"
    return run, ""


def gather(source: str | Path, run_dir: str | Path | None = None, simulate: str | Path | None = None,
           explain: bool = True) -> dict[str, Any]:
    """Everything the page shows, as plain data (also what --json prints)."""
    source = Path(source)
    if not source.is_dir():
        raise ArtifactError(f"{source} does not exist; give a checkpoint (glonet train --out) or a bundle (glonet export --out)")
    info: dict[str, Any] = {"source": str(source), "notes": []}
    manifest = None
    if _is_bundle(source):
        manifest = BundleManifest.load(source)
        info["bundle"] = str(source)
        info["manifest"] = manifest.to_json()
        if (source / EXPORT_REPORT).is_file():
            info["export"] = read_json(source / EXPORT_REPORT, "export report")
        if run_dir is None:
            run_dir, why = source_run(source, manifest)
            if why:
                info["notes"].append(f"No block contributions or training curves: {why}.")
        elif _is_run(Path(run_dir)) and sha256_file(Path(run_dir) / "model.safetensors") != manifest.source_checkpoint_sha256:
            info["notes"].append(f"The checkpoint {run_dir} is not the one this bundle was exported from (its weights' "
                                 "sha256 differs from the manifest's): its sections describe another model.")
    elif _is_run(source):
        run_dir = source
    else:
        raise ConfigError(f"{source} is neither a bundle (no {MANIFEST_NAME}) nor a checkpoint (no config.json and "
                          "model.safetensors)")
    if run_dir is not None:
        info["run"] = _run_info(Path(run_dir))
        if explain:
            info["explain"] = _try_explain(Path(run_dir), info["notes"])
    sim_path = _simulate_path(source, simulate) if (manifest is not None or simulate is not None) else None
    if sim_path is not None:
        info["simulate"] = {"path": str(sim_path), "result": read_json(sim_path, "simulate result")}
    elif manifest is not None:
        # Said, not silently skipped: a simulation written elsewhere is easy to miss otherwise.
        info["notes"].append(NO_SIMULATION)
    from .environment import environment

    info["environment"] = environment()
    return info


def _run_info(run: Path) -> dict[str, Any]:
    if not _is_run(run):
        raise ArtifactError(f"--run {run} is not a checkpoint directory (needs config.json and model.safetensors)")
    info = {"path": str(run), "config": read_json(run / "config.json", "checkpoint config")}
    if (run / "metrics.json").is_file():
        info["metrics"] = read_json(run / "metrics.json", "checkpoint metrics")
    return info


def _try_explain(run: Path, notes: list[str]) -> dict[str, Any] | None:
    """Block contributions of a GloNet checkpoint; a note instead when they cannot be computed."""
    try:
        from .explain import SUPPORTED, explain_run

        model = read_json(run / "config.json", "checkpoint config").get("model")
        if model not in SUPPORTED:
            notes.append(f"No block contributions: {model} has no global sum (explain covers {', '.join(SUPPORTED)}).")
            return None
        return explain_run(run)
    except (GlonetError, ImportError) as exc:
        notes.append(f"Block contributions skipped: {exc}")
        return None


def _simulate_path(source: Path, given: str | Path | None) -> Path | None:
    if given is not None:
        path = Path(given)
        path = path / "simulate.json" if path.is_dir() else path
        if not path.is_file():
            raise ArtifactError(f"--sim {given}: no simulate.json there; run `glonet simulate ... --out DIR` first")
        return path
    pipeline_place = source.parent / "simulate" / "simulate.json"  # `glonet pipeline` work directory layout
    return pipeline_place if pipeline_place.is_file() else None


# ---- tables ---------------------------------------------------------------------------------
def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, int) and abs(v) >= 10000:
        return f"{v:,}"
    return str(v)


def _table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None, text_cols: Sequence[str] = (),
           row_class: str | None = None) -> str:
    if not rows:
        return '<p class="note">(nothing to show)</p>'
    columns = list(columns or dict.fromkeys(k for r in rows for k in r if not k.startswith("_")))
    cls = lambda c: ' class="text"' if c in text_cols else ""  # noqa: E731
    head = "".join(f"<th{cls(c)}>{html.escape(c)}</th>" for c in columns)
    body = []
    for r in rows:
        css = f' class="{row_class}"' if row_class and r.get(f"_{row_class}") else ""
        body.append(f"<tr{css}>" + "".join(f"<td{cls(c)}>{html.escape(_fmt(r.get(c)))}</td>" for c in columns) + "</tr>")
    # The wrapper scrolls sideways if a table is still wider than the screen (a phone): the page never does.
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def _kv(pairs: Sequence[tuple[str, Any]]) -> str:
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(_fmt(v))}</td></tr>" for k, v in pairs)
    return f'<div class="scroll"><table class="kv"><tbody>{rows}</tbody></table></div>'


def _img(png: bytes, alt: str) -> str:
    from .plots import data_uri

    return f'<div class="scroll plot"><img alt="{html.escape(alt)}" src="{data_uri(png)}"></div>'


def _p(text: str, cls: str = "") -> str:
    attr = f' class="{cls}"' if cls else ""
    return f"<p{attr}>{html.escape(text)}</p>"


# ---- sections -------------------------------------------------------------------------------
def _depth_rows(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    metric = manifest["metric_name"]
    rows = []
    for e in manifest["depths"]:
        row: dict[str, Any] = {"depth": e["depth"], "params": e["params"], "MACs": e["macs"]}
        for prec, vals in sorted(e.get("metrics", {}).items()):
            row[f"{prec} {metric}"] = vals.get(metric)
        for key, lat in sorted(e.get("latency_ms", {}).items()):
            row[f"p50 ms {key}"] = lat.get("p50")
        for key, mj in sorted(e.get("energy_mj", {}).items()):
            row[f"mJ {key}"] = mj
        rows.append(row)
    return rows


def _tradeoff_plot(manifest: dict[str, Any]) -> bytes:
    from .plots import finish, integer_x, new_figure

    metric, depths = manifest["metric_name"], manifest["depths"]
    latency_keys = sorted({k for e in depths for k in e.get("latency_ms", {})})
    energy_keys = sorted({k for e in depths for k in e.get("energy_mj", {})})
    panels = 2 + bool(latency_keys) + bool(energy_keys)
    fig, axes = new_figure(2, width=5.2, height=3.8, nrows=(panels + 1) // 2)
    ax_score, ax_cost, *rest = axes
    depth_axes = [ax_score, ax_cost]
    for prec in sorted({p for e in depths for p in e.get("metrics", {})}):
        pts = [(e["depth"], e["metrics"][prec][metric]) for e in depths if metric in e.get("metrics", {}).get(prec, {})]
        ax_score.plot(*zip(*pts), "o-", ms=4, label=prec)
    ax_score.set(xlabel="depth", ylabel=f"held-out {metric}", title="score per depth")
    ax_score.legend(fontsize=8, framealpha=0.85)
    if latency_keys:
        for key in latency_keys:
            pts = [(e["depth"], e["latency_ms"][key]["p50"]) for e in depths if key in e.get("latency_ms", {})]
            ax_cost.plot(*zip(*pts), "o-", ms=4, label=key)
        ax_cost.set(xlabel="depth", ylabel="p50 latency (ms)", title="latency per depth")
        ax_cost.legend(fontsize=8, framealpha=0.85)
        _tradeoff_panel(rest.pop(0), depths, latency_keys, metric)
    else:
        ax_cost.plot([e["depth"] for e in depths], [e["macs"] for e in depths], "o-", ms=4)
        ax_cost.set(xlabel="depth", ylabel="MACs per sample", title="compute per depth (no latency profiled yet)")
    if energy_keys:
        ax_energy = rest.pop(0)
        depth_axes.append(ax_energy)
        for key in energy_keys:
            pts = [(e["depth"], e["energy_mj"][key]) for e in depths if key in e.get("energy_mj", {})]
            ax_energy.plot(*zip(*pts), "o-", ms=4, label=key)
        ax_energy.set(xlabel="depth", ylabel="mJ per inference", title="energy per depth")
        ax_energy.legend(fontsize=8, framealpha=0.85)
    for ax in rest:
        ax.set_axis_off()
    for ax in depth_axes:
        integer_x(ax)
    return finish(fig)


def _tradeoff_panel(ax: Any, depths: list[dict[str, Any]], latency_keys: list[str], metric: str) -> None:
    """Score against latency, one line per target/precision, points labelled with their depth
    where a label fits without covering another (the depth table lists them all)."""
    from .plots import place_labels

    labels = []
    for key in latency_keys:
        prec = key.split("/")[-1]
        pts = [(e["latency_ms"][key]["p50"], e["metrics"][prec][metric], e["depth"]) for e in depths
               if key in e.get("latency_ms", {}) and metric in e.get("metrics", {}).get(prec, {})]
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", ms=4, label=key)
            labels += [(x, y, str(d)) for x, y, d in pts]
    ax.set(xlabel="p50 latency (ms)", ylabel=f"held-out {metric}", title="trade-off (labels: depth)")
    ax.legend(fontsize=8, framealpha=0.85)
    place_labels(ax, labels)


def _section_tradeoff(info: dict[str, Any]) -> str:
    m = info["manifest"]
    has_latency = any(e.get("latency_ms") for e in m["depths"])
    parts = [_img(_tradeoff_plot(m), "score, latency and energy per depth"), _table(_depth_rows(m))]
    if not has_latency:
        parts.append(_p("No latency in the manifest yet: `glonet profile` measures it per target and precision.", "note"))
    return "".join(parts)


def _section_family(info: dict[str, Any]) -> str:
    m = info["manifest"]
    rows = []
    for e in m["depths"]:
        arts = e.get("artifacts", [])
        rows.append({"depth": e["depth"], "params": e["params"], "MACs": e["macs"],
                     "artifacts": ", ".join(f"{a['format']}/{a['precision']} ({_fmt(a['bytes'])} B)" for a in arts),
                     "bytes": sum(a["bytes"] for a in arts)})
    parts = [_p(f"{len(m['depths'])} of {m['model']['depth']} depths exported, opset {m['opset']}, "
                f"source checkpoint sha256 {m['source_checkpoint_sha256'][:16]}…"),
             _table(rows, text_cols=("artifacts",))]
    if m.get("segments"):
        segs = [{"segment": s["index"], "blocks": f"{s['start_depth'] + 1}–{s['end_depth']}",
                 "inputs": ", ".join(s["inputs"]), "outputs": ", ".join(s["outputs"]),
                 "bytes": sum(a["bytes"] for a in s.get("artifacts", []))} for s in m["segments"]]
        parts += ["<h3>Segment chain (anytime inference)</h3>", _table(segs, text_cols=("inputs", "outputs"))]
    storage = info.get("export", {}).get("storage")
    if storage:
        parts += ["<h3>Disk, by layout</h3>", _kv([
            ("truncated graphs (one per depth)", f"{_fmt(storage.get('truncated_family_bytes'))} B"),
            ("same graphs, shared weights file", f"{_fmt(storage.get('shared_weights_bytes'))} B"),
            ("segment chain", f"{_fmt(storage.get('segments_bytes'))} B"),
            (f"deepest graph alone (depth {storage.get('full_graph_depth')})", f"{_fmt(storage.get('full_graph_bytes'))} B"),
        ])]
    if m.get("targets"):
        rows = [_target_row(name, t, m) for name, t in sorted(m["targets"].items())]
        parts += ["<h3>Compiled targets</h3>", _table(rows, text_cols=tuple(rows[0]))]
    return "".join(parts)


_VERSION = re.compile(r"\d+(\.\d+)+(-\d+)?")  # 2026.4.1-22982 of OpenVINO's long build string


def _target_row(name: str, target: dict[str, Any], manifest: dict[str, Any]) -> dict[str, Any]:
    """One readable row per compiled target (manifest.targets holds engine-specific settings: a
    reader wants where it runs, in which precisions, from how many files, built by what)."""
    precisions = target.get("precisions") or []
    subdir = target.get("subdir") or name
    arts = [a for e in manifest["depths"] + manifest.get("segments", []) for a in e.get("artifacts", [])
            if a.get("precision") in precisions]
    own = [a for a in arts if a["format"] == name or a["path"].startswith(f"{subdir}/")]
    # A target that runs the exported ONNX graphs (onnxruntime) builds no files of its own.
    onnx = [a for a in arts if a["format"] == "onnx"]
    files = f"{len(own)} {name} graphs" if own else f"{len(onnx)} ONNX graphs, run as exported"
    versions = [f"{k} {_VERSION.match(v).group(0)}" for k, v in sorted(target.items())
                if isinstance(v, str) and _VERSION.match(v)]
    if target.get("compiled_with"):
        versions.append(f"built by {target['compiled_with']}")
    return {"target": name, "device": target.get("device", "–"), "precisions": ", ".join(precisions) or "–",
            "depths": ", ".join(str(d) for d in target.get("depths", [])) or "–", "artifacts": files,
            "versions": "; ".join(versions) or "–"}


def _section_quantization(info: dict[str, Any]) -> str:
    m = info["manifest"]
    metric = m["metric_name"]
    precisions = sorted({p for e in m["depths"] for p in list(e.get("metrics", {})) + list(e.get("rejected", {}))
                         if p != "fp32"})
    if not precisions:
        return _p("Only fp32 graphs: `glonet quantize` adds int8 (and compile may add fp16) with their held-out "
                  "scores.", "note")
    rows = []
    for e in m["depths"]:
        fp32 = e.get("metrics", {}).get("fp32", {}).get(metric)
        row: dict[str, Any] = {"depth": e["depth"], f"fp32 {metric}": fp32}
        for prec in precisions:
            v = e.get("metrics", {}).get(prec, {}).get(metric)
            row[f"{prec} {metric}"] = v
            row[f"Δ {prec} (points)"] = None if v is None or fp32 is None else round(100 * (v - fp32), 2)
        rejected = e.get("rejected", {})
        row["rejected"] = "; ".join(f"{p}: {why}" for p, why in sorted(rejected.items())) or None
        row["_rejected"] = bool(rejected)
        rows.append(row)
    n_rejected = sum(r["_rejected"] for r in rows)
    return (_table(rows, text_cols=("rejected",), row_class="rejected")
            + _p(f"{n_rejected} depth(s) with a rejected precision: such graphs are not listed in the manifest and "
                 "never served." if n_rejected else "No precision was rejected.", "note"))


def _section_explain(info: dict[str, Any]) -> str:
    from .explain import plot

    ex = info["explain"]
    s = ex["summary"]
    return "".join([
        _p(f"Each block's share of the logit (the readout applied to that block's output alone, without bias), over "
           f"{ex['samples']} held-out samples. Deepest {s['quarter_blocks']} blocks: {s['deep_mean_share']:.2%} each; "
           f"shallowest {s['quarter_blocks']}: {s['shallow_mean_share']:.2%} each; 90 % of the logit is reached by "
           f"block {s['blocks_for_90pct_share']}. " + ("Deep blocks fade (self-regulation)." if s["deep_fades"]
                                                        else "Deep blocks do not fade in this model.")),
        _img(plot(ex), "per-block contribution norms and logit shares"),
    ])


def _training_plot(metrics: dict[str, Any]) -> bytes:
    from .plots import finish, integer_x, new_figure

    fig, (ax_cut, ax_curve) = new_figure(2, width=5.2, height=3.6)
    scores = sorted((int(k), v) for k, v in metrics["score_by_depth"].items())
    ax_cut.plot(*zip(*scores), ".-")
    ax_cut.set(xlabel="cut depth k", ylabel=f"held-out {metrics['metric']}", title="tunable precision: score at every cut")
    curve = metrics.get("curve") or []
    if curve:
        epochs = [c["epoch"] for c in curve]
        ax_curve.plot(epochs, [c["train_loss"] for c in curve], "-", label="train loss")
        ax_curve.set(xlabel="epoch", ylabel="train loss", title="training")
        twin = ax_curve.twinx()
        twin.plot(epochs, [c["val_score"] for c in curve], "g-", label=f"val {metrics['metric']}")
        twin.set_ylabel(f"val {metrics['metric']}")
        # One legend for both y axes, below the panel: inside it covered the curves' start.
        handles = ax_curve.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
        ax_curve.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, fontsize=8,
                        frameon=False)
        integer_x(ax_curve)
    else:
        ax_curve.set_axis_off()
    integer_x(ax_cut)
    return finish(fig)


def _section_training(info: dict[str, Any]) -> str:
    run = info["run"]
    cfg, metrics = run["config"], run.get("metrics")
    training = cfg.get("training", {})
    pairs = [("checkpoint", run["path"]), ("model", f"{cfg.get('model')} depth {cfg.get('depth')} width {cfg.get('width')}"),
             ("data", cfg.get("data", {}).get("dataset")),
             ("training", ", ".join(f"{k} {training[k]}" for k in ("epochs", "batch_size", "lr", "optimizer", "schedule",
                                                                   "cut_loss", "device") if k in training))]
    if not metrics:
        return _kv(pairs) + _p("The checkpoint has no metrics.json.", "note")
    best = metrics.get("best_depth")
    pairs += [("best depth", f"{best} ({metrics['metric']} {_fmt(metrics['score_by_depth'].get(str(best)))})"),
              ("seconds per epoch (mean)", metrics.get("mean_seconds_per_epoch"))]
    return _kv(pairs) + _img(_training_plot(metrics), "score at every cut depth and training curve")


def _section_environment(info: dict[str, Any]) -> str:
    env = info["environment"]
    pairs = [("report generated", f"{env['date_utc']} UTC by glonet-edge {__version__}"), ("platform", env["platform"]),
             ("python", env["python"]), ("CPU", f"{env['cpu']} ({env['cpu_cores']} usable cores)")]
    pairs += [(name, v) for name, v in env["versions"].items() if v]
    parts = ["<h3>This machine</h3>", _kv(pairs)]
    export = info.get("export")
    if export:
        pairs = [("producer", info["manifest"].get("producer")), ("exporter", export.get("exporter")),
                 *sorted((k, v) for k, v in export.get("versions", {}).items())]
        parts += ["<h3>Where the bundle was exported</h3>", _kv(pairs)]
    return "".join(parts)


def render(info: dict[str, Any]) -> str:
    """The HTML page for the data `gather` returned."""
    manifest, run = info.get("manifest"), info.get("run")
    model = manifest["model"] if manifest else run["config"]
    title = f"{model.get('model')} depth {model.get('depth')}"
    sections: list[tuple[str, str, str]] = []
    if manifest:
        sections += [("tradeoff", "Accuracy, latency and energy per depth", _section_tradeoff(info)),
                     ("family", "The exported family", _section_family(info)),
                     ("quantization", "Quantization", _section_quantization(info))]
        if manifest.get("exits"):
            from .adaptive import section

            sections.append(("adaptive", "Adaptive serving (early exit)", section(info)))
    if info.get("simulate"):
        from .power import section as power_section

        sections.append(("power", "Power policies (simulated)", power_section(info)))
    if info.get("explain"):
        sections.append(("explain", "Block contributions", _section_explain(info)))
    if run:
        sections.append(("training", "Training", _section_training(info)))
    sections.append(("environment", "Environment", _section_environment(info)))
    nav = "".join(f'<a href="#{sid}">{html.escape(name)}</a>' for sid, name, _ in sections)
    body = "".join(f'<section id="{sid}"><h2>{html.escape(name)}</h2>{content}</section>' for sid, name, content in sections)
    notes = "".join(_p(n, "note") for n in info["notes"])
    subtitle = (f"{'bundle' if manifest else 'checkpoint'} {info['source']} · {info['environment']['date_utc']} UTC")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>glonet-edge report: {html.escape(title)}</title><style>{STYLE}</style></head>"
            f"<body><h1>glonet-edge report: {html.escape(title)}</h1>{_p(subtitle, 'sub')}<nav>{nav}</nav>{notes}"
            f"{body}</body></html>\n")


def write_report(source: str | Path, out: str | Path, run_dir: str | Path | None = None,
                 simulate: str | Path | None = None, explain: bool = True) -> dict[str, Any]:
    """Gather, render and atomically write the page; returns what it shows."""
    info = gather(source, run_dir=run_dir, simulate=simulate, explain=explain)
    atomic_write_text(out, render(info))
    return info
