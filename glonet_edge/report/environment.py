"""Where a measurement or a report was made: date, OS, CPU, usable cores, library versions.

Bench results and the report page both record it, so every number says where it came from.
"""

from __future__ import annotations

from typing import Any


def environment_line(env: dict[str, Any]) -> str:
    """One markdown line naming where and when the numbers were measured."""
    versions = ", ".join(f"{k} {v}" for k, v in env.get("versions", {}).items() if v)
    where = f"{env.get('cpu')} ({env.get('cpu_cores')} usable cores"
    if "torch_threads" in env:
        where += f", torch threads {env['torch_threads']}"
    where += ")"
    if env.get("gpu"):
        where += f", GPU {env['gpu']}"
    return f"Measured {env.get('date_utc')} UTC on {where}, {env.get('platform')}, Python {env.get('python')}; {versions}."


def cpu_model() -> str:
    """The CPU's marketing name (Linux /proc/cpuinfo, else what platform knows)."""
    import platform

    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment() -> dict[str, Any]:
    """Where a measurement ran: date, OS, CPU, usable cores and library versions.

    Versions come from package metadata, so nothing heavy is imported just to name it.
    """
    import datetime
    import os
    import platform
    import sys
    from importlib import metadata

    versions = {}
    for dist in ("glonet-edge", "numpy", "torch", "onnx", "onnxruntime", "openvino", "matplotlib"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count()
    env: dict[str, Any] = {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpu": cpu_model(),
        "cpu_cores": usable,
        "versions": versions,
    }
    torch = sys.modules.get("torch")
    if torch is not None:
        env["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            env["gpu"] = torch.cuda.get_device_name(0)
    return env
