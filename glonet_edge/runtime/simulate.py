"""Replay a power trace against a depth family and compare depth policies (numpy-free).

The simulation model (time steps, per-depth costs, load, baseline draw, the simulated
battery, the adaptive policy) and what its numbers mean: docs/simulate.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple, Sequence

from ..errors import ConfigError
from ..exits import ExitCalibration
from .policy import (DEFAULT_COST_MODEL, CostModel, Decision, DepthPolicy, FamilyRow, PolicyConfig, estimate_costs,
                     exit_budget)
from .power.base import PowerState
from .power.trace import Trace

POLICIES = ("power-aware", "full-depth", "min-depth")
ADAPTIVE = "adaptive"
MAX_TIMELINE_POINTS = 1000
MAX_LOGGED_SWITCHES = 200


class _FixedDepth:
    """Baseline policies: always the same depth."""

    def __init__(self, depth: int, label: str) -> None:
        self.depth, self.label, self.switches = depth, label, 0

    def update(self, state: PowerState) -> Decision:
        return Decision(self.depth, self.label, "-")


@dataclass
class _Clock:
    t: float = 0.0

    def __call__(self) -> float:
        return self.t


class Served(NamedTuple):
    """What one step serves: the cost and score per inference, and the mean depth reached."""

    row: FamilyRow
    mean_depth: float


class _Adaptive:
    """Power-aware decisions, each served with the certified early exit in force (docs/simulate.md)."""

    def __init__(self, table: Sequence[FamilyRow], config: PolicyConfig, clock: _Clock, exits: ExitCalibration,
                 cost_model: CostModel, segment_ends: Sequence[int]) -> None:
        self.policy = DepthPolicy(table, config, clock=clock)
        self.by_depth = {r.depth: r for r in table}
        self.exits, self.cost_model, self.segment_ends = exits, cost_model, sorted(segment_ends)
        self._served: dict[tuple[int, str], Served] = {}

    def update(self, state: PowerState) -> Decision:
        return self.policy.update(state)

    def serve(self, decision: Decision) -> Served:
        key = (decision.depth, decision.tier)
        if key not in self._served:
            self._served[key] = self._adaptive_row(*key)
        return self._served[key]

    def _adaptive_row(self, cap: int, tier: str) -> Served:
        row = self.by_depth[cap]
        point = self.exits.point_for(cap, exit_budget(self.policy.table, self.policy.config, tier, cap))
        if point is None or not all(int(d) in self.by_depth for d in point.heldout["exits"]):
            return Served(row, float(cap))
        shares = {int(d): n / sum(point.heldout["exits"].values()) for d, n in point.heldout["exits"].items()}
        latency = energy = 0.0
        for depth, share in shares.items():
            exit_row = self.by_depth[depth]
            calls = sum(1 for end in self.segment_ends if end <= depth)
            chain_ms = exit_row.latency_per_sample_ms + (calls - 1) * self.cost_model.call_overhead_ms
            latency += share * chain_ms
            energy += share * exit_row.energy_mj * chain_ms / exit_row.latency_per_sample_ms
        macs = point.heldout["mean_macs"] if point.heldout.get("mean_macs") is not None else row.macs
        return Served(replace(row, score=row.score - point.heldout["drop"], latency_ms=latency, energy_mj=energy,
                              macs=int(macs), batch=1), point.heldout["mean_depth"])


def _make_policy(name: str, table: Sequence[FamilyRow], config: PolicyConfig, clock: _Clock,
                 adaptive: dict[str, Any] | None = None):
    if name == "power-aware":
        return DepthPolicy(table, config, clock=clock)
    if name == ADAPTIVE and adaptive is not None:
        return _Adaptive(table, config, clock, **adaptive)
    if name == "full-depth":
        return _FixedDepth(max(r.depth for r in table), "always the deepest exported depth")
    if name == "min-depth":
        return _FixedDepth(min(r.depth for r in table), "always the shallowest exported depth")
    raise ConfigError(f"unknown policy {name!r}; known: {', '.join(POLICIES)}"
                      + (f", {ADAPTIVE} (for a bundle with exit thresholds)" if adaptive is None else f", {ADAPTIVE}"))


class _Step(NamedTuple):
    """What one time step runs: inferences, seconds, inference and baseline energy (J)."""

    n: float
    dt: float
    e_inf: float
    e_base: float

    def scaled(self, f: float) -> "_Step":
        return _Step(self.n * f, self.dt * f, self.e_inf * f, self.e_base * f)


class _Battery:
    """The simulated battery (docs/simulate.md): the level the policy sees, drained step by step."""

    def __init__(self, battery_wh: float, first: PowerState) -> None:
        self.capacity_j = battery_wh * 3600.0
        self.level_j = self.capacity_j * (first.battery_pct if first.battery_pct is not None else 100.0) / 100.0
        self.taken_j = 0.0

    @property
    def pct(self) -> float:
        return 100.0 * self.level_j / self.capacity_j

    def drain(self, step: _Step) -> tuple[_Step, bool]:
        """Take the step's energy; when the battery empties inside it, keep the part that ran.
        Returns the step that ran and whether the battery is now empty."""
        energy = step.e_inf + step.e_base
        emptied = energy >= self.level_j
        if emptied:
            step = step.scaled(self.level_j / energy if energy > 0 else 0.0)
            energy = self.level_j
        self.level_j -= energy
        self.taken_j += energy
        return step, emptied


@dataclass
class _Tally:
    """Running totals of one policy's simulation; `result` turns them into its simulate.json entry."""

    elapsed: float = 0.0
    n_total: float = 0.0
    n_battery: float = 0.0
    score_sum: float = 0.0
    depth_sum: float = 0.0
    e_inference: float = 0.0
    e_baseline: float = 0.0
    on_battery_s: float = 0.0
    current: int | None = None
    empty_at: float | None = None
    time_at: dict[int, float] = field(default_factory=dict)
    n_at: dict[int, float] = field(default_factory=dict)
    samples: list[tuple[float, int, float | None, str]] = field(default_factory=list)
    switches: list[dict[str, Any]] = field(default_factory=list)
    switch_times: list[float] = field(default_factory=list)

    def decided(self, decision: Decision) -> None:
        """Log a depth switch (the first MAX_LOGGED_SWITCHES with their reasons)."""
        if self.current is not None and decision.depth != self.current:
            self.switch_times.append(self.elapsed)
            if len(self.switches) < MAX_LOGGED_SWITCHES:
                self.switches.append({"t_s": round(self.elapsed, 3), "from": self.current, "to": decision.depth,
                                      "reason": decision.reason})
        self.current = decision.depth

    def add(self, step: _Step, served: Served, on_battery: bool, pct: float | None, tier: str) -> None:
        r = served.row
        if on_battery:
            self.n_battery += step.n
            self.on_battery_s += step.dt
        self.n_total += step.n
        self.score_sum += step.n * r.score
        self.depth_sum += step.n * served.mean_depth
        self.e_inference += step.e_inf
        self.e_baseline += step.e_base
        self.time_at[r.depth] = self.time_at.get(r.depth, 0.0) + step.dt
        self.n_at[r.depth] = self.n_at.get(r.depth, 0.0) + step.n
        self.samples.append((self.elapsed, r.depth, pct, tier))
        self.elapsed += step.dt

    def result(self, battery: _Battery | None) -> dict[str, Any]:
        n_total, e_total = self.n_total, self.e_inference + self.e_baseline
        gaps = [b - a for a, b in zip(self.switch_times, self.switch_times[1:])]
        per_charge = (int(self.n_battery * battery.capacity_j / battery.taken_j)
                      if battery is not None and battery.taken_j > 0 else None)
        return {
            "inferences": int(n_total),
            "mean_score": self.score_sum / n_total if n_total else 0.0,
            "energy_j": self.e_inference,
            "depth_switches": len(self.switch_times),
            "total_energy_j": e_total,
            "baseline_energy_j": self.e_baseline,
            "energy_per_inference_mj": 1000.0 * e_total / n_total if n_total else None,
            "mean_depth": self.depth_sum / n_total if n_total else None,
            "simulated_s": self.elapsed,
            "on_battery_s": self.on_battery_s,
            "battery_empty": self.empty_at is not None,
            "battery_empty_at_s": self.empty_at,
            "inferences_on_battery": int(self.n_battery),
            "inferences_per_charge": per_charge,
            "min_time_between_switches_s": min(gaps) if gaps else None,
            "time_at_depth_s": {str(d): self.time_at[d] for d in sorted(self.time_at)},
            "inferences_at_depth": {str(d): int(self.n_at[d]) for d in sorted(self.n_at)},
            "switches": self.switches,
            "timeline": _downsample(self.samples),
        }


