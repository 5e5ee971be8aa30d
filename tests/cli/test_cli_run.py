"""`glonet run` and `glonet inspect` on inputs a new user gets wrong."""

from __future__ import annotations

import json

import numpy as np

from glonet_edge.cli import main


def test_bundle_path_that_is_a_file(tmp_path, capsys):
    f = tmp_path / "manifest.json"
    f.write_text("{}")
    assert main(["inspect", str(f)]) == 2
    err = capsys.readouterr().err
    assert "is a file, not a bundle" in err and "does not exist" not in err


def test_depth_not_served_names_the_choices(fc_served_bundle, tmp_path, capsys):
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((2, 1, 8, 8), np.float32))
    assert main(["run", str(fc_served_bundle), "--input", str(x), "--depth", "-1", "--power", "none"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--depth -1" in err and "[1, 2" in err
    assert "None" not in err  # a Python word means nothing on the command line


def test_text_file_named_npy(fc_served_bundle, tmp_path, capsys):
    x = tmp_path / "x.npy"
    x.write_text("1,2,3\n")
    assert main(["run", str(fc_served_bundle), "--input", str(x), "--power", "none"]) == 2
    err = capsys.readouterr().err
    assert "not a .npy file" in err and "allow_pickle" not in err


def test_table_says_how_many_samples_it_shows(fc_served_bundle, tmp_path, capsys):
    x = tmp_path / "x.npy"
    np.save(x, np.random.default_rng(0).normal(size=(16, 1, 8, 8)).astype(np.float32))
    assert main(["run", str(fc_served_bundle), "--input", str(x), "--power", "none"]) == 0
    out = capsys.readouterr().out
    assert "first 10 of 16 samples" in out
    assert main(["run", str(fc_served_bundle), "--input", str(x), "--power", "none", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["predictions"]) == 16
