"""`glonet bench SUITE --out DIR`: reproducible measurements, one module per suite.

A suite is a module in this package with

    HELP: str                                     one line for `glonet bench --help`
    add_arguments(parser: argparse.ArgumentParser) -> None     its own flags
    run(args: argparse.Namespace) -> dict        measures, writes plots and DIR/<stem>.md,
                                                  returns the result (with a "rows" list)
    table(result) -> (rows, title)               optional: what the console shows instead of
                                                  result["rows"]

and the command writes the result to DIR/<stem>.json (`result_json`: one line per row), where
<stem> is the suite name with "-" replaced by "_" (`train-speed` -> `train_speed.json`;
docs/architecture.md, "File contracts"). Modules import only the standard library at top
level, so building the CLI parser stays instant.

To add a suite, drop its module here and name it in SUITES (or call `register_suite`).
`latency` and `power` are listed already: they appear in the CLI as soon as their module
exists, exactly as `glonet_edge.cli` treats command modules.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
from types import ModuleType
from typing import Any

from ..errors import ConfigError

# suite name -> module, relative to this package or absolute.
SUITES: dict[str, str] = {
    "train-speed": ".train_speed",
    "depth-accuracy": ".depth_accuracy",
    "memory": ".memory",
    "latency": ".latency",
    "power": ".power",
    "torch-latency": ".torch_latency",
    "adaptive": ".adaptive",
    "int8-flavours": ".int8_flavours",
    "own-model": ".own_model",
}


def register_suite(name: str, module: str) -> None:
    """Make `glonet bench NAME` run `module` (a dotted path, e.g. "mypkg.bench_thermal")."""
    SUITES[name] = module


def result_stem(name: str) -> str:
    """File stem of a suite's results: DIR/<stem>.json, DIR/<stem>.md."""
    return name.replace("-", "_")


def load_suite(name: str) -> ModuleType | None:
    """The suite's module, or None when it is registered but not shipped in this build."""
    if name not in SUITES:
        raise ConfigError(f"unknown bench suite {name!r}; available: {', '.join(available_suites())}")
    target = SUITES[name]
    try:
        return importlib.import_module(target, __package__)
    except ModuleNotFoundError as exc:
        missing = importlib.util.resolve_name(target, __package__) if target.startswith(".") else target
        if exc.name != missing:
            raise
        return None


def available_suites() -> dict[str, ModuleType]:
    """Every registered suite whose module is present, in registration order."""
    found = {}
    for name in SUITES:
        module = load_suite(name)
        if module is not None:
            found[name] = module
    return found


def int_list(text: str, minimum: int = 1) -> list[int]:
    """argparse type for "10,24,50": ints >= minimum, sorted, duplicates removed."""
    try:
        values = sorted({int(v) for v in text.split(",") if v.strip()})
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected a comma list of integers such as 10,24,50, got {text!r}") from exc
    if not values or values[0] < minimum:
        raise argparse.ArgumentTypeError(f"expected integers >= {minimum}, got {text!r}")
    return values


def seed_list(text: str) -> list[int]:
    """argparse type for "0,1,2": seeds, >= 0."""
    return int_list(text, minimum=0)


def result_json(result: Any) -> str:
    """`result` as JSON text with one line per row: a list of scalars, or an object whose values
    are scalars or lists of scalars, stays on one line; anything deeper is indented.

    Checked-in results stay short and diff row by row, and load to exactly the same values
    (floats are written as Python's shortest round-trip repr)."""
    # The round trip does what json.dumps does to tuples and non-string keys, and refuses NaN.
    plain = json.loads(json.dumps(result, allow_nan=False))
    return _json_block(plain, "") + "\n"


def _is_row(value: Any) -> bool:
    if isinstance(value, dict):
        return all(_is_flat(v) for v in value.values())
    return _is_flat(value)


def _is_flat(value: Any) -> bool:
    """A scalar or a list of scalars."""
    if isinstance(value, list):
        return not any(isinstance(v, (dict, list)) for v in value)
    return not isinstance(value, dict)


def _json_block(value: Any, indent: str) -> str:
    if _is_row(value):
        return json.dumps(value)
    inner = indent + "  "
    if isinstance(value, dict):
        items = [f"{inner}{json.dumps(key)}: {_json_block(v, inner)}" for key, v in value.items()]
        return "{\n" + ",\n".join(items) + f"\n{indent}}}"
    items = [inner + _json_block(v, inner) for v in value]
    return "[\n" + ",\n".join(items) + f"\n{indent}]"
