"""What every export shares, whatever it starts from: its options, its result, and the last step, which
puts a checked version into the Triton model repository."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from artforge.errors import ArtforgeError
from artforge.export.onnx_model import OnnxReport
from artforge.export.parity import ParityResult
from artforge.export.tensorrt import PRECISIONS, EngineBuild
from artforge.export.triton_repo import (CPU_RUNTIMES, RUNTIMES, TritonOptions, model_config, warmup_files,
                                         write_model_version)
from artforge.options import option
from artforge.spec import ModelSpec

FORMATS = ("onnx", "tensorrt")
OPENVINO_PRECISIONS = ("fp32", "bf16", "fp16")


@dataclass
class ExportResult:
    name: str
    version: int
    version_dir: Path
    onnx: OnnxReport
    parity: list[ParityResult]
    engine_parity: list[ParityResult] = field(default_factory=list)
    engine: EngineBuild | None = None
    openvino_parity: list[ParityResult] = field(default_factory=list)
    openvino_precision: str = ""  # what OpenVINO ran on this machine (a bf16 hint runs f32 without bf16 units)
    reference: str = "PyTorch"  # what the parity gate held the ONNX file against
    source: str = ""  # for a model trained elsewhere: what artforge took the file or module for

    @property
    def engine_cached(self) -> bool | None:
        return None if self.engine is None else self.engine.cached

    def summary(self) -> str:
        nodes = (f"{self.onnx.nodes_exported} nodes in the network's graph, {self.onnx.nodes_final} served (with "
                 "the wire's conversions)" if self.source else
                 f"{self.onnx.nodes_exported} nodes exported, {self.onnx.nodes_final} after clean-up")
        lines = [self.source] if self.source else []
        lines += [f"exported {self.name} version {self.version} to {self.version_dir}",
                  f"ONNX opset {self.onnx.opset}: {nodes}, {self.onnx.bytes / 1e6:.2f} MB",
                 f"parity, ONNX Runtime vs {self.reference}:"]
        lines += [f"  {r.line()}" for r in self.parity]
        if self.engine_parity:
            origin = "from cache" if self.engine_cached else "built"
            lines.append(f"parity, TensorRT vs ONNX Runtime (engine {origin}):")
            lines += [f"  {r.line()}" for r in self.engine_parity]
            lines.append(f"TensorRT {self.engine.tensorrt_version}"
                         f"{' (version-compatible)' if self.engine.version_compatible else ''}; GPU memory per "
                         "execution context: " + ", ".join(f"profile {i} {b / 2**20:.0f} MiB"
                                                           for i, b in enumerate(self.engine.profile_memory)))
        if self.openvino_parity:
            lines.append(f"parity, OpenVINO ({self.openvino_precision} on this CPU) vs ONNX Runtime:")
            lines += [f"  {r.line()}" for r in self.openvino_parity]
        return "\n".join(lines)


def parse_formats(formats: str | list[str]) -> list[str]:
    chosen = [f.strip() for f in formats.split(",")] if isinstance(formats, str) else list(formats)
    unknown = [f for f in chosen if f not in FORMATS]
    if unknown or "onnx" not in chosen:
        raise ArtforgeError(f"--formats must list onnx and optionally tensorrt (got {','.join(chosen)}); "
                            "the engine is built from the validated ONNX file")
    return chosen


@dataclass(kw_only=True)
class ExportOptions:
    """What `artforge export` does with a checkpoint; each field is also its command-line flag."""

    source: str = option("", help="a checkpoint folder, a run folder (its newest checkpoint), or an ONNX file "
                                  "(a model trained elsewhere; a PyTorch one comes with --module)", positional=True)
    repository: str = option(help="Triton model repository folder (created if missing)", required=True)
    name: str | None = option(None, help="model name in the repository (default: the model family)")
    formats: str = option("onnx", help="onnx, or onnx,tensorrt")
    runtime: str = option("embedded", help="how Triton runs it", choices=list(RUNTIMES))
    max_batch: int = option(64, help="largest batch Triton may form")
    precision: str = option("fp32", help="TensorRT engine precision, or OpenVINO's inference precision with "
                                         "--cpu-runtime openvino (fp32, bf16, fp16; the ONNX file is always fp32)",
                            choices=list(PRECISIONS))
    cpu_runtime: str = option("onnxruntime", help="what runs model.onnx inside Triton's Python backend (embedded "
                                                  "runtime, CPU): onnxruntime, or openvino (pip install "
                                                  "'artforge[openvino]'; bf16 with --precision bf16 on CPUs that "
                                                  "have it)", choices=list(CPU_RUNTIMES))
    trt_size_classes: str = option("", help="TensorRT profiles for models with dynamic sizes, as SIDE:BATCH pairs: "
                                            "'512:16,1024:4,2048:1' serves batches of up to 16 up to 512 px a side, "
                                            "4 up to 1024, 1 up to 2048 (default: batch x pixels within what "
                                            "--max-batch images of the optimal size hold)")
    trt_workspace_gib: float = option(4.0, help="TensorRT builder workspace limit (GiB)")
    trt_version_compatible: bool = option(False, help="build a version-compatible engine that later TensorRT 10 "
                                                      "runtimes load (serve with --backend-config=tensorrt,"
                                                      "version-compatible=true; see docs/gpu.md)")
    float_output: bool = option(False, help="also output the float image (NCHW, [-1, 1]) for parity testing")
    tolerance: float | None = option(None, help="max error of float outputs vs PyTorch, |difference| / max(1, |value|) "
                                               "(default: the family's, 1e-4 for most)")
    instances: int = option(1, help="model instances Triton runs")
    max_queue_delay_us: int = option(0, help="how long the dynamic batcher may hold a request to form a fuller "
                                             "batch (0: never; requests that queue while the instance is busy "
                                             "still run as one batch)")
    keep_versions: int = option(3, help="versions Triton serves (latest N)")
    intra_op_threads: int = option(0, help="ONNX Runtime threads per instance (0: all cores)", flag="--threads")
    max_dim: int = option(0, help="largest size a request may have on a dynamic axis, e.g. 1024 refuses photos "
                                  "over 1024 px a side (0: the family's limit; written into config.pbtxt as "
                                  "artforge.limits)")
    module: str = option("", help="a PyTorch network trained elsewhere: PKG.MODULE:FACTORY or FILE.py:FACTORY, a "
                                  "function that returns the nn.Module (no arguments); its weights come from --weights")
    weights: str = option("", help="the --module's weights: a safetensors file, or a .pt/.pth state dict (tensors "
                                   "only, read with torch.load(weights_only=True); anything else is refused)")
    input: list[str] = option(help="what an input of an imported model holds, NAME:DTYPE:SHAPE[:MIN..MAX] (repeat): "
                                   "batch axis first, a static size, a name or -1 for a dynamic axis, NAME=MIN..MAX "
                                   "for its range, then the values' range, e.g. "
                                   "image:float32:batch,3,height=64..512,width=64..512:-1..1 (an ONNX file's graph "
                                   "says most of it; a --module needs every input)", repeat=True,
                              metavar="NAME:DTYPE:SHAPE", default_factory=list)
    picture: list[str] = option(help="serve this input or output as pictures, NAME:RANGE[:nchw|nhwc][:rgb|bgr]"
                                     "[:mean=M,M,M:std=S,S,S] (repeat): the wire carries uint8 (height, width, "
                                     "channels) RGB and the graph converts to the network's range, layout, channel "
                                     "order and normalisation, e.g. image:-1..1, or photo:imagenet (0..1, then "
                                     "ImageNet's mean and std)",
                                repeat=True, default_factory=list, metavar="NAME:RANGE")
    output: list[str] = option(help="names of a --module's outputs, in the order it returns them (repeat; default "
                                    "'output', or output0, output1, ... for a tuple)", repeat=True, metavar="NAME",
                               default_factory=list)
    engine_cache: str | None = option(None, cli=False)  # TensorRT engine cache folder (tests choose one)


def check_precision(precision: str, use_engine: bool, runtime: str, cpu_runtime: str = "onnxruntime") -> None:
    if precision not in PRECISIONS:
        raise ArtforgeError(f"unknown --precision '{precision}'; choose one of {', '.join(PRECISIONS)}")
    if cpu_runtime == "openvino":
        if precision not in OPENVINO_PRECISIONS:
            raise ArtforgeError(f"--precision {precision} is not one OpenVINO runs here; choose "
                                f"{', '.join(OPENVINO_PRECISIONS)}")
    elif precision != "fp32" and not use_engine:
        raise ArtforgeError(f"--precision {precision} applies to TensorRT engines (--formats onnx,tensorrt) and to "
                            "--cpu-runtime openvino; ONNX Runtime runs the ONNX file in fp32")
    if use_engine and runtime != "native":
        raise ArtforgeError("--formats tensorrt needs --runtime native: the embedded runtime serves the ONNX "
                            "file through ONNX Runtime")


def check_max_dim(max_dim: int, spec) -> None:
    if not spec.dynamic_dims:
        raise ArtforgeError(f"--max-dim applies to models with dynamic sizes; a '{spec.family}' model has none")
    smallest = max(d.min for d in spec.dynamic_dims.values())
    if max_dim < smallest:
        raise ArtforgeError(f"--max-dim {max_dim} is below the smallest size the model takes ({smallest})")


def triton_options(opts: ExportOptions, use_engine: bool) -> TritonOptions:
    """How Triton serves the export, from the command's options."""
    return TritonOptions(runtime=opts.runtime, engine="tensorrt" if use_engine else "onnx", max_batch=opts.max_batch,
                         instances=opts.instances, max_queue_delay_us=opts.max_queue_delay_us,
                         keep_versions=opts.keep_versions, intra_op_threads=opts.intra_op_threads,
                         cpu_runtime=opts.cpu_runtime, precision=opts.precision)


def publish(result: ExportResult, repository: str | Path, spec: ModelSpec, triton: TritonOptions,
            files: dict[str, Path]) -> ExportResult:
    """Add the checked files as the model's next version (config.pbtxt and warm-up inputs from `spec`)."""
    config = model_config(result.name, spec, triton, result.engine.record() if result.engine else None)
    result.version_dir, result.version = write_model_version(Path(repository), result.name, config, files,
                                                             triton.runtime, warmup_files(spec))
    return result
