"""glonet demo: the whole pipeline on scikit-learn's digits, on CPU, with a summary at the end."""

from __future__ import annotations

import argparse

from ._output import add_json_flag, format_table


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the whole pipeline on digits (CPU, a few minutes) and print where the report is",
                       description="Train a 32-block GloNet on scikit-learn's digits, export its depth family, quantize "
                                   "to INT8, compile for ONNX Runtime and OpenVINO, profile every depth, simulate a "
                                   "battery trace and write an HTML report. The config is glonet_edge/configs/demo.toml.")
    p.add_argument("--out", default="glonet-demo", help="work directory (default: ./glonet-demo)")
    p.add_argument("--force", action="store_true", help="re-run every pass even if nothing changed")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_json_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json
    import sys
    import time

    from ..manifest import BundleManifest
    from ..pipeline import DEMO_CONFIG, Pipeline, PipelineConfig

    config = PipelineConfig.from_toml(DEMO_CONFIG, workdir=args.out)
    if not args.json:
        print(f"glonet demo: GloNet on digits → depth family → INT8 → ONNX Runtime + OpenVINO → report\n"
              f"work directory: {config.workdir.resolve()}", file=sys.stderr)
    start = time.perf_counter()
    pipeline = Pipeline(config, progress=not (args.quiet or args.json))
    results = pipeline.run(force=args.force)
    elapsed = time.perf_counter() - start

    manifest = BundleManifest.load(pipeline.bundle_dir)
    metric = manifest.metric_name
    rows = []
    for e in manifest.depths:
        row = {"depth": e.depth, "MACs": e.macs, f"fp32 {metric}": e.metrics.get("fp32", {}).get(metric),
               f"int8 {metric}": e.metrics.get("int8", {}).get(metric)}
        for key in ("onnxruntime/fp32", "onnxruntime/int8", "openvino/fp32", "openvino/int8"):
            if key in e.latency_ms:
                row[f"{key} ms"] = e.latency_ms[key]["p50"]
        rows.append(row)
    sim_path = pipeline.workdir / "simulate" / "simulate.json"
    sim = json.loads(sim_path.read_text()) if sim_path.is_file() else {}
    report = pipeline.workdir / config.sections.get("report", {}).get("out", "report.html")
    summary = {"workdir": str(pipeline.workdir), "seconds": elapsed, "report": str(report),
               "stages": [{"stage": r.name, "status": r.status, "seconds": r.seconds, "summary": r.summary}
                          for r in results],
               "family": rows, "simulate": sim.get("comparison", {})}
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print()
    print(f"The depth family ({len(rows)} depths of {manifest.max_depth}; batch-1 latency p50 on this CPU):")
    print(format_table(rows))
    cmp = sim.get("comparison") or {}
    if cmp:
        ratio = cmp.get("per_charge_ratio_vs_full_depth", cmp.get("inferences_ratio_vs_full_depth"))
        print(f"\nOn the {sim['trace']['name'].split('/')[-1]} trace ({sim.get('battery_wh')} Wh battery), the power-aware "
              f"policy serves {ratio:.2f}x the inferences per charge of full depth at "
              f"{cmp.get('mean_score_delta_pts_vs_full_depth', 0):+.2f} pt mean {metric} "
              f"(costs {sim.get('cost_source', '?')}).")
    print(f"\nDone in {elapsed:.0f} s. Report: {report.resolve()}")
    print(f"Serve it:  python -c \"from glonet_edge.runtime import Runtime; "
          f"rt = Runtime.open('{pipeline.bundle_dir}', target='openvino', precision='int8'); print(rt)\"")
    return 0
