"""Early exit: each input leaves the segment chain at the first check where it is sure.

A GloNet's running sum gives a prediction after every segment for the price of one head, so
an easy input can stop early and a hard one go on. Numpy only (the runtime imports this).

EXIT RULES (`confidence`: higher is surer; a row stops at a check when it is >= the threshold)
- "max-prob"  classification: the largest softmax probability;
- "margin"    classification: top-1 minus top-2 softmax probability;
- "delta"     regression: minus the largest change of the prediction over the last segment.
A row that stops keeps the prediction of the depth it stopped at. Checks happen every
`stride` segments (the cheap per-call work must not eat the saving) and at the deepest
segment allowed (the cap), where every remaining row stops.

THE GUARANTEE (`calibrate`). The validation split is cut, by a seeded permutation, into a
calibration part (2/3) and a held-out part. For each cap d and allowed drop a, the threshold
is chosen on the calibration part by Learn-then-Test fixed-sequence testing (Angelopoulos,
Bates et al., 2021): thresholds from a grid fixed in advance are tested from the safest
(never exit early) down, each with the Hoeffding-Bentkus p-value of H0 "risk > a", and the
last one rejected before the first that is not is kept. Per-sample loss, in [0, 1]:
- classification: 1 when the depth-d prediction is right and the early one wrong, so
  accuracy(d) - accuracy(adaptive) <= risk;
- regression: the rise of the sample's squared error over depth d's, in units of the split's
  mean squared deviation (so the R^2 drop <= risk), clipped to [0, 1]: the bound assumes no
  exit adds more than one variance of error to a single sample.
Assumption: calibration, held-out and served inputs are exchangeable (i.i.d. from one
distribution). Then, for each recorded point, with probability >= `confidence` over the
calibration draw, the expected risk, and so the expected drop from depth d, is <= a. The
held-out part measures what that gave on data the choice never saw (its drop and risk carry
sampling noise: with 120 held-out rows one row is 0.8 points); both figures are recorded.
With no loss observed the test passes only when (1 - a)^n <= 1 - confidence, so a drop a
needs n >= log(1 - confidence) / log(1 - a) calibration samples (`minimum_samples`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from .data import score
from .errors import ConfigError
from .manifest import _expect, _is_int, _is_number

SCHEMA_VERSION = 1
RULES = ("max-prob", "margin", "delta")
DEFAULT_MAX_DROPS = (0.005, 0.01, 0.02, 0.05)
DEFAULT_CONFIDENCE = 0.9
CALIBRATION_FRACTION = 2.0 / 3.0
METHOD = ("Learn-then-Test fixed-sequence testing over a fixed threshold grid, Hoeffding-Bentkus p-values; "
          "assumes exchangeable calibration, held-out and served data")
# Thresholds tried, safest first: exits need a probability within 1e-4 of certainty, then
# ever less (delta: a change below 1e-4 of the output scale, then ever more).
_GRID = np.logspace(-4.0, 0.0, 65)


def default_rule(task: str) -> str:
    return "max-prob" if task == "classification" else "delta"


def check_rule(rule: str, task: str) -> None:
    allowed = ("max-prob", "margin") if task == "classification" else ("delta",)
    if rule not in allowed:
        raise ConfigError(f"exit rule {rule!r} does not fit a {task} bundle; choose {' or '.join(allowed)}")


def confidence(rule: str, y: np.ndarray, previous: Optional[np.ndarray]) -> np.ndarray:
    """How sure each row of `y` (a batch of one segment's outputs) is; see the module doc."""
    if rule == "delta":
        if previous is None:  # nothing to compare with: never sure at the first segment
            return np.full(len(y), -np.inf)
        return -np.abs(y - previous).reshape(len(y), -1).max(axis=1)
    z = np.exp(y - y.max(axis=1, keepdims=True))
    p = z / z.sum(axis=1, keepdims=True)
    if rule == "max-prob" or p.shape[1] < 2:
        return p.max(axis=1)
    top = np.partition(p, -2, axis=1)
    return top[:, -1] - top[:, -2]


def exit_rows(rule: str, threshold: float, y: np.ndarray, previous: Optional[np.ndarray]) -> np.ndarray:
    """Mask of the rows whose rule fires at this check (the per-check work that `stride` amortises)."""
    return confidence(rule, y, previous) >= threshold


def threshold_grid(rule: str, scale: float = 1.0) -> np.ndarray:
    """The fixed sequence of thresholds, safest first (+inf: never exit before the cap)."""
    steps = -scale * _GRID if rule == "delta" else 1.0 - _GRID
    return np.concatenate([[np.inf], steps])


def minimum_samples(max_drop: float, confidence_level: float) -> int:
    """Calibration samples needed before a drop of `max_drop` can be certified at all."""
    return int(math.ceil(math.log(1.0 - confidence_level) / math.log(1.0 - max_drop)))


def hb_pvalue(risk: float, n: int, alpha: float) -> float:
    """Hoeffding-Bentkus p-value of H0 "expected loss > alpha" from the mean `risk` of n
    losses in [0, 1] (Bates et al. 2021, Proposition 3)."""
    if risk >= alpha:
        return 1.0
    hoeffding = math.exp(-n * _kl(risk, alpha))
    k = int(math.ceil(n * risk - 1e-9))
    i = np.arange(k + 1)
    log_pmf = (math.lgamma(n + 1) - np.array([math.lgamma(j + 1) + math.lgamma(n - j + 1) for j in i])
               + i * math.log(alpha) + (n - i) * math.log1p(-alpha))
    return min(1.0, hoeffding, math.e * float(np.exp(log_pmf).sum()))


def _kl(a: float, b: float) -> float:
    first = a * math.log(a / b) if a > 0 else 0.0
    return first + (1.0 - a) * math.log((1.0 - a) / (1.0 - b))


def fixed_sequence(risks: Sequence[float], n: int, alpha: float, delta: float) -> Optional[int]:
    """Index of the last hypothesis rejected before the first that is not; None if the
    first is not (then no threshold is certified)."""
    chosen = None
    for j, risk in enumerate(risks):
        if hb_pvalue(float(risk), n, alpha) > delta:
            break
        chosen = j
    return chosen


def first_exit(conf: np.ndarray, threshold: float) -> np.ndarray:
    """Per row, the column of its first check with confidence >= threshold; the last column
    (the cap) when none is."""
    hit = conf[:, :-1] >= threshold
    return np.where(hit.any(axis=1), hit.argmax(axis=1), conf.shape[1] - 1)


# ---- the record ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ExitPoint:
    """A certified threshold for a cap (deepest segment) and an allowed drop from it."""

    max_depth: int
    max_drop: float
    threshold: float
    calibration: Dict[str, float]  # risk (mean loss), drop, mean_depth on the calibration part
    heldout: Dict[str, Any]  # score, reference_score, drop, risk, mean_depth, mean_macs, exits on the held-out part

    def to_json(self) -> Dict[str, Any]:
        return {"max_depth": self.max_depth, "max_drop": self.max_drop, "threshold": self.threshold,
                "calibration": self.calibration, "heldout": self.heldout}

    @classmethod
    def from_json(cls, d: Any, where: str) -> "ExitPoint":
        _expect(isinstance(d, dict), f"{where}: a point must be an object")
        _expect(_is_int(d.get("max_depth")) and d["max_depth"] >= 1, f"{where}: max_depth must be an int >= 1")
        _expect(_is_number(d.get("max_drop")) and 0 < d["max_drop"] <= 1, f"{where}: max_drop must be in (0, 1]")
        _expect(_is_number(d.get("threshold")), f"{where}: threshold must be a finite number")
        for key in ("calibration", "heldout"):
            _expect(isinstance(d.get(key), dict), f"{where}: '{key}' must be an object")
        held = d["heldout"]
        _expect(all(_is_number(held.get(k)) for k in ("score", "reference_score", "drop", "risk", "mean_depth")),
                f"{where}: heldout needs numbers score, reference_score, drop, risk and mean_depth")
        _expect(held.get("mean_macs") is None or _is_number(held["mean_macs"]), f"{where}: bad heldout mean_macs")
        exits = held.get("exits")
        _expect(isinstance(exits, dict) and exits and all(k.isdigit() and _is_int(v) and v >= 0 for k, v in exits.items()),
                f"{where}: heldout 'exits' must map depths to row counts")
        return cls(d["max_depth"], float(d["max_drop"]), float(d["threshold"]), dict(d["calibration"]),
                   dict(d["heldout"]))


@dataclass(frozen=True)
class ExitCalibration:
    """Thresholds of one precision, with how and on what they were certified."""

    rule: str
    confidence: float
    checks: List[int]  # segment end depths where rows may stop (besides the cap)
    stride: int  # a check every `stride` segments
    chain_precision: str  # the segment chain whose outputs were calibrated
    calibration_samples: int
    heldout_samples: int
    points: List[ExitPoint] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)
    method: str = METHOD
    schema_version: int = SCHEMA_VERSION
    # {segment graph path: sha256} of the chain calibrated (provenance.py); {} in older bundles
    graphs: Dict[str, str] = field(default_factory=dict)

    def point_for(self, max_depth: int, allowed_drop: float) -> Optional[ExitPoint]:
        """The certified point with this cap and the largest drop <= allowed_drop, if any."""
        fits = [p for p in self.points if p.max_depth == max_depth and p.max_drop <= allowed_drop + 1e-12]
        return max(fits, key=lambda p: p.max_drop) if fits else None

    def to_json(self) -> Dict[str, Any]:
        return {"schema_version": self.schema_version, "rule": self.rule, "method": self.method,
                "confidence": self.confidence, "checks": list(self.checks), "stride": self.stride,
                "chain_precision": self.chain_precision, "calibration_samples": self.calibration_samples,
                "heldout_samples": self.heldout_samples, "points": [p.to_json() for p in self.points],
                "notes": list(self.notes), **({"graphs": dict(self.graphs)} if self.graphs else {})}

    @classmethod
    def from_json(cls, d: Any, where: str = "exits") -> "ExitCalibration":
        _expect(isinstance(d, dict), f"{where} must be an object")
        version = d.get("schema_version")
        _expect(_is_int(version) and version >= 1, f"{where}: schema_version must be an int >= 1")
        _expect(version <= SCHEMA_VERSION, f"{where}: schema_version {version} is newer than this glonet-edge "
                                           f"reads ({SCHEMA_VERSION}); upgrade glonet-edge or re-run the calibration")
        _expect(d.get("rule") in RULES, f"{where}: rule must be one of {', '.join(RULES)}")
        _expect(_is_number(d.get("confidence")) and 0 < d["confidence"] < 1, f"{where}: confidence must be in (0, 1)")
        checks = d.get("checks")
        _expect(isinstance(checks, list) and all(_is_int(c) and c >= 1 for c in checks),
                f"{where}: checks must be a list of depths")
        for key in ("stride", "calibration_samples", "heldout_samples"):
            _expect(_is_int(d.get(key)) and d[key] >= (1 if key == "stride" else 0), f"{where}: bad '{key}'")
        _expect(isinstance(d.get("chain_precision"), str), f"{where}: chain_precision must be a string")
        points = d.get("points")
        _expect(isinstance(points, list), f"{where}: points must be a list")
        notes = d.get("notes", [])
        _expect(isinstance(notes, list) and all(isinstance(n, str) for n in notes), f"{where}: notes must be strings")
        graphs = d.get("graphs", {})
        _expect(isinstance(graphs, dict) and all(isinstance(v, str) for v in graphs.values()),
                f"{where}: graphs must map segment graph paths to sha256 strings")
        return cls(d["rule"], float(d["confidence"]), list(checks), d["stride"], d["chain_precision"],
                   d["calibration_samples"], d["heldout_samples"],
                   [ExitPoint.from_json(p, f"{where}.points[{i}]") for i, p in enumerate(points)], list(notes),
                   str(d.get("method", METHOD)), version, dict(graphs))



