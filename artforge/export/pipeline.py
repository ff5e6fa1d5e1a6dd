"""`artforge export`: checkpoint -> validated ONNX (-> TensorRT engine) -> Triton model repository.

Nothing reaches the repository unless it passed the parity gate; files are built in a
temporary folder and moved into place in one rename.
"""
from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from artforge.checkpoint import Checkpoint, package_versions
from artforge.errors import ArtforgeError
from artforge.export.onnx_model import OnnxReport, export_onnx
from artforge.export.parity import ParityResult, check_parity, onnx_session, parity_cases, run_parity
from artforge.export.tensorrt import (ENGINE_TOLERANCE, PRECISIONS, EngineBuild, EngineRunner, SizeClass,
                                     build_engine, require_tensorrt, size_classes)
from artforge.export.triton_repo import (CPU_RUNTIMES, RUNTIMES, TritonOptions, model_config, validate_name,
                                         warmup_files, write_model_version)
from artforge.registry import load_network, spec_for
from artforge.options import Command, option
from artforge.serving.openvino_session import OpenVinoSession

log = logging.getLogger(__name__)
FORMATS = ("onnx", "tensorrt")
OPENVINO_PRECISIONS = ("fp32", "bf16", "fp16")
# OpenVINO against ONNX Runtime: (float abs tolerance, uint8 grey levels). bf16 on a trained fast style network
# (2-core EPYC): mean 0.3-0.5 levels, 99.99th percentile 5-6, largest 8 at 256 px and 10 at 512 px
OPENVINO_TOLERANCE = {"fp32": (1e-3, 1), "fp16": (6e-2, 16), "bf16": (6e-2, 16)}


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

    @property
    def engine_cached(self) -> bool | None:
        return None if self.engine is None else self.engine.cached

    def summary(self) -> str:
        lines = [f"exported {self.name} version {self.version} to {self.version_dir}",
                 f"ONNX opset {self.onnx.opset}: {self.onnx.nodes_exported} nodes exported, "
                 f"{self.onnx.nodes_final} after clean-up, {self.onnx.bytes / 1e6:.2f} MB",
                 "parity, ONNX Runtime vs PyTorch:"]
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


@dataclass
class ExportOptions:
    """What `artforge export` does with a checkpoint; each field is also its command-line flag."""

    checkpoint: str = option(help="a checkpoint folder, or a run folder (its newest checkpoint)", positional=True)
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
    engine_cache: str | None = option(None, cli=False)  # TensorRT engine cache folder (tests choose one)


def export_checkpoint(checkpoint: str | Path, repository: str | Path, **options: Any) -> ExportResult:
    """Export a checkpoint (or a run's newest one) into a Triton model repository (options: ExportOptions)."""
    opts = ExportOptions(checkpoint=str(checkpoint), repository=str(repository), **options)
    use_engine = "tensorrt" in parse_formats(opts.formats)
    check_precision(opts.precision, use_engine, opts.runtime, opts.cpu_runtime)
    network, ckpt = load_network(opts.checkpoint)
    name = ckpt.family if opts.name is None else opts.name
    validate_name(name)
    triton = TritonOptions(runtime=opts.runtime, engine="tensorrt" if use_engine else "onnx", max_batch=opts.max_batch,
                           instances=opts.instances, max_queue_delay_us=opts.max_queue_delay_us,
                           keep_versions=opts.keep_versions, intra_op_threads=opts.intra_op_threads,
                           cpu_runtime=opts.cpu_runtime, precision=opts.precision)
    spec = spec_for(ckpt, opts.float_output)
    if spec.stream and opts.cpu_runtime != "onnxruntime":
        raise ArtforgeError(f"a '{spec.family}' model is served as a decoding loop, which runs on ONNX Runtime only: "
                            "export it without --cpu-runtime")
    if opts.max_dim:
        check_max_dim(opts.max_dim, spec)
        spec.limit_dynamic_dims(opts.max_dim)
    classes = size_classes(spec, opts.max_batch, opts.trt_size_classes) if use_engine else []
    if use_engine:
        require_tensorrt()  # fail before any work is done
        triton.max_batch = max(c.max_batch for c in classes)
    with tempfile.TemporaryDirectory(prefix="artforge-export-") as work:
        files, result = build_model_files(Path(work), network, ckpt, spec, name, opts, triton, classes)
        config = model_config(name, spec, triton, result.engine.record() if result.engine else None)
        result.version_dir, result.version = write_model_version(Path(opts.repository), name, config, files,
                                                                 opts.runtime, warmup_files(spec))
    return result


