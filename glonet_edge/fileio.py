"""Atomic writes, checksums and path confinement shared by every stage."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

from .errors import ArtifactError, ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.8-3.10 (JetPack 5 and 6): tomli is the same parser, published on its own
    import tomli as tomllib


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


def read_text(path: str | os.PathLike, what: str, error: type[Exception] = ArtifactError) -> str:
    """A UTF-8 text file; a missing or unreadable one raises `error` naming `what` and the path."""
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{what} {path} not found; check the path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{what} {path} is unreadable ({exc}); it must be UTF-8 text") from None


def parse_json(text: str, where: str, error: type[Exception] = ConfigError) -> Any:
    """json.loads with every failure (bad syntax, huge ints, deep nesting) as `error`."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(f"{where}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except (ValueError, RecursionError) as exc:  # an int over 4300 digits; nesting deeper than the stack
        raise error(f"{where}: not JSON this reader accepts ({str(exc)[:80]})") from None


def read_json(path: str | os.PathLike, what: str) -> Any:
    """Read a JSON file, turning every way it can be broken into an ArtifactError."""
    return parse_json(read_text(path, what), f"{what} {path} (truncated or hand-edited: re-create it)", ArtifactError)


def confined_path(root: str | os.PathLike, relative: str) -> Path:
    """Resolve `relative` under `root`, refusing absolute paths, `..` and symlinks that escape."""
    if not isinstance(relative, str) or not relative:
        raise ArtifactError(f"artifact path {relative!r} is empty or not a string.")
    if "\x00" in relative:
        raise ArtifactError(f"artifact path {relative[:80]!r} contains a NUL byte.")
    if os.path.isabs(relative) or relative.startswith(("/", "\\")) or ":" in relative.split("/")[0]:
        raise ArtifactError(f"artifact path {relative!r} is absolute; bundle paths must be relative.")
    parts = relative.replace("\\", "/").split("/")
    if ".." in parts:
        raise ArtifactError(f"artifact path {relative!r} contains '..'; paths may not leave the bundle.")
    try:
        root_resolved = Path(root).resolve()
        target = (root_resolved / relative).resolve()
    except (OSError, RuntimeError, ValueError) as exc:  # symlink loop, name too long, ...
        raise ArtifactError(f"artifact path {relative[:80]!r} cannot be resolved inside the bundle ({exc}).") from exc
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
    host_prefix = f".{final.name}.staging.{_host_tag()}."
    _remove_orphaned_stages(final.parent, host_prefix)
    stage = Path(tempfile.mkdtemp(dir=final.parent, prefix=f"{host_prefix}{os.getpid()}."))
    lock = _hold_stage_lock(stage)
    try:
        if keep_existing and final.is_dir():
            shutil.rmtree(stage)
            shutil.copytree(final, stage, symlinks=True)
            _refuse_escaping_symlinks(stage, final)
        yield stage
        swap_directory(stage, final)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    finally:
        _release_stage_lock(stage, lock)


# A staging dir is named .NAME.staging.HOST.PID.* and its writer holds an flock on the sibling
# file <stage>.lock while it writes. A later write removes a staging dir only when that lock is
# free: the writer is gone (killed, power loss). A live writer is never touched, even one in
# another PID namespace with the same host name; other hosts' dirs are not even looked at.
def _host_tag() -> str:
    return "".join(c if c.isalnum() or c == "-" else "_" for c in socket.gethostname()) or "host"


def _hold_stage_lock(stage: Path) -> int | None:
    try:
        import fcntl
    except ImportError:  # no flock (Windows): nothing is ever cleaned up, nothing is at risk
        return None
    fd = os.open(f"{stage}.lock", os.O_CREAT | os.O_RDWR, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def _release_stage_lock(stage: Path, fd: int | None) -> None:
    if fd is None:
        return
    with contextlib.suppress(OSError):
        os.unlink(f"{stage}.lock")
    os.close(fd)


def _remove_orphaned_stages(parent: Path, host_prefix: str) -> None:
    """Delete this host's staging dirs (and their lock files) whose writer no longer holds the
    lock. A dir without a lock file is left alone: nothing proves its writer is gone."""
    try:
        import fcntl
        entries = list(parent.iterdir())
    except (ImportError, OSError):
        return
    for entry in entries:
        if not entry.name.startswith(host_prefix) or entry.name.endswith(".lock"):
            continue
        lock_path = f"{entry}.lock"
        try:
            fd = os.open(lock_path, os.O_RDWR)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held: its writer is alive
            os.close(fd)
            continue
        try:
            shutil.rmtree(entry, ignore_errors=True)
            with contextlib.suppress(OSError):
                os.unlink(lock_path)
        finally:
            os.close(fd)


def _refuse_escaping_symlinks(stage: Path, final: Path) -> None:
    """A stage writes into its copy of the bundle; a symlink there that leads out of the copy
    (to another directory, or an absolute link back into the live bundle) would make it write
    through the link, outside the staging area. Refuse such bundles before anything is written."""
    stage_resolved = stage.resolve()
    for dirpath, dirnames, filenames in os.walk(stage):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            if not path.is_symlink():
                continue
            try:
                target = path.resolve()
            except (OSError, RuntimeError) as exc:
                raise ArtifactError(f"{final / path.relative_to(stage)} is a symlink that cannot be resolved "
                                    f"({exc}); remove it from the bundle.") from exc
            if target != stage_resolved and stage_resolved not in target.parents:
                raise ArtifactError(
                    f"{final / path.relative_to(stage)} is a symlink to {os.readlink(path)}, outside the bundle; "
                    "stages write only inside the bundle directory, so remove the link (copy the files in).")


def swap_directory(stage: Path, final: Path) -> None:
    """Replace `final` by `stage` with renames only, so a reader sees old or new, never half.

    On Linux the two directories are exchanged in one renameat2(RENAME_EXCHANGE) call, so
    there is no instant at which `final` is missing (a crash or SIGKILL anywhere leaves the
    previous bundle or the new one, never none). Elsewhere, or on a filesystem without it:
    rename `final` aside, rename `stage` in, remove the old one (a crash between the two
    renames leaves the previous bundle in `.NAME.old.PID` next to it)."""
    if final.exists() and not final.is_symlink() and _exchange(stage, final):
        shutil.rmtree(stage, ignore_errors=True)  # `stage` now holds the previous bundle
        return
    if final.exists() or final.is_symlink():
        old = final.parent / f".{final.name}.old.{os.getpid()}"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
        os.replace(stage, final)
        if old.is_symlink():
            old.unlink()
        else:
            shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(stage, final)


_RENAME_EXCHANGE = 2
_renameat2: Any = None


def _exchange(a: Path, b: Path) -> bool:
    """Atomically exchange two paths (Linux renameat2 RENAME_EXCHANGE); False if unsupported."""
    global _renameat2
    if not sys.platform.startswith("linux"):
        return False
    if _renameat2 is None:
        try:
            import ctypes

            fn = ctypes.CDLL(None, use_errno=True).renameat2
            fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
            fn.restype = ctypes.c_int
            _renameat2 = (fn, ctypes)
        except (OSError, AttributeError):  # glibc < 2.28, musl without it
            _renameat2 = False
    if not _renameat2:
        return False
    fn, ctypes = _renameat2
    at_fdcwd = -100
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):  # filesystem cannot exchange
        return False
    raise OSError(err, os.strerror(err), str(b))