# ---- calibration ---------------------------------------------------------------------------------
def calibration_size(n: int) -> int:
    """How many of n validation samples calibrate (the rest are the held-out check)."""
    return int(round(n * CALIBRATION_FRACTION))


def split_rows(n: int, seed: int = 0) -> Dict[str, np.ndarray]:
    """The validation rows that calibrate and the held-out rows that check."""
    order = np.random.default_rng(seed).permutation(n)
    return {"calibration": order[:calibration_size(n)], "heldout": order[calibration_size(n):]}


def feasible_drops(n: int, confidence_level: float, max_drops: Sequence[float]) -> List[float]:
    """The drops that n validation samples can certify at all (see `minimum_samples`)."""
    return [a for a in max_drops if calibration_size(n) >= minimum_samples(a, confidence_level)]


def choose_stride(segment_ms: Sequence[float], check_ms: float) -> int:
    """Segments between checks. A check costs `check_ms`; checking every s segments makes a
    row run (s - 1) / 2 segments past its exit on average, so per segment the overhead is
    check_ms / s + (s - 1) / 2 * t, smallest at s = sqrt(2 check_ms / t) (t: median segment)."""
    t = float(np.median(segment_ms))
    best = math.sqrt(2.0 * check_ms / t) if t > 0 else 1.0
    return int(min(len(segment_ms), max(1, round(best))))


