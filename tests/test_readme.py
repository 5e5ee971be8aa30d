"""Every example in README.md runs as written, on the bundle `glonet demo` builds.

The bash and python blocks run in order, in one directory where `glonet demo` ran first (its
work directory `glonet-demo/` holds the `run/` and `bundle/` the examples use). A block that
cannot run here (it installs packages, or needs a GPU or a Jetson) is preceded by the line
`<!-- not run: REASON -->`; a toml block preceded by `<!-- file: NAME -->` is written to NAME
before the blocks after it run.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
FENCE = re.compile(r"^```(\w*)\s*$")
NOT_RUN = re.compile(r"^<!-- not run: (.+\S) -->$")
FILE = re.compile(r"^<!-- file: (\S+) -->$")
RUNNABLE = ("bash", "python")


@dataclass(frozen=True)
class Block:
    line: int  # 1-based line of the opening fence
    language: str
    code: str
    mark: str  # the comment line before the fence, or ""

    @property
    def id(self) -> str:
        return f"L{self.line}-{self.language}"


def readme_blocks(text: str) -> list[Block]:
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        before = next((lines[j].strip() for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        blocks.append(Block(i + 1, m.group(1), "\n".join(lines[i + 1:end]) + "\n", before))
        i = end + 1
    return blocks


BLOCKS = readme_blocks(README.read_text(encoding="utf-8"))
RUN = [b for b in BLOCKS if b.language in RUNNABLE and not NOT_RUN.match(b.mark)]


def test_readme_has_runnable_examples_and_every_skip_says_why():
    assert len(RUN) >= 15
    skipped = [b for b in BLOCKS if b.language in RUNNABLE and b not in RUN]
    assert all(NOT_RUN.match(b.mark) for b in skipped)
    assert all(b.language in RUNNABLE + ("toml", "text", "ini", "") for b in BLOCKS), "unknown fence language"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A directory where `glonet demo` ran, as a user's would be after the first command."""
    pytest.importorskip("torch")
    pytest.importorskip("openvino")
    pytest.importorskip("matplotlib")
    root = tmp_path_factory.mktemp("readme")
    bin_dir = root / ".bin"  # `python` in the examples is this interpreter
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    (root / "examples").symlink_to(README.parent / "examples")  # as in a clone, where the demo runs
    env = _env(root)
    demo = subprocess.run(["glonet", "demo"], cwd=root, env=env, capture_output=True, text=True, timeout=1200)
    assert demo.returncode == 0, demo.stderr[-3000:]
    return root


def _env(root: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(root / ".bin"), str(Path(sys.executable).parent), env.get("PATH", "")])
    env["GLONET_CACHE_DIR"] = str(root / ".cache")  # not the user's ~/.cache
    env["MPLBACKEND"] = "Agg"
    return env


def _write_files_before(block: Block, root: Path) -> None:
    for b in BLOCKS:
        if b.line >= block.line:
            break
        m = FILE.match(b.mark)
        if m:
            (root / m.group(1)).write_text(b.code, encoding="utf-8")


@pytest.mark.parametrize("block", RUN, ids=[b.id for b in RUN])
def test_readme_example_runs_as_written(block: Block, workdir: Path):
    _write_files_before(block, workdir)
    argv = ["bash", "-euo", "pipefail", "-c", block.code] if block.language == "bash" else [sys.executable, "-c", block.code]
    done = subprocess.run(argv, cwd=workdir, env=_env(workdir), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"README.md line {block.line}:\n{block.code}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    assert "Traceback" not in done.stderr
