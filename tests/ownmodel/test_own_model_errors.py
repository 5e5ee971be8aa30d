"""Bad input for the own-model routes: one clear line, a non-zero exit, nothing half-written."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest

from ownmodel_helpers import cli, import_file, write_model_module

torch = pytest.importorskip("torch")
pytest.importorskip("PIL")

from glonet_edge.errors import ArtifactError, ConfigError  # noqa: E402
from glonet_edge.export import export_bundle  # noqa: E402
from glonet_edge.fileio import sha256_file  # noqa: E402
from glonet_edge.manifest import BundleManifest  # noqa: E402


def _export(own, tmp_path, *argv):
    """`glonet export --val VAL --out tmp/out ARGV` from the model's directory; out must not appear on failure."""
    out = tmp_path / "out"
    rc, _, err = cli("export", "--val", str(own.val_dir), "--out", str(out), *argv, cwd=own.root)
    assert rc == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert not out.exists()
    return err


@pytest.mark.parametrize("spec, message", [
    ("no_such_module:build", r"cannot import no_such_module \(ModuleNotFoundError"),
    ("{mod}:nothing_here", "has no function nothing_here"),
    ("{mod}:not_a_module", r"not_a_module\(\) returned a int, not a torch.nn.Module"),
    ("{mod}:plain_sequential", r"returned a Sequential, which cannot be cut by depth; wrap it: glonet_edge.GloNet"),
    ("{mod}:broken", r"broken\(\) raised RuntimeError: the backbone config is missing"),
    ("{mod}", "must look like pkg.mod:build_fn"),
])
def test_module_that_does_not_build_a_glonet(own, tmp_path, spec, message):
    err = _export(own, tmp_path, "--module", spec.format(mod=own.module_name))
    assert re.search(message, err), err


def test_weights_that_do_not_fit_are_listed(own, tmp_path):
    from safetensors.torch import save_file

    state = dict(own.model.state_dict())
    state["extra.weight"] = torch.zeros(2)
    del state["head.1.bias"], state["blocks.0.0.weight"]
    save_file(state, str(tmp_path / "keys.safetensors"))
    err = _export(own, tmp_path, "--module", f"{own.module_name}:build", "--weights", str(tmp_path / "keys.safetensors"))
    assert "missing keys [blocks.0.0.weight, head.1.bias], unexpected keys [extra.weight]" in err
    state = dict(own.model.state_dict())
    state["head.1.bias"] = torch.zeros(7)
    torch.save(state, tmp_path / "shape.pt")
    err = _export(own, tmp_path, "--module", f"{own.module_name}:build", "--weights", str(tmp_path / "shape.pt"))
    assert "head.1.bias" in err and "torch.Size([7])" in err and "torch.Size([3])" in err


def test_weights_that_would_unpickle_code_are_refused(own, tmp_path):
    torch.save({"model": own.model}, tmp_path / "pickled.pt")
    err = _export(own, tmp_path, "--module", f"{own.module_name}:build", "--weights", str(tmp_path / "pickled.pt"))
    assert "refused" in err and "GloNet" in err and "safetensors.torch.save_file" in err
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 40)
    err = _export(own, tmp_path, "--module", f"{own.module_name}:build", "--weights", str(tmp_path / "junk.safetensors"))
    assert "is not a readable weights file" in err


def test_flag_combinations_are_checked(own, tmp_path):
    err = _export(own, tmp_path)
    assert "give a checkpoint directory RUN, or your own model with --module" in err
    rc, _, err = cli("export", "--module", f"{own.module_name}:build", "--out", str(tmp_path / "o"), cwd=own.root)
    assert rc == 2 and "--module needs --val DATA" in err
    rc, _, err = cli("export", str(tmp_path), "--weights", str(own.weights), "--out", str(tmp_path / "o"))
    assert rc == 2 and "--weights: only with --module" in err


def test_failed_export_keeps_the_previous_bundle(own, tmp_path):
    previous = tmp_path / "previous"
    shutil.copytree(own.bundle, previous)
    before = sha256_file(previous / "manifest.json")
    (tmp_path / "empty").mkdir()
    rc, _, err = cli("export", "--module", f"{own.module_name}:build", "--val", str(tmp_path / "empty"),
                     "--out", str(previous), cwd=own.root)
    assert rc == 2 and "has no class sub-folders" in err
    assert sha256_file(previous / "manifest.json") == before
    BundleManifest.load(previous).verify(previous)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "previous"]  # no staging left over


