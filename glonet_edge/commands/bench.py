"""`glonet bench SUITE --out DIR`: run a benchmark suite (see glonet_edge/bench/__init__.py).

Each suite writes DIR/<suite>.json (the result, also printed with --json), PNG plot(s) and a
markdown summary DIR/<suite>.md; the JSON records the full command with every default made
explicit, so a number can always be traced to how it was measured.
"""

from __future__ import annotations

import argparse
import shlex

from ._output import add_json_flag, emit


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from ..bench import available_suites

    suites = available_suites()
    p = subparsers.add_parser(
        "bench", help="benchmark suites: " + ", ".join(suites),
        description="Run a benchmark suite. Results go to DIR/<suite>.json (--json prints them), with "
                    "PNG plots and a markdown summary DIR/<suite>.md next to it.")
    sub = p.add_subparsers(dest="suite", metavar="SUITE", required=True)
    for name, module in suites.items():
        s = sub.add_parser(name, help=module.HELP, description=(module.__doc__ or module.HELP).strip(),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        s.add_argument("--out", required=True, metavar="DIR", help="directory for the results, plots and summary")
        add_json_flag(s)
        module.add_arguments(s)
        s.set_defaults(func=run, suite_parser=s)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..bench import load_suite, result_json, result_stem

    module = load_suite(args.suite)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    args.command_line = command_line(args)
    result = module.run(args)
    stem = result_stem(args.suite)
    # A suite may print a different table than its "rows" (e.g. ratios per depth).
    rows, title = module.table(result) if hasattr(module, "table") else (result.get("rows"), None)
    # One line per row: results are checked in (benchmarks/) and should diff row by row.
    emit(args, result, rows, out_file=out / f"{stem}.json", title=title, json_text=result_json)
    if not args.json:
        print(f"summary: {out / f'{stem}.md'}")
    return 0


def command_line(args: argparse.Namespace) -> str:
    """`glonet bench SUITE ...` with every option spelled out, defaults included."""
    parts = ["glonet", "bench", args.suite]
    for action in args.suite_parser._actions:
        if isinstance(action, argparse._HelpAction) or action.dest == "json":
            continue
        value = getattr(args, action.dest, None)
        if not action.option_strings:  # positional
            if value is not None:
                parts.append(str(value))
        elif isinstance(action, argparse._StoreTrueAction):
            if value:
                parts.append(action.option_strings[-1])
        elif value is not None:
            text = ",".join(map(str, value)) if isinstance(value, list) else str(value)
            parts += [action.option_strings[-1], text]
    return " ".join(shlex.quote(p) for p in parts)
