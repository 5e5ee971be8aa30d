"""A user's own model end to end, made once per session: image folders, the model file, the
trained weights and the bundle exported from memory."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from ownmodel_helpers import import_file, train_plain, write_image_folder, write_model_module

# GLONET_REQUIRE_ECOSYSTEM=1 (set by .ci/ecosystem): a test here skipped because one of these
# could not be imported fails instead, so the ecosystem run cannot pass by skipping everything.
ECOSYSTEM_MODULES = ("torch", "PIL", "timm", "torchvision", "safetensors", "onnxruntime", "openvino")
_MISSING_IMPORT = re.compile(r"could not import '([\w.]+)'")


def _require_ecosystem() -> bool:
    return os.environ.get("GLONET_REQUIRE_ECOSYSTEM", "") not in ("", "0")


def _fail_missing_import(report) -> None:
    """Turn an importorskip skip of an ecosystem module into a failure (in place)."""
    if not (_require_ecosystem() and report.skipped):
        return
    match = _MISSING_IMPORT.search(str(report.longrepr))
    if match and match.group(1).split(".")[0] in ECOSYSTEM_MODULES:
        report.outcome = "failed"
        report.longrepr = (f"GLONET_REQUIRE_ECOSYSTEM is set but {match.group(1)} could not be imported: "
                           f"{report.longrepr}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _fail_missing_import(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    _fail_missing_import(outcome.get_result())


@dataclass
class OwnModel:
    root: Path  # holds the model file: the working directory of --module runs
    module_name: str
    model: object  # the trained GloNet
    weights: Path
    train_dir: Path
    val_dir: Path
    heldout: tuple[np.ndarray, np.ndarray]  # images neither trained nor validated on
    bundle: Path  # exported from memory with val=val_dir


@pytest.fixture(scope="session")
def own(tmp_path_factory) -> OwnModel:
    pytest.importorskip("torch")
    pytest.importorskip("PIL")
    from glonet_edge.data import load_samples
    from glonet_edge.export import export_bundle

    root = tmp_path_factory.mktemp("own")
    train_dir = write_image_folder(root / "train", per_class=24, seed=0)
    val_dir = write_image_folder(root / "val", per_class=8, seed=1)
    heldout_dir = write_image_folder(root / "heldout", per_class=6, seed=2)
    model = import_file(write_model_module(root, "own_cnn")).build()
    x, y, _ = load_samples(str(train_dir))
    train_plain(model, x, y, epochs=6, weights=root / "model.safetensors")
    bundle = root / "bundle"
    export_bundle(model, bundle, val=str(val_dir), progress=False)
    return OwnModel(root, "own_cnn", model, root / "model.safetensors", train_dir, val_dir,
                    load_samples(str(heldout_dir))[:2], bundle)
