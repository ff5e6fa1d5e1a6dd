"""ONNX -> TensorRT 10 engine with the TensorRT Python API, profiles from the ModelSpec.

TensorRT and a CUDA GPU are optional (`pip install 'artforge[gpu]'`, docs/gpu.md). Everything that
does not need them (profiles, size classes, cache keys, version checks) is plain Python and tested
everywhere; the build and the engine parity check run only where both are present.

Why TensorRT 10 and not 11: 11 removed the builder flags (FP16, BF16, INT8) and the calibrator that
the fp16/bf16/int8 engines here are built with, in favour of strongly typed ONNX graphs converted
beforehand; an engine also only loads in the TensorRT version that built it, and the Triton
containers that serve these engines (docs/gpu.md) ship TensorRT 10.
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
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
SUPPORTED_MAJOR = 10
INSTALL_HINT = "pip install 'artforge[gpu]' (TensorRT 10.5, the version Triton's 24.10 container runs; docs/gpu.md)"
# Size classes by default: each class serves batches whose pixel count stays within what max_batch
# images of the family's optimal size hold, so a profile never asks for 64 images of 2048x2048.
CLASS_SIDES = (512, 1024, 2048, 4096)


def tensorrt_major(version: str) -> int:
    try:
        return int(version.split(".")[0])
    except ValueError:
        raise ArtforgeError(f"cannot read the TensorRT version '{version}'") from None


def unsupported_version(version: str) -> str | None:
    """Why engines cannot be built with this TensorRT version, or None."""
    if tensorrt_major(version) == SUPPORTED_MAJOR:
        return None
    why = (" (11 removed the FP16/BF16/INT8 builder flags and the int8 calibrator these engines are built with)"
           if tensorrt_major(version) > SUPPORTED_MAJOR else "")
    return (f"TensorRT {version} is installed; artforge builds engines with TensorRT {SUPPORTED_MAJOR}{why}: "
            f"{INSTALL_HINT}")


def tensorrt_missing() -> str | None:
    """Why no engine can be built here, or None when TensorRT 10 and a CUDA GPU are present."""
    try:
        import tensorrt
    except ImportError:
        return f"TensorRT is not installed ({INSTALL_HINT}, on a machine with an NVIDIA GPU and CUDA)"
    bad_version = unsupported_version(tensorrt.__version__)
    if bad_version:
        return bad_version
    try:
        import torch
    except ImportError:
        return "PyTorch is needed to hold the engine's GPU buffers"
    if not torch.cuda.is_available():
        return ("no NVIDIA GPU is visible to CUDA (torch.cuda.is_available() is False; a CPU build of PyTorch "
                "sees none: `make gpu-env` installs the CUDA build, docs/gpu.md)")
    return None


def require_tensorrt() -> None:
    reason = tensorrt_missing()
    if reason:
        raise ArtforgeError(f"--formats tensorrt cannot run here: {reason}; export ONNX only with --formats onnx")


@dataclass(frozen=True)
class SizeClass:
    """Requests up to `max_side` on every dynamic axis, in batches of up to `max_batch`."""

    max_side: int
    max_batch: int


def parse_size_classes(text: str) -> list[SizeClass]:
    """'512:16,2048:1' -> size classes, smallest side first."""
    classes = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        side, sep, batch = part.partition(":")
        if not sep or not side.isdigit() or not batch.isdigit() or int(side) < 1 or int(batch) < 1:
            raise ArtforgeError(f"--trt-size-classes takes SIDE:BATCH pairs such as 512:16,2048:1; got '{part}'")
        classes.append(SizeClass(int(side), int(batch)))
    sides = [c.max_side for c in classes]
    if not classes or sides != sorted(set(sides)):
        raise ArtforgeError(f"--trt-size-classes needs increasing sides, got '{text}'")
    return classes


def size_classes(spec: ModelSpec, max_batch: int, text: str = "") -> list[SizeClass]:
    """The user's classes, or classes that keep batch x pixels within max_batch images at the optimal size."""
    if not spec.dynamic_dims:
        if text:
            raise ArtforgeError(f"--trt-size-classes applies to models with dynamic sizes; '{spec.family}' has none")
        return [SizeClass(0, max_batch)]
    largest = max(d.max for d in spec.dynamic_dims.values())
    smallest = max(d.min for d in spec.dynamic_dims.values())
    if text:
        classes = parse_size_classes(text)
        if classes[-1].max_side > largest or classes[0].max_side < smallest:
            raise ArtforgeError(f"--trt-size-classes sides must lie in {smallest}..{largest} for a "
                                f"'{spec.family}' model (see --max-dim)")
        if max(c.max_batch for c in classes) > max_batch:
            raise ArtforgeError(f"--trt-size-classes asks for batches above --max-batch {max_batch}")
        return classes
    opt_pixels = max_batch * np.prod([d.opt for d in spec.dynamic_dims.values()])
    sides = [s for s in CLASS_SIDES if smallest <= s < largest] + [largest]
    return [SizeClass(s, int(min(max_batch, max(1, opt_pixels // s ** len(spec.dynamic_dims))))) for s in sides]


Profile = dict[str, tuple[tuple, tuple, tuple]]  # input name -> (min, opt, max) shape


def engine_profiles(spec: ModelSpec, classes: list[SizeClass]) -> list[Profile]:
    """One optimisation profile per size class; classes nest (each starts at the smallest size) so that an
    image that is small on one axis and large on the other still fits one profile."""
    profiles, previous_side = [], 0
    for size_class in classes:
        lo = {n: d.min for n, d in spec.dynamic_dims.items()}
        hi = {n: min(d.max, size_class.max_side) for n, d in spec.dynamic_dims.items()}
        # tuned for: the family's optimal size in the first class, the middle of the class above it
        mid = {n: min(d.opt, hi[n]) if not previous_side else (previous_side + hi[n]) // 2
               for n, d in spec.dynamic_dims.items()}
        opt_batch = max(1, size_class.max_batch // 2)
        profiles.append({t.name: (t.concrete_shape(1, lo), t.concrete_shape(opt_batch, mid),
                                  t.concrete_shape(size_class.max_batch, hi)) for t in spec.inputs})
        previous_side = size_class.max_side
    return profiles


@dataclass(frozen=True)
class EngineRequest:
    """Everything an engine depends on; its hash is the engine cache key."""

    onnx_sha256: str
    tensorrt_version: str
    gpu_name: str
    precision: str
    profiles: tuple
    workspace_gib: float
    version_compatible: bool = False

    def cache_key(self) -> str:
        payload = json.dumps({"onnx": self.onnx_sha256, "trt": self.tensorrt_version, "gpu": self.gpu_name,
                              "precision": self.precision, "workspace_gib": self.workspace_gib,
                              "version_compatible": self.version_compatible,
                              "profiles": [{k: [list(s) for s in v] for k, v in sorted(p.items())}
                                           for p in self.profiles]},
                             sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:32]


def engine_request(onnx_bytes: bytes, profiles: list[Profile], precision: str, tensorrt_version: str,
                   gpu_name: str, workspace_gib: float = 4.0, version_compatible: bool = False) -> EngineRequest:
    if precision not in PRECISIONS:
        raise ArtforgeError(f"unknown precision '{precision}'; choose one of {', '.join(PRECISIONS)}")
    return EngineRequest(hashlib.sha256(onnx_bytes).hexdigest(), tensorrt_version, gpu_name, precision,
                         tuple(profiles), workspace_gib, version_compatible)


@dataclass
class EngineBuild:
    """What build_engine made: the plan file and what serving it needs to know."""

    path: Path
    cached: bool
    tensorrt_version: str
    version_compatible: bool
    profiles: list[Profile]
    # device memory each profile's execution context allocates (bytes), read when the engine is loaded
    # for its parity check; empty until then
    profile_memory: list[int] = field(default_factory=list)

    def record(self) -> dict[str, Any]:
        return {"tensorrt_version": self.tensorrt_version, "version_compatible": self.version_compatible,
                "profiles": [{k: [list(s) for s in v] for k, v in p.items()} for p in self.profiles],
                "profile_memory_bytes": self.profile_memory}


def build_engine(onnx_path: Path, spec: ModelSpec, classes: list[SizeClass], precision: str = "fp16",
                 cache_dir: Path = DEFAULT_CACHE, workspace_gib: float = 4.0,
                 version_compatible: bool = False) -> EngineBuild:
    """Build (or reuse from the cache) an engine with one optimisation profile per size class."""
    require_tensorrt()
    import tensorrt as trt
    import torch

    onnx_bytes = Path(onnx_path).read_bytes()
    profiles = engine_profiles(spec, classes)
    request = engine_request(onnx_bytes, profiles, precision, trt.__version__, torch.cuda.get_device_name(),
                             workspace_gib, version_compatible)
    engine_path = Path(cache_dir) / f"{request.cache_key()}.plan"
    build = EngineBuild(engine_path, engine_path.exists(), trt.__version__, version_compatible, profiles)
    if build.cached:
        log.info("engine cache hit: %s", engine_path)
    else:
        atomic_write_bytes(engine_path, compile_engine(trt, onnx_path, onnx_bytes, spec, request, Path(cache_dir)))
    return build


def compile_engine(trt, onnx_path: Path, onnx_bytes: bytes, spec: ModelSpec, request: EngineRequest,
                   cache_dir: Path) -> bytes:
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_bytes):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ArtforgeError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(request.workspace_gib * (1 << 30)))
    trt_profiles = []
    for shapes in request.profiles:
        profile = builder.create_optimization_profile()
        for name, (lo, opt, hi) in shapes.items():
            profile.set_shape(name, lo, opt, hi)
        if config.add_optimization_profile(profile) < 0:
            raise ArtforgeError(f"TensorRT refused the optimisation profile {shapes} for {onnx_path}")
        trt_profiles.append(profile)
    if request.version_compatible:
        # the engine carries its own lean runtime: later TensorRT 10 runtimes (and Triton started with
        # --backend-config=tensorrt,version-compatible=true) can load it
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    set_precision(config, request.precision, spec, request.profiles[0], trt_profiles[0], trt)
    kept = keep_normalization_in_fp32(network, config, request.precision, trt)
    if kept:
        log.info("%d normalization layer(s) kept in fp32 in the %s engine", kept, request.precision)
    timing = load_timing_cache(config, trt, timing_cache_path(cache_dir, request))
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ArtforgeError(f"TensorRT failed to build an engine from {onnx_path} (see the log above)")
    atomic_write_bytes(timing, bytes(config.get_timing_cache().serialize()))
    return bytes(serialized)


def timing_cache_path(cache_dir: Path, request: EngineRequest) -> Path:
    return cache_dir / f"timing-{request.tensorrt_version}-{slug(request.gpu_name)}.cache"


def load_timing_cache(config, trt, path: Path) -> Path:
    """Start from the timing cache of earlier builds on this GPU and TensorRT; a cache TensorRT will not
    take (another GPU or version wrote it) is set aside rather than silently ignored."""
    data = path.read_bytes() if path.exists() else b""
    cache = config.create_timing_cache(data)
    if not config.set_timing_cache(cache, ignore_mismatch=False):
        if not data:
            raise ArtforgeError("TensorRT refused an empty timing cache")
        log.warning("TensorRT refused the timing cache %s (another GPU or TensorRT wrote it); starting afresh", path)
        path.rename(path.with_suffix(".refused"))
        if not config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False):
            raise ArtforgeError("TensorRT refused an empty timing cache")
    return path


def set_precision(config, precision: str, spec: ModelSpec, shapes: Profile, profile, trt) -> None:
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    elif precision == "bf16":
        config.set_flag(trt.BuilderFlag.BF16)
    elif precision == "int8":
        # Implicit (calibrated) INT8: deprecated since TensorRT 10.1 in favour of explicit Q/DQ graphs,
        # but the one path that needs no extra quantisation toolkit. With dynamic shapes, TensorRT
        # calibrates at the calibration profile's kOPT shapes, so the calibrator feeds exactly those.
        config.set_flag(trt.BuilderFlag.INT8)
        config.set_flag(trt.BuilderFlag.FP16)
        config.set_calibration_profile(profile)
        config.int8_calibrator = make_calibrator(spec, shapes, trt)


def keep_normalization_in_fp32(network, config, precision: str, trt) -> int:
    """Instance (and layer) normalization computed in fp16 overflows on large activations (the sum of
    squares passes 65,504) and gives black or wrong images: in reduced-precision engines every
    normalization layer computes and outputs fp32, as a constraint the builder must obey. The count."""
    if precision == "fp32":
        return 0
    kept = 0
    for index in range(network.num_layers):
        layer = network.get_layer(index)
        if layer.type != trt.LayerType.NORMALIZATION:
            continue
        layer.__class__ = trt.INormalizationLayer  # the bindings hand out ILayer; this exposes compute_precision
        layer.compute_precision = trt.float32
        layer.precision = trt.float32
        for output in range(layer.num_outputs):
            layer.set_output_type(output, trt.float32)
        kept += 1
    if kept:
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
    return kept


def calibration_batches(spec: ModelSpec, shapes: Profile, batches: int = 8):
    """Representative inputs at the profile's kOPT shapes: (batch, sizes) taken from the first input."""
    opt = {name: s[1] for name, s in shapes.items()}
    first = spec.inputs[0]
    batch = opt[first.name][0]
    sizes = {dim: opt[first.name][axis + 1] for axis, dim in enumerate(first.shape) if isinstance(dim, str)}
    for index in range(batches):
        data = spec.representative_inputs(batch, seed=10_000 + index, sizes=sizes or None)
        for name, value in data.items():
            if tuple(value.shape) != tuple(opt[name]):
                raise ArtforgeError(f"calibration input '{name}' has shape {value.shape}, but the calibration "
                                    f"profile's kOPT shape is {opt[name]}")
        yield data


def make_calibrator(spec: ModelSpec, shapes: Profile, trt, batches: int = 8):
    """Entropy calibrator over the spec's representative inputs (noise and labels, or real photos)."""
    import torch

    class Calibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            super().__init__()
            self.data = calibration_batches(spec, shapes, batches)
            self.buffers: dict[str, Any] = {}

        def get_batch_size(self):
            return next(iter(shapes.values()))[1][0]

        def get_batch(self, names):
            data = next(self.data, None)
            if data is None:
                return None
            self.buffers = {n: torch.from_numpy(data[n]).cuda() for n in names}
            return [int(self.buffers[n].data_ptr()) for n in names]

        def read_calibration_cache(self):
            return None

        def write_calibration_cache(self, cache):
            return None

    return Calibrator()


class EngineRunner:
    """A deserialised engine and one execution context, for parity checks and benchmarks.

    The context allocates activation memory for the profile in use only (ON_PROFILE_CHANGE), as Triton
    is told to do for engines with several profiles.
    """

    def __init__(self, engine_path: Path):
        require_tensorrt()
        import tensorrt as trt

        self.trt, self.path = trt, Path(engine_path)
        self.runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.runtime.engine_host_code_allowed = True  # version-compatible engines carry their lean runtime
        self.engine = self.runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            raise ArtforgeError(f"TensorRT could not load the engine {self.path} (built by another TensorRT "
                                "version or for another GPU? see the log above)")
        self.context = self.engine.create_execution_context(trt.ExecutionContextAllocationStrategy.ON_PROFILE_CHANGE)
        if self.context is None:
            raise ArtforgeError(f"TensorRT could not create an execution context for {self.path} "
                                "(out of GPU memory?)")
        self.profile = -1

    def __enter__(self) -> "EngineRunner":
        return self

    def __exit__(self, *exc) -> None:
        self.context = self.engine = None

    def profile_memory(self) -> list[int]:
        count = self.engine.num_optimization_profiles
        return [int(self.engine.get_device_memory_size_for_profile_v2(i)) for i in range(count)]

    def profile_for(self, inputs: dict[str, np.ndarray]) -> int:
        for index in range(self.engine.num_optimization_profiles):
            fits = all(all(lo <= n <= hi for lo, n, hi in zip(shapes[0], value.shape, shapes[2]))
                       for name, value in inputs.items()
                       for shapes in [self.engine.get_tensor_profile_shape(name, index)])
            if fits:
                return index
        raise ArtforgeError(f"no optimisation profile of {self.path} takes inputs of shapes "
                            f"{ {n: v.shape for n, v in inputs.items()} }")

    def run(self, inputs: dict[str, np.ndarray], output_names: list[str]) -> list[np.ndarray]:
        import torch

        stream = torch.cuda.Stream()
        profile = self.profile_for(inputs)
        if profile != self.profile:
            if not self.context.set_optimization_profile_async(profile, stream.cuda_stream):
                raise ArtforgeError(f"TensorRT could not switch {self.path} to optimisation profile {profile}")
            self.profile = profile
        keep = {}
        for name, value in inputs.items():
            keep[name] = torch.from_numpy(np.ascontiguousarray(value)).cuda()
            if not self.context.set_input_shape(name, tuple(value.shape)):
                raise ArtforgeError(f"TensorRT refused shape {tuple(value.shape)} for input '{name}' of {self.path}")
            self.context.set_tensor_address(name, keep[name].data_ptr())
        outputs = {}
        for name in output_names:
            shape = tuple(self.context.get_tensor_shape(name))
            dtype = torch.from_numpy(np.empty(0, dtype=self.trt.nptype(self.engine.get_tensor_dtype(name)))).dtype
            outputs[name] = torch.empty(shape, dtype=dtype, device="cuda")
            self.context.set_tensor_address(name, outputs[name].data_ptr())
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise ArtforgeError(f"TensorRT engine {self.path} failed to run")
        stream.synchronize()
        return [outputs[n].cpu().numpy() for n in output_names]
