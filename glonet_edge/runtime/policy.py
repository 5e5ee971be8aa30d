"""Depth policy: PowerState × family table → depth (numpy-free).

THE RULE (`choose_depth`, a pure function):

1. Classify the power state into a tier, first match wins:
   - "hot"          throttled, or temp_c >= temp_throttle_c (left only below
                    temp_throttle_c - temp_band_c)
   - "battery-low"  on battery with battery_pct < battery_low_pct (left only at or above
                    battery_low_pct + battery_band_pct)
   - "battery"      on battery, or the power mode's budget <= economy_power_budget_w
   - "ac"           on AC, or nothing known ("unknown" behaves like AC: without information
                    the runtime is no worse than a plain full-accuracy deployment)
2. Each tier allows a drop from the best score in the table: ac_max_drop (default 0),
   max_drop (default 0.01 = 1 point) on battery, low_battery_max_drop (0.02) when low or hot.
   The admissible depths score >= best - drop, and >= accuracy_floor when one is set.
3. Among admissible depths within the latency and energy budgets, serve the CHEAPEST. So on
   AC with no allowed drop this is the best-scoring depth; on battery, the cheapest depth
   within a point of the best.
   Fallbacks: no depth reaches the floor → the best-scoring depth; none fits the budgets →
   the cheapest admissible one; both say so in the reason.
4. Hysteresis: the current depth is kept while it is still admissible with `score_margin`
   slack, fits the budgets, and the new choice is not cheaper by more than `cost_margin`
   (relative).

`DepthPolicy` adds state: tier hysteresis and a minimum dwell time between switches (waived
only for urgent switches: entering "hot", or a current depth that breaks a budget or floor).

COST: energy_mj when every depth has one, else latency_ms, else MACs. Measured values come
from the manifest (`glonet profile`); `estimate_costs` fills gaps with a CostModel, and each
row says whether its numbers are measured or estimated.
"""

from __future__ import annotations

import difflib
import math
import threading
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Callable, Sequence

from ..errors import ConfigError
from ..fileio import parse_json, read_text, tomllib
from ..provenance import metrics_key, profile_key, result_is_stale
from .power.base import PowerState

SCHEMA_VERSION = 1
OPTIONAL_SETTINGS = ("accuracy_floor", "temp_throttle_c", "economy_power_budget_w", "latency_budget_ms",
                     "energy_budget_mj")
_EPS = 1e-12


# ---- the family table ----------------------------------------------------------------------------
@dataclass(frozen=True)
class FamilyRow:
    depth: int
    score: float
    latency_ms: float | None  # p50 of one call at `batch` samples
    energy_mj: float | None  # per inference
    macs: int
    batch: int = 1
    latency_estimated: bool = False
    energy_estimated: bool = False

    @property
    def latency_per_sample_ms(self) -> float | None:
        return None if self.latency_ms is None else self.latency_ms / self.batch


def family_table(manifest: Any, target: str, precision: str) -> list[FamilyRow]:
    """One row per servable depth of `manifest` (a BundleManifest) for target/precision.

    Score: metrics[precision][metric], falling back to fp32 (quantized graphs are often
    scored only where it matters). Depths whose precision is `rejected` are left out, and so
    are depths with no score at all (the policy cannot trade what it cannot see).
    """
    key = f"{target}/{precision}"
    rows = []
    for entry in sorted(manifest.depths, key=lambda e: e.depth):
        if precision in entry.rejected:
            continue
        score = _fresh_score(entry, precision, manifest.metric_name)
        if score is None:
            score = _fresh_score(entry, "fp32", manifest.metric_name)
        if score is None:
            continue
        # A latency measured on an older graph says nothing about this one: estimated instead.
        measured = not result_is_stale(entry, profile_key(target, precision), precision)
        lat = (entry.latency_ms.get(key) if measured else None) or {}
        rows.append(FamilyRow(depth=entry.depth, score=float(score), latency_ms=lat.get("p50"),
                              energy_mj=entry.energy_mj.get(key) if measured else None, macs=int(entry.macs),
                              batch=max(1, int(lat.get("batch", 1)))))
    if not rows:
        raise ConfigError(f"no depth in the bundle can be served as {key}: every depth lacks a score "
                          f"({manifest.metric_name}) or is rejected for {precision}")
    return rows


