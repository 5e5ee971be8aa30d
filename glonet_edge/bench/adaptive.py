"""`glonet bench adaptive`: each input stops when it is sure, against the cheapest fixed depth
that reaches the same held-out accuracy.

For each family (the digits glonet-fc depth 32 and the glonet-cnn depth 6 "cnn6" of
BENCHMARKS.md, trained here with `--val-fraction` of digits held out, unless --fc-bundle /
--cnn-bundle is given; cnn6 trains 25 epochs instead of 10, because with 40% of digits held
out 10 epochs leave it near 0.8 at full depth):

1. Thresholds certified for `--max-drop` below the full depth at `--confidence` (plus the
   other default drops the split can certify, for the simulation), `glonet calibrate`'s way.
2. On the held-out third of the validation split (rows the thresholds never saw), per engine:
   adaptive accuracy, mean exit depth and mean MACs (the chain's: every segment run, each
   with its head), and every fixed depth's accuracy on the same rows; "matched" is the
   fixed depth with the fewest MACs whose accuracy is at least the adaptive one.
3. Mean latency per input, fp32, `--threads` engine threads: at batch 1 every held-out row is
   one call; at batch 32 a call's time / 32. Adaptive (Runtime adaptive=True, capped at the
   full depth) and the matched depth's graph (the same Runtime API, pinned) alternate pass by
   pass; the median of `--repeats` passes is reported.
4. Break-even per engine: the segment chain run to the full depth without exits against the
   full-depth graph (what the extra calls cost), the cost of one exit check, the stride.
5. `glonet simulate` over the recorded ThinkPad discharge (45.01 Wh, x86-cpu cost model, the
   depth latencies measured with `glonet profile` on ONNX Runtime fp32, 1 thread first).

The targets, reported, never asserted: on the CNN family at most 0.5 points below the
full depth, mean MACs >= 2x and batch-1 latency >= 1.5x lower than the matched depth, and
more inferences per charge than power-aware alone.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Callable

from . import int_list
from .timing import interleaved_ms

HELP = "early exit vs the cheapest fixed depth of the same held-out accuracy: MACs and latency, ORT and OpenVINO"
# family -> (model, depth, width, epochs, lr): the fc32 and cnn6 runs of BENCHMARKS.md
FAMILIES = {"fc": ("glonet-fc", 32, 32, 40, 1e-3), "cnn": ("glonet-cnn", 6, 32, 25, 2e-3)}
THINKPAD = ("thinkpad_discharge_recorded", 45.01, "x86-cpu")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--families", default="fc,cnn", help="comma list of fc, cnn (default both)")
    p.add_argument("--fc-bundle", default=None, help="use this bundle as the fc family instead of training one")
    p.add_argument("--cnn-bundle", default=None, help="use this bundle as the cnn family instead of training one")
    p.add_argument("--val-fraction", type=float, default=0.4,
                   help="digits held out when training (default 0.4: 719 rows, 479 calibrate, 240 check; a 0.005 "
                        "drop at confidence 0.9 needs 460 calibration rows)")
    p.add_argument("--max-drop", type=float, default=0.005, help="allowed drop below full depth (default 0.005)")
    p.add_argument("--confidence", type=float, default=0.9, help="of the guarantee (default 0.9)")
    p.add_argument("--stride", type=int, default=None, help="segments between checks (default: measured)")
    p.add_argument("--targets", default="onnxruntime,openvino", help="comma list (default onnxruntime,openvino)")
    p.add_argument("--batches", type=int_list, default=[1, 32], help="batch sizes (default 1,32)")
    p.add_argument("--repeats", type=int, default=5, help="timed passes over the held-out rows (default 5)")
    p.add_argument("--threads", type=int, default=1, help="engine threads (default 1)")
    p.add_argument("--no-simulate", action="store_true", help="skip the ThinkPad trace simulation")


def run(args: argparse.Namespace) -> dict[str, Any]:
    from ..report.environment import environment

    out = Path(args.out)
    families, rows, breakeven, power = {}, [], [], []
    for name in [f for f in args.families.split(",") if f]:
        bundle = Path(getattr(args, f"{name}_bundle") or _train_family(name, out / "work", args))
        record = _calibrate(bundle, args)
        measured = _measure_family(name, bundle, args)
        rows += measured["rows"]
        breakeven += measured["breakeven"]
        families[name] = {"bundle": str(bundle), "stride": record.stride, "checks": record.checks,
                          "fixed": measured["fixed"]}
        if not args.no_simulate:
            power.append({"family": name, **_simulate(bundle, out / f"simulate_{name}")})
    result = {"rows": rows, "breakeven": breakeven, "power": power, "families": families,
              "max_drop": args.max_drop, "confidence": args.confidence, "threads": args.threads,
              "repeats": args.repeats, "environment": environment(), "command": getattr(args, "command_line", None),
              "plot": "adaptive.png"}
    _plot(result, out / "adaptive.png")
    _write_summary(result, out / "adaptive.md")
    return result


def table(result: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
    keys = ("family", "target", "batch", "drop_pts_vs_full", "mean_depth", "matched_depth", "macs_ratio",
            "adaptive_ms", "matched_ms", "latency_ratio")
    return ([{k: r[k] for k in keys} for r in result["rows"]],
            f"adaptive vs the cheapest fixed depth of the same held-out accuracy (max drop {result['max_drop']})")


def _train_family(name: str, work: Path, args: argparse.Namespace) -> Path:
    from ..export import export_bundle
    from ..train.trainer import TrainSettings, train_run

    model, depth, width, epochs, lr = FAMILIES[name]
    run_dir, bundle = work / f"{name}_run", work / f"{name}_bundle"
    print(f"training + exporting {model} depth {depth} on digits...", file=sys.stderr)
    train_run(model, depth, "digits", run_dir, width=width, settings=TrainSettings(epochs=epochs, lr=lr),
              val_fraction=args.val_fraction, progress=False)
    export_bundle(run_dir, bundle, depths="all", progress=False)
    return bundle


def _calibrate(bundle: Path, args: argparse.Namespace) -> Any:
    """Certify --max-drop (and the default drops the split allows) and compile for OpenVINO."""
    from ..exit_calibration import calibrate_bundle, validation_split
    from ..exits import DEFAULT_MAX_DROPS, feasible_drops
    from ..manifest import BundleManifest
    from ..targets import get_target
    from ..targets.compile import compile_bundle

    manifest = BundleManifest.load(bundle)
    x, y = validation_split(manifest)
    drops = sorted(set(feasible_drops(len(y), args.confidence, DEFAULT_MAX_DROPS)) | {args.max_drop})
    calibrate_bundle(bundle, manifest, "fp32", x, y, max_drops=drops, confidence_level=args.confidence,
                     stride=args.stride)
    manifest.save(bundle)
    if "openvino" in args.targets and get_target("openvino").available() \
            and manifest.depths[0].artifact("openvino", "fp32") is None:
        compile_bundle(bundle, "openvino", precisions=["fp32"], progress=False, threads=args.threads)
    return BundleManifest.load(bundle).exits["fp32"]


def _measure_family(name: str, bundle: Path, args: argparse.Namespace) -> dict[str, Any]:
    from ..exit_calibration import validation_split
    from ..exits import split_rows
    from ..manifest import BundleManifest
    from ..targets import get_target

    manifest = BundleManifest.load(bundle)
    x, y = validation_split(manifest)
    held = split_rows(len(y))["heldout"]
    held = held[:len(held) - len(held) % max(args.batches)]  # whole batches at every size, the same rows
    rows, breakeven, fixed = [], [], {}
    for target in [t for t in args.targets.split(",") if t and get_target(t).available()]:
        print(f"measuring {name} on {target}...", file=sys.stderr)
        found = _measure_target(bundle, manifest, target, x[held], y[held], args)
        rows += [{"family": name, "target": target, **r} for r in found["rows"]]
        breakeven.append({"family": name, "target": target, **found["breakeven"]})
        fixed[target] = found["fixed"]
    return {"rows": rows, "breakeven": breakeven, "fixed": fixed}


def _measure_target(bundle: Path, manifest: Any, target: str, x: Any, y: Any,
                    args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np

    from ..data import score
    from ..runtime import Runtime

    cap = max(s.end_depth for s in manifest.segments)
    chain_macs = dict(zip([s.end_depth for s in manifest.segments], np.cumsum([s.macs for s in manifest.segments])))
    macs = {e.depth: e.macs for e in manifest.depths}
    opts = {"target": target, "power": "none", "threads": args.threads}
    with Runtime.open(bundle, anytime=False, **opts) as fixed_rt, \
            Runtime.open(bundle, adaptive=True, policy=_exit_policy(manifest, cap, args.max_drop), **opts) as rt:
        rt.set_depth(cap)
        fixed = {}
        for d in fixed_rt.depths:
            fixed_rt.set_depth(d)
            fixed[d] = score(manifest.task, fixed_rt.infer(x).outputs, y)
        rows = []
        for batch in args.batches:
            pred = _run_all(rt, x, batch)
            accuracy = score(manifest.task, np.concatenate([p.outputs for p in pred]), y)
            depths = np.concatenate([p.depths for p in pred])
            matched = min((d for d in fixed if fixed[d] >= accuracy - 1e-12), key=macs.get, default=cap)
            fixed_rt.set_depth(matched)
            ada_ms, fix_ms = _alternating(lambda: _run_all(rt, x, batch), lambda: _run_all(fixed_rt, x, batch),
                                          args.repeats)
            mean_macs = float(np.mean([chain_macs[int(d)] for d in depths]))
            rows.append({"batch": batch, "full_depth_score": fixed[cap], "adaptive_score": accuracy,
                         "drop_pts_vs_full": 100 * (fixed[cap] - accuracy), "mean_depth": float(depths.mean()),
                         "adaptive_macs": mean_macs, "matched_depth": matched, "matched_score": fixed[matched],
                         "matched_macs": macs[matched], "macs_ratio": macs[matched] / mean_macs,
                         "adaptive_ms": ada_ms / len(x), "matched_ms": fix_ms / len(x),
                         "latency_ratio": fix_ms / ada_ms})
        found = {"rows": rows, "fixed": {str(d): s for d, s in fixed.items()},
                 "breakeven": _breakeven(rt, fixed_rt, x[:1], cap, args.repeats)}
    return found


def _exit_policy(manifest: Any, cap: int, drop: float) -> Any:
    """Every tier leaves `drop` to early exit below depth `cap` (whatever `cap` itself gives up)."""
    from ..runtime import PolicyConfig
    from ..runtime.policy import family_table

    table = family_table(manifest, "onnxruntime", "fp32")
    total = drop + max(r.score for r in table) - next(r.score for r in table if r.depth == cap)
    return PolicyConfig(ac_max_drop=total, max_drop=total, low_battery_max_drop=total)


def _run_all(rt: Any, x: Any, batch: int) -> list[Any]:
    return [rt.infer(x[lo:lo + batch]) for lo in range(0, len(x) - batch + 1, batch)]


def _alternating(first: Callable[[], Any], second: Callable[[], Any], repeats: int) -> tuple[float, float]:
    """Median wall time (ms) of each callable over `repeats` passes, run in alternating order."""
    first(), second()  # warm once, before all rounds: each call is already a whole pass over the rows
    ms = interleaved_ms({"first": first, "second": second}, repeats)
    return ms["first"], ms["second"]


def _breakeven(rt: Any, fixed_rt: Any, x1: Any, cap: int, repeats: int) -> dict[str, Any]:
    """What the chain's extra calls and checks cost at batch 1, against one full-depth graph."""
    from ..exit_calibration import median_ms
    from ..exits import exit_rows

    fixed_rt.set_depth(cap)
    reps = 200
    chain_ms, graph_ms = _alternating(lambda: [rt._chain.run(x1, cap) for _ in range(reps)],
                                      lambda: [fixed_rt.infer(x1) for _ in range(reps)], repeats)
    y = rt._chain.run(x1, cap).outputs
    check_ms = median_ms(lambda: exit_rows(rt.exits.rule, 0.5, y, y).any(), 20 * reps)
    segments = len(rt._chain.segments)
    return {"segments": segments, "stride": rt.exits.stride, "chain_full_ms": chain_ms / reps,
            "graph_full_ms": graph_ms / reps, "chain_over_graph": chain_ms / graph_ms,
            "extra_call_ms": (chain_ms - graph_ms) / reps / max(1, segments - 1), "check_ms": check_ms}


