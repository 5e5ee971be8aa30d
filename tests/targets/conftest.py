"""Fixtures for the targets / compile / profile tests (their tiny bundles are in tests/conftest.py)."""

from __future__ import annotations

import os

import pytest


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
