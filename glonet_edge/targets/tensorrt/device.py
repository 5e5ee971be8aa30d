"""Which GPU (and which Jetson) an engine is built for: name, compute capability, CUDA, L4T/JetPack."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Dict, Optional

from ...errors import MissingDependencyError
from . import cuda

TEGRA_RELEASE = Path("/etc/nv_tegra_release")

# L4T release -> JetPack (NVIDIA's JetPack archive, as tabulated by jetson-stats' jtop).
_JETPACK_EXACT = {
    "32.7.1": "4.6.1", "32.7.2": "4.6.2", "32.7.3": "4.6.3", "32.7.4": "4.6.4", "32.7.5": "4.6.5",
    "34.1.0": "5.0 DP", "34.1.1": "5.0.1 DP",
    "35.1.0": "5.0.2", "35.2.1": "5.1", "35.3.1": "5.1.1", "35.4.1": "5.1.2", "35.5.0": "5.1.3",
    "35.6.0": "5.1.4", "35.6.1": "5.1.5", "35.6.2": "5.1.5",
    "36.2.0": "6.0 DP", "36.3.0": "6.0", "36.4.0": "6.1", "36.4.2": "6.1.1", "36.4.3": "6.2", "36.4.4": "6.2.1",
    "36.4.7": "6.2.1", "38.2.0": "7.0", "38.2.2": "7.0",
}
_JETPACK_MAJOR_MINOR = {
    "32.5": "4.5.x", "32.6": "4.6", "32.7": "4.6.x", "34.1": "5.0 DP",
    "35.1": "5.0.2", "35.2": "5.1", "35.3": "5.1.1", "35.4": "5.1.2", "35.5": "5.1.3", "35.6": "5.1.4+",
    "36.2": "6.0 DP", "36.3": "6.0", "36.4": "6.1+", "38.2": "7.0",
}
_JETPACK_MAJOR = {"32": "4.x", "34": "5.0 DP", "35": "5.x", "36": "6.x", "38": "7.x"}


# "# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref, EABI: aarch64, DATE: ..."
RELEASE_LINE = re.compile(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)")


def l4t_release(text: str) -> Optional[str]:
    """'35.4.1' (always three parts) from the first line of /etc/nv_tegra_release; None when it
    is not that format."""
    m = RELEASE_LINE.search(text)
    if not m:
        return None
    parts = f"{m.group(1)}.{m.group(2).strip('.')}".split(".")
    return ".".join((parts + ["0", "0"])[:3])


def jetpack_release(l4t: str) -> tuple:
    """(JetPack release, exact) of an L4T release: the exact version first, then major.minor
    (R35.1 is JetPack 5.0.2, R35.2+ is 5.1.x), then only the major line ("6.x")."""
    parts = l4t.split(".")
    exact = _JETPACK_EXACT.get(".".join((parts + ["0", "0"])[:3]))
    if exact:
        return exact, True
    return _JETPACK_MAJOR_MINOR.get(".".join(parts[:2])) or _JETPACK_MAJOR.get(parts[0], "unknown"), False


def jetson_info(path: Path = TEGRA_RELEASE) -> Optional[Dict[str, str]]:
    """L4T release from /etc/nv_tegra_release ("# R36 (release), REVISION: 4.0, ...") and the
    JetPack release it belongs to (jetpack_release)."""
    try:
        text = path.read_text(errors="replace").splitlines()[0]
    except (OSError, IndexError):
        return None
    m = RELEASE_LINE.search(text)
    if not m:
        return {"nv_tegra_release": text.strip()}
    l4t = f"{m.group(1)}.{m.group(2).strip('.')}"
    return {"l4t": l4t, "jetpack": jetpack_release(l4t)[0]}


def _torch_gpu(index: int) -> Optional[Dict[str, Any]]:
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    major, minor = torch.cuda.get_device_capability(index)
    return {"gpu": torch.cuda.get_device_name(index), "compute_capability": f"{major}.{minor}",
            "cuda_runtime": torch.version.cuda, "via": "torch"}


def _version(v: int) -> str:
    """CUDA's integer versions: 12060 -> "12.6"."""
    return f"{v // 1000}.{(v % 1000) // 10}"


def _cudart_gpu(index: int) -> Dict[str, Any]:
    rt = cuda.cudart()
    prop = cuda.checked(rt.cudaGetDeviceProperties(index))
    name = prop.name.decode() if isinstance(prop.name, bytes) else str(prop.name)
    return {"gpu": name.strip("\x00 "), "compute_capability": f"{prop.major}.{prop.minor}",
            "cuda_runtime": _version(cuda.checked(rt.cudaRuntimeGetVersion())),
            "cuda_driver": _version(cuda.checked(rt.cudaDriverGetVersion())), "via": "cuda-python"}


def gpu_info(index: int = 0) -> Dict[str, Any]:
    """GPU name, compute capability and CUDA versions, via cuda-python, else torch."""
    try:
        return _cudart_gpu(index)
    except ImportError:
        found = _torch_gpu(index)
    except RuntimeError as exc:  # cuda-python is there but reaches no such GPU
        raise MissingDependencyError(f"TensorRT needs a CUDA GPU: GPU {index} cannot be queried ({exc})") from exc
    if found is None:
        raise MissingDependencyError("TensorRT needs a CUDA GPU and a way to reach it from Python: install cuda-python "
                                     "(`pip install glonet-edge[tensorrt]`) or a CUDA build of torch")
    return found


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "gpu"


def engine_dir_name(trt_version: str, gpu: Dict[str, Any]) -> str:
    """<gpu>_sm<cc>_trt<version>: engines do not move between TensorRT versions or GPUs."""
    cc = gpu["compute_capability"].replace(".", "")
    return f"{_slug(gpu['gpu'])}_sm{cc}_trt{trt_version}"
