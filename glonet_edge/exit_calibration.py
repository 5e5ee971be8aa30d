"""Certify a bundle's early-exit thresholds for one precision (exits.py holds the method).

`calibrate_bundle` is the one hook: `glonet export` calls it for fp32, `glonet quantize` for
int8 and `glonet calibrate` for either, with explicit drops. It runs the bundle's segment
chain with ONNX Runtime on the CPU over the validation split (other engines' outputs differ
only by float rounding), picks the check stride from measured latency unless one is given,
and sets manifest.exits[precision]; the caller saves the manifest.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .compare import cpu_session, predict, session_runner
from .errors import ArtifactError, ConfigError
from .exits import (DEFAULT_CONFIDENCE, DEFAULT_MAX_DROPS, ExitCalibration, calibrate, calibration_size,
                    choose_stride, default_rule, exit_rows, feasible_drops, minimum_samples)
from .manifest import BundleManifest
from .provenance import chain_graphs

TIMING_REPEATS = 30


def calibrate_bundle(bundle_dir: str | Path, manifest: BundleManifest, precision: str, x: np.ndarray, y: np.ndarray, *,
                     max_drops: Sequence[float] | None = None, confidence_level: float = DEFAULT_CONFIDENCE,
                     rule: str | None = None, stride: int | None = None, seed: int = 0) -> dict[str, Any]:
    """Set manifest.exits[precision] from the chain's outputs on (x, y) and return a summary.

    max_drops None: the default drops this much data can certify (none: the record is
    dropped and the summary says why); given: every one must be certifiable (ConfigError
    naming the minimum size otherwise)."""
    manifest.exits.pop(precision, None)  # a stale record must never outlive the graphs it was made on
    if not manifest.segments:
        return {"skipped": "the bundle has no segment chain; re-export without --no-segments"}
    if max_drops is None:
        max_drops = feasible_drops(len(y), confidence_level, DEFAULT_MAX_DROPS)
        if not max_drops:
            need = minimum_samples(max(DEFAULT_MAX_DROPS), confidence_level)
            return {"skipped": f"{calibration_size(len(y))} calibration samples (2/3 of the validation split) are "
                               f"too few: a {max(DEFAULT_MAX_DROPS):g} drop at confidence {confidence_level:g} needs {need}"}
    chain_precision = _chain_precision(manifest, precision)
    sessions = [cpu_session(_segment_path(bundle_dir, s, chain_precision), threads=1) for s in manifest.segments]
    outputs = _chain_outputs(manifest, sessions, x)
    rule = rule or default_rule(manifest.task)
    if stride is None:
        stride = _measured_stride(manifest, sessions, x[:1], rule)
    macs = [s.macs for s in manifest.segments]
    record = calibrate(outputs, y, manifest.task, [s.end_depth for s in manifest.segments],
                       chain_precision=chain_precision, rule=rule, max_drops=list(max_drops),
                       confidence_level=confidence_level, stride=stride,
                       segment_macs=None if None in macs else macs, seed=seed)
    # the graphs it was certified on: thresholds of an older chain are refused at serving time
    manifest.exits[precision] = dataclasses.replace(record, graphs=chain_graphs(manifest, chain_precision))
    return summary(record)


def summary(record: ExitCalibration) -> dict[str, Any]:
    """What export / quantize / calibrate report: the full-depth points and the sizes."""
    deepest = max((p.max_depth for p in record.points), default=None)
    return {"rule": record.rule, "confidence": record.confidence, "stride": record.stride,
            "chain_precision": record.chain_precision, "calibration_samples": record.calibration_samples,
            "heldout_samples": record.heldout_samples, "points": len(record.points), "notes": record.notes,
            "at_full_depth": [{"max_drop": p.max_drop, "threshold": p.threshold, **p.heldout}
                              for p in record.points if p.max_depth == deepest]}


def validation_split(manifest: BundleManifest, dataset: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The data quantize judges on (quantize.calibration.load_calibration): a bundle exported from
    your own model, its recorded validation data whole (own_model_validation); else the held-out
    split the bundle's checkpoint was trained without (same seed and fraction)."""
    from .data import expect_input_shape, load_recorded, own_model_validation

    own = own_model_validation(manifest)
    if own is not None:
        return own
    data_cfg = manifest.model.get("data") or {}
    spec = dataset or data_cfg.get("dataset")
    if not spec:
        raise ConfigError("the bundle's model config records no data set; pass the one it was trained on with --data")
    data = load_recorded(spec, data_cfg)
    expect_input_shape("data set", spec, data.x_val, manifest.input_shape,
                       "pass the data set it was trained on with --data")
    return data.x_val, data.y_val


def _chain_precision(manifest: BundleManifest, precision: str) -> str:
    """The chain the runtime serves for `precision`: its own segments when all exist, else fp32."""
    if all(s.artifact("onnx", precision) is not None for s in manifest.segments):
        return precision
    return "fp32"


def _segment_path(bundle_dir: str | Path, segment: Any, precision: str) -> Path:
    art = segment.artifact("onnx", precision)
    if art is None:
        raise ArtifactError(f"segment {segment.index} has no {precision} ONNX graph; re-run `glonet export`")
    return art.resolve(bundle_dir)


def _chain_outputs(manifest: BundleManifest, sessions: list[Any], x: np.ndarray) -> list[np.ndarray]:
    """The chain's prediction after every segment, for every row of x."""
    feeds = {manifest.input_name: x}
    outputs = []
    for i, sess in enumerate(sessions):
        *state, y = predict(session_runner(sess), feeds)
        outputs.append(y)
        if i + 1 < len(sessions):
            feeds = dict(zip(manifest.segments[i + 1].inputs, state))
    return outputs


def _measured_stride(manifest: BundleManifest, sessions: list[Any], x_one: np.ndarray, rule: str) -> int:
    """choose_stride from the batch-1 latency of every segment and of one exit check."""
    feeds = {manifest.input_name: x_one}
    segment_ms = []
    for i, sess in enumerate(sessions):
        segment_ms.append(median_ms(lambda: sess.run(None, feeds)))
        *state, y = sess.run(None, feeds)
        if i + 1 < len(sessions):
            feeds = dict(zip(manifest.segments[i + 1].inputs, state))
    check_ms = median_ms(lambda: exit_rows(rule, 0.5, y, y).any())
    return choose_stride(segment_ms, check_ms)


def median_ms(fn: Any, repeats: int = TIMING_REPEATS) -> float:
    """Median wall time of `fn()` over `repeats` calls, in ms."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3