def _fresh_score(entry: Any, precision: str, metric: str) -> float | None:
    """metrics[precision][metric], unless it was measured on another graph than the current one."""
    if result_is_stale(entry, metrics_key(precision), precision):
        return None
    return entry.metrics.get(precision, {}).get(metric)


# ---- estimated costs -----------------------------------------------------------------------------
@dataclass(frozen=True)
class CostModel:
    """Latency and energy of one inference where the manifest has no measurement.

    latency_ms = call_overhead_ms + depth × block_overhead_ms + macs / macs_per_s
    energy_mj  = latency_ms × active_power_w          (ms × W = mJ; the power the device draws
                                                       ABOVE its baseline while inferring)
    so joules per MAC = active_power_w / macs_per_s, plus a fixed and a per-block overhead:
    for small GloNets the per-graph-node dispatch cost, not arithmetic, dominates.
    """

    name: str
    device: str
    call_overhead_ms: float
    block_overhead_ms: float
    macs_per_s: float
    active_power_w: float
    source: str

    @property
    def joules_per_mac(self) -> float:
        return self.active_power_w / self.macs_per_s

    def latency_ms(self, depth: int, macs: int) -> float:
        return self.call_overhead_ms + depth * self.block_overhead_ms + macs / self.macs_per_s * 1e3

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "joules_per_mac": self.joules_per_mac}


COST_MODELS: dict[str, CostModel] = {
    "orin-nano-cpu": CostModel(
        name="orin-nano-cpu",
        device="Jetson Orin Nano 8GB, 15 W mode, one Cortex-A78AE core, ONNX Runtime CPU fp32, batch 1",
        call_overhead_ms=0.015, block_overhead_ms=0.002, macs_per_s=3.0e9, active_power_w=1.0,
        source=("Overheads: 7.5 us per call and 0.95 us per fc block (width 32) measured with ONNX Runtime "
                "1.32, 1 thread, on an AMD EPYC core, doubled for a 1.51 GHz A78AE (assumption). MAC rate: "
                "1.51 GHz (NVIDIA's 15 W mode CPU cap) x 8 fp32 MAC/cycle (2 x 128-bit NEON FMA) = 12 GMAC/s "
                "peak, 25% of peak assumed for batch-1 layers. Active power: 1.0 W above idle for one busy "
                "core, assumed (the 15 W mode budget covers 6 cores, GPU and SoC). Estimates, not "
                "measurements: run `glonet profile` on the device to replace them."),
    ),
    "x86-cpu": CostModel(
        name="x86-cpu",
        device="one x86-64 server core (AMD EPYC), ONNX Runtime 1.32 CPU fp32, 1 thread, batch 1",
        call_overhead_ms=0.0075, block_overhead_ms=0.00095, macs_per_s=1.0e10, active_power_w=5.0,
        source=("Overheads measured here (ONNX Runtime 1.32, 1 thread, fc blocks of width 32: 8.5 us at "
                "depth 1, 38 us at depth 32). MAC rate: 10 GMAC/s assumed (about 10% of an AVX2 core's "
                "peak at batch 1). Active power: 5 W per busy core, assumed. Estimates, not measurements."),
    ),
}
DEFAULT_COST_MODEL = "orin-nano-cpu"


def estimate_costs(table: Sequence[FamilyRow], model: CostModel) -> list[FamilyRow]:
    """Fill missing latency/energy with `model`'s estimates, flagging what was estimated.
    A measured latency is kept and used for the energy estimate (latency × active power)."""
    out = []
    for row in table:
        lat, lat_est = row.latency_ms, row.latency_estimated
        if lat is None:
            lat, lat_est = model.latency_ms(row.depth, row.macs) * row.batch, True
        energy, energy_est = row.energy_mj, row.energy_estimated
        if energy is None:
            energy, energy_est = lat / row.batch * model.active_power_w, True
        out.append(replace(row, latency_ms=lat, energy_mj=energy, latency_estimated=lat_est,
                           energy_estimated=energy_est))
    return out


def cost_key(table: Sequence[FamilyRow]) -> str:
    """What "cheaper" means for this table: energy_mj, latency_ms or macs (see module doc)."""
    if all(r.energy_mj is not None for r in table):
        return "energy_mj"
    if all(r.latency_ms is not None for r in table):
        return "latency_ms"
    return "macs"


