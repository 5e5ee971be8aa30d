"""RSS that OpenVINO adds for compiling every depth graph of a family, under one compile config.

Usage: python ov_compile_options_memory.py BUNDLE CONFIG_JSON {all|full} [static]

A fresh process per call: the plugin is loaded by compiling the depth-1 graph first (not
counted), then every depth graph (`all`) or the deepest one alone (`full`) is compiled with
the runtime's own settings (LATENCY hint, 1 thread, f32) plus CONFIG_JSON, and each gets an
infer request and one call. `static` reshapes each model to batch 1 before compiling.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from glonet_edge.manifest import BundleManifest


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def main() -> None:
    import openvino as ov

    bundle, config, which = Path(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
    static = "static" in sys.argv[4:]
    shape = [1, *BundleManifest.load(bundle).input_shape]
    paths = sorted((bundle / "onnx").glob("depth_*[0-9].onnx"))
    core = ov.Core()
    settings = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": 1, "INFERENCE_PRECISION_HINT": "f32", **config}
    core.compile_model(core.read_model(paths[0]), "CPU", settings)
    before = rss_mb()
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    kept = []
    for path in paths if which == "all" else paths[-1:]:
        model = core.read_model(path)
        if static:
            model.reshape(shape)
        compiled = core.compile_model(model, "CPU", settings)
        request = compiled.create_infer_request()
        request.infer({0: x})
        kept.append((compiled, request))
    print(f"{which}{' static' if static else ''} {json.dumps(config)}: {len(kept)} compiled, +{rss_mb() - before:.1f} MB")


if __name__ == "__main__":
    main()