def _simulate(bundle: Path, out: Path) -> dict[str, Any]:
    from ..runtime.simulate import simulate_bundle
    from ..targets.profile import profile_bundle

    profile_bundle(bundle, "onnxruntime", "fp32", batches=(1,), threads=1, progress=False)
    trace, battery_wh, cost_model = THINKPAD
    result = simulate_bundle(bundle, trace, out, battery_wh=battery_wh, cost_model=cost_model)
    policies = result["policies"]
    pa, ada = policies["power-aware"], policies.get("adaptive")
    return {"trace": trace, "battery_wh": battery_wh, "cost_model": cost_model, "cost_source": result["cost_source"],
            "power_aware_per_charge": pa["inferences_per_charge"], "power_aware_score": pa["mean_score"],
            "adaptive_per_charge": ada and ada["inferences_per_charge"], "adaptive_score": ada and ada["mean_score"],
            "per_charge_ratio": ada and ada["inferences_per_charge"] / pa["inferences_per_charge"],
            "adaptive_mean_depth": ada and ada["mean_depth"], "power_aware_mean_depth": pa["mean_depth"]}


def _plot(result: dict[str, Any], path: Path) -> None:
    from ..report.plots import finish, new_figure

    names = list(result["families"])
    fig, axes = new_figure(max(1, len(names)), width=5.2, height=3.8)
    for ax, name in zip(axes, names):
        for target, fixed in result["families"][name]["fixed"].items():
            pts = sorted((int(d), s) for d, s in fixed.items())
            ax.plot([d for d, _ in pts], [s for _, s in pts], "o-", ms=3, label=f"fixed depth ({target})")
            for r in (r for r in result["rows"] if r["family"] == name and r["target"] == target and r["batch"] == 1):
                ax.plot([r["mean_depth"]], [r["adaptive_score"]], "*", ms=12, label=f"adaptive ({target})")
        ax.set(xlabel="depth (adaptive: mean exit depth)", ylabel="held-out accuracy", title=f"{name} family")
        ax.legend(fontsize=7)
    finish(fig, path)


def _write_summary(result: dict[str, Any], path: Path) -> None:
    from .summary import markdown_table, write_result_markdown

    write_result_markdown(path, "Adaptive: early exit vs the cheapest fixed depth of the same accuracy", result, [
        f"Max drop {result['max_drop']} below full depth at confidence {result['confidence']}; "
        f"{result['threads']} engine thread(s); median of {result['repeats']} passes over the held-out rows.",
        "## Per family, engine and batch\n\n" + markdown_table(result["rows"]),
        "## Break-even: the chain's extra calls and checks at batch 1\n\n" + markdown_table(result["breakeven"]),
        "## Recorded ThinkPad trace: adaptive vs power-aware\n\n" + markdown_table(result["power"]),
        f"Plot: `{result['plot']}`."])