def _cost_text(row: FamilyRow, key: str) -> str:
    if key == "energy_mj":
        return f"{row.energy_mj:.3g} mJ{' est.' if row.energy_estimated else ''}"
    if key == "latency_ms":
        return f"{row.latency_ms:.3g} ms{' est.' if row.latency_estimated else ''}"
    return f"{row.macs:,} MACs"


# ---- configuration -------------------------------------------------------------------------------
@dataclass(frozen=True)
class PolicyConfig:
    """Policy settings; scores and drops are in the metric's units (accuracy: 0.01 = 1 point)."""

    accuracy_floor: float | None = None  # absolute minimum score, in every tier
    ac_max_drop: float = 0.0
    max_drop: float = 0.01  # on battery
    low_battery_max_drop: float = 0.02  # battery low, or hot/throttled
    battery_low_pct: float = 20.0
    battery_band_pct: float = 5.0  # hysteresis: leave "battery-low" at battery_low_pct + band
    temp_throttle_c: float | None = 85.0
    temp_band_c: float = 5.0
    economy_power_budget_w: float | None = None  # power modes capped at or below this act like battery
    latency_budget_ms: float | None = None
    energy_budget_mj: float | None = None
    score_margin: float = 0.002  # hysteresis on score
    cost_margin: float = 0.10  # hysteresis on cost: switch only when >10% cheaper
    min_dwell_s: float = 10.0
    schema_version: int = SCHEMA_VERSION

    # -- (de)serialisation --
    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any, where: str = "policy config") -> "PolicyConfig":
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: must be a table/object of settings, got {type(data).__name__}")
        names = {f.name: f for f in fields(cls)}
        version = data.get("schema_version", SCHEMA_VERSION)
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise ConfigError(f"{where}: schema_version must be a positive integer, got {version!r}")
        if version > SCHEMA_VERSION:
            raise ConfigError(f"{where}: schema_version {version} is newer than this glonet-edge reads "
                              f"({SCHEMA_VERSION}); upgrade glonet-edge")
        values: dict[str, Any] = {}
        for key, value in data.items():
            if key == "schema_version":
                continue
            if not isinstance(key, str) or key not in names:
                close = difflib.get_close_matches(str(key), list(names), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(names)}"
                raise ConfigError(f"{where}: unknown setting {str(key)[:40]!r}{hint}")
            if key in OPTIONAL_SETTINGS and (value is None or (isinstance(value, str) and value.lower() in ("off", "none"))):
                values[key] = None  # TOML has no null: "off" switches an optional setting off
                continue
            # abs(int) < 2**1023 first: math.isfinite(10**400) raises OverflowError (JSON ints are unbounded)
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or (isinstance(value, int) and abs(value) >= 2**1023) or not math.isfinite(value):
                raise ConfigError(f"{where}: {key} must be a finite number, got {str(value)[:40]!r}")
            values[key] = float(value)
        config = cls(**values)
        config._check(where)
        return config

    def _check(self, where: str) -> None:
        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise ConfigError(f"{where}: {msg}")

        for name in ("ac_max_drop", "max_drop", "low_battery_max_drop"):
            need(0.0 <= getattr(self, name) <= 1.0, f"{name} must be within [0, 1] (0.01 = 1 point)")
        need(self.ac_max_drop <= self.max_drop <= self.low_battery_max_drop,
             "drops must not shrink as power gets scarcer: ac_max_drop <= max_drop <= low_battery_max_drop")
        need(0.0 <= self.battery_low_pct <= 100.0, "battery_low_pct must be within [0, 100]")
        for name in ("battery_band_pct", "temp_band_c", "score_margin", "min_dwell_s"):
            need(getattr(self, name) >= 0.0, f"{name} must be >= 0")
        need(0.0 <= self.cost_margin < 1.0, "cost_margin must be within [0, 1) (0.1 = 10%)")
        for name in ("latency_budget_ms", "energy_budget_mj", "economy_power_budget_w"):
            value = getattr(self, name)
            need(value is None or value > 0.0, f"{name} must be > 0 when set")

    @classmethod
    def from_toml_text(cls, text: str, where: str = "policy.toml") -> "PolicyConfig":
        """Settings at the top level or under a [policy] table; omitted ones keep defaults."""
        try:
            data = tomllib.loads(text)
        except (tomllib.TOMLDecodeError, RecursionError) as exc:  # RecursionError: absurdly nested arrays
            raise ConfigError(f"{where}: not valid TOML ({str(exc)[:200]})") from None
        if "policy" in data:
            rest = set(data) - {"policy", "schema_version"}
            if rest:
                raise ConfigError(f"{where}: put every setting under [policy]; found also {sorted(rest)}")
            policy = data["policy"]
            if not isinstance(policy, dict):
                raise ConfigError(f"{where}: 'policy' must be a table")
            data = {**({"schema_version": data["schema_version"]} if "schema_version" in data else {}), **policy}
        return cls.from_json(data, where)

    @classmethod
    def from_toml(cls, path: str | Path) -> "PolicyConfig":
        return cls.from_toml_text(read_text(path, "policy file", ConfigError), str(path))

    @classmethod
    def from_file(cls, path: str | Path) -> "PolicyConfig":
        """A policy file: JSON when it ends in .json, TOML otherwise; every failure is a ConfigError."""
        if Path(path).suffix != ".json":
            return cls.from_toml(path)
        return cls.from_json_text(read_text(path, "policy file", ConfigError), str(path))

    @classmethod
    def from_json_text(cls, text: str, where: str = "policy.json") -> "PolicyConfig":
        return cls.from_json(parse_json(text, where), where)


