"""Shared result output: JSON next to the artifacts, `--json` on stdout, a plain table."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from ..fileio import atomic_write_json, atomic_write_text


def depth_list(value: str) -> list[int]:
    """argparse type for --depths: a comma list of ints such as 1,2,4,8."""
    try:
        depths = [int(d) for d in value.split(",") if d.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--depths must be a comma list of ints, got {value!r}") from exc
    if not depths:
        raise argparse.ArgumentTypeError("--depths is empty; give a comma list of ints like 1,2,4,8")
    return depths


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the result as JSON on stdout (no table)")


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    if not rows:
        return "(no rows)"
    columns = list(columns or rows[0].keys())

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        if v is None:
            return "-"
        return str(v)

    body = [[cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(b[i]) for b in body)) for i, c in enumerate(columns)]
    line = lambda vals: "  ".join(v.rjust(w) for v, w in zip(vals, widths))  # noqa: E731
    return "\n".join([line(columns), line(["-" * w for w in widths]), *map(line, body)])


def emit(args: argparse.Namespace, result: Any, table_rows: Sequence[dict[str, Any]] | None = None,
         columns: Sequence[str] | None = None, out_file: str | Path | None = None, title: str | None = None,
         json_text: Callable[[Any], str] | None = None) -> None:
    """Write `result` to out_file (if given: as `json_text` lays it out, else indented JSON), then
    print JSON (--json) or a table + where it went."""
    if out_file is not None:
        if json_text is None:
            atomic_write_json(out_file, result)
        else:
            atomic_write_text(out_file, json_text(result))
    if getattr(args, "json", False):
        json.dump(result, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    if title:
        print(title)
    if table_rows is not None:
        print(format_table(table_rows, columns))
    if out_file is not None:
        print(f"results written to {out_file}")
