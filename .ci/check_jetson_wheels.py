"""Check that a Jetson install of the serving extras gets binary wheels, never a source build.

    python3 .ci/check_jetson_wheels.py DOWNLOAD_DIR

For JetPack 5 (Python 3.8, Ubuntu 20.04, glibc 2.31) and JetPack 6 (Python 3.10, Ubuntu
22.04, glibc 2.35) on aarch64: the core dependencies and the onnxruntime, openvino and
tensorrt extras of pyproject.toml, with their markers evaluated for that device, are
downloaded with `pip download --only-binary=:all:` (dependencies included) for the manylinux
tags that glibc accepts (PEP 600). The tensorrt extra must not ask pip for TensorRT there:
JetPack ships it (apt python3-libnvinfer). Needs PyPI.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib

JETPACKS = {"JetPack 5": ("3.8", (2, 31)), "JetPack 6": ("3.10", (2, 35))}
EXTRAS = ("onnxruntime", "openvino", "tensorrt")


def manylinux_tags(glibc: tuple) -> list:
    """Every manylinux aarch64 tag a glibc of this version installs (PEP 600, and 2014 = 2.17)."""
    major, top = glibc
    return ["manylinux2014_aarch64"] + [f"manylinux_{major}_{minor}_aarch64" for minor in range(17, top + 1)]


def requirements_for(python: str) -> list:
    project = tomllib.loads(Path("pyproject.toml").read_text())["project"]
    env = dict(default_environment(), python_version=python, python_full_version=f"{python}.0",
               platform_machine="aarch64", sys_platform="linux", platform_system="Linux")
    wanted = list(project["dependencies"])
    for extra in EXTRAS:
        wanted += project["optional-dependencies"][extra]
    reqs = [Requirement(r) for r in wanted]
    return [str(r).split(";")[0] for r in reqs if r.marker is None or r.marker.evaluate(env)]


def check(jetpack: str, python: str, glibc: tuple, dest: Path) -> None:
    reqs = requirements_for(python)
    if any(Requirement(r).name == "tensorrt" for r in reqs):
        sys.exit(f"{jetpack}: the tensorrt extra asks pip for TensorRT on aarch64; JetPack provides it")
    platforms = [a for tag in manylinux_tags(glibc) for a in ("--platform", tag)]
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:", "--python-version", python,
           *platforms, "-d", str(dest / jetpack.replace(" ", "")), *reqs]
    if subprocess.run(cmd).returncode != 0:
        sys.exit(f"{jetpack} (Python {python}, aarch64): some serving dependency has no binary wheel: {reqs}")
    print(f"{jetpack}: binary wheels for {', '.join(reqs)}")


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "jetson-wheels")
    for name, (py, libc) in JETPACKS.items():
        check(name, py, libc, out)
