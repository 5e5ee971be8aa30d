"""`glonet bench power`: `glonet simulate` over every shipped power trace, for each policy.

Without --bundle the suite trains and exports the digits glonet-fc family (depth 32, every
depth) itself. Costs per depth are the manifest's measured ones when the bundle was
profiled, else the documented cost model's estimates (glonet_edge/runtime/policy.py); the
result says which. Battery capacities per trace are the ones the trace README documents.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

HELP = ("battery life vs score of the power-aware, full-depth, min-depth (and, with exit thresholds, adaptive) "
        "policies over the shipped traces")

# trace name -> (battery capacity in Wh, cost model of that kind of device), as documented in
# glonet_edge/traces/README.md; the recorded ThinkPad trace is an x86 laptop. The device is
# named, not DEFAULT_COST_MODEL: a Jetson trace keeps the Jetson's figures whatever the default.
TRACES = {"thinkpad_discharge_recorded": (45.01, "x86-cpu"), "laptop_discharge": (55.0, "x86-cpu"),
          "orin_nano_battery": (99.0, "orin-nano-cpu"), "orin_nano_thermal": (None, "orin-nano-cpu")}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bundle", default=None, help="bundle to simulate (default: train + export digits glonet-fc depth 32)")
    p.add_argument("--target", default="onnxruntime")
    p.add_argument("--precision", default="fp32")
    p.add_argument("--cost-model", default=None,
                   help="device figures where the bundle has no measured cost (default: the trace's device, "
                        "x86-cpu for the laptops, orin-nano-cpu for the Jetson traces, the runtime's default "
                        "cost model for any other CSV)")
    p.add_argument("--traces", default=",".join(TRACES), help="comma list of shipped trace names or CSV paths")


def run(args: argparse.Namespace) -> dict[str, Any]:
    from ..report.environment import environment
    from ..runtime.policy import DEFAULT_COST_MODEL
    from ..runtime.simulate import simulate_bundle
    from .summary import markdown_table, write_markdown

    out = Path(args.out)
    bundle = Path(args.bundle) if args.bundle else None
    if bundle is None:
        from ..export import export_bundle
        from ..train.trainer import train_run

        print("training + exporting the digits glonet-fc depth-32 family...", file=sys.stderr)
        run_dir, bundle = out / "work" / "fc32_run", out / "work" / "fc32_bundle"
        train_run("glonet-fc", 32, "digits", run_dir, progress=False)
        export_bundle(run_dir, bundle, depths="all", progress=False)
    rows, comparisons = [], []
    for trace in [t for t in args.traces.split(",") if t]:
        battery, device_costs = TRACES.get(trace, (None, DEFAULT_COST_MODEL))
        cost_model = args.cost_model or device_costs
        result = simulate_bundle(bundle, trace, out / trace, battery_wh=battery, target=args.target,
                                 precision=args.precision, cost_model=cost_model)
        for name, r in result["policies"].items():
            rows.append({"trace": trace, "policy": name, "inferences": r["inferences"],
                         "inferences_per_charge": r.get("inferences_per_charge"), "mean_score": r["mean_score"],
                         "energy_j": r["energy_j"], "depth_switches": r["depth_switches"],
                         "mean_depth": r.get("mean_depth")})
        cmp = result.get("comparison") or {}
        comparisons.append({"trace": trace, "battery_wh": battery, "cost_model": cost_model,
                            "cost_source": result["cost_source"],
                            "ratio_vs_full_depth": cmp.get("per_charge_ratio_vs_full_depth",
                                                           cmp.get("inferences_ratio_vs_full_depth")),
                            "score_delta_pts": cmp.get("mean_score_delta_pts_vs_full_depth")})
    write_markdown(out / "power.md", "Power: policies over the shipped traces", [
        f"Bundle `{bundle}`, costs of {args.target}/{args.precision} (the cost model named per trace where not "
        "measured).",
        "## Power-aware vs full depth\n\n" + markdown_table(comparisons),
        "## Every policy\n\n" + markdown_table(rows),
        "Plots: `<trace>/simulate.png`.",
    ])
    return {"rows": rows, "comparison": comparisons, "bundle": str(bundle), "environment": environment()}


def table(result: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
    return result["comparison"], "power-aware policy vs fixed full depth, per trace"