# ---- the pure rule -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Decision:
    depth: int
    reason: str
    tier: str = "ac"
    urgent: bool = False  # may bypass the dwell time (see DepthPolicy)


def classify(state: PowerState, config: PolicyConfig, previous_tier: str | None = None) -> tuple[str, str]:
    """(tier, human-readable why) for a power state; see the module docstring."""
    temp, limit = state.temp_c, config.temp_throttle_c
    if state.throttled:
        return "hot", "throttled" + (f" ({temp:.0f} °C)" if temp is not None else "")
    if temp is not None and limit is not None:
        if temp >= limit:
            return "hot", f"{temp:.0f} °C >= {limit:.0f} °C"
        if previous_tier == "hot" and temp > limit - config.temp_band_c:
            return "hot", f"still hot: {temp:.0f} °C > {limit - config.temp_band_c:.0f} °C"
    pct = state.battery_pct
    if state.on_battery:
        if pct is not None:
            low = config.battery_low_pct
            if pct < low:
                return "battery-low", f"on battery {pct:.0f}% < {low:.0f}%"
            if previous_tier == "battery-low" and pct < low + config.battery_band_pct:
                return "battery-low", f"on battery {pct:.0f}% < {low + config.battery_band_pct:.0f}% (recovering)"
            return "battery", f"on battery {pct:.0f}%"
        return "battery", "on battery"
    budget, economy = state.power_budget_w, config.economy_power_budget_w
    if budget is not None and economy is not None and budget <= economy:
        mode = f"power mode {state.power_mode} " if state.power_mode else ""
        return "battery", f"{mode}(budget {budget:g} W <= {economy:g} W)"
    if state.on_battery is False:
        return "ac", "on AC"
    return "ac", "power state unknown" if state.is_unknown else "not on battery"


def _drop_for(tier: str, config: PolicyConfig) -> float:
    return {"ac": config.ac_max_drop, "battery": config.max_drop}.get(tier, config.low_battery_max_drop)


def exit_budget(table: Sequence[FamilyRow], config: PolicyConfig, tier: str, depth: int) -> float:
    """The drop early exit may still take below `depth` in this tier: the tier's allowed drop
    minus what `depth` already gives up against the best score, and never below the floor."""
    row = next((r for r in table if r.depth == depth), None)
    if row is None:
        return 0.0
    budget = _drop_for(tier, config) - (max(r.score for r in table) - row.score)
    if config.accuracy_floor is not None:
        budget = min(budget, row.score - config.accuracy_floor)
    return max(0.0, budget)


def _fits(row: FamilyRow, config: PolicyConfig) -> bool:
    if config.latency_budget_ms is not None and row.latency_ms is not None and row.latency_ms > config.latency_budget_ms:
        return False
    if config.energy_budget_mj is not None and row.energy_mj is not None and row.energy_mj > config.energy_budget_mj:
        return False
    return True


