"""`glonet profile`: per-depth latency (p50/p90, warm-up excluded) at batch 1 and a batch sweep,
and energy per inference where a meter is readable.

Writes manifest depths[*].latency_ms["<target>/<precision>"] = {"p50", "p90", "batch": 1} and
energy_mj["<target>/<precision>"] (batch 1), plus the whole sweep in
BUNDLE/profile_<target>_<precision>.json.

Energy meters are plain callables returning a cumulative energy counter in microjoules
(`read_energy_uj() -> float | None`): Intel RAPL (/sys/class/powercap/intel-rapl:0/energy_uj,
wrap-around handled) and NVML (nvmlDeviceGetTotalEnergyConsumption, mJ -> uJ) are built in and
probed by `energy_reader("auto")`; pass any other callable (e.g. a runtime.power source) to
`profile_bundle(energy=...)`. The counter measures the whole package / board, so the figure is
"energy spent while this model ran", idle power included: compare depths, not absolute numbers.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..progress import progress_bar
from ..errors import ConfigError
from ..fileio import atomic_write_json
from ..manifest import BundleManifest
from ..provenance import built_from, profile_key, stamp
from . import get_target, load_artifact

RAPL_ROOT = Path("/sys/class/powercap/intel-rapl:0")
EnergyReader = Callable[[], "float | None"]


# ---- energy meters (small and injectable) -------------------------------------------------------
def rapl_reader(root: str | Path = RAPL_ROOT) -> EnergyReader | None:
    """Cumulative package energy in uJ from Intel RAPL, unwrapped; None if unreadable."""
    root = Path(root)
    path = root / "energy_uj"
    try:
        first = float(path.read_text())
    except (OSError, ValueError):
        return None
    try:
        wrap = float((root / "max_energy_range_uj").read_text())
    except (OSError, ValueError):
        wrap = 0.0
    state = {"last": first, "offset": 0.0}

    def read() -> float | None:
        try:
            v = float(path.read_text())
        except (OSError, ValueError):
            return None
        if v < state["last"] and wrap:
            state["offset"] += wrap  # the counter wrapped around
        state["last"] = v
        return v + state["offset"]

    return read


def nvml_reader(index: int = 0) -> EnergyReader | None:
    """Cumulative GPU energy in uJ from NVML (Volta+); None without pynvml / a GPU."""
    try:
        import pynvml  # type: ignore

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
    except Exception:
        return None

    def read() -> float | None:
        try:
            return float(pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)) * 1000.0  # mJ -> uJ
        except Exception:
            return None

    return read


def energy_reader(spec: Any = "auto", target: str = "") -> tuple[EnergyReader | None, str]:
    """'auto' probes NVML (for tensorrt) then RAPL; 'none' disables; a callable is used as is."""
    if spec in (None, False, "none"):
        return None, "none"
    if callable(spec):
        return spec, getattr(spec, "__name__", "custom")
    if spec == "rapl":
        return rapl_reader(), "rapl"
    if spec == "nvml":
        return nvml_reader(), "nvml"
    if spec != "auto":
        raise ConfigError(f"unknown energy meter {spec!r}; use auto, rapl, nvml or none")
    order = [("nvml", nvml_reader), ("rapl", rapl_reader)] if target == "tensorrt" else [("rapl", rapl_reader), ("nvml", nvml_reader)]
    for name, make in order:
        r = make()
        if r is not None:
            return r, name
    return None, "none"


# ---- timing --------------------------------------------------------------------------------------
def time_calls(fn: Callable[[], Any], iterations: int, warmup: int) -> np.ndarray:
    """Per-call wall times in ms after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    times = np.empty(iterations)
    for i in range(iterations):
        t0 = time.perf_counter()
        fn()
        times[i] = (time.perf_counter() - t0) * 1000.0
    return times


def summarize(times: np.ndarray) -> dict[str, float]:
    return {"p50": float(np.percentile(times, 50)), "p90": float(np.percentile(times, 90)),
            "mean": float(times.mean()), "min": float(times.min())}


def parse_batches(value: str | Sequence[int]) -> list[int]:
    try:
        items = [int(b) for b in (value.split(",") if isinstance(value, str) else value) if str(b).strip()]
    except ValueError as exc:
        raise ConfigError(f"--batches must be comma-separated positive ints, got {value!r}") from exc
    if not items or any(b < 1 for b in items):
        raise ConfigError(f"--batches must be comma-separated positive ints, got {value!r}")
    return sorted(set(items) | {1})


def depth_artifact(entry: Any, target: Any, precision: str):
    art = target.serving_artifact(entry, precision)
    if art is None:
        if precision in getattr(entry, "rejected", {}):
            raise ConfigError(f"depth {entry.depth}: {precision} was rejected ({entry.rejected[precision]})")
        raise ConfigError(f"depth {entry.depth} has no {target.name}/{precision} artifact; run "
                          f"`glonet compile BUNDLE --target {target.name} --precision {precision}` first")
    return art


