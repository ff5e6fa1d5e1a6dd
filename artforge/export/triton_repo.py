"""Triton model repositories: REPO/NAME/config.pbtxt and REPO/NAME/VERSION/model.*, from a ModelSpec.

The config is built as Triton's own ModelConfig protobuf (shipped with tritonclient), so a
field that Triton does not know cannot be written.
"""
from __future__ import annotations

import importlib.resources
import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tritonclient.grpc import model_config_pb2 as mc

from artforge.errors import ArtforgeError
from artforge.files import atomic_directory, atomic_write_bytes, atomic_write_text
from artforge.serving.openvino_session import STATIC_SHAPES
from artforge.serving.repository_config import config_text, parse_config, runtime_of  # noqa: F401  (export's API)

if TYPE_CHECKING:  # the server reads configs with this module and needs no torch
    from artforge.spec import ModelSpec

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
# copied into every embedded model version: found as package data, wherever artforge is installed
SERVING_FILES = importlib.resources.files("artforge.serving")
PYTHON_MODEL = SERVING_FILES / "triton_python_model.py"
RUNTIMES = ("embedded", "native")
MAX_BATCH_LIMIT = 4096
REQUEST_LIMITS = SERVING_FILES / "request_limits.py"
DECODING = SERVING_FILES / "decoding.py"  # the loop of token-stream models
DENOISING = SERVING_FILES / "denoising.py"  # the sampler of diffusion models
OPENVINO_SESSION = SERVING_FILES / "openvino_session.py"  # --cpu-runtime openvino
CPU_RUNTIMES = ("onnxruntime", "openvino")
WARMUP_DIR = "warmup"  # Triton reads model_warmup input_data_file from NAME/warmup/


@dataclass
class TritonOptions:
    """How Triton should serve one model: runtime, batching, instances, versions."""

    runtime: str = "embedded"  # embedded: Python backend + ONNX Runtime; native: onnxruntime_onnx / tensorrt_plan
    engine: str = "onnx"  # native only: "onnx" or "tensorrt"
    max_batch: int = 64
    # Empty: no preferred sizes, so the batcher takes whatever is queued (up to max_batch) the moment an
    # instance is free; with preferred sizes it would hold a lone request up to the queue delay.
    preferred_batch: list[int] = field(default_factory=list)
    # 0: a request is never held back to wait for others (Triton's default). Under load requests queue
    # while the instance runs and go together anyway; measured on the 32 px DCGAN (2-core EPYC), 100 us
    # cost a lone client 0.2-0.3 ms of queue time for no throughput at 16 clients.
    max_queue_delay_us: int = 0
    instances: int = 1
    kind: str = ""  # KIND_CPU or KIND_GPU; empty: CPU for embedded, GPU for native
    keep_versions: int = 3
    intra_op_threads: int = 0  # embedded: ONNX Runtime (or OpenVINO) threads per instance (0 = all cores)
    cpu_runtime: str = "onnxruntime"  # embedded: what runs model.onnx inside the Python backend
    precision: str = "fp32"  # embedded with openvino: its inference precision

    def __post_init__(self) -> None:
        if self.runtime not in RUNTIMES:
            raise ArtforgeError(f"unknown runtime '{self.runtime}'; choose {' or '.join(RUNTIMES)}")
        if self.max_batch < 1:
            raise ArtforgeError(f"--max-batch must be at least 1, got {self.max_batch}")
        if self.max_batch > MAX_BATCH_LIMIT:
            raise ArtforgeError(f"--max-batch {self.max_batch} is more than {MAX_BATCH_LIMIT}; the parity check "
                                "alone would allocate for that many items")
        if not self.kind:
            self.kind = "KIND_CPU" if self.runtime == "embedded" else "KIND_GPU"
        if self.cpu_runtime not in CPU_RUNTIMES:
            raise ArtforgeError(f"unknown --cpu-runtime '{self.cpu_runtime}'; choose {' or '.join(CPU_RUNTIMES)}")
        if self.cpu_runtime == "openvino" and (self.runtime != "embedded" or self.kind != "KIND_CPU"):
            raise ArtforgeError("--cpu-runtime openvino runs inside Triton's Python backend on the CPU: export it with "
                                "--runtime embedded (the default)")


