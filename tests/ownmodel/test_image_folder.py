"""Image folders as data: DIR/<class>/<image>.png|.jpg, read with Pillow, for train, --val and calibration."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from ownmodel_helpers import cli, image, write_image_folder

Image = pytest.importorskip("PIL.Image")

from glonet_edge.data import load_dataset, load_samples  # noqa: E402
from glonet_edge.errors import ConfigError  # noqa: E402


def test_labels_follow_sorted_class_folders_and_pixels_are_kept(tmp_path):
    rng = np.random.default_rng(0)
    pictures = {}
    for name in ("zebra", "ant"):
        (tmp_path / name).mkdir()
        pictures[name] = image(0, rng)
        Image.fromarray(pictures[name]).save(tmp_path / name / "a.png")
    (tmp_path / "ant" / "notes.txt").write_text("not an image, not read")
    (tmp_path / ".cache").mkdir()
    x, y, classes = load_samples(str(tmp_path))
    assert classes == ["ant", "zebra"] and y.tolist() == [0, 1] and y.dtype == np.int64
    assert x.shape == (2, 3, 16, 16) and x.dtype == np.float32
    np.testing.assert_array_equal(x[0], pictures["ant"].transpose(2, 0, 1).astype(np.float32))


def test_resize_grey_images_and_split(tmp_path):
    for label, name in enumerate(("a", "b")):
        (tmp_path / name).mkdir()
        for i in range(5):
            Image.fromarray(np.full((20, 30), 40 * label + i, np.uint8), "L").save(tmp_path / name / f"{i}.png")
    data = load_dataset(str(tmp_path), image_size=8, val_fraction=0.2)
    assert data.x_train.shape == (8, 1, 8, 8) and data.x_val.shape == (2, 1, 8, 8)
    assert data.classes == ["a", "b"] and data.num_outputs == 2 and data.task == "classification"
    with pytest.raises(ConfigError, match="--image-size must be a positive int"):
        load_dataset(str(tmp_path), image_size=0)


def _folder(tmp_path):
    return write_image_folder(tmp_path / "images", per_class=2, seed=0)


@pytest.mark.parametrize("spoil, message", [
    (lambda d: [shutil.rmtree(p) for p in list(d.iterdir())], "has no class sub-folders"),
    (lambda d: [f.unlink() for f in (d / "square").iterdir()], r"class folder .*square has no .png/.jpg/.jpeg images"),
    (lambda d: (d / "circle" / "000.png").write_bytes(b"not a png"), r"circle/000.png is not a readable PNG/JPEG image"),
    (lambda d: Image.new("L", (16, 16)).save(d / "stripes" / "001.png"),
     r"stripes/001.png is a L image but .*circle/000.png is RGB; convert every image to one mode"),
    (lambda d: Image.new("RGBA", (16, 16)).save(d / "circle" / "000.png"), r"000.png is a RGBA image; only L"),
    (lambda d: Image.new("RGB", (12, 16)).save(d / "square" / "000.png"),
     r"square/000.png is 12x16 but .*circle/000.png is 16x16; pass --image-size N"),
])
def test_bad_image_folders_name_the_problem(tmp_path, spoil, message):
    folder = _folder(tmp_path)
    spoil(folder)
    with pytest.raises(ConfigError, match=message):
        load_samples(str(folder))


def test_glonet_train_on_an_image_folder_and_export_the_run(tmp_path):
    pytest.importorskip("torch")
    from glonet_edge.manifest import BundleManifest

    folder = write_image_folder(tmp_path / "images", per_class=6, seed=3, size=20)
    run, bundle = tmp_path / "run", tmp_path / "bundle"
    rc, out, err = cli("train", "--model", "glonet-cnn", "--depth", "3", "--dataset", str(folder), "--image-size", "8",
                       "--epochs", "1", "--out", str(run), "--quiet", "--json")
    assert rc == 0, err
    assert json.loads((run / "config.json").read_text())["data"]["image_size"] == 8
    assert json.loads((run / "config.json").read_text())["input_shape"] == [3, 8, 8]
    rc, _, err = cli("export", str(run), "--out", str(bundle), "--depths", "3", "--no-segments", "--no-progress")
    assert rc == 0, err  # the held-out split is read again from the folder, resized the same way
    assert BundleManifest.load(bundle).input_shape == [3, 8, 8]
    rc, _, err = cli("train", "--dataset", str(tmp_path / "run"), "--out", str(tmp_path / "r2"), "--quiet")
    assert rc == 2 and "has no class sub-folders" in err
    assert json.loads(out)["metric"] == "accuracy"