def calibrate(outputs: Sequence[np.ndarray], y: np.ndarray, task: str, depths: Sequence[int], *,
              chain_precision: str, rule: Optional[str] = None, max_drops: Sequence[float] = DEFAULT_MAX_DROPS,
              confidence_level: float = DEFAULT_CONFIDENCE, stride: int = 1,
              segment_macs: Optional[Sequence[int]] = None, seed: int = 0) -> ExitCalibration:
    """Certify thresholds from the chain's prediction after every segment.

    outputs[j]: the chain's output at segment end depths[j] for every validation row; y: the
    labels (or targets). Raises ConfigError when the calibration part is too small for a
    requested drop at this confidence (the message names the minimum size)."""
    rule = rule or default_rule(task)
    _check_calibration_args(rule, task, max_drops, confidence_level, stride, len(outputs), len(depths), len(y))
    n, n_cal = len(y), calibration_size(len(y))
    parts = split_rows(n, seed)
    stacked = np.stack([np.asarray(o) for o in outputs])  # (segments, rows, outputs)
    conf = np.stack([confidence(rule, stacked[j], stacked[j - 1] if j else None) for j in range(len(depths))], axis=1)
    loss_table = _loss_table(task, stacked, y, parts["calibration"])
    scale = (float(np.std(stacked[-1][parts["calibration"]])) or 1.0) if rule == "delta" else 1.0
    grid = threshold_grid(rule, scale)
    cum_macs = np.cumsum(segment_macs) if segment_macs is not None else None
    check_idx = [j for j in range(len(depths)) if (j + 1) % stride == 0]
    ctx = _Context(task, stacked, y, conf, np.asarray(depths), cum_macs, parts, loss_table)
    points = []
    for cap in range(len(depths)):
        cols = [j for j in check_idx if j < cap] + [cap]
        if len(cols) < 2:
            continue
        cal = parts["calibration"]
        loss, cal_conf = loss_table(cap)[np.ix_(cal, cols)], conf[np.ix_(cal, cols)]
        risks = [float(loss[np.arange(n_cal), first_exit(cal_conf, t)].mean()) for t in grid]
        for a in max_drops:
            chosen = fixed_sequence(risks, n_cal, a, 1.0 - confidence_level)
            if chosen:  # None: nothing certified; 0: only "never exit early"
                points.append(ctx.point(cap, cols, a, float(grid[chosen]), risks[chosen]))
    notes = [] if points else ["no threshold could be certified: every early exit loses too much at these drops"]
    return ExitCalibration(rule, confidence_level, [int(depths[j]) for j in check_idx], stride, chain_precision,
                           n_cal, n - n_cal, points, notes)


