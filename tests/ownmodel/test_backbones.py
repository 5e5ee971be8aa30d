"""timm and torchvision backbones wrapped as GloNets, end to end (run in the venv that has
them; skipped where timm / torchvision cannot be imported)."""

from __future__ import annotations

import pytest

from ownmodel_helpers import cli, quantize, train_plain, write_image_folder

torch = pytest.importorskip("torch")
pytest.importorskip("PIL")

from glonet_edge.compare import cpu_session, max_abs_error  # noqa: E402
from glonet_edge.data import load_samples  # noqa: E402
from glonet_edge.errors import ArtifactError, ConfigError  # noqa: E402
from glonet_edge.export import export_bundle  # noqa: E402
from glonet_edge.manifest import BundleManifest  # noqa: E402

SIZE = 32


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("backbone-images")
    return tuple(write_image_folder(root / name, per_class=n, seed=seed, size=SIZE)
                 for name, n, seed in (("train", 16, 0), ("val", 8, 1), ("heldout", 4, 2)))


def _train_and_export(model, folders, out, depths="all"):
    train, val, _ = folders
    x, y, _ = load_samples(str(train))
    train_plain(model, x, y, epochs=2, weights=out.parent / f"{out.name}.safetensors")
    return export_bundle(model, out, val=str(val), depths=depths, progress=False)


def _assert_graphs_match_torch(model, bundle, manifest, x):
    model.eval()
    with torch.no_grad():
        for e in manifest.depths:
            got = cpu_session(bundle / e.artifact("onnx", "fp32").path).run(None, {"x": x})[0]
            assert max_abs_error(got, model(torch.from_numpy(x), depth=e.depth).numpy()) <= 1e-4, e.depth


def _downstream(bundle, folders, x):
    """Quantize within --max-drop, compile for OpenVINO and ONNX Runtime, serve two depths."""
    from glonet_edge.runtime import Runtime

    quantize(bundle, folders[0], max_drop=0.05)
    manifest = BundleManifest.load(bundle)
    for e in manifest.depths:
        assert "int8" not in e.rejected and e.metrics["fp32"]["accuracy"] - e.metrics["int8"]["accuracy"] <= 0.05 + 1e-9
    depths = [manifest.depth_values()[0], manifest.depth_values()[-1]]
    for target in ("openvino", "onnxruntime"):  # the two served depths: compiling a ResNet-18 family takes minutes
        rc, _, err = cli("compile", str(bundle), "--target", target, "--precision", "fp32,int8", "--no-progress",
                         "--depths", ",".join(map(str, depths)), "--no-segments")
        assert rc == 0, err
    want = {d: cpu_session(bundle / manifest.depth(d).artifact("onnx", "fp32").path).run(None, {"x": x})[0]
            for d in depths}
    for target in ("onnxruntime", "openvino"):
        with Runtime.open(bundle, target=target, power="none") as rt:
            for d in depths:
                rt.set_depth(d)
                assert max_abs_error(rt.infer(x).outputs, want[d]) <= (0 if target == "onnxruntime" else 1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("library", ["timm", "torchvision"])
def test_resnet_end_to_end(folders, tmp_path, library):
    pytest.importorskip(library)
    from glonet_edge import backbones

    model = getattr(backbones, f"{library}_glonet")("resnet18", num_classes=3)
    assert model.num_blocks == 8 and [type(a.proj).__name__ for a in model.adapters] == ["Linear"] * 6 + ["Identity"] * 2
    manifest = _train_and_export(model, folders, tmp_path / "bundle")
    assert manifest.depth_values() == list(range(1, 9))
    x = load_samples(str(folders[2]))[0]
    _assert_graphs_match_torch(model, tmp_path / "bundle", manifest, x)
    _downstream(tmp_path / "bundle", folders, x)


@pytest.mark.slow
def test_timm_vit_end_to_end(folders, tmp_path):
    pytest.importorskip("timm")
    from glonet_edge.backbones import timm_glonet

    model = timm_glonet("vit_tiny_patch16_224", num_classes=3, img_size=SIZE, patch_size=8)
    assert model.num_blocks == 12
    manifest = _train_and_export(model, folders, tmp_path / "bundle")
    _assert_graphs_match_torch(model, tmp_path / "bundle", manifest, load_samples(str(folders[2]))[0])


def _features(wrapped, x):
    h = wrapped.stem(x)
    for block in wrapped.blocks:
        h = block(h)
    return h


def test_wrapped_backbones_run_the_backbones_own_stem_and_blocks():
    timm = pytest.importorskip("timm")
    torchvision = pytest.importorskip("torchvision")
    from glonet_edge.backbones import wrap_resnet, wrap_vit

    x = torch.randn(2, 3, SIZE, SIZE)
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=3, img_size=SIZE, patch_size=8).eval()
    timm_resnet = timm.create_model("resnet18", pretrained=False, num_classes=3).eval()
    tv_resnet = torchvision.models.resnet18(weights=None, num_classes=3).eval()
    with torch.no_grad():
        wrapped = wrap_vit(vit)
        torch.testing.assert_close(wrapped.head.norm(_features(wrapped, x)), vit.forward_features(x))
        torch.testing.assert_close(_features(wrap_resnet(timm_resnet), x), timm_resnet.forward_features(x))
        tv_features = torch.nn.Sequential(*list(tv_resnet.children())[:-2])  # all but avgpool and fc
        torch.testing.assert_close(_features(wrap_resnet(tv_resnet), x), tv_features(x))


