"""`glonet pipeline glonet.toml`: train → export → quantize → compile → profile → simulate → report.

Olive-style: one config file, a list of named passes, each reading and writing files in one
work directory. Every pass has a fingerprint: the sha256 of its own config section chained
with the fingerprint of the pass before it (and, for train, nothing else). A pass whose
fingerprint matches the last successful run, and whose outputs are still the ones it left,
is skipped; a pass that failed is simply run again (each pass writes atomically, so a failure
leaves the previous outputs intact) — that is how a failed pipeline resumes.

    [pipeline]                       # workdir (default: the config file's directory / "glonet-out")
    workdir = "glonet-out"
    [train]      model = "glonet-fc"  depth = 32  dataset = "digits"  epochs = 40 ...
    [export]     depths = "all"  segments = true
    [quantize]   method = "ort"  calib_size = 512  max_drop = 0.005   # any QuantizeSettings field
    [compile]    targets = ["openvino", "onnxruntime"]  precisions = ["fp32", "int8"]
    [profile]    targets = [...]  precisions = [...]  batches = [1, 8]  iterations = 50
    [simulate]   trace = "orin_nano_battery"  battery_wh = 99
    [report]     out = "report.html"
A pass whose section is absent is not run (train and export are always required).
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

from . import __version__
from .errors import ConfigError
from .fileio import atomic_write_json, read_json, sha256_file, tomllib
from .quantize.settings import QuantizeSettings

STAGES = ("train", "export", "quantize", "compile", "profile", "simulate", "report")
STATE_FILE = "pipeline_state.json"
DEMO_CONFIG = Path(__file__).parent / "configs" / "demo.toml"

_KNOWN_KEYS: dict[str, set[str]] = {
    "pipeline": {"workdir"},
    "train": {"model", "depth", "width", "dataset", "epochs", "batch_size", "lr", "optimizer", "schedule",
              "weight_decay", "cut_loss", "seed", "val_fraction", "device", "options", "threads"},
    "export": {"depths", "segments", "opset", "shared_weights"},
    "quantize": set(QuantizeSettings.field_names()),
    "compile": {"targets", "precisions", "device", "segments"},
    "profile": {"targets", "precisions", "batches", "iterations", "warmup"},
    "simulate": {"trace", "battery_wh", "target", "precision", "rate_hz", "cost_model"},
    "report": {"out"},
}


_ANNOTATION_KINDS = {"str": "str", "str | None": "str", "int": "int", "float": "number", "bool": "bool"}


def _setting_kinds(settings_class: type) -> dict[str, str]:
    """{field: value kind} of a settings dataclass, read off its (string) annotations."""
    return {f.name: _ANNOTATION_KINDS[f.type] for f in fields(settings_class)}


# Value types, checked when the config is read so a typo fails now, not after a long train pass.
_KEY_TYPES: dict[str, str] = {
    **_setting_kinds(QuantizeSettings),
    **dict.fromkeys(("workdir", "model", "dataset", "optimizer", "schedule", "device", "trace", "target",
                     "precision", "cost_model", "out"), "str"),
    **dict.fromkeys(("depth", "width", "epochs", "batch_size", "seed", "threads", "opset", "iterations", "warmup"), "int"),
    **dict.fromkeys(("lr", "weight_decay", "cut_loss", "val_fraction", "battery_wh", "rate_hz"), "number"),
    **dict.fromkeys(("segments", "shared_weights"), "bool"),
    **dict.fromkeys(("targets", "precisions"), "list[str]"),
    "batches": "list[int]", "depths": "depths", "options": "table",
}
_TYPE_NAMES = {"str": "a string", "int": "an integer", "number": "a number", "bool": "true or false",
               "list[str]": "a list of strings", "list[int]": "a list of integers", "table": "a table",
               "depths": "'all', 'auto', a comma list such as '1,2,4' or a list of integers"}


def _has_type(value: Any, kind: str) -> bool:
    is_int = lambda v: isinstance(v, int) and not isinstance(v, bool)  # noqa: E731
    return {"str": lambda: isinstance(value, str),
            "int": lambda: is_int(value),
            "number": lambda: is_int(value) or isinstance(value, float),
            "bool": lambda: isinstance(value, bool),
            "list[str]": lambda: isinstance(value, list) and all(isinstance(v, str) for v in value),
            "list[int]": lambda: isinstance(value, list) and all(is_int(v) for v in value),
            "depths": lambda: isinstance(value, str) or (isinstance(value, list) and all(is_int(v) for v in value)),
            "table": lambda: isinstance(value, dict)}[kind]()


@dataclass
class PipelineConfig:
    sections: dict[str, dict[str, Any]]
    workdir: Path
    source: str = "<config>"

    @classmethod
    def from_toml(cls, path: str | Path, workdir: str | Path | None = None) -> "PipelineConfig":
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"pipeline config {path} not found; see `glonet pipeline --help` for the format")
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError, RecursionError) as exc:
            raise ConfigError(f"pipeline config {path} is not valid TOML: {str(exc)[:200]}") from exc
        except OSError as exc:
            raise ConfigError(f"pipeline config {path} is unreadable: {exc}") from exc
        config = cls.from_dict(data, Path(workdir) if workdir else path.parent / "glonet-out", str(path))
        if not workdir and "workdir" in data.get("pipeline", {}):
            config.workdir = path.parent / data["pipeline"]["workdir"]
        return config

    @classmethod
    def from_dict(cls, data: dict[str, Any], workdir: str | Path, source: str = "<config>") -> "PipelineConfig":
        unknown = sorted(set(data) - set(_KNOWN_KEYS))
        if unknown:
            raise ConfigError(f"{source}: unknown section(s) {unknown}; known: {sorted(_KNOWN_KEYS)}")
        for name, section in data.items():
            if not isinstance(section, dict):
                raise ConfigError(f"{source}: [{name}] must be a table")
            bad = sorted(set(section) - _KNOWN_KEYS[name])
            if bad:
                raise ConfigError(f"{source}: unknown key(s) {bad} in [{name}]; known: {sorted(_KNOWN_KEYS[name])}")
        for required in ("train", "export"):
            if required not in data:
                raise ConfigError(f"{source}: the [{required}] section is required")
        for name, section in data.items():
            for key, value in section.items():
                kind = _KEY_TYPES.get(key)
                if kind is not None and not _has_type(value, kind):
                    raise ConfigError(f"{source}: [{name}] {key} must be {_TYPE_NAMES[kind]}, got {str(value)[:40]!r}")
        return cls({k: v for k, v in data.items() if k != "pipeline"}, Path(workdir), source)

    def stages(self) -> list[str]:
        return [s for s in STAGES if s in self.sections]


@dataclass
class StageResult:
    name: str
    status: str  # "ran" | "skipped" | "failed"
    seconds: float
    summary: str = ""
    outputs: dict[str, Any] = field(default_factory=dict)


class Pipeline:
    def __init__(self, config: PipelineConfig, progress: bool = True, log: Callable[[str], None] | None = None):
        self.config = config
        self.workdir = config.workdir
        self.run_dir = self.workdir / "run"
        self.bundle_dir = self.workdir / "bundle"
        self.progress = progress
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.state_path = self.workdir / STATE_FILE

    # ---- fingerprints -----------------------------------------------------------------------
    def _fingerprint(self, stage: str, previous: str) -> str:
        blob = json.dumps({"stage": stage, "config": self.config.sections.get(stage, {}), "previous": previous,
                           "version": __version__}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()

    def _output_digest(self, stage: str) -> str | None:
        """What a stage left on disk, so edits or deletions after it force a re-run. The bundle
        passes share one manifest, so they share one digest: the manifest after the last of them."""
        path = {"train": self.run_dir / "model.safetensors", "simulate": self.workdir / "simulate" / "simulate.json",
                "report": self._report_path()}.get(stage, self.bundle_dir / "manifest.json")
        return sha256_file(path) if path.is_file() else None

    @staticmethod
    def _digest_key(stage: str) -> str:
        return stage if stage in ("train", "simulate", "report") else "bundle"

    def _load_state(self) -> dict[str, Any]:
        if not self.state_path.is_file():
            return {}
        try:
            state = read_json(self.state_path, "pipeline state")
        except Exception:  # a broken state file only costs a re-run
            return {}
        return state if isinstance(state, dict) and isinstance(state.get("digests", {}), dict) else {}

    # ---- running ------------------------------------------------------------------------------
    def run(self, force: bool = False) -> list[StageResult]:
        self.workdir.mkdir(parents=True, exist_ok=True)
        state = {} if force else self._load_state()
        passes, digests = state.setdefault("passes", {}), state.setdefault("digests", {})
        stages = self.config.stages()
        results: list[StageResult] = []
        previous, rerun = "", False
        for i, stage in enumerate(stages, start=1):
            fp = self._fingerprint(stage, previous)
            previous = fp
            recorded = passes.get(stage, {})
            key = self._digest_key(stage)
            unchanged = recorded.get("fingerprint") == fp and digests.get(key) == self._output_digest(stage)
            if not rerun and unchanged:
                self.log(f"[{i}/{len(stages)}] {stage:<9} skipped (inputs unchanged since {recorded.get('finished', '?')})")
                results.append(StageResult(stage, "skipped", 0.0, recorded.get("summary", "")))
                continue
            rerun = True  # every pass after one that ran depends on its new outputs
            self.log(f"[{i}/{len(stages)}] {stage:<9} running...")
            start = time.perf_counter()
            try:
                summary, outputs = getattr(self, f"_stage_{stage}")(self.config.sections[stage])
            except BaseException:
                for later in stages[i - 1:]:
                    passes.pop(later, None)
                atomic_write_json(self.state_path, state)
                self.log(f"[{i}/{len(stages)}] {stage:<9} FAILED after {time.perf_counter() - start:.1f} s; "
                         "fix the cause and run the pipeline again: finished stages are skipped")
                raise
            seconds = time.perf_counter() - start
            passes[stage] = {"fingerprint": fp, "summary": summary, "seconds": round(seconds, 3),
                             "finished": time.strftime("%Y-%m-%d %H:%M:%S"), "outputs": outputs}
            digests[key] = self._output_digest(stage)
            atomic_write_json(self.state_path, state)
            self.log(f"[{i}/{len(stages)}] {stage:<9} done in {seconds:.1f} s: {summary}")
            results.append(StageResult(stage, "ran", seconds, summary, outputs))
        return results

    # ---- the passes ---------------------------------------------------------------------------
    def _stage_train(self, cfg: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        from .train.trainer import TrainSettings, train_run

        settings = TrainSettings(**{k: cfg[k] for k in ("epochs", "batch_size", "lr", "optimizer", "schedule",
                                                          "weight_decay", "cut_loss", "seed", "device", "threads") if k in cfg})
        _, metrics = train_run(cfg.get("model", "glonet-fc"), int(cfg.get("depth", 32)), cfg.get("dataset", "digits"),
                               self.run_dir, width=int(cfg.get("width", 32)), options=cfg.get("options", {}),
                               settings=settings, val_fraction=float(cfg.get("val_fraction", 0.2)),
                               progress=self.progress)
        best = metrics.best_depth
        return (f"{cfg.get('model', 'glonet-fc')} depth {cfg.get('depth', 32)}: best {metrics.metric} "
                f"{metrics.score_by_depth[str(best)]:.4f} at depth {best}"), {"run": str(self.run_dir)}

    def _stage_export(self, cfg: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        from .export import export_bundle

        depths = cfg.get("depths", "all")
        manifest = export_bundle(self.run_dir, self.bundle_dir, depths=depths, opset=int(cfg.get("opset", 17)),
                                 segments=bool(cfg.get("segments", True)),
                                 shared_weights=bool(cfg.get("shared_weights", False)), progress=self.progress)
        return (f"{len(manifest.depths)} depths {manifest.depth_values()[:6]}{'...' if len(manifest.depths) > 6 else ''}"
                f", {len(manifest.segments)} segments"), {"bundle": str(self.bundle_dir)}

    def _stage_quantize(self, cfg: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        from .quantize import quantize_bundle

        settings = QuantizeSettings(**cfg)
        result = quantize_bundle(self.bundle_dir, settings, progress=self.progress)
        rejected = result.get("rejected") or {}
        return (f"int8 ({settings.method}) for {len(result.get('depths', []))} depths"
                + (f", {len(rejected)} rejected" if rejected else "")), {}

    def _stage_compile(self, cfg: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        from .targets.compile import compile_bundle

        done = []
        for target in cfg.get("targets", ["onnxruntime"]):
            compile_bundle(self.bundle_dir, target, precisions=cfg.get("precisions", ["fp32"]),
                           device=cfg.get("device"), segments=bool(cfg.get("segments", True)), progress=self.progress)
            done.append(target)
        return f"{', '.join(done)} × {', '.join(cfg.get('precisions', ['fp32']))}", {}

    def _stage_profile(self, cfg: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        from .targets.profile import profile_bundle

        done = []
        for target in cfg.get("targets", ["onnxruntime"]):
            for precision in cfg.get("precisions", ["fp32"]):
                profile_bundle(self.bundle_dir, target, precision, batches=cfg.get("batches", [1]),
                               iterations=int(cfg.get("iterations", 50)), warmup=int(cfg.get("warmup", 5)),
                               progress=self.progress)
                done.append(f"{target}/{precision}")
        return f"latency per depth for {', '.join(done)}", {}

    def _stage_simulate(self, cfg: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        from .runtime.policy import DEFAULT_COST_MODEL
        from .runtime.simulate import simulate_bundle

        out = self.workdir / "simulate"
        result = simulate_bundle(self.bundle_dir, cfg.get("trace", "orin_nano_battery"), out,
                                 battery_wh=cfg.get("battery_wh"), target=cfg.get("target", "onnxruntime"),
                                 precision=cfg.get("precision", "fp32"), rate_hz=cfg.get("rate_hz"),
                                 cost_model=cfg.get("cost_model", DEFAULT_COST_MODEL))
        cmp = result.get("comparison") or {}
        ratio = cmp.get("per_charge_ratio_vs_full_depth", cmp.get("inferences_ratio_vs_full_depth"))
        summary = (f"power-aware {ratio:.2f}x the inferences of full depth, "
                   f"{cmp.get('mean_score_delta_pts_vs_full_depth', 0):+.2f} pt mean score") if ratio else "done"
        return summary, {"simulate": str(out / "simulate.json")}

    def _report_path(self) -> Path:
        return self.workdir / self.config.sections.get("report", {}).get("out", "report.html")

    def _stage_report(self, cfg: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        from .report.report import write_report

        out = self._report_path()
        write_report(self.bundle_dir, out, run_dir=self.run_dir)
        return f"{out}", {"report": str(out)}
