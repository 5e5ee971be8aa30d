"""Is INT8 actually faster here? `glonet profile` records p50 latency per target/precision (batch 1
in the manifest, every batch in BUNDLE/profile_<target>_<precision>.json). An INT8 graph that
profiled slower than FP32 for the same depth and batch is a deployment bug (the wrong flavour
for the engine, BENCHMARKS.md): `glonet inspect`, `glonet doctor BUNDLE` and the runtime say
so, and `Runtime.open(..., precision="auto")` serves the faster precision that passed accuracy.

Reads only the manifest and the profile JSON files: standard library only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class SlowInt8:
    """One (target, depth, batch) where int8 profiled slower than fp32."""

    target: str
    depth: int
    batch: int
    int8_ms: float
    fp32_ms: float

    def describe(self) -> str:
        return (f"{self.target}/int8 profiled slower than fp32 at depth {self.depth}, batch {self.batch}: "
                f"{self.int8_ms:.3f} ms vs {self.fp32_ms:.3f} ms ({self.int8_ms / self.fp32_ms:.2f}x)")


def profiled_p50(manifest: Any, bundle: str | Path | None, target: str, precision: str) -> dict[tuple[int, int], float]:
    """{(depth, batch): p50 ms}: the manifest's batch-1 records, plus the batch sweep of
    BUNDLE/profile_<target>_<precision>.json where it is readable."""
    key = f"{target}/{precision}"
    found = {(e.depth, int(e.latency_ms[key].get("batch", 1))): float(e.latency_ms[key]["p50"])
             for e in manifest.depths if "p50" in e.latency_ms.get(key, {})}
    path = Path(bundle) / f"profile_{target}_{precision}.json" if bundle is not None else None
    try:
        rows = json.loads(path.read_text())["rows"] if path is not None and path.is_file() else []
    except (OSError, ValueError, KeyError, TypeError):
        rows = []  # an unreadable sweep file only hides the other batches
    for r in rows if isinstance(rows, list) else []:
        if isinstance(r, dict) and all(isinstance(r.get(k), (int, float)) for k in ("depth", "batch", "p50")):
            found.setdefault((int(r["depth"]), int(r["batch"])), float(r["p50"]))
    return found


def targets_profiled(manifest: Any) -> list[str]:
    """Targets with an int8 latency record in the manifest."""
    return sorted({k.split("/")[0] for e in manifest.depths for k in e.latency_ms if k.endswith("/int8")})


def slower_int8(manifest: Any, bundle: str | Path | None = None, target: str | None = None) -> list[SlowInt8]:
    """Every (target, depth, batch) where both precisions are profiled and int8 is slower."""
    out = []
    for t in [target] if target else targets_profiled(manifest):
        int8 = profiled_p50(manifest, bundle, t, "int8")
        fp32 = profiled_p50(manifest, bundle, t, "fp32")
        out += [SlowInt8(t, d, b, ms, fp32[(d, b)]) for (d, b), ms in sorted(int8.items())
                if (d, b) in fp32 and ms > fp32[(d, b)]]
    return out


def choose_precision(manifest: Any, bundle: str | Path | None, target: str, servable: dict[str, bool]) -> tuple[str, str]:
    """(precision, why) for precision="auto": int8 only when it passed accuracy (`servable`:
    {precision: has non-rejected artifacts for this target}) and its batch-1 profile, summed over
    the depths profiled in both precisions, is faster than fp32's; fp32 otherwise."""
    if not servable.get("int8"):
        return "fp32", "auto: no int8 graph that passed accuracy control for this target"
    if not servable.get("fp32"):
        return "int8", "auto: int8 is the only precision compiled for this target"
    int8 = profiled_p50(manifest, None, target, "int8")
    fp32 = profiled_p50(manifest, None, target, "fp32")
    both = [k for k in int8 if k in fp32]
    if not both:
        return "fp32", f"auto: int8 not profiled against fp32 on {target} (run `glonet profile` for both)"
    t8, t32 = sum(int8[k] for k in both), sum(fp32[k] for k in both)
    choice = "int8" if t8 < t32 else "fp32"
    return choice, f"auto: {choice} (batch-1 p50 over {len(both)} depths: int8 {t8:.3f} ms, fp32 {t32:.3f} ms)"
