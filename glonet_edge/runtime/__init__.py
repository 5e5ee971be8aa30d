"""Power-aware runtime (numpy + one engine library; no torch, onnx or nncf).

    from glonet_edge.runtime import Runtime
    rt = Runtime.open("BUNDLE", target="openvino", precision="int8", power="auto")
    pred = rt.infer(x)          # pred.outputs, pred.depth, pred.latency_ms, pred.reason
"""

from .policy import Decision, DepthPolicy, FamilyRow, PolicyConfig, choose_depth, family_table
from .power import PowerSource, PowerState, open_power_source
from .runtime import Prediction, Runtime

__all__ = ["Decision", "DepthPolicy", "FamilyRow", "PolicyConfig", "PowerSource", "PowerState", "Prediction",
           "Runtime", "choose_depth", "family_table", "open_power_source"]
