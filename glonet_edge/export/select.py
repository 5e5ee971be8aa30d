"""Which depths to export: "all", "auto" (a Pareto front of score against cost) or a list.

Pure functions of the numbers in metrics.json and the MACs per depth, so they are unit
tested without a model.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

from ..errors import ConfigError

DEFAULT_STEP = 0.005  # half a point of accuracy (or of R^2)


def pareto_depths(scores: Mapping[int, float], costs: Mapping[int, float], step: float = DEFAULT_STEP,
                  full_depth: int | None = None) -> list[int]:
    """The cheapest depth for every `step` of score, plus the full depth.

    Walk the depths from cheap to expensive and keep one when it beats the last kept score
    by at least `step`. The kept depths are then a Pareto front (more cost always buys at
    least `step` more score), and every depth left out is matched within `step` by a kept
    depth that costs no more. The cheapest depth is the start of the walk; nothing forces
    depth 1 otherwise. The full depth (default: the largest) is always added, even when
    it buys nothing: it is the reference the runtime's full-depth policy and the accuracy
    deltas of quantized graphs are measured against.
    """
    if not scores:
        raise ConfigError("no scores to choose depths from")
    if not step >= 0 or not math.isfinite(step):
        raise ConfigError(f"the score step must be a finite number >= 0, got {step}")
    missing = sorted(set(scores) - set(costs))
    if missing:
        raise ConfigError(f"no cost known for depths {missing}")
    bad = {d: s for d, s in scores.items() if not math.isfinite(s)}
    if bad:
        raise ConfigError(f"scores must be finite numbers, got {bad}")
    full = max(scores) if full_depth is None else full_depth
    kept: list[int] = []
    best = -math.inf
    # Ties in cost: the better score first, then the shallower depth.
    for d in sorted(scores, key=lambda d: (costs[d], -scores[d], d)):
        if not kept or scores[d] >= best + step:
            kept.append(d)
            best = scores[d]
    return sorted({*kept, full})


def parse_depths(spec: str) -> str | list[int]:
    """CLI form: "all", "auto" or a comma list such as "1,2,4,8"."""
    spec = spec.strip().lower()
    if spec in ("all", "auto"):
        return spec
    try:
        values = [int(v) for v in spec.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"--depths must be 'all', 'auto' or a comma list of ints like 1,2,4,8; got {spec!r}") from None
    if not values:
        raise ConfigError("--depths is empty; give 'all', 'auto' or a list like 1,2,4,8")
    return values


def resolve_depths(spec: str | Sequence[int], max_depth: int, scores: Mapping[int, float] | None = None,
                   costs: Mapping[int, float] | None = None, step: float = DEFAULT_STEP) -> list[int]:
    """The sorted depths to export for `spec`; "auto" needs scores and costs per depth."""
    if spec == "all":
        return list(range(1, max_depth + 1))
    if spec == "auto":
        if scores is None or costs is None:
            raise ConfigError("depths='auto' needs the score and cost of every depth")
        return pareto_depths(scores, costs, step, full_depth=max_depth)
    if isinstance(spec, str):
        raise ConfigError(f"depths must be 'all', 'auto' or a list of ints, got {spec!r}")
    values = list(spec)
    out_of_range = [d for d in values if isinstance(d, bool) or not isinstance(d, int) or not 1 <= d <= max_depth]
    if out_of_range or not values:
        raise ConfigError(f"depths {out_of_range or values} are not in 1..{max_depth} (the checkpoint's depth)")
    return sorted(set(values))
