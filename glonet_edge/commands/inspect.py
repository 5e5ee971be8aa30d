"""`glonet inspect BUNDLE`: the family at a glance; `--verify` checks every sha256.

Reads only manifest.json (and the artifacts with --verify): no torch, no onnx.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..fileio import confined_path
from ..manifest import Artifact, BundleManifest
from ..provenance import stale_artifacts, stale_results
from ._output import add_json_flag, emit, format_table


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "inspect", help="show a bundle's depths, scores, artifacts, sizes and latencies",
        description="Print the family table of a bundle: per depth its params, MACs, held-out score per "
                    "precision, artifacts, bytes and, once profiled, p50 latency per target/precision.")
    p.add_argument("bundle", metavar="BUNDLE", help="bundle directory (with manifest.json)")
    p.add_argument("--verify", action="store_true", help="also check size and sha256 of every artifact file")
    add_json_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    manifest = BundleManifest.load(args.bundle)  # ConfigError / ArtifactError name what is wrong
    stale: list[str] = []
    if args.verify:
        manifest.verify(args.bundle)
        stale = stale_lines(manifest, args.bundle)
    result = describe(manifest, Path(args.bundle))
    result["verified"] = bool(args.verify) and not stale
    result["stale"] = stale
    title = (f"{args.bundle}: {manifest.model['model']} depth {manifest.max_depth} ({manifest.task}, "
             f"{manifest.metric_name}), schema {manifest.schema_version}, {manifest.producer}, opset {manifest.opset}")
    emit(args, result, result["rows"], title=title)
    if not args.json:
        if result["segments"]:
            print(f"\nsegment chain ({len(result['segments'])} segments)")
            print(format_table(result["segments"], ["index", "start_depth", "end_depth", "artifacts", "bytes"]))
        if result["warnings"]:
            print("\n" + "\n".join(f"WARNING: {w}" for w in result["warnings"]))
        print(f"\n{len(result['files'])} files, {result['total_bytes']} bytes (shared files counted once)")
        for line in stale:
            print(f"STALE: {line}")
        if args.verify and not stale:
            print("verified: every file has the size and sha256 the manifest records, every engine and result "
                  "belongs to the current graphs")
    if stale:
        print(f"glonet inspect: {len(stale)} stale artifact(s) or result(s); rebuild them with the commands above",
              file=sys.stderr)
        return 1
    return 0


def stale_lines(manifest: BundleManifest, bundle: str) -> list[str]:
    """One line per compiled artifact, measured result or exit calibration of an older graph."""
    return [s.message(bundle) for s in stale_artifacts(manifest)] + stale_results(manifest, bundle)


def describe(manifest: BundleManifest, bundle: Path) -> dict[str, Any]:
    """Table rows per depth and per segment, and every file the manifest lists, once."""
    rows = []
    for e in sorted(manifest.depths, key=lambda e: e.depth):
        row: dict[str, Any] = {"depth": e.depth, "params": e.params, "macs": e.macs}
        for precision, values in sorted(e.metrics.items()):
            row[f"{precision} {manifest.metric_name}"] = values.get(manifest.metric_name)
        row["artifacts"] = _names(e.artifacts)
        row["bytes"] = sum(a.bytes for a in e.artifacts)
        for key, lat in sorted(e.latency_ms.items()):
            row[f"p50 ms {key}"] = lat.get("p50")
        for key, mj in sorted(e.energy_mj.items()):
            row[f"mJ {key}"] = mj
        if e.rejected:
            row["rejected"] = ", ".join(f"{p}: {why}" for p, why in sorted(e.rejected.items()))
        rows.append(row)
    # Columns differ per depth (a precision quantized for some depths only): give every row
    # every column so the table lines up.
    columns = list(dict.fromkeys(k for r in rows for k in r))
    rows = [{c: r.get(c) for c in columns} for r in rows]
    segments = [{"index": s.index, "start_depth": s.start_depth, "end_depth": s.end_depth, "inputs": s.inputs,
                 "outputs": s.outputs, "artifacts": _names(s.artifacts), "bytes": sum(a.bytes for a in s.artifacts)}
                for s in manifest.segments]
    files: dict[str, dict[str, Any]] = {}
    for a in manifest.all_artifacts():
        for path, nbytes, digest in [(a.path, a.bytes, a.sha256)] + [(c["path"], c["bytes"], c["sha256"])
                                                                     for c in a.companions]:
            files.setdefault(path, {"path": path, "bytes": nbytes, "sha256": digest,
                                    "present": confined_path(bundle, path).is_file()})
    return {"bundle": str(bundle), "schema_version": manifest.schema_version, "producer": manifest.producer,
            "model": manifest.model.get("model"), "model_depth": manifest.max_depth, "task": manifest.task,
            "metric_name": manifest.metric_name, "opset": manifest.opset,
            "source_checkpoint_sha256": manifest.source_checkpoint_sha256, "targets": manifest.targets,
            "rows": rows, "segments": segments, "files": list(files.values()), "warnings": _speed_warnings(manifest, bundle),
            "total_bytes": sum(f["bytes"] for f in files.values())}


def _names(artifacts: list[Artifact]) -> str:
    return ", ".join(f"{a.format}/{a.precision}" + (" +shared" if a.companions else "") for a in artifacts)


def _speed_warnings(manifest: BundleManifest, bundle: Path) -> list[str]:
    """INT8 that profiled slower than FP32 (same target, depth and batch): worth a loud line."""
    from ..runtime.int8_speed import slower_int8

    return [s.describe() + "; serve fp32 or precision='auto', or re-quantize (docs/quantize.md, INT8 flavours)"
            for s in slower_int8(manifest, bundle)]
