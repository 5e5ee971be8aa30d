"""The TensorRT target (base.Target) and its family builder (base.FamilyBuilder)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Union

from ...errors import ArtifactError
from ...fileio import sha256_bytes
from ..base import FamilyBuilder, Target
from . import cuda, device
from .build import build_engine, engine_path, timing_cache_path
from .engine import TrtCompiledModel
from .library import has_flag, load_trt, logger, trt_major
from .metadata import check_engine, read_metadata
from .options import BatchProfile, BuildOptions, Device
from .result import EngineBuild
from .trtexec import trtexec_command, write_script


class TensorRTTarget(Target):
    name = "tensorrt"
    precisions = ("fp32", "fp16", "int8")
    devices = ("GPU", "CUDA", "DLA")
    default_device = "GPU"
    artifact_format = "tensorrt"
    library = "tensorrt"
    extra = "tensorrt"

    def describe(self, index: int = 0) -> Dict[str, Any]:
        trt = load_trt()
        info: Dict[str, Any] = {"target": self.name, "tensorrt": str(trt.__version__), **device.gpu_info(index)}
        jetson = device.jetson_info()
        if jetson:
            info["jetson"] = jetson
        info["dla_cores"] = int(getattr(trt.Builder(logger(trt)), "num_DLA_cores", 0) or 0)
        info["builder_flags"] = sorted(n for n in ("FP16", "INT8", "TF32") if has_flag(trt.BuilderFlag, n))
        # STRONGLY_TYPED is a network-creation flag (10.x opt-in; 11.x always on, flag deprecated)
        net = trt.NetworkDefinitionCreationFlag
        info["network_flags"] = sorted(n for n in ("EXPLICIT_BATCH", "STRONGLY_TYPED") if has_flag(net, n))
        info["strongly_typed"] = ("always" if trt_major(trt) >= 11 else
                                  "opt-in" if has_flag(net, "STRONGLY_TYPED") else "unsupported")
        return info

    def parse_device(self, name: Optional[str]) -> Device:
        return Device.parse(self.check_device(name))

    def artifact_paths(self, out_dir: Path, stem: str, precision: str) -> List[Path]:
        plan = engine_path(out_dir, stem, precision)
        return [plan, plan.with_suffix(".json")]

    def build_engine(self, onnx_path: Union[str, Path], out_dir: Union[str, Path], precision: str,
                     **options: Any) -> EngineBuild:
        """Build one engine; returns the record of the build (files, settings, trtexec facts)."""
        load_trt()
        self.check_precision(precision)
        dev = self.parse_device(options.pop("device", None))
        return build_engine(Path(onnx_path), Path(out_dir), BuildOptions.from_options(precision, dev, options))

    def build(self, onnx_path: Union[str, Path], out_dir: Union[str, Path], precision: str, **options: Any) -> List[Path]:
        return self.build_engine(onnx_path, out_dir, precision, **options).files

    def artifact_extra(self, precision: str, **options: Any) -> Dict[str, Any]:
        """The engine's metadata (from the sidecar JSON the build just wrote)."""
        files = options.get("files") or []
        return read_metadata(Path(files[0])) if files else {}

    def check_artifact(self, extra: Dict[str, Any], **options: Any) -> None:
        """Refuse an engine built by another TensorRT version or for another GPU than the one it
        is about to be loaded on (options["device"], default GPU 0)."""
        if extra:
            trt = load_trt()
            check_engine(extra, str(trt.__version__), device.gpu_info(self.parse_device(options.get("device")).gpu_index))

    def load(self, artifact_path: Union[str, Path], precision: str, **options: Any) -> TrtCompiledModel:
        trt = load_trt()
        self.check_precision(precision)
        gpu_index = self.parse_device(options.get("device")).gpu_index
        path = Path(artifact_path)
        if not path.is_file():
            raise ArtifactError(f"TensorRT engine {path} not found; run `glonet compile --target tensorrt`")
        meta = read_metadata(path)
        self.check_artifact(meta, device=options.get("device"))
        prefer = options.get("cuda", "auto")
        cuda.set_current_device(gpu_index, prefer)  # TensorRT deserializes onto the current device
        runtime = trt.Runtime(logger(trt))
        if meta.get("dla_core") is not None:
            runtime.DLA_core = int(meta["dla_core"])
        data = path.read_bytes()
        engine = runtime.deserialize_cuda_engine(data)
        if engine is None:
            raise ArtifactError(f"TensorRT {trt.__version__} could not deserialize {path.name} (sha256 "
                                f"{sha256_bytes(data)[:12]}): it was built by another TensorRT version / for another "
                                "GPU, or is corrupt; rebuild it with `glonet compile --target tensorrt` on this device")
        return TrtCompiledModel(trt, engine, precision, meta, gpu_index, prefer)

    def manifest_info(self, **options: Any) -> Dict[str, Any]:
        dev = self.parse_device(options.get("device"))
        info = self.describe(dev.gpu_index)
        info["device"] = self.check_device(options.get("device"))
        info["batch_profile"] = BatchProfile.from_options(options, dev.kind == "DLA").as_dict()
        info["note"] = "engines are valid only for this TensorRT version and GPU; load refuses any other"
        return info

    def family(self, device: str, **options: Any) -> "TensorRTFamily":
        return TensorRTFamily(self, device, options)


class TensorRTFamily(FamilyBuilder):
    """The builds of one family share a timing cache and a per-(GPU, TensorRT) engine directory,
    and leave a trtexec.sh with the line of every build."""

    load_options = ("cuda",)
    target: TensorRTTarget

    def __init__(self, target: TensorRTTarget, device: str, options: Dict[str, Any]):
        super().__init__(target, device, options)
        self.trtexec: List[str] = []
        self.timing_cache: Optional[Path] = None

    @property
    def subdir(self) -> str:
        trt = load_trt()
        dev = self.target.parse_device(self.device)
        sub = device.engine_dir_name(str(trt.__version__), device.gpu_info(dev.gpu_index))
        return f"tensorrt/{sub}" + (f"_dla{dev.index}" if dev.kind == "DLA" else "")

    def refuse(self, source_extra: Dict[str, Any], precision: str) -> Optional[str]:
        if precision == "int8" and source_extra.get("tensorrt_compatible") is False:
            return ("the int8 graph is not TensorRT-safe (UINT8/asymmetric Q/DQ, see its lint); re-run "
                    "`glonet quantize --method ort` to make a TensorRT int8 graph")
        return None

    def build(self, onnx_path: Path, out_dir: Path, precision: str, stem: str) -> List[Path]:
        if self.timing_cache is None:
            gpu_index = self.target.parse_device(self.device).gpu_index
            self.timing_cache = Path(self.options.get("timing_cache") or timing_cache_path(out_dir, gpu_index))
        options = {**self.options, "timing_cache": self.timing_cache}
        record = self.target.build_engine(onnx_path, out_dir, precision, stem=stem, device=self.device, **options)
        self.trtexec.append(trtexec_command(record, out_dir))
        return record.files

    def finish(self, out_dir: Path) -> Dict[str, Path]:
        files = {"trtexec": write_script(out_dir, self.trtexec)}
        if self.timing_cache is not None and self.timing_cache.is_file():
            files["timing_cache"] = self.timing_cache
        return files

    def result(self) -> Dict[str, Any]:
        return {"trtexec": list(self.trtexec)}
