"""Atomic writes, checksums and path confinement shared by every stage."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from .errors import ArtifactError


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write to a temp file in the same directory, fsync, then rename over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes 0600; artifacts are meant to be shared
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, allow_nan=False) + "\n")


def read_json(path: str | os.PathLike, what: str) -> Any:
    """Read a JSON file, turning every way it can be broken into an ArtifactError."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{what} not found at {path}; check the path or re-create it.")
    try:
        text = path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError) as exc:
        raise ArtifactError(f"{what} at {path} is unreadable ({exc}); re-create it.") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ArtifactError(
            f"{what} at {path} is not valid JSON (line {exc.lineno}: {exc.msg}); "
            "it was truncated or hand-edited: re-create it."
        ) from exc


def confined_path(root: str | os.PathLike, relative: str) -> Path:
    """Resolve `relative` under `root`, refusing absolute paths, `..` and symlinks that escape."""
    if not isinstance(relative, str) or not relative:
        raise ArtifactError(f"artifact path {relative!r} is empty or not a string.")
    if os.path.isabs(relative) or relative.startswith(("/", "\\")) or ":" in relative.split("/")[0]:
        raise ArtifactError(f"artifact path {relative!r} is absolute; bundle paths must be relative.")
    parts = relative.replace("\\", "/").split("/")
    if ".." in parts:
        raise ArtifactError(f"artifact path {relative!r} contains '..'; paths may not leave the bundle.")
    root_resolved = Path(root).resolve()
    target = (root_resolved / relative).resolve()
    if root_resolved != target and root_resolved not in target.parents:
        raise ArtifactError(
            f"artifact path {relative!r} resolves to {target}, outside the bundle {root_resolved} "
            "(a symlink points out of it); refusing to read it."
        )
    return target


@contextlib.contextmanager
def staged_directory(final: str | os.PathLike, keep_existing: bool = True) -> Iterator[Path]:
    """Build a directory in a sibling temp dir and swap it in only if the block succeeds.

    With keep_existing, the staging dir starts as a copy of `final` so a stage can add
    artifacts to an existing bundle; either way a failure leaves `final` untouched.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.staging."))
    try:
        if keep_existing and final.is_dir():
            shutil.rmtree(stage)
            shutil.copytree(final, stage, symlinks=True)
        yield stage
        swap_directory(stage, final)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


def swap_directory(stage: Path, final: Path) -> None:
    """Replace `final` by `stage` with renames only, so a reader sees old or new, never half."""
    if final.exists():
        old = final.parent / f".{final.name}.old.{os.getpid()}"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
        os.replace(stage, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(stage, final)
