"""ONNX -> TensorRT engine with the TensorRT Python API (TensorRT 10), profiles from the ModelSpec.

TensorRT and a CUDA GPU are optional (`pip install 'artforge[gpu]'`). Everything that does not
need them (profile shapes, cache keys, tolerances) is plain Python and tested everywhere; the
build and the engine parity check run only where both are present.
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from artforge.errors import ArtforgeError
from artforge.files import atomic_write_bytes, slug
from artforge.spec import ModelSpec

log = logging.getLogger(__name__)
PRECISIONS = ("fp32", "fp16", "bf16", "int8")
# parity of an engine against ONNX Runtime: (float abs tolerance, uint8 grey levels)
ENGINE_TOLERANCE = {"fp32": (1e-3, 1), "fp16": (2e-2, 3), "bf16": (6e-2, 8), "int8": (1.5e-1, 16)}
DEFAULT_CACHE = Path.home() / ".cache" / "artforge" / "tensorrt"


def tensorrt_missing() -> str | None:
    """Why no engine can be built here, or None when TensorRT and a CUDA GPU are present."""
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return "TensorRT is not installed (pip install 'artforge[gpu]' on a machine with an NVIDIA GPU and CUDA)"
    try:
        import torch
    except ImportError:
        return "PyTorch is needed to hold the engine's GPU buffers"
    if not torch.cuda.is_available():
        return "no NVIDIA GPU is visible to CUDA (torch.cuda.is_available() is False)"
    return None


def require_tensorrt() -> None:
    reason = tensorrt_missing()
    if reason:
        raise ArtforgeError(f"--formats tensorrt cannot run here: {reason}; export ONNX only with --formats onnx")


@dataclass(frozen=True)
class EngineRequest:
    """Everything an engine depends on; its hash is the engine cache key."""

    onnx_sha256: str
    tensorrt_version: str
    gpu_name: str
    precision: str
    profile: dict[str, tuple[tuple, tuple, tuple]]

    def cache_key(self) -> str:
        payload = json.dumps({"onnx": self.onnx_sha256, "trt": self.tensorrt_version, "gpu": self.gpu_name,
                              "precision": self.precision,
                              "profile": {k: [list(s) for s in v] for k, v in sorted(self.profile.items())}},
                             sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:32]


def engine_request(onnx_bytes: bytes, spec: ModelSpec, max_batch: int, precision: str,
                   tensorrt_version: str, gpu_name: str) -> EngineRequest:
    if precision not in PRECISIONS:
        raise ArtforgeError(f"unknown precision '{precision}'; choose one of {', '.join(PRECISIONS)}")
    return EngineRequest(hashlib.sha256(onnx_bytes).hexdigest(), tensorrt_version, gpu_name, precision,
                         spec.profile_shapes(max_batch))


def build_engine(onnx_path: Path, spec: ModelSpec, max_batch: int, precision: str = "fp16",
                 cache_dir: Path = DEFAULT_CACHE, workspace_gib: float = 4.0) -> tuple[Path, bool]:
    """Build (or reuse from the cache) an engine; returns (engine path, whether it was cached)."""
    require_tensorrt()
    import tensorrt as trt
    import torch

    onnx_bytes = Path(onnx_path).read_bytes()
    request = engine_request(onnx_bytes, spec, max_batch, precision, trt.__version__, torch.cuda.get_device_name())
    engine_path = Path(cache_dir) / f"{request.cache_key()}.plan"
    if engine_path.exists():
        log.info("engine cache hit: %s", engine_path)
        return engine_path, True
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_bytes):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ArtforgeError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in request.profile.items():
        profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(profile)
    set_precision(config, precision, spec, max_batch, trt)
    timing_path = Path(cache_dir) / f"timing-{trt.__version__}-{slug(request.gpu_name)}.cache"
    timing = config.create_timing_cache(timing_path.read_bytes() if timing_path.exists() else b"")
    config.set_timing_cache(timing, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ArtforgeError(f"TensorRT failed to build an engine from {onnx_path} (see the log above)")
    atomic_write_bytes(timing_path, bytes(config.get_timing_cache().serialize()))
    atomic_write_bytes(engine_path, bytes(serialized))
    return engine_path, False


def set_precision(config, precision: str, spec: ModelSpec, max_batch: int, trt) -> None:
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    elif precision == "bf16":
        config.set_flag(trt.BuilderFlag.BF16)
    elif precision == "int8":
        # Implicit (calibrated) INT8: deprecated since TensorRT 10.1 in favour of explicit Q/DQ
        # graphs, but still the one path that needs no extra quantisation toolkit.
        config.set_flag(trt.BuilderFlag.INT8)
        config.set_flag(trt.BuilderFlag.FP16)
        config.int8_calibrator = make_calibrator(spec, max_batch, trt)


def make_calibrator(spec: ModelSpec, max_batch: int, trt, batches: int = 8):
    """Entropy calibrator over the spec's representative inputs (noise and labels, or real photos)."""
    import torch

    batch = min(max_batch, 16)

    class Calibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            super().__init__()
            self.index = 0
            self.buffers: dict[str, Any] = {}

        def get_batch_size(self):
            return batch

        def get_batch(self, names):
            if self.index >= batches:
                return None
            data = spec.representative_inputs(batch, seed=10_000 + self.index, sizes=spec.optimal_sizes())
            self.index += 1
            self.buffers = {n: torch.from_numpy(data[n]).cuda() for n in names}
            return [int(self.buffers[n].data_ptr()) for n in names]

        def read_calibration_cache(self):
            return None

        def write_calibration_cache(self, cache):
            return None

    return Calibrator()


def run_engine(engine_path: Path, inputs: dict[str, np.ndarray], output_names: list[str]) -> list[np.ndarray]:
    """Run a serialized engine once on the GPU (for parity checks and benchmarks)."""
    require_tensorrt()
    import tensorrt as trt
    import torch

    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    engine = runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
    context = engine.create_execution_context()
    keep = {}
    for name, value in inputs.items():
        keep[name] = torch.from_numpy(value).cuda()
        context.set_input_shape(name, tuple(value.shape))
        context.set_tensor_address(name, keep[name].data_ptr())
    outputs = {}
    for name in output_names:
        shape = tuple(context.get_tensor_shape(name))
        dtype = torch.from_numpy(np.empty(0, dtype=trt.nptype(engine.get_tensor_dtype(name)))).dtype
        outputs[name] = torch.empty(shape, dtype=dtype, device="cuda")
        context.set_tensor_address(name, outputs[name].data_ptr())
    stream = torch.cuda.Stream()
    if not context.execute_async_v3(stream.cuda_stream):
        raise ArtforgeError(f"TensorRT engine {engine_path} failed to run")
    stream.synchronize()
    return [outputs[n].cpu().numpy() for n in output_names]