def choose_depth(state: PowerState, table: Sequence[FamilyRow], config: PolicyConfig,
                 current_depth: int | None = None, *, previous_tier: str | None = None) -> Decision:
    """The documented rule (module docstring). Pure: same inputs, same decision."""
    if not table:
        raise ConfigError("choose_depth needs a non-empty family table")
    rows = sorted(table, key=lambda r: r.depth)
    key = cost_key(rows)
    cost = (lambda r: getattr(r, key))  # noqa: E731
    best = max(rows, key=lambda r: (r.score, -cost(r)))
    tier, why = classify(state, config, previous_tier)
    drop = _drop_for(tier, config)
    floor = best.score - drop
    if config.accuracy_floor is not None:
        floor = max(floor, config.accuracy_floor)
    admissible = [r for r in rows if r.score >= floor - _EPS]
    fitting = [r for r in admissible if _fits(r, config)]
    current = next((r for r in rows if r.depth == current_depth), None)

    if not admissible:
        target = best
        rule = f"no depth reaches the floor {floor:.4g}; serving the best score"
    elif not fitting:
        target = min(admissible, key=cost)
        rule = "no admissible depth fits the budget; cheapest admissible depth"
    else:
        target = min(fitting, key=lambda r: (cost(r), -r.score))
        rule = ("best score" if drop == 0 and config.accuracy_floor is None
                else f"cheapest depth within {drop * 100:.1f} pt of best ({best.score:.4g})")
        if config.accuracy_floor is not None and config.accuracy_floor > best.score - drop:
            rule = f"cheapest depth scoring >= {config.accuracy_floor:.4g}"
    reason = f"{why}: {rule} → depth {target.depth} ({target.score:.4g}, {_cost_text(target, key)})"

    # Hysteresis: stay put while the current depth is still (nearly) as good a choice.
    if current is not None and current.depth != target.depth and fitting \
            and current.score >= floor - config.score_margin - _EPS and _fits(current, config) \
            and cost(target) >= cost(current) * (1.0 - config.cost_margin):
        reason = (f"{why}: {rule}; staying at depth {current.depth} ({current.score:.4g}, "
                  f"{_cost_text(current, key)}) within hysteresis of depth {target.depth}")
        return Decision(current.depth, reason, tier)

    urgent = current is not None and current.depth != target.depth and (
        (tier == "hot" and previous_tier != "hot")
        or not _fits(current, config)
        or (config.accuracy_floor is not None and current.score < config.accuracy_floor))
    return Decision(target.depth, reason, tier, urgent)


# ---- the stateful wrapper ------------------------------------------------------------------------
class DepthPolicy:
    """`choose_depth` plus tier memory and a minimum dwell time; thread-safe.

    The clock is injectable (seconds, monotonic) so simulations and tests control time.
    """

    def __init__(self, table: Sequence[FamilyRow], config: PolicyConfig | None = None,
                 clock: Callable[[], float] = time.monotonic, initial_depth: int | None = None) -> None:
        if not table:
            raise ConfigError("DepthPolicy needs a non-empty family table")
        self.table = sorted(table, key=lambda r: r.depth)
        self.config = config or PolicyConfig()
        self.clock = clock
        self.depth: int | None = initial_depth
        self.tier: str | None = None
        self.switches = 0
        self.last_decision: Decision | None = None
        self._switched_at: float | None = None
        self._lock = threading.Lock()

    def update(self, state: PowerState) -> Decision:
        with self._lock:
            wanted = choose_depth(state, self.table, self.config, self.depth, previous_tier=self.tier)
            now = self.clock()
            decision = wanted
            if self.depth is None:
                self.depth, self._switched_at = wanted.depth, now
            elif wanted.depth != self.depth:
                since = now - (self._switched_at if self._switched_at is not None else -math.inf)
                if since < self.config.min_dwell_s and not wanted.urgent:
                    decision = Decision(self.depth, f"holding depth {self.depth} for the minimum dwell "
                                        f"({self.config.min_dwell_s - since:.0f} s left; wants {wanted.depth}: "
                                        f"{wanted.reason})", wanted.tier)
                else:
                    self.depth, self._switched_at = wanted.depth, now
                    self.switches += 1
            self.tier = wanted.tier
            self.last_decision = decision
            return decision
