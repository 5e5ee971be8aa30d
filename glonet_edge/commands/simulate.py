"""`glonet simulate BUNDLE --trace TRACE --out DIR`: compare depth policies over a power trace.

Writes DIR/simulate.json (contract: {"policies": {name: {"inferences", "mean_score",
"energy_j", "depth_switches", ...}}} for power-aware, full-depth and min-depth, plus adaptive
when the bundle has exit thresholds for the precision) and
DIR/simulate.png (depth and battery over time; skipped with a note without matplotlib).
The cost and battery model is documented in glonet_edge/runtime/simulate.py.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ._output import add_json_flag, emit

# Shipped trace names for --help without importing the runtime (every command's start-up pays it).
SHIPPED = ", ".join(sorted(p.stem for p in (Path(__file__).resolve().parents[1] / "traces").glob("*.csv")))



def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "simulate", help="replay a power trace and compare depth policies (battery life vs score)",
        description="Replay a power trace against the bundle's depth family with the measured (or, where "
                    "the manifest has none, estimated) per-depth latency and energy, for the policies "
                    "power-aware, full-depth and min-depth, and adaptive (power-aware with certified early exit) "
                    "when the bundle has exit thresholds for the precision. Results go to DIR/simulate.json and "
                    "DIR/simulate.png.")
    p.add_argument("bundle", metavar="BUNDLE", help="bundle directory (only its manifest.json is read)")
    p.add_argument("--trace", required=True, metavar="TRACE", help=f"power trace CSV, or a shipped trace name: {SHIPPED}")
    p.add_argument("--battery-wh", type=float, default=None, metavar="WH",
                   help="simulate a battery of this capacity (Wh) draining with the policy's own "
                        "consumption, and report inferences per charge")
    p.add_argument("--policy", default=None, metavar="POLICY.toml", help="policy settings (TOML); defaults otherwise")
    p.add_argument("--target", default="onnxruntime", help="whose measured costs to use (default: onnxruntime)")
    p.add_argument("--precision", default="fp32", help="fp32 | fp16 | int8 (default: fp32)")
    p.add_argument("--rate-hz", type=float, default=None, metavar="HZ",
                   help="inferences per second; default: back to back (throughput mode)")
    p.add_argument("--step-s", type=float, default=1.0, metavar="S", help="policy re-evaluation interval, s (default: 1)")
    p.add_argument("--cost-model", default=None,
                   help="device figures used where the manifest has no measured cost: orin-nano-cpu "
                        "(default) or x86-cpu")
    p.add_argument("--out", required=True, metavar="DIR", help="directory for simulate.json and simulate.png")
    add_json_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..runtime.policy import DEFAULT_COST_MODEL
    from ..runtime.simulate import simulate_bundle

    if not args.json:
        print(f"simulating {args.bundle} over {args.trace}...", file=sys.stderr)
    result = simulate_bundle(args.bundle, args.trace, args.out, battery_wh=args.battery_wh, policy=args.policy,
                             target=args.target, precision=args.precision, rate_hz=args.rate_hz,
                             step_s=args.step_s, cost_model=args.cost_model or DEFAULT_COST_MODEL)
    rows = [{"policy": name, "inferences": r["inferences"], "per_charge": r["inferences_per_charge"],
             "mean_score": r["mean_score"], "energy_j": r["energy_j"], "mean_depth": r["mean_depth"],
             "switches": r["depth_switches"], "hours": r["simulated_s"] / 3600.0}
            for name, r in result["policies"].items()]
    if not args.json:
        for note in result["notes"]:
            print(f"note: {note}")
        cmp = result["comparison"]
        if cmp:
            print(_ratio_line("power-aware vs full-depth", cmp, "full_depth"))
        if "adaptive" in cmp:
            print(_ratio_line("adaptive vs power-aware", cmp["adaptive"], "power_aware"))
    emit(args, result, rows, title=f"{result['metric']} vs energy on {result['trace']['name']} ({result['load']}, "
                                   f"costs {result['cost_source']})")
    print_where = not args.json
    if print_where:
        print(f"results written to {Path(args.out) / 'simulate.json'}")
    return 0


def _ratio_line(label: str, cmp: dict, name: str) -> str:
    per_charge = f"per_charge_ratio_vs_{name}"
    ratio = cmp.get(per_charge, cmp[f"inferences_ratio_vs_{name}"])
    return (f"{label}: {ratio:.2f}x the inferences{' per charge' if per_charge in cmp else ''}, "
            f"{cmp[f'mean_score_delta_pts_vs_{name}']:+.2f} pt mean score")