def _seen_state(row: PowerState, battery: _Battery | None) -> PowerState:
    """The state the policy sees: with a simulated battery, its level (and on battery unless
    the trace says otherwise), else the trace row as it is."""
    pct = battery.pct if battery is not None else row.battery_pct
    on_battery = row.on_battery if row.on_battery is not None else (True if battery is not None else None)
    return replace(row, battery_pct=pct, on_battery=on_battery)


def _next_time(trace: Trace, i: int, t: float, step_s: float, past_end: bool) -> float:
    """Never step across a row boundary; land on it exactly so float drift cannot stall time."""
    return t + step_s if past_end or trace.times[i + 1] - t > step_s else trace.times[i + 1]


def _step_work(r: FamilyRow, row: PowerState, dt: float, rate_hz: float | None) -> _Step:
    """Inferences in `dt` (back to back, or `rate_hz` capped by throughput) and their energy."""
    latency_s = r.latency_per_sample_ms / 1000.0
    n = dt / latency_s if rate_hz is None else min(rate_hz * dt, dt / latency_s)
    return _Step(n, dt, n * r.energy_mj / 1000.0, (row.power_w or 0.0) * dt)


def simulate_policy(name: str, table: Sequence[FamilyRow], trace: Trace, config: PolicyConfig, *,
                    battery_wh: float | None = None, rate_hz: float | None = None, step_s: float = 1.0,
                    max_sim_s: float = 7 * 86400.0, adaptive: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run one policy over the trace; `table` must have latency and energy for every row.
    adaptive: exits, cost_model and segment_ends for the adaptive policy (docs/simulate.md)."""
    by_depth = {r.depth: r for r in table}
    clock = _Clock()
    policy = _make_policy(name, table, config, clock, adaptive)
    serve = getattr(policy, "serve", lambda d: Served(by_depth[d.depth], float(d.depth)))
    battery = _Battery(battery_wh, trace.states[0]) if battery_wh else None
    tally = _Tally()
    t = trace.start_s
    while True:
        i = trace.index_at(t)
        past_end = t >= trace.times[-1]
        row = trace.states[i]
        draining = battery is not None and row.on_battery is not False
        if past_end and (battery is None or not draining or tally.elapsed >= max_sim_s):
            break
        state = _seen_state(row, battery)
        clock.t = tally.elapsed
        decision = policy.update(state)
        served = serve(decision)
        tally.decided(decision)
        t_next = _next_time(trace, i, t, step_s, past_end)
        step = _step_work(served.row, row, t_next - t, rate_hz)
        emptied = False
        if draining:
            step, emptied = battery.drain(step)
        if emptied:
            tally.empty_at = tally.elapsed + step.dt
        tally.add(step, served, draining, state.battery_pct, decision.tier)
        if emptied:
            break
        t = t_next
    return tally.result(battery)


def _downsample(samples: list[tuple[float, int, float | None, str]]) -> dict[str, list]:
    """Depth over time for the JSON and the plot: every depth change is kept, plus an evenly
    spaced subset of the other steps, at most MAX_TIMELINE_POINTS in all."""
    if not samples:
        return {"t_s": [], "depth": [], "battery_pct": [], "tier": []}
    every = max(1, math.ceil(len(samples) / MAX_TIMELINE_POINTS))
    keep = [s for k, s in enumerate(samples)
            if k % every == 0 or k == len(samples) - 1 or s[1] != samples[k - 1][1]]
    if len(keep) > 2 * MAX_TIMELINE_POINTS:  # a flapping policy: evenly thin what is left
        keep = keep[:: math.ceil(len(keep) / MAX_TIMELINE_POINTS)]
    return {"t_s": [round(s[0], 3) for s in keep], "depth": [s[1] for s in keep],
            "battery_pct": [None if s[2] is None else round(s[2], 3) for s in keep], "tier": [s[3] for s in keep]}


def run_simulation(table: Sequence[FamilyRow], trace: Trace, config: PolicyConfig | None = None, *,
                   cost_model: CostModel, battery_wh: float | None = None, rate_hz: float | None = None,
                   step_s: float = 1.0, max_sim_s: float = 7 * 86400.0, policies: Sequence[str] | None = None,
                   exits: ExitCalibration | None = None, segment_ends: Sequence[int] = ()) -> dict[str, Any]:
    """Simulate every policy over the trace; returns the simulate.json body (without file paths).
    With `exits` (and the chain's `segment_ends`) the adaptive policy runs too, by default."""
    config = config or PolicyConfig()
    if policies is None:
        policies = POLICIES + ((ADAPTIVE,) if exits is not None else ())
    for name, value in (("battery_wh", battery_wh), ("rate_hz", rate_hz)):
        if value is not None and not (math.isfinite(value) and value > 0):
            raise ConfigError(f"{name} must be a positive number, got {value}")
    if not (math.isfinite(step_s) and step_s > 0):
        raise ConfigError(f"step_s must be a positive number, got {step_s}")
    if trace.duration_s <= 0 and battery_wh is None:
        raise ConfigError(f"trace {trace.name} spans 0 s (one row); give --battery-wh to hold its state "
                          "until the battery is empty, or a trace with more rows")
    costed = estimate_costs(table, cost_model)
    adaptive = None if exits is None else {"exits": exits, "cost_model": cost_model, "segment_ends": segment_ends}
    bad = [r.depth for r in costed if not (r.latency_ms > 0 and r.energy_mj >= 0)]
    if bad:
        raise ConfigError(f"depths {bad} have a non-positive latency or negative energy in the manifest; "
                          "re-run `glonet profile`")
    notes = []
    if any(r.energy_estimated or r.latency_estimated for r in costed):
        notes.append(f"costs partly or wholly ESTIMATED with cost model '{cost_model.name}' "
                     f"({cost_model.device}); run `glonet profile` on the device to measure them")
    if all(s.power_w is None for s in trace.states):
        notes.append("the trace has no power_w: device baseline taken as 0 W (inference energy only)")
    if battery_wh is None:
        notes.append("no --battery-wh: policies run the trace's duration and see its battery_pct; "
                     "inferences_per_charge is not computed")
    result: dict[str, Any] = {
        "schema_version": 1,
        "trace": {"name": trace.name, "rows": len(trace), "duration_s": trace.duration_s,
                  "columns": trace.columns, "provenance": trace.provenance},
        "battery_wh": battery_wh,
        "rate_hz": rate_hz,
        "load": "back-to-back (throughput)" if rate_hz is None else f"{rate_hz:g} inferences/s",
        "step_s": step_s,
        "policy_config": config.to_json(),
        "cost_model": cost_model.to_json(),
        "family": [{"depth": r.depth, "score": r.score, "macs": r.macs, "latency_ms": r.latency_ms,
                    "batch": r.batch, "energy_mj": r.energy_mj,
                    "latency_source": "estimated" if r.latency_estimated else "measured",
                    "energy_source": "estimated" if r.energy_estimated else "measured"} for r in costed],
        "cost_source": ("measured" if not any(r.energy_estimated or r.latency_estimated for r in costed)
                        else "estimated" if all(r.energy_estimated for r in costed) else "mixed"),
        "policies": {name: simulate_policy(name, costed, trace, config, battery_wh=battery_wh, rate_hz=rate_hz,
                                           step_s=step_s, max_sim_s=max_sim_s, adaptive=adaptive) for name in policies},
        "notes": notes,
    }
    result["comparison"] = _compare(result["policies"])
    return result


def _compare(policies: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Power-aware against full depth, and adaptive against power-aware: the acceptance numbers."""
    pa, full = policies.get("power-aware"), policies.get("full-depth")
    if not pa or not full:
        return {}
    out = _ratios(pa, full, "full_depth")
    if ADAPTIVE in policies:
        out[ADAPTIVE] = _ratios(policies[ADAPTIVE], pa, "power_aware")
    return out


def _ratios(policy: dict[str, Any], baseline: dict[str, Any], name: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        f"inferences_ratio_vs_{name}": policy["inferences"] / baseline["inferences"] if baseline["inferences"] else None,
        f"mean_score_delta_pts_vs_{name}": 100.0 * (policy["mean_score"] - baseline["mean_score"]),
    }
    if policy["inferences_per_charge"] and baseline["inferences_per_charge"]:
        out[f"per_charge_ratio_vs_{name}"] = policy["inferences_per_charge"] / baseline["inferences_per_charge"]
    return out


def plot_simulation(result: dict[str, Any], path: str | Path) -> str | None:
    """Depth over time per policy (and the simulated battery) as a PNG. Returns None, with
    nothing written, when matplotlib is not installed (it is an optional extra)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return None
    from ..fileio import atomic_write_bytes
    from ..report.power import power_plot  # the report's drawing: one style per policy, legends outside

    atomic_write_bytes(path, power_plot(result))
    return str(path)


def simulate_bundle(bundle: str | Path, trace: str | Path, out: str | Path, *, battery_wh: float | None = None,
                    policy: str | Path | None = None, target: str = "onnxruntime", precision: str = "fp32",
                    rate_hz: float | None = None, step_s: float = 1.0, cost_model: str = DEFAULT_COST_MODEL) -> dict[str, Any]:
    """`glonet simulate`: run every policy over a trace for a bundle; writes OUT/simulate.json
    (+ simulate.png) and returns the result."""
    from ..fileio import atomic_write_json
    from ..manifest import BundleManifest
    from .policy import COST_MODELS, family_table
    from .power.trace import load_trace, resolve_trace

    if cost_model not in COST_MODELS:
        raise ConfigError(f"unknown cost model {cost_model!r}; known: {', '.join(COST_MODELS)}")
    manifest = BundleManifest.load(bundle)
    table = family_table(manifest, target, precision)
    loaded = load_trace(resolve_trace(str(trace)))
    config = PolicyConfig.from_file(policy) if policy else PolicyConfig()
    exits = manifest.exits.get(precision)
    result = run_simulation(table, loaded, config, cost_model=COST_MODELS[cost_model], battery_wh=battery_wh,
                            rate_hz=rate_hz, step_s=step_s, exits=exits,
                            segment_ends=[s.end_depth for s in manifest.segments])
    result.update(bundle=str(Path(bundle)), target=target, precision=precision, metric=manifest.metric_name)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plot = plot_simulation(result, out / "simulate.png")
    result["plot"] = Path(plot).name if plot else None
    if plot is None:
        result["notes"].append("matplotlib is not installed: no plot (pip install glonet-edge[report])")
    atomic_write_json(out / "simulate.json", result)
    return result
