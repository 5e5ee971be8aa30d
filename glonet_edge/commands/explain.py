"""`glonet explain RUN`: each block's share of a GloNet's output (see glonet_edge/report/explain.py)."""

from __future__ import annotations

import argparse

from ._output import add_json_flag, emit


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "explain", help="per-block contribution of a trained GloNet: norms, logit shares, self-regulation",
        description="A GloNet's head reads the sum of all block outputs, so each block's part of the answer "
                    "can be measured on its own: mean ||h_i|| over held-out samples, its share of the logit "
                    "(the readout applied to that block alone, without bias, relative to all blocks) and the "
                    "cumulative share. Writes DIR/explain.json and DIR/explain.png. Works for glonet-fc, "
                    "glonet-cnn and glonet-vit checkpoints.")
    p.add_argument("run", metavar="RUN", help="checkpoint directory written by `glonet train`")
    p.add_argument("--out", metavar="DIR", default=None, help="output directory (default: RUN/explain)")
    p.add_argument("--samples", type=int, default=512, help="held-out rows to average over (default 512)")
    p.add_argument("--data", metavar="SPEC", default=None,
                   help="data set to reload the held-out split from, when the path in RUN/config.json is not on "
                        "this machine (same seed and split as training)")
    add_json_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..report.explain import explain_run, plot, table_rows

    out = Path(args.out) if args.out else Path(args.run) / "explain"
    result = explain_run(args.run, dataset=args.data, samples=args.samples)
    out.mkdir(parents=True, exist_ok=True)
    plot(result, out / "explain.png")
    s = result["summary"]
    title = (f"{result['model']} depth {result['depth']} on {result['samples']} held-out samples: deepest "
             f"{s['quarter_blocks']} blocks hold {s['deep_mean_share']:.2%} of the logit each vs "
             f"{s['shallow_mean_share']:.2%} for the shallowest {s['quarter_blocks']} "
             f"({'deep blocks fade' if s['deep_fades'] else 'deep blocks do NOT fade'}); "
             f"90% of the logit by block {s['blocks_for_90pct_share']}")
    emit(args, result, table_rows(result), out_file=out / "explain.json", title=title)
    if not args.json:
        print(f"plot written to {out / 'explain.png'}")
    return 0
