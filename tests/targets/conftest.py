"""Fixtures for the targets / quantize / compile / profile tests: tiny bundles built once per
session (targets_helpers.make_bundle) and copied per test."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from targets_helpers import CALIB, make_bundle


@pytest.fixture(scope="session", autouse=True)
def _engine_cache_dir(tmp_path_factory):
    """OpenVINO's model cache (and any other engine cache) goes to a temp dir, not ~/.cache."""
    old = os.environ.get("GLONET_CACHE_DIR")
    os.environ["GLONET_CACHE_DIR"] = str(tmp_path_factory.mktemp("engine-cache"))
    yield
    if old is None:
        os.environ.pop("GLONET_CACHE_DIR", None)
    else:
        os.environ["GLONET_CACHE_DIR"] = old


@pytest.fixture(scope="session")
def _bundle_cache(tmp_path_factory):
    cache: dict[str, Path] = {}

    def get(kind: str) -> Path:
        if kind not in cache:
            root = tmp_path_factory.mktemp(kind)
            if kind == "fc":
                # digits, depth 16: family 1..16 sampled, segments of 4 blocks
                cache[kind] = make_bundle(root, "glonet-fc", 16, "digits", [1, 4, 8, 16], epochs=12,
                                          segments=[(0, 4), (4, 8), (8, 16)])
            elif kind == "cnn":
                # digits (1x8x8) CNN, depth 6 = 2 blocks per stage
                cache[kind] = make_bundle(root, "glonet-cnn", 6, "digits", [1, 2, 4, 6], epochs=25, lr=5e-3,
                                          segments=[(0, 2), (2, 6)])
            else:
                raise KeyError(kind)
        return cache[kind]

    return get


def _copy(src: Path, tmp_path: Path, name: str) -> Path:
    dst = tmp_path / name / "bundle"
    shutil.copytree(src, dst)
    return dst


@pytest.fixture
def fc_bundle(_bundle_cache, tmp_path) -> Path:
    return _copy(_bundle_cache("fc"), tmp_path, "fc")


@pytest.fixture
def cnn_bundle(_bundle_cache, tmp_path) -> Path:
    return _copy(_bundle_cache("cnn"), tmp_path, "cnn")


@pytest.fixture(scope="session")
def fc_int8_bundle_src(_bundle_cache, tmp_path_factory) -> Path:
    """The fc bundle quantized once (ORT, TRT recipe) with segments; tests copy it."""
    from glonet_edge.export.quantize import quantize_bundle

    dst = tmp_path_factory.mktemp("fc_int8") / "bundle"
    shutil.copytree(_bundle_cache("fc"), dst)
    quantize_bundle(dst, method="ort", calib_size=CALIB, segments=True, progress=False)
    return dst


@pytest.fixture(scope="session")
def cnn_int8_bundle_src(_bundle_cache, tmp_path_factory) -> Path:
    from glonet_edge.export.quantize import quantize_bundle

    dst = tmp_path_factory.mktemp("cnn_int8") / "bundle"
    shutil.copytree(_bundle_cache("cnn"), dst)
    quantize_bundle(dst, method="ort", calib_size=CALIB, segments=True, progress=False)
    return dst


@pytest.fixture
def fc_int8_bundle(fc_int8_bundle_src, tmp_path) -> Path:
    return _copy(fc_int8_bundle_src, tmp_path, "fc_int8")


@pytest.fixture
def cnn_int8_bundle(cnn_int8_bundle_src, tmp_path) -> Path:
    return _copy(cnn_int8_bundle_src, tmp_path, "cnn_int8")