def _servable_depths(manifest: BundleManifest, depths: Sequence[int] | None,
                     precision: str) -> tuple[list[int], dict[int, str]]:
    """The selected depths that have a servable artifact, and {depth: why not} for the rest."""
    selected = list(depths) if depths else manifest.depth_values()
    skipped = {d: manifest.depth(d).rejected[precision] for d in selected if precision in manifest.depth(d).rejected}
    selected = [d for d in selected if d not in skipped]
    if not selected:
        raise ConfigError(f"no depth has a servable {precision} artifact (all rejected: {skipped})")
    return selected, skipped


def measure(model: Any, feeds: dict[str, np.ndarray], iterations: int, warmup: int,
            reader: EnergyReader | None) -> dict[str, Any]:
    """Latency of `run` and of the raw engine call on one batch; energy per call when a meter reads."""
    b = len(next(iter(feeds.values())))
    e0 = reader() if reader else None
    t0 = time.perf_counter()
    times = time_calls(lambda: model.run(feeds), iterations, warmup)
    wall = time.perf_counter() - t0
    e1 = reader() if reader else None
    raw = model.raw_callable()
    raw_times = time_calls(lambda: raw(feeds), iterations, warmup)
    row = {"batch": b, **summarize(times), "raw_p50": float(np.percentile(raw_times, 50)),
           "per_sample_ms": float(np.percentile(times, 50)) / b}
    if e0 is not None and e1 is not None and e1 >= e0:
        row["energy_mj"] = (e1 - e0) / 1000.0 / (iterations + warmup)  # warm-up + timed calls, per call
        row["energy_window_s"] = wall
    return row


def _save_latency(bundle_dir: Path, measured: BundleManifest, graphs: dict[int, str | None], key: str) -> None:
    """Only the manifest changes (an atomic rewrite of the current one; artifacts untouched).
    Each result records the graph it was measured on (`graphs`: depth -> sha256), so a
    later re-quantize or re-compile from another graph makes it stale, never silently reused."""
    fresh = BundleManifest.load(bundle_dir)
    for d, sha in graphs.items():
        src, dst = measured.depth(d), fresh.depth(d)
        dst.latency_ms[key] = src.latency_ms[key]
        if key in src.energy_mj:
            dst.energy_mj[key] = src.energy_mj[key]
        stamp(dst, profile_key(*key.split("/")), sha)
    fresh.save(bundle_dir)


def profile_bundle(bundle_dir: str | Path, target: str, precision: str, batches: Sequence[int] = (1, 8, 32),
                   iterations: int = 100, warmup: int = 10, device: str | None = None,
                   depths: Sequence[int] | None = None, energy: Any = "auto", threads: int | None = None,
                   progress: bool = True, seed: int = 0) -> dict[str, Any]:
    t = get_target(target)
    t.require()
    t.check_precision(precision)
    if iterations < 1 or warmup < 0:
        raise ConfigError(f"--iterations must be >= 1 and --warmup >= 0, got {iterations} / {warmup}")
    batches = parse_batches(batches)
    bundle_dir = Path(bundle_dir)
    manifest = BundleManifest.load(bundle_dir)
    selected, skipped = _servable_depths(manifest, depths, precision)
    reader, meter = energy_reader(energy, t.name)
    key = f"{t.name}/{precision}"
    x_all = np.random.default_rng(seed).normal(size=(max(batches), *manifest.input_shape)).astype(np.float32)
    load_opts: dict[str, Any] = {"device": device, **({"threads": threads} if threads else {})}
    # all depths compiled/loaded once, as the runtime does; then measured one after another
    artifacts = {d: depth_artifact(manifest.depth(d), t, precision) for d in selected}
    models = {d: load_artifact(bundle_dir, a, t, holder=manifest.depth(d), **load_opts)
              for d, a in artifacts.items()}
    bar = progress_bar(len(selected) * len(batches), f"profile {key}", "run", progress)
    rows: list[dict[str, Any]] = []
    for d in selected:
        entry = manifest.depth(d)
        with models[d] as model:
            for b in batches:
                feeds = {model.input_names[0]: np.ascontiguousarray(x_all[:b])}
                rows.append({"depth": d, **measure(model, feeds, iterations, warmup, reader if b == 1 else None)})
                if b == 1:
                    entry.latency_ms[key] = {"p50": rows[-1]["p50"], "p90": rows[-1]["p90"], "batch": 1}
                    if "energy_mj" in rows[-1]:
                        entry.energy_mj[key] = rows[-1]["energy_mj"]
                if bar is not None:
                    bar.update(1)
    if bar is not None:
        bar.close()
    _save_latency(bundle_dir, manifest, {d: built_from(a) for d, a in artifacts.items()}, key)
    result = {"bundle": str(bundle_dir), "target": t.name, "precision": precision, "device": device or t.default_device,
              "iterations": iterations, "warmup": warmup, "batches": batches, "energy_meter": meter,
              "target_info": t.describe(), "rows": rows,
              "skipped": {str(d): f"{precision} rejected: {why}" for d, why in skipped.items()}}
    out = bundle_dir / f"profile_{t.name}_{precision}.json"
    atomic_write_json(out, result)
    result["path"] = str(out)
    return result