def validate_name(name: str) -> None:
    if not NAME_PATTERN.fullmatch(name):  # fullmatch: '$' would let a trailing newline through
        raise ArtforgeError(f"model name '{name}' is not allowed: use letters, digits, '_', '-' or '.', "
                            "starting with a letter or digit (Triton uses it as a folder name)")


def model_config(name: str, spec: ModelSpec, options: TritonOptions,
                 engine: dict[str, Any] | None = None) -> mc.ModelConfig:
    """The ModelConfig protobuf for `spec`, served as `options` say (`engine`: a TensorRT build's record)."""
    served = spec.served()
    # a loop model makes one sequence or picture per request: Triton hands it requests one at a time
    config = mc.ModelConfig(name=name, max_batch_size=1 if spec.loop else options.max_batch)
    if options.runtime == "embedded":
        config.backend = "python"
    else:
        config.platform = "tensorrt_plan" if options.engine == "tensorrt" else "onnxruntime_onnx"
    config.version_policy.latest.num_versions = options.keep_versions
    for t in served.inputs:
        config.input.add(name=t.name, data_type=t.triton_dtype, dims=t.dims)
    for t in served.outputs:
        config.output.add(name=t.name, data_type=t.triton_dtype, dims=t.dims)
    if spec.loop:
        config.model_transaction_policy.decoupled = True  # many responses to one request
    else:
        add_batching(config, options)
    add_warmup(config, spec)
    group = config.instance_group.add(count=options.instances, kind=getattr(mc.ModelInstanceGroup, options.kind))
    parameters = artforge_parameters(spec, options)
    if engine:
        parameters.update(engine_parameters(group, engine))
    for key, value in parameters.items():
        config.parameters[key].string_value = value
    return config


def add_batching(config: mc.ModelConfig, options: TritonOptions) -> None:
    batching = config.dynamic_batching
    batching.SetInParent()  # present even when every field keeps its default
    batching.preferred_batch_size.extend(options.preferred_batch)
    batching.max_queue_delay_microseconds = options.max_queue_delay_us


def artforge_parameters(spec: ModelSpec, options: TritonOptions) -> dict[str, str]:
    """What artforge's own model.py and clients read from config.pbtxt: family, metadata, limits, loop."""
    parameters = {"artforge.family": spec.family, "artforge.metadata": json.dumps(spec.metadata, sort_keys=True),
                  "artforge.limits": json.dumps(spec.served().input_limits(), sort_keys=True)}
    if spec.loop and options.runtime != "embedded":
        raise ArtforgeError(f"a '{spec.family}' model is served as a loop, which runs in Triton's Python "
                            "backend: export it with --runtime embedded")
    if spec.stream:
        parameters["artforge.stream"] = json.dumps(spec.stream.to_json())
    if spec.sampler:
        parameters["artforge.sampler"] = json.dumps(spec.sampler.to_json())
    if (spec.stream and spec.stream.cache_length_input) or spec.sampler:
        parameters["artforge.max_streams"] = str(options.max_batch)  # the most one instance runs as one batch
    if options.runtime == "embedded":
        parameters["intra_op_threads"] = str(options.intra_op_threads)
        parameters["artforge.cpu_runtime"] = options.cpu_runtime
        parameters["artforge.precision"] = options.precision
        if options.cpu_runtime == "openvino":  # shapes compiled for on their own (artforge/serving/openvino_session.py)
            parameters["artforge.openvino_static_shapes"] = str(STATIC_SHAPES)
    return parameters


def engine_parameters(group: mc.ModelInstanceGroup, engine: dict[str, Any]) -> dict[str, str]:
    """What Triton's TensorRT backend needs for a multi-profile engine, and the TensorRT that built it.

    Without `profile` in the instance group the backend uses profile 0 alone; with several, it makes one
    context per profile and picks the nearest that fits each batch. ON_PROFILE_CHANGE makes each context
    allocate for its own profile instead of the largest (STATIC).
    """
    parameters = {"artforge.tensorrt": json.dumps({"version": engine["tensorrt_version"],
                                                   "version_compatible": engine["version_compatible"]})}
    if len(engine["profiles"]) > 1:
        group.profile.extend(str(i) for i in range(len(engine["profiles"])))
        parameters["execution_context_allocation_strategy"] = "ON_PROFILE_CHANGE"
    return parameters


