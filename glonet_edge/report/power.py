"""The report's power section: the policies `glonet simulate` compared, and their depth and
battery over the trace.

simulate.json holds ~16 numbers per policy; the table keeps the ones a reader compares
policies by (how many inferences, how good, at what energy, how steady) and formats them.
The plot is drawn again from the JSON timelines (not copied from simulate.png) so that
curves that lie on top of each other stay visible (distinct colours, line styles and
markers) and the caption can name the policies whose curves coincide.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

# Distinct in colour, dash and marker, so a curve hidden under another still shows its marks.
STYLES = [("#1f77b4", "-", "o"), ("#d62728", "--", "s"), ("#2ca02c", ":", "^"), ("#9467bd", "-.", "D"),
          ("#ff7f0e", (0, (5, 1)), "v"), ("#8c564b", (0, (1, 1)), "x")]


def _count(v: int) -> str:
    return f"{v:,}"


def _amount(v: float) -> str:
    """4 significant digits, but never 1.62e+05 (a reader compares these at a glance)."""
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.4g}"


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h"


def _columns(metric: str) -> list[tuple[str, str, Callable[[Any], str]]]:
    """(heading, simulate.json key, format) for the columns a reader compares policies by."""
    return [("inferences", "inferences", _count), ("inferences per charge", "inferences_per_charge", _count),
            (f"mean {metric}", "mean_score", "{:.4f}".format), ("mean depth", "mean_depth", "{:.1f}".format),
            ("mJ per inference", "energy_per_inference_mj", "{:.3g}".format),
            ("energy (J)", "total_energy_j", _amount), ("depth switches", "depth_switches", _count),
            ("battery empty at", "battery_empty_at_s", _hours)]


def policy_rows(result: dict[str, Any]) -> tuple[list[dict[str, str]], list[str]]:
    """One formatted row per policy, and the columns with at least one value (a trace without
    a battery has no per-charge count or empty time: no empty column for it)."""
    policies = result.get("policies", {})
    rows: list[dict[str, str]] = []
    for name, p in policies.items():
        row = {"policy": name}
        for heading, key, fmt in _columns(result.get("metric", "score")):
            v = p.get(key)
            row[heading] = fmt(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None
        rows.append(row)
    used = ["policy"] + [h for h, _, _ in _columns(result.get("metric", "score")) if any(r[h] is not None for r in rows)]
    if all(r["inferences per charge"] == r["inferences"] for r in rows):  # the trace is one charge: say it once
        used = [h for h in used if h != "inferences per charge"]
    return rows, used


def _series(timeline: dict[str, Any], key: str) -> tuple[list[float], list[float]]:
    pts = [(t, v) for t, v in zip(timeline.get("t_s", []), timeline.get(key, [])) if v is not None]
    return [t for t, _ in pts], [float(v) for _, v in pts]


def _same(a: tuple[list[float], list[float]], b: tuple[list[float], list[float]], tol: float) -> bool:
    """Whether two step-sampled series agree everywhere (compared on the union of their times,
    since each timeline is downsampled on its own)."""
    import numpy as np

    if not a[0] or not b[0]:
        return False
    times = np.union1d(a[0], b[0])
    return bool(np.max(np.abs(np.interp(times, *a) - np.interp(times, *b))) <= tol)


def coinciding(policies: dict[str, dict[str, Any]], key: str, tol: float = 1e-6) -> list[list[str]]:
    """Groups of policies (two or more) whose `key` curves (depth, battery_pct) are the same."""
    groups: list[list[str]] = []
    for name, p in policies.items():
        series = _series(p.get("timeline", {}), key)
        group = next((g for g in groups if _same(_series(policies[g[0]].get("timeline", {}), key), series, tol)), None)
        if group is None:
            groups.append([name])
        else:
            group.append(name)
    return [g for g in groups if len(g) > 1]


def _names(group: Sequence[str]) -> str:
    return ", ".join(group[:-1]) + " and " + group[-1]


def caption(policies: dict[str, dict[str, Any]]) -> str:
    """What the plot cannot show by itself: which curves lie exactly on top of each other."""
    found: dict[tuple[str, ...], list[str]] = {}
    for key, what in (("depth", "depth"), ("battery_pct", "battery")):
        for group in coinciding(policies, key):
            found.setdefault(tuple(group), []).append(what)
    return " ".join(f"{_names(group)} coincide ({' and '.join(whats)} curves are the same: the last drawn hides "
                    "the others but for their markers)." for group, whats in found.items())


def power_plot(result: dict[str, Any]) -> bytes:
    """Depth (top) and battery (bottom) over time per policy, one style per policy."""
    from .plots import finish, new_figure

    fig, (ax_depth, ax_batt) = new_figure(1, width=9.5, height=3.0, nrows=2)
    has_battery = False
    for i, (name, res) in enumerate(result["policies"].items()):
        colour, dash, marker = STYLES[i % len(STYLES)]
        style = dict(color=colour, linestyle=dash, marker=marker, ms=5, markevery=0.08 + 0.013 * i, lw=1.6,
                     alpha=0.9, label=f"{name} ({res['inferences']:,} inf.)")
        hours, depth = _series(res.get("timeline", {}), "depth")
        ax_depth.step([t / 3600 for t in hours], depth, where="post", **style)
        hours, batt = _series(res.get("timeline", {}), "battery_pct")
        if batt:
            has_battery = True
            ax_batt.plot([t / 3600 for t in hours], batt, **{**style, "label": name})
    ax_depth.set(ylabel="depth", title=f"{Path(result.get('trace', {}).get('name', 'trace')).name}, "
                                       f"{result.get('load', '')}".rstrip(", "))
    ax_batt.set(ylabel="battery %", xlabel="time (h)")
    # Legends outside the axes, to the right: they never cover a curve.
    ax_depth.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    if has_battery:
        ax_batt.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    else:
        ax_batt.text(0.5, 0.5, "no battery in this trace", ha="center", va="center", transform=ax_batt.transAxes)
    return finish(fig)


def section(info: dict[str, Any]) -> str:
    """Table of the policies, the comparison line, the plot and its caption."""
    from .report import _img, _p, _table

    sim = info["simulate"]
    result = sim["result"]
    rows, columns = policy_rows(result)
    parts = [_p(f"From {sim['path']}."), _table(rows, columns=columns, text_cols=("policy",))]
    policies = result.get("policies", {})
    if policies and any(p.get("timeline", {}).get("t_s") for p in policies.values()):
        parts.append(_img(power_plot(result), "simulated depth and battery over the power trace"))
        note = caption(policies)
        if note:
            parts.append(_p(note, "note"))
    elif Path(sim["path"]).with_suffix(".png").is_file():  # an older simulate.json without timelines
        parts.append(_img(Path(sim["path"]).with_suffix(".png").read_bytes(), "simulated depth and battery"))
    return "".join(parts)