def test_export_bundle_keywords_are_checked(own, tmp_path, fc_run):
    x = np.zeros((4, 3, 16, 16), np.float32)
    y = np.arange(4) % 3
    cases = [
        (dict(source=own.model), "needs val="),
        (dict(source=own.model, val=(x, y), dataset="digits"), "for a model in memory pass val="),
        (dict(source=fc_run, val=(x, y)), "val describe a model in memory"),
        (dict(source=torch.nn.Linear(2, 2), val=(x, y)), "wrap yours in glonet_edge.GloNet"),
        (dict(source=own.model, val=(x, y), example_input=torch.zeros(2, 3, 8, 8)), r"example_input has shape \(2, 3, 8, 8\)"),
        (dict(source=own.model, val=(x[:, :1], y)), r"validation samples have shape \[1, 16, 16\], the model expects"),
        (dict(source=own.model, val=(x, y), metric="f1"), "metric must be one of accuracy, r2"),
        (dict(source=own.model, val=(x, y.astype(np.float32)), metric="accuracy"), "needs class labels"),
        (dict(source=own.model, val=(x, y[:3])), "N labels"),
        (dict(source=own.model, val=42), "val must be"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ConfigError, match=message):
            export_bundle(out_dir=tmp_path / "b", progress=False, **kwargs)
    assert not (tmp_path / "b").exists()


def test_weights_loader_refuses_non_tensor_content(tmp_path):
    from glonet_edge.train.checkpoint import read_state_dict

    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(ArtifactError, match="does not hold a state_dict"):
        read_state_dict(tmp_path / "list.pt")
    with pytest.raises(ArtifactError, match="does not exist"):
        read_state_dict(tmp_path / "missing.safetensors")
    torch.save({"state_dict": {"w": torch.ones(2)}}, tmp_path / "lightning.ckpt")
    assert list(read_state_dict(tmp_path / "lightning.ckpt")) == ["w"]


def test_model_module_written_by_a_user_builds_the_same_weights(tmp_path):
    first = import_file(write_model_module(tmp_path, "again_a")).build()
    second = import_file(write_model_module(tmp_path, "again_b")).build()
    for (k, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items()):
        assert torch.equal(a, b), k


def test_an_op_onnx_cannot_express_is_one_line(tmp_path, capfd):
    (tmp_path / "erfinv_model.py").write_text(
        "import torch\nfrom torch import nn\nfrom glonet_edge import GloNet\n\n\n"
        "class Erfinv(nn.Module):\n    def forward(self, x):\n        return torch.erfinv(torch.tanh(x))\n\n\n"
        "def build():\n    return GloNet(stem=nn.Linear(4, 4), blocks=[Erfinv(), nn.Linear(4, 4)], head=nn.Linear(4, 2))\n")
    np.savez(tmp_path / "val.npz", X=np.random.default_rng(0).random((8, 4)).astype(np.float32), y=np.arange(8) % 2)
    rc, out, err = cli("export", "--module", "erfinv_model:build", "--val", "val.npz", "--out", "b",
                     "--no-progress", cwd=tmp_path)
    captured = capfd.readouterr()  # torch's exporter prints its graph to the C++ stdout unless silenced
    assert rc == 2 and err == ("glonet export: error: torch.onnx cannot export depth_001.onnx: Exporting the operator "
                               "'aten::erfinv' to ONNX opset version 17 is not supported\n")
    assert out == "" and captured.out == "" and not (tmp_path / "b").exists()


def test_pool_conv_needs_a_grid_that_divides_the_input():
    from glonet_edge import GloNet
    from glonet_edge.glonet import PoolConv

    with pytest.raises(ConfigError, match=r"PoolConv\(size=3\) got a 10x10 grid; the size must divide it"):
        GloNet(stem=torch.nn.Conv2d(3, 4, 1), blocks=[torch.nn.Conv2d(4, 4, 1)], adapters=[PoolConv(4, 4, 3)],
               head=torch.nn.Flatten(), input_shape=(3, 10, 10))
