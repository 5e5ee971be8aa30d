"""Markdown summaries (DIR/<suite>.md) that can be pasted into BENCHMARKS.md as they are."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

from ..fileio import atomic_write_text


def cell(value: Any, digits: int = 4) -> str:
    """A table cell: floats to `digits` significant digits, None as '-', '|' escaped."""
    if value is None:
        return "-"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.{digits}g}"
    return str(value).replace("|", "\\|")


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    if not rows:
        return "(no rows)"
    columns = list(columns or dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(cell(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def write_markdown(path: str | Path, title: str, sections: Sequence[str]) -> Path:
    """`# title` followed by the sections (paragraphs, tables, image links), blank-line separated."""
    text = "\n\n".join([f"# {title}", *[s.strip() for s in sections if s and s.strip()]]) + "\n"
    atomic_write_text(path, text)
    return Path(path)


def write_result_markdown(path: str | Path, title: str, result: dict[str, Any], sections: Sequence[str]) -> Path:
    """`write_markdown` led by the command that measured (when recorded) and where it ran."""
    from ..report.environment import environment_line

    command = f"`{result['command']}`" if result.get("command") else ""
    return write_markdown(path, title, [command, environment_line(result["environment"]), *sections])