def _save_vit(path):
    import timm
    from safetensors.torch import save_file

    save_file(timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=3).state_dict(), str(path))
    return path


def test_a_local_weights_file_loads_and_nothing_is_fetched(tmp_path, monkeypatch):
    timm = pytest.importorskip("timm")
    torchvision = pytest.importorskip("torchvision")
    from safetensors.torch import save_file

    from glonet_edge.backbones import timm_glonet, torchvision_glonet

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    source = timm.create_model("resnet18", pretrained=False, num_classes=3)
    save_file(source.state_dict(), str(tmp_path / "resnet18.safetensors"))
    wrapped = timm_glonet("resnet18", num_classes=3, weights_file=tmp_path / "resnet18.safetensors")
    torch.testing.assert_close(wrapped.head.weight, source.fc.weight)
    torch.testing.assert_close(wrapped.blocks[7].conv2.weight, source.layer4[1].conv2.weight)
    tv = torchvision.models.resnet18(weights=None, num_classes=3)
    torch.save(tv.state_dict(), tmp_path / "tv.pt")
    torch.testing.assert_close(torchvision_glonet("resnet18", num_classes=3, weights_file=tmp_path / "tv.pt").head.weight,
                               tv.fc.weight)
    with pytest.raises(ArtifactError, match=r"tv.pt does not fit the model: size mismatch for fc.weight"):
        timm_glonet("resnet18", num_classes=5, weights_file=tmp_path / "tv.pt")  # timm and torchvision share key names
    with pytest.raises(ArtifactError, match=r"missing keys \[bn1.bias, .*unexpected keys \[blocks.0"):
        timm_glonet("resnet18", num_classes=3, weights_file=_save_vit(tmp_path / "vit.safetensors"))


def test_unsupported_backbones_are_refused():
    timm = pytest.importorskip("timm")
    from glonet_edge.backbones import wrap_resnet, wrap_vit

    with pytest.raises(ConfigError, match="is not a timm/torchvision ResNet"):
        wrap_resnet(torch.nn.Linear(3, 3))
    no_token = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=3, img_size=SIZE, patch_size=8,
                                 class_token=False, global_pool="avg")
    with pytest.raises(ConfigError, match="has no class token, which wrap_vit does not take"):
        wrap_vit(no_token)


def test_without_the_extras_the_error_names_them():
    import importlib

    from glonet_edge.backbones import timm_glonet, torchvision_glonet
    from glonet_edge.errors import MissingDependencyError

    missing = []
    for extra, build in (("timm", timm_glonet), ("torchvision", torchvision_glonet)):
        try:
            importlib.import_module(extra)
        except ImportError:
            missing.append(extra)
            with pytest.raises(MissingDependencyError, match=rf"glonet-edge\[{extra}\]"):
                build("resnet18")
    if not missing:
        pytest.skip("timm and torchvision are both installed here")