def build_model_files(work: Path, network, ckpt: Checkpoint, spec, name: str, opts: ExportOptions,
                      triton: TritonOptions, classes: list[SizeClass]) -> tuple[dict[str, Path], ExportResult]:
    """model.onnx (parity-checked), model.plan when asked (checked against ONNX Runtime), export.json."""
    onnx_path = work / "model.onnx"
    report = export_onnx(network, spec, onnx_path, onnx_metadata(ckpt, name, spec))
    tolerance = spec.parity_tolerance if opts.tolerance is None else opts.tolerance
    parity = check_parity(network, spec, onnx_path, opts.max_batch, tolerance)
    files = {"model.onnx": onnx_path}
    result = ExportResult(name, 0, Path(), report, parity)
    if classes:
        cache = {"cache_dir": Path(opts.engine_cache)} if opts.engine_cache else {}
        result.engine = build_engine(onnx_path, spec, classes, opts.precision, workspace_gib=opts.trt_workspace_gib,
                                     version_compatible=opts.trt_version_compatible, **cache)
        result.engine_parity = check_engine_parity(result.engine, onnx_path, spec, classes, opts.precision)
        files["model.plan"] = result.engine.path
    if opts.cpu_runtime == "openvino":
        result.openvino_precision, result.openvino_parity = check_openvino_parity(onnx_path, spec, opts.max_batch,
                                                                                  opts.precision, opts.intra_op_threads)
    files["export.json"] = write_export_record(work, ckpt, spec, result, triton, opts.precision)
    return files, result


def check_max_dim(max_dim: int, spec) -> None:
    if not spec.dynamic_dims:
        raise ArtforgeError(f"--max-dim applies to models with dynamic sizes; a '{spec.family}' model has none")
    smallest = max(d.min for d in spec.dynamic_dims.values())
    if max_dim < smallest:
        raise ArtforgeError(f"--max-dim {max_dim} is below the smallest size the model takes ({smallest})")


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


def onnx_metadata(ckpt: Checkpoint, name: str, spec) -> dict[str, Any]:
    """What travels inside the ONNX file: enough to know where it came from and how to feed it."""
    return {"family": ckpt.family, "config": ckpt.meta["config"], "checkpoint_step": ckpt.step,
            "checkpoint_sha256": ckpt.meta["files"]["model.safetensors"]["sha256"], "model_name": name,
            "normalization": spec.normalization,
            "artforge_version": package_versions()["artforge"]}


def engine_parity_cases(spec, classes: list[SizeClass]) -> list[tuple[int, dict[str, int]]]:
    """The ONNX parity cases within the first size class, then every class at its largest batch and size."""
    cases = parity_cases(spec, classes[0].max_batch)
    if spec.dynamic_dims:
        cases += [(c.max_batch, {n: min(d.max, c.max_side) for n, d in spec.dynamic_dims.items()}) for c in classes]
    return cases


def check_engine_parity(engine: EngineBuild, onnx_path: Path, spec, classes: list[SizeClass],
                        precision: str) -> list[ParityResult]:
    """Every case against ONNX Runtime; also records the memory each profile needs (engine.profile_memory)."""
    float_tol, uint8_tol = ENGINE_TOLERANCE[precision]
    session = onnx_session(onnx_path)
    names = [t.name for t in spec.outputs]
    with EngineRunner(engine.path) as runner:  # deserialised once for every case and the memory figures
        engine.profile_memory = runner.profile_memory()
        return run_parity(spec, engine_parity_cases(spec, classes), 99, lambda inputs: session.run(names, inputs),
                          lambda inputs: runner.run(inputs, names), float_tol, uint8_tol,
                          f"the TensorRT {precision} engine differs from ONNX Runtime")


