"""`glonet doctor`: what this device can do, and whether a bundle's artifacts load here.

Torch-free and read-only: it imports each engine library only to ask its version, reads the
files the platforms document (`/etc/nv_tegra_release`, `/proc/device-tree/model`, CUDA's
`version.json`, the NVIDIA driver's `/proc/driver/nvidia/version`) under `root` so tests can
lay out a device tree, and reads each power source once.
"""

from __future__ import annotations

import importlib
import json
import platform
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from .runtime.power.base import PowerState, SensorError, read_text
from .targets.tensorrt.device import jetpack_release, l4t_release

SCHEMA_VERSION = 1

POWER_SOURCES = ("jetson", "nvml", "battery", "rapl", "thermal")


@dataclass(frozen=True)
class Finding:
    """One line of the report: what was looked at, what was found, and how to fix a gap."""

    section: str
    name: str
    ok: Optional[bool]  # None: informational
    value: str
    fix: str = ""


def read_if_present(path: Path) -> Optional[str]:
    """A device file as the power sources read it (NULs dropped, bounded, never blocking), or None
    when it is missing or unreadable: the report says what is absent rather than failing on it."""
    try:
        return read_text(path)
    except SensorError:
        return None


def jetpack_of(l4t: str) -> str:
    """The JetPack release of an L4T release (the table TensorRT's engine metadata uses too)."""
    jetpack, exact = jetpack_release(l4t)
    return jetpack if exact else f"{jetpack} (L4T {l4t} not in the table)"


def platform_findings() -> List[Finding]:
    libc = " ".join(x for x in platform.libc_ver() if x) or "unknown"
    return [Finding("platform", "python", sys.version_info >= (3, 8), f"{platform.python_implementation()} "
                    f"{platform.python_version()} ({sys.executable})", "Python 3.8 or newer is needed"),
            Finding("platform", "system", None, f"{platform.system()} {platform.release()} {platform.machine()}, "
                    f"libc {libc}")]


def engine_findings(machine: str) -> List[Finding]:
    from .targets import get_target, list_targets

    found = []
    for name in list_targets():
        target = get_target(name)
        try:
            module = importlib.import_module(target.library)
        except Exception as exc:  # noqa: BLE001 - an engine whose import fails is missing, whatever the reason
            found.append(Finding("engines", name, False, f"missing ({type(exc).__name__})", install_hint(name, machine)))
            continue
        version = str(getattr(module, "__version__", None) or getattr(module, "get_version", lambda: "?")())
        found.append(Finding("engines", name, True, f"{version}; devices: {', '.join(_devices(target))}"))
    return found


def install_hint(target: str, machine: str) -> str:
    if target == "tensorrt" and machine in ("aarch64", "arm64"):
        return ("on a Jetson TensorRT comes with JetPack: `sudo apt install python3-libnvinfer`, and create the "
                "venv with --system-site-packages")
    return f"pip install glonet-edge[{target}]"


def _devices(target: Any) -> List[str]:
    try:
        info = target.describe()
    except Exception:  # noqa: BLE001 - a driver that cannot enumerate devices still has a version to show
        return ["?"]
    devices = info.get("devices") or info.get("available_providers") or []
    return [str(d) for d in devices] or ["?"]


def accelerator_findings(root: Path) -> List[Finding]:
    driver = read_if_present(root / "proc/driver/nvidia/version")
    driver_line = driver.splitlines()[0] if driver else None
    return [Finding("accelerator", "nvidia driver", None, driver_line or "none found"),
            Finding("accelerator", "cuda", None, cuda_version(root) or "none found")]


def cuda_version(root: Path) -> Optional[str]:
    """CUDA's own record of its version: version.json since CUDA 11.1, version.txt before."""
    text = read_if_present(root / "usr/local/cuda/version.json")
    if text:
        try:
            return str(json.loads(text)["cuda"]["version"])
        except (ValueError, KeyError, TypeError):
            return None
    text = read_if_present(root / "usr/local/cuda/version.txt")  # "CUDA Version 10.2.300"
    return text.split()[-1] if text else None


def jetson_findings(root: Path, power_mode: Optional[str]) -> List[Finding]:
    """Model, L4T and JetPack release from the device files; `power_mode` as the jetson power source read it."""
    model = read_if_present(root / "proc/device-tree/model")
    release = read_if_present(root / "etc/nv_tegra_release")
    if release is None:
        return [Finding("jetson", "jetson", None, f"not a Jetson (no /etc/nv_tegra_release){'; ' + model if model else ''}")]
    l4t = l4t_release(release)
    found = [Finding("jetson", "model", None, model or "unknown"),
             Finding("jetson", "L4T", l4t is not None, l4t or f"unreadable: {release.splitlines()[0][:80]!r}")]
    if l4t:
        found.append(Finding("jetson", "JetPack", None, jetpack_of(l4t)))
    found.append(Finding("jetson", "power mode", None, power_mode or "unknown (nvpmodel not readable)"))
    return found


