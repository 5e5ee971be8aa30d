"""Helpers shared by the robustness tests (imported by name: tests/ has no __init__.py).

- LONG / examples(): the fast (CI) or long (`pytest --long`) budget of each property test.
- FIGURES / count(): figures collected while the suite runs; conftest writes them to
  robustness_figures.json and prints them at the end of the session.
- no_hang(): fail (instead of hanging) when a call takes longer than it may.
- snapshot(), leftovers(), rerecord(), bundle_serves(): bundle checks used after a fault.
- OutsideReads: an audit hook recording every file Python opens outside the allowed roots.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterator

LONG = False  # set by conftest.pytest_configure from --long


def examples(fast: int, long: int | None = None) -> int:
    """Hypothesis max_examples for this mode."""
    return (long or fast * 20) if LONG else fast


# ---- figures ----------------------------------------------------------------------------------------
FIGURES: dict[str, Any] = defaultdict(lambda: defaultdict(int))
_FIG_LOCK = threading.Lock()


def count(section: str, key: str, n: int = 1) -> None:
    with _FIG_LOCK:
        FIGURES[section][key] += n


def put(section: str, key: str, value: Any) -> None:
    with _FIG_LOCK:
        FIGURES[section][key] = value


def figures_json() -> dict[str, Any]:
    return {k: dict(v) for k, v in FIGURES.items()}


# ---- time limits ------------------------------------------------------------------------------------
class Hang(AssertionError):
    pass


@contextlib.contextmanager
def no_hang(seconds: float, what: str = "call") -> Iterator[None]:
    """Raise Hang if the block runs longer than `seconds` (SIGALRM: main thread, pure-Python
    loops and blocking reads alike). Elsewhere it is a no-op and the caller must bound time."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return

    def on_alarm(signum, frame):
        raise Hang(f"{what} did not finish within {seconds} s (hang)")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# ---- bundle checks ----------------------------------------------------------------------------------
def snapshot(root: Path) -> dict[str, str]:
    """{relative path: sha256} of every file under root (symlinks by their target text)."""
    from glonet_edge.fileio import sha256_file

    out = {}
    for p in sorted(Path(root).rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_symlink():
            out[rel] = "symlink->" + os.readlink(p)
        elif p.is_file():
            out[rel] = sha256_file(p)
    return out


def leftovers(parent: Path) -> list[str]:
    """Staging / swap directories a stage left next to a bundle."""
    return sorted(p.name for p in Path(parent).iterdir() if ".staging." in p.name or ".old." in p.name)


def rerecord(bundle: Path) -> None:
    """Make the manifest agree with whatever files are on disk now (size + sha256), as a
    careless tool (or an attacker who can write the manifest) would: then only the engines'
    own checks stand between a damaged file and the runtime."""
    from glonet_edge.fileio import sha256_file
    from glonet_edge.manifest import BundleManifest

    m = BundleManifest.load(bundle)
    for a in m.all_artifacts():
        p = bundle / a.path
        a.sha256, a.bytes = sha256_file(p), p.stat().st_size
        for c in a.companions:
            q = bundle / c["path"]
            c["sha256"], c["bytes"] = sha256_file(q), q.stat().st_size
    m.save(bundle)


def bundle_serves(bundle: Path, x, expected: dict[int, Any] | None = None, target: str = "onnxruntime",
                  precision: str = "fp32") -> None:
    """The bundle parses, every artifact passes its checks, and the runtime opens and answers
    (like `expected` at every depth when given)."""
    import numpy as np

    from glonet_edge.manifest import BundleManifest
    from glonet_edge.runtime import Runtime

    m = BundleManifest.load(bundle)
    m.verify(bundle)
    with Runtime.open(bundle, target=target, precision=precision, power="none") as rt:
        for d in rt.depths:
            rt.set_depth(d)
            y = rt.infer(x).outputs
            if expected is not None and d in expected:
                np.testing.assert_allclose(y, expected[d], rtol=1e-5, atol=1e-5)


# ---- reads outside the bundle -----------------------------------------------------------------------
class OutsideReads:
    """Records files opened by Python code (audit event "open") outside the allowed roots,
    while active. One process-wide hook (hooks cannot be removed), switched on per use."""

    _installed = False
    _active: "OutsideReads | None" = None

    def __init__(self, *allowed: Path) -> None:
        import sysconfig

        roots = {Path(sys.prefix), Path(sys.base_prefix), Path(sysconfig.get_paths()["purelib"]),
                 Path(sysconfig.get_paths()["platlib"]), Path(sysconfig.get_paths()["stdlib"]),
                 Path("/proc"), Path("/sys"), Path("/dev"), Path("/etc"), Path.home() / ".cache",
                 Path(__file__).resolve().parents[2]}
        roots.update(Path(a) for a in allowed)
        self.allowed = [r.resolve() for r in roots]
        self.outside: list[str] = []

    def _event(self, event: str, args: tuple) -> None:
        if event != "open" or not args or not isinstance(args[0], (str, bytes, os.PathLike)):
            return
        try:
            p = Path(os.fsdecode(args[0])).resolve()
        except (OSError, RuntimeError, ValueError):
            return
        if not any(p == r or r in p.parents for r in self.allowed):
            self.outside.append(str(p))

    @staticmethod
    def _hook(event: str, args: tuple) -> None:
        active = OutsideReads._active  # read once: another thread may switch it off meanwhile
        if active is not None and event == "open":
            try:
                active._event(event, args)
            except Exception:  # noqa: BLE001 - an audit hook must never break the audited call
                pass

    def __enter__(self) -> "OutsideReads":
        if not OutsideReads._installed:
            sys.addaudithook(OutsideReads._hook)
            OutsideReads._installed = True
        OutsideReads._active = self
        return self

    def __exit__(self, *exc: Any) -> None:
        OutsideReads._active = None
