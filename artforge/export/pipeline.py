"""`artforge export`: checkpoint -> validated ONNX (-> TensorRT engine) -> Triton model repository.

Nothing reaches the repository unless it passed the parity gate; files are built in a
temporary folder and moved into place in one rename.
"""
from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

from artforge.checkpoint import Checkpoint, package_versions
from artforge.errors import ArtforgeError
from artforge.export.imported_export import export_imported, is_imported
from artforge.export.onnx_model import export_onnx
from artforge.export.parity import ParityResult, check_parity, onnx_session, parity_cases, run_parity
from artforge.export.publish import (ExportOptions, ExportResult, check_max_dim, check_precision, parse_formats,
                                     publish, triton_options)
from artforge.export.tensorrt import ENGINE_TOLERANCE, EngineBuild, EngineRunner, SizeClass, build_engine, \
    require_tensorrt, size_classes
from artforge.export.triton_repo import TritonOptions, validate_name
from artforge.registry import load_network, spec_for
from artforge.options import Command
from artforge.serving.openvino_session import OpenVinoSession

log = logging.getLogger(__name__)
# OpenVINO against ONNX Runtime: (float abs tolerance, uint8 grey levels). bf16 on a trained fast style network
# (2-core EPYC): mean 0.3-0.5 levels, 99.99th percentile 5-6, largest 8 at 256 px and 10 at 512 px
OPENVINO_TOLERANCE = {"fp32": (1e-3, 1), "fp16": (6e-2, 16), "bf16": (6e-2, 16)}


def export_checkpoint(checkpoint: str | Path, repository: str | Path, **options: Any) -> ExportResult:
    """Export a checkpoint (or a run's newest one) into a Triton model repository (options: ExportOptions)."""
    return export_run(ExportOptions(source=str(checkpoint), repository=str(repository), **options))


def export_run(opts: ExportOptions) -> ExportResult:
    """`artforge export` of one of artforge's own checkpoints."""
    if not opts.source:
        raise ArtforgeError("export what? give a checkpoint or run folder, an ONNX file, or --module FACTORY")
    use_engine = "tensorrt" in parse_formats(opts.formats)
    check_precision(opts.precision, use_engine, opts.runtime, opts.cpu_runtime)
    network, ckpt = load_network(opts.source)
    name = ckpt.family if opts.name is None else opts.name
    validate_name(name)
    triton = triton_options(opts, use_engine)
    spec = spec_for(ckpt, opts.float_output)
    if spec.loop and opts.cpu_runtime != "onnxruntime":
        raise ArtforgeError(f"a '{spec.family}' model is served as a loop, which runs on ONNX Runtime only: "
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
        return publish(result, opts.repository, spec, triton, files)


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
    print((export_imported(opts) if is_imported(opts) else export_run(opts)).summary())


COMMAND = Command(
    "export", help="export a checkpoint, an ONNX file or a PyTorch module into a Triton model repository",
    description="Export a checkpoint to ONNX, check it against PyTorch with ONNX Runtime (batch 1, 3 and "
                "max), optionally build a TensorRT engine, and add it as a new version to a Triton model "
                "repository (REPO/NAME/config.pbtxt, REPO/NAME/VERSION/model.*). Nothing is written when "
                "a check fails. Models trained elsewhere come the same way: an ONNX file (its contract read "
                "from the graph) or a PyTorch module and its weights (--module, --weights, --input), with "
                "--picture to send and receive uint8 pictures whatever range and layout the network uses.",
    examples="  artforge export runs/dcgan --repository repo                  # newest checkpoint, name 'dcgan'\n"
             "  artforge export runs/dcgan/checkpoints/step_00002000 --repository repo --name art32\n"
             "  artforge export runs/dcgan --repository repo-gpu --runtime native \\\n"
             "      --formats onnx,tensorrt --precision fp16                  # needs TensorRT + NVIDIA GPU\n"
             "  artforge export runs/style --repository repo --cpu-runtime openvino --precision bf16\n"
             "                          # OpenVINO in bfloat16 (CPUs with AVX512-BF16 or AMX; others run\n"
             "                          # float32); 'artforge bench --cpu-runtime openvino' measures it\n"
             "models trained elsewhere:\n"
             "  artforge export style.onnx --repository repo --picture image:0..255 --picture output:0..255\n"
             "  artforge export --module nets.py:make_net --weights net.safetensors --repository repo \\\n"
             "      --input image:float32:batch,3,height=64..1024,width=64..1024 --picture image:-1..1 \\\n"
             "      --picture output:-1..1 --name tint     # then: artforge infer --model tint --input image=a.jpg\n"
             "runtimes: 'embedded' runs the ONNX file in Triton's Python backend with ONNX Runtime, or with\n"
             "OpenVINO given --cpu-runtime openvino (what 'artforge serve' starts, CPU or GPU); 'native' uses\n"
             "Triton's onnxruntime/tensorrt backends (NVIDIA's Triton container). Same model names and tensor\n"
             "names either way.",
    options=ExportOptions, run=export_command)
