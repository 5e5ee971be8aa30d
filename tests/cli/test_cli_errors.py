"""The command line as a shell user meets it: missing extras and closed pipes."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

BLOCK = "import sys; sys.modules[{mod!r}] = None; from glonet_edge.cli import main; sys.exit(main({argv!r}))"


def _glonet_without(module: str, argv: list[str], tmp_path) -> subprocess.CompletedProcess:
    code = BLOCK.format(mod=module, argv=argv)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)


@pytest.mark.skipif(sys.version_info < (3, 10), reason="training commands stop earlier: they need Python 3.10")
@pytest.mark.parametrize("argv, module, extra", [
    (["train", "--out", "run"], "torch", "train"),
    (["quantize", "bundle"], "nncf", "quantize"),
])
def test_missing_library_names_the_extra(tmp_path, argv, module, extra):
    """A serving-only install (`pip install glonet-edge[openvino]`) has no torch or nncf: the
    command says which extra to install, in one line, instead of a traceback."""
    if argv[0] == "quantize":
        argv = [*argv, "--method", "nncf"]
    res = _glonet_without(module, argv, tmp_path)
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1
    assert f"pip install glonet-edge[{extra}]" in lines[0]


def test_closed_stdout_ends_quietly(fc_served_bundle):
    """`glonet ... | head` closes the pipe early: no BrokenPipeError traceback, and the status
    is 128 + SIGPIPE as for Unix tools (POSIX: a write to a pipe with no reader gives EPIPE)."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before glonet writes a byte
    try:
        res = subprocess.run([sys.executable, "-m", "glonet_edge", "inspect", str(fc_served_bundle), "--json"], stdout=write_end,
                             stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write_end)
    assert res.returncode == 141
    assert res.stderr == ""


def test_training_commands_name_the_python_they_need(monkeypatch, capsys):
    """The serving side runs on 3.8 (JetPack 5); training, export and quantize need 3.10."""
    import glonet_edge.cli as cli

    monkeypatch.setattr(cli, "TRAINING_PYTHON", (99, 0))
    assert cli.main(["export", "run", "--out", "bundle"]) == 2
    assert "needs Python 99.0 or newer" in capsys.readouterr().err