def _check_calibration_args(rule: str, task: str, max_drops: Sequence[float], confidence_level: float, stride: int,
                            n_outputs: int, n_depths: int, n: int) -> None:
    check_rule(rule, task)
    if not max_drops or not all(0.0 < a < 1.0 for a in max_drops):
        raise ConfigError(f"max drops must be numbers in (0, 1) (0.01 = 1 point), got {list(max_drops)}")
    if not 0.0 < confidence_level < 1.0:
        raise ConfigError(f"confidence must be in (0, 1) (0.9 = 90%), got {confidence_level}")
    if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
        raise ConfigError(f"stride must be a positive int (segments between checks), got {stride!r}")
    if n_outputs != n_depths or n_depths < 1:
        raise ConfigError(f"one output per segment end is needed: {n_outputs} outputs for {n_depths} depths")
    for a in max_drops:
        need = minimum_samples(a, confidence_level)
        if calibration_size(n) < need:
            raise ConfigError(f"the calibration part has {calibration_size(n)} samples (2/3 of {n} validation "
                              f"samples); a max drop of {a:g} at confidence {confidence_level:g} needs at least "
                              f"{need} (a validation split of {int(math.ceil(need / CALIBRATION_FRACTION))}): use "
                              "more validation data, a larger --max-drops or a lower --confidence")


