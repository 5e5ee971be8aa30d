"""The report's adaptive-serving section: where rows stop, and accuracy against mean cost.

Everything here is measured on the held-out third of the validation split that the
thresholds never saw (glonet_edge/exits.py), so fixed depths are shown by the same rows'
score at each cap.
"""

from __future__ import annotations

from typing import Any

from .report import _img, _kv, _p, _table


def section(info: dict[str, Any]) -> str:
    manifest = info["manifest"]
    metric = manifest["metric_name"]
    macs = {e["depth"]: e["macs"] for e in manifest["depths"]}
    parts = [_p("Each row leaves the segment chain at the first check where its exit rule is sure. The thresholds "
                "keep the expected drop from the deepest allowed segment within the listed drop, with the stated "
                "confidence; the figures below are from held-out rows the thresholds never saw.")]
    for precision, record in sorted(manifest["exits"].items()):
        deepest = max((p["max_depth"] for p in record["points"]), default=None)
        parts += [f"<h3>{precision}</h3>", _kv([
            ("rule", record["rule"]), ("method", record["method"]), ("confidence", record["confidence"]),
            ("samples (calibration / held-out)", f"{record['calibration_samples']} / {record['heldout_samples']}"),
            ("checks", f"every {record['stride']} segment(s): depths {record['checks']}"),
            ("chain calibrated", record["chain_precision"])])]
        rows = [{"max drop": p["max_drop"], "threshold": p["threshold"], metric: p["heldout"]["score"],
                 f"depth {deepest} {metric}": p["heldout"]["reference_score"], "drop": p["heldout"]["drop"],
                 "mean depth": p["heldout"]["mean_depth"], "mean MACs": p["heldout"]["mean_macs"]}
                for p in record["points"] if p["max_depth"] == deepest]
        parts.append(_table(rows))
        if record["points"]:
            parts.append(_img(_plot(record, deepest, macs, metric), f"{precision} exit depths and {metric} vs cost"))
        parts += [_p(n, "note") for n in record.get("notes", [])]
    return "".join(parts)


def _plot(record: dict[str, Any], deepest: int, macs: dict[int, int], metric: str) -> bytes:
    from .plots import finish, new_figure, place_labels

    fig, (ax_exits, ax_cost) = new_figure(2, width=5.2, height=3.6)
    at_deepest = [p for p in record["points"] if p["max_depth"] == deepest]
    width = 0.8 / max(1, len(at_deepest))
    for i, p in enumerate(at_deepest):  # one bar per drop, grouped around each depth
        depths = sorted(int(d) for d in p["heldout"]["exits"])
        offset = (i - (len(at_deepest) - 1) / 2) * width
        ax_exits.bar([d + offset for d in depths], [p["heldout"]["exits"][str(d)] for d in depths], width,
                     label=f"max drop {p['max_drop']:g}")
    ax_exits.xaxis.get_major_locator().set_params(integer=True)
    ax_exits.set(xlabel="exit depth", ylabel="held-out rows", title=f"where rows stop (cap {deepest})")
    ax_exits.legend(fontsize=8)
    fixed = sorted({(p["max_depth"], p["heldout"]["reference_score"]) for p in record["points"]})
    ax_cost.plot([macs.get(d, 0) for d, _ in fixed], [s for _, s in fixed], "o-", ms=4, label="fixed depth")
    costed = [p for p in record["points"] if p["heldout"].get("mean_macs") is not None]
    ax_cost.plot([p["heldout"]["mean_macs"] for p in costed], [p["heldout"]["score"] for p in costed], "x",
                 label="adaptive (every cap and drop)")
    ax_cost.set(xlabel="mean MACs per input", ylabel=f"held-out {metric}", title=f"{metric} vs mean cost")
    ax_cost.legend(fontsize=8)
    place_labels(ax_cost, [(macs.get(d, 0), s, str(d)) for d, s in fixed])  # depths, clear of markers and legend
    return finish(fig)