def check_openvino_parity(onnx_path: Path, spec, max_batch: int, precision: str,
                          threads: int) -> tuple[str, list[ParityResult]]:
    """OpenVINO against ONNX Runtime on the ONNX parity cases; (the precision OpenVINO really ran, the results)."""

    float_tol, uint8_tol = OPENVINO_TOLERANCE[precision]
    session = onnx_session(onnx_path)
    try:
        openvino = OpenVinoSession(onnx_path, precision, threads, static_shapes=0)
    except RuntimeError as e:  # not installed: the one-line install hint
        raise ArtforgeError(str(e)) from None
    names = [t.name for t in spec.outputs]
    results = run_parity(spec, parity_cases(spec, max_batch), 99, lambda inputs: session.run(names, inputs),
                         lambda inputs: openvino.run(names, inputs), float_tol, uint8_tol,
                         f"OpenVINO ({openvino.precision}) differs from ONNX Runtime")
    return openvino.precision, results


def write_export_record(work: Path, ckpt: Checkpoint, spec, result: ExportResult, options: TritonOptions,
                        precision: str) -> Path:
    """export.json beside the model: provenance, spec and parity figures, for people and tools."""
    record = {"checkpoint": str(ckpt.path), "checkpoint_step": ckpt.step, "family": ckpt.family,
              "spec": spec.to_json(), "triton": asdict(options), "precision": precision,
              "onnx": asdict(result.onnx), "parity": [asdict(r) for r in result.parity],
              "engine_parity": [asdict(r) for r in result.engine_parity],
              "engine": result.engine.record() if result.engine else None,
              "openvino": {"precision": result.openvino_precision,
                           "parity": [asdict(r) for r in result.openvino_parity]} if result.openvino_parity else None,
              "versions": package_versions()}
    path = work / "export.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path


# ---- `artforge export` ----
def export_command(opts: ExportOptions) -> None:
    print(export_checkpoint(**asdict(opts)).summary())


COMMAND = Command(
    "export", help="export a checkpoint to ONNX (and TensorRT) in a Triton model repository",
    description="Export a checkpoint to ONNX, check it against PyTorch with ONNX Runtime (batch 1, 3 and "
                "max), optionally build a TensorRT engine, and add it as a new version to a Triton model "
                "repository (REPO/NAME/config.pbtxt, REPO/NAME/VERSION/model.*). Nothing is written when "
                "a check fails.",
    examples="  artforge export runs/dcgan --repository repo                  # newest checkpoint, name 'dcgan'\n"
             "  artforge export runs/dcgan/checkpoints/step_00002000 --repository repo --name art32\n"
             "  artforge export runs/dcgan --repository repo-gpu --runtime native \\\n"
             "      --formats onnx,tensorrt --precision fp16                  # needs TensorRT + NVIDIA GPU\n"
             "  artforge export runs/style --repository repo --cpu-runtime openvino --precision bf16\n"
             "                          # OpenVINO in bfloat16 (CPUs with AVX512-BF16 or AMX; others run\n"
             "                          # float32); 'artforge bench --cpu-runtime openvino' measures it\n"
             "runtimes: 'embedded' runs the ONNX file in Triton's Python backend with ONNX Runtime, or with\n"
             "OpenVINO given --cpu-runtime openvino (what 'artforge serve' starts, CPU or GPU); 'native' uses\n"
             "Triton's onnxruntime/tensorrt backends (NVIDIA's Triton container). Same model names and tensor\n"
             "names either way.",
    options=ExportOptions, run=export_command)