def _loss_table(task: str, stacked: np.ndarray, y: np.ndarray, cal: np.ndarray):
    """loss(cap)[row, j]: the loss (module doc) of answering at segment j instead of at cap."""
    if task == "classification":
        correct = (stacked.argmax(axis=2) == y[None, :]).T  # (rows, segments)
        return lambda cap: (correct[:, [cap]] & ~correct).astype(np.float64)
    err = ((stacked - y.reshape(1, len(y), -1)) ** 2).reshape(len(stacked), len(y), -1).sum(axis=2).T
    yc = y[cal].reshape(len(cal), -1)
    mean_sq_dev = float(((yc - yc.mean(axis=0)) ** 2).sum()) / len(cal) or 1.0
    return lambda cap: np.clip((err - err[:, [cap]]) / mean_sq_dev, 0.0, 1.0)


@dataclass
class _Context:
    """What every point's figures are computed from."""

    task: str
    stacked: np.ndarray
    y: np.ndarray
    conf: np.ndarray
    depths: np.ndarray
    cum_macs: Optional[np.ndarray]
    parts: Dict[str, np.ndarray]
    loss_table: Any

    def figures(self, rows: np.ndarray, cap: int, cols: List[int], threshold: float) -> Dict[str, Any]:
        seg = np.asarray(cols)[first_exit(self.conf[rows][:, cols], threshold)]
        adaptive = score(self.task, self.stacked[seg, rows], self.y[rows])
        reference = score(self.task, self.stacked[cap, rows], self.y[rows])
        out: Dict[str, Any] = {"score": round(adaptive, 6), "reference_score": round(reference, 6),
                               "drop": round(reference - adaptive, 6),
                               "risk": round(float(self.loss_table(cap)[rows, seg].mean()), 6),
                               "mean_depth": round(float(self.depths[seg].mean()), 4),
                               "mean_macs": None if self.cum_macs is None else round(float(self.cum_macs[seg].mean()), 1)}
        found, counts = np.unique(self.depths[seg], return_counts=True)
        out["exits"] = {str(int(d)): int(c) for d, c in zip(found, counts)}  # depth -> rows that stopped there
        return out

    def point(self, cap: int, cols: List[int], max_drop: float, threshold: float, risk: float) -> ExitPoint:
        cal = self.figures(self.parts["calibration"], cap, cols, threshold)
        held = self.figures(self.parts["heldout"], cap, cols, threshold)
        return ExitPoint(int(self.depths[cap]), float(max_drop), threshold,
                         {"risk": round(risk, 6), "drop": cal["drop"], "mean_depth": cal["mean_depth"]}, held)