def power_readings(root: Path) -> Dict[str, Optional[PowerState]]:
    """One reading of each power source, None for a source not present here. Read once: the
    jetson section shows the jetson reading's power mode, the power section every reading."""
    from .errors import GlonetError
    from .runtime.power import open_power_source

    readings: Dict[str, Optional[PowerState]] = {}
    for kind in POWER_SOURCES:
        try:
            source = open_power_source(kind, root=root)
        except GlonetError:
            readings[kind] = None
            continue
        readings[kind] = source.read()
        source.close()
    return readings


def power_findings(readings: Dict[str, Optional[PowerState]]) -> List[Finding]:
    return [Finding("power", kind, None, "not present") if state is None
            else Finding("power", kind, not state.is_unknown, state.describe()) for kind, state in readings.items()]


def cache_findings() -> List[Finding]:
    from .targets.base import default_cache_dir

    cache = default_cache_dir("x").parent
    return [Finding("cache", "directory", None, f"{cache} ({'exists' if cache.is_dir() else 'created on first use'})")]


def examine(root: str = "/", bundle: Optional[str] = None) -> Dict[str, Any]:
    """Every finding for this device, and for `bundle`'s artifacts when one is given."""
    root_path = Path(root)
    power = power_readings(root_path)
    jetson = power["jetson"]
    found = (platform_findings() + engine_findings(platform.machine()) + accelerator_findings(root_path)
             + jetson_findings(root_path, jetson and jetson.power_mode) + power_findings(power) + cache_findings())
    if bundle is not None:
        found += bundle_findings(Path(bundle), platform.machine())
    return {"schema_version": SCHEMA_VERSION, "findings": [asdict(f) for f in found]}


def bundle_findings(bundle: Path, machine: str) -> List[Finding]:
    """Per artifact kind (format, precision): how many load here; each one that does not, with
    the command that makes it load."""
    from .manifest import BundleManifest
    from .provenance import holders
    from .targets import get_target, list_targets

    manifest = BundleManifest.load(bundle)
    targets = [get_target(n) for n in list_targets()]
    listed = [(holder, a) for holder in holders(manifest) for a in holder.artifacts]
    kinds = sorted({(a.format, a.precision) for _, a in listed})
    found = []
    for fmt, precision in kinds:
        group = [(h, a) for h, a in listed if (a.format, a.precision) == (fmt, precision)]
        problems = [p for p in (artifact_problem(bundle, a, machine, targets, h) for h, a in group) if p is not None]
        name = f"{fmt} {precision}"
        if not problems:
            found.append(Finding("bundle", name, True, f"{len(group)} artifacts load here"))
        for path, problem, fix in problems[:3]:
            found.append(Finding("bundle", name, False, f"{path}: {problem}", fix))
        if len(problems) > 3:
            found.append(Finding("bundle", name, False, f"... and {len(problems) - 3} more like these"))
    return found + int8_speed_findings(bundle, manifest)


def int8_speed_findings(bundle: Path, manifest: Any) -> List[Finding]:
    """Per profiled target: whether its int8 graphs run faster than fp32 (glonet profile's records)."""
    from .runtime.int8_speed import slower_int8, targets_profiled

    found = []
    for target in targets_profiled(manifest):
        slow = slower_int8(manifest, bundle, target)
        fix = (f"glonet quantize {bundle} (makes ONNX Runtime's own int8 flavour), glonet compile {bundle} --target "
               f"{target} --precision int8, glonet profile again; meanwhile serve fp32 or precision='auto'")
        if slow:
            found.append(Finding("bundle", f"{target} int8 speed", False,
                                 f"{len(slow)} depth/batch cuts slower than fp32, e.g. {slow[0].describe()}", fix))
        else:
            found.append(Finding("bundle", f"{target} int8 speed", True, "faster than fp32 wherever both are profiled"))
    return found


def artifact_problem(bundle: Path, artifact: Any, machine: str, targets: Sequence[Any],
                     holder: Any) -> Optional[tuple]:
    """(path, problem, fix) when `artifact` would not load on this machine, else None: the
    checks `load_artifact` makes before it loads (engine present, built for this engine version
    and GPU, built from the holder's current graph, files intact). `targets`: every registered
    target, looked up once by the caller for all the bundle's artifacts."""
    from .errors import GlonetError
    from .provenance import WRITTEN_FORMATS, compile_command, staleness

    serving = [t for t in targets if t.serves_format(artifact.format)]
    target = next((t for t in serving if t.name == "onnxruntime"), serving[0] if serving else None)
    if target is None:
        return artifact.path, f"no target serves the {artifact.format!r} format", "upgrade glonet-edge"
    rebuild = (compile_command(bundle, artifact) if artifact.format not in WRITTEN_FORMATS
               else f"re-run `glonet export` (or `glonet quantize`) for {bundle}")
    try:
        importlib.import_module(target.library)
    except Exception:  # noqa: BLE001
        return artifact.path, f"{target.name} is not installed", install_hint(target.name, machine)
    stale = staleness(holder, artifact)
    if stale is not None:
        return artifact.path, f"stale: {stale[0]}", rebuild
    try:
        target.check_artifact(artifact.extra)
        artifact.resolve(bundle, verify=True)
    except GlonetError as exc:
        return artifact.path, str(exc).split("; ")[0], rebuild
    return None