def add_warmup(config: mc.ModelConfig, spec: ModelSpec) -> None:
    """One batch-1 request before the model reports ready: the spec's sample inputs (warmup_files)."""
    served = spec.served()
    warmup = config.model_warmup.add(name="artforge-warmup", batch_size=1)
    sizes = served.optimal_sizes()
    for t in served.inputs:
        entry = warmup.inputs[t.name]
        entry.data_type = t.triton_dtype
        entry.dims.extend(t.concrete_shape(1, sizes)[1:])
        entry.input_data_file = t.name


def warmup_files(spec: ModelSpec) -> dict[str, bytes]:
    """Raw bytes of valid warm-up inputs (Triton's random data would break value limits); the health
    check of `artforge serve` sends them too, also to loop models, which Triton itself does not warm up."""
    served = spec.served()
    sample = served.sample_inputs(1, seed=0, sizes=served.optimal_sizes())
    return {name: value.tobytes() for name, value in sample.items()}


def existing_versions(model_dir: Path) -> list[int]:
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


def check_compatible(model_dir: Path, new: mc.ModelConfig) -> None:
    """A new version must keep the tensors that clients of the existing versions rely on, and the runtime:
    config.pbtxt is shared by every version Triton keeps, so a tensorrt_plan config would leave the older
    versions (model.onnx or model.py) without the model.plan it asks for."""
    old = parse_config((model_dir / "config.pbtxt").read_text())
    if runtime_of(old) != runtime_of(new):
        raise ArtforgeError(f"model '{new.name}' in {model_dir.parent} is served by {runtime_of(old)}; its versions "
                            f"share one config, so a {runtime_of(new)} version cannot join them: choose another "
                            "--name for this runtime")
    signature = lambda c: ([(t.name, t.data_type, list(t.dims)) for t in c.input],  # noqa: E731
                           [(t.name, t.data_type, list(t.dims)) for t in c.output])
    if signature(old) != signature(new):
        raise ArtforgeError(f"model '{new.name}' in {model_dir.parent} serves other tensors "
                            f"({signature(old)}); choose another --name for this checkpoint")


def write_model_version(repository: Path, name: str, config: mc.ModelConfig, files: dict[str, Path],
                        runtime: str, warmup: dict[str, bytes]) -> tuple[Path, int]:
    """Add REPO/NAME/<next version>/ with `files`, (re)write config.pbtxt and the warm-up inputs."""
    repository = Path(repository)
    if repository.exists() and not repository.is_dir():
        raise ArtforgeError(f"--repository {repository} is a file; give a folder (it is created if missing)")
    model_dir = repository / name
    if model_dir.exists() and not (model_dir / "config.pbtxt").exists():
        raise ArtforgeError(f"{model_dir} exists but is not a Triton model (no config.pbtxt); remove it or pick "
                            "another --name")
    text = config_text(config)
    if not model_dir.exists():
        with atomic_directory(model_dir) as tmp:
            fill_version(tmp / "1", files, runtime)
            for input_name, data in warmup.items():
                atomic_write_bytes(tmp / WARMUP_DIR / input_name, data)
            (tmp / "config.pbtxt").write_text(text)
        return model_dir / "1", 1
    check_compatible(model_dir, config)
    version = (existing_versions(model_dir) or [0])[-1] + 1
    with atomic_directory(model_dir / str(version)) as tmp:
        fill_version(tmp, files, runtime)
    for input_name, data in warmup.items():
        atomic_write_bytes(model_dir / WARMUP_DIR / input_name, data)
    atomic_write_text(model_dir / "config.pbtxt", text)
    return model_dir / str(version), version


def fill_version(folder: Path, files: dict[str, Path], runtime: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for target, source in files.items():
        shutil.copyfile(source, folder / target)
    if runtime == "embedded":
        (folder / "model.py").write_bytes(PYTHON_MODEL.read_bytes())
        for helper in (REQUEST_LIMITS, DECODING, DENOISING, OPENVINO_SESSION):
            (folder / helper.name).write_bytes(helper.read_bytes())
