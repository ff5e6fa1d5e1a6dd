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
from artforge.export.parity import ParityResult, check_parity, onnx_session, run_parity
from artforge.export.tensorrt import ENGINE_TOLERANCE, PRECISIONS, build_engine, require_tensorrt, run_engine
from artforge.export.triton_repo import (TritonOptions, model_config, validate_name, warmup_files,
                                         write_model_version)
from artforge.families import load_network, spec_for

log = logging.getLogger(__name__)
FORMATS = ("onnx", "tensorrt")


@dataclass
class ExportResult:
    name: str
    version: int
    version_dir: Path
    onnx: OnnxReport
    parity: list[ParityResult]
    engine_parity: list[ParityResult] = field(default_factory=list)
    engine_cached: bool | None = None

    def summary(self) -> str:
        lines = [f"exported {self.name} version {self.version} to {self.version_dir}",
                 f"ONNX opset {self.onnx.opset}: {self.onnx.nodes_exported} nodes exported, "
                 f"{self.onnx.nodes_final} after clean-up, {self.onnx.bytes / 1e6:.2f} MB",
                 "parity, ONNX Runtime vs PyTorch:"]
        lines += [f"  {r.line()}" for r in self.parity]
        if self.engine_parity:
            lines.append(f"parity, TensorRT vs ONNX Runtime (engine {'from cache' if self.engine_cached else 'built'}):")
            lines += [f"  {r.line()}" for r in self.engine_parity]
        return "\n".join(lines)


def parse_formats(formats: str | list[str]) -> list[str]:
    chosen = [f.strip() for f in formats.split(",")] if isinstance(formats, str) else list(formats)
    unknown = [f for f in chosen if f not in FORMATS]
    if unknown or "onnx" not in chosen:
        raise ArtforgeError(f"--formats must list onnx and optionally tensorrt (got {','.join(chosen)}); "
                            "the engine is built from the validated ONNX file")
    return chosen


def export_checkpoint(checkpoint: str | Path, repository: str | Path, name: str | None = None,
                      formats: str | list[str] = "onnx", runtime: str = "embedded", max_batch: int = 64,
                      precision: str = "fp32", float_output: bool = False, tolerance: float = 1e-4,
                      instances: int = 1, max_queue_delay_us: int = 100, keep_versions: int = 3,
                      intra_op_threads: int = 0, max_dim: int = 0, engine_cache: Path | None = None) -> ExportResult:
    """Export a checkpoint (or a run's newest one) into a Triton model repository."""
    formats = parse_formats(formats)
    use_engine = "tensorrt" in formats
    check_precision(precision, use_engine, runtime)
    network, ckpt = load_network(checkpoint)
    name = ckpt.family if name is None else name
    validate_name(name)
    options = TritonOptions(runtime=runtime, engine="tensorrt" if use_engine else "onnx", max_batch=max_batch,
                            instances=instances, max_queue_delay_us=max_queue_delay_us,
                            keep_versions=keep_versions, intra_op_threads=intra_op_threads)
    if use_engine:
        require_tensorrt()  # fail before any work is done
    spec = spec_for(ckpt, float_output)
    if max_dim:
        check_max_dim(max_dim, spec)
        spec.limit_dynamic_dims(max_dim)
    config = model_config(name, spec, options)
    with tempfile.TemporaryDirectory(prefix="artforge-export-") as work:
        onnx_path = Path(work) / "model.onnx"
        report = export_onnx(network, spec, onnx_path, onnx_metadata(ckpt, name, spec))
        parity = check_parity(network, spec, onnx_path, max_batch, tolerance)
        files = {"model.onnx": onnx_path}
        result = ExportResult(name, 0, Path(), report, parity)
        if use_engine:
            engine, result.engine_cached = build_engine(onnx_path, spec, max_batch, precision,
                                                        **({"cache_dir": engine_cache} if engine_cache else {}))
            result.engine_parity = check_engine_parity(engine, onnx_path, spec, max_batch, precision)
            files["model.plan"] = engine
        files["export.json"] = write_export_record(Path(work), ckpt, spec, result, options, precision)
        result.version_dir, result.version = write_model_version(Path(repository), name, config, files, runtime,
                                                                 warmup_files(spec))
    return result


def check_max_dim(max_dim: int, spec) -> None:
    if not spec.dynamic_dims:
        raise ArtforgeError(f"--max-dim applies to models with dynamic sizes; a '{spec.family}' model has none")
    smallest = max(d.min for d in spec.dynamic_dims.values())
    if max_dim < smallest:
        raise ArtforgeError(f"--max-dim {max_dim} is below the smallest size the model takes ({smallest})")


def check_precision(precision: str, use_engine: bool, runtime: str) -> None:
    if precision not in PRECISIONS:
        raise ArtforgeError(f"unknown --precision '{precision}'; choose one of {', '.join(PRECISIONS)}")
    if precision != "fp32" and not use_engine:
        raise ArtforgeError(f"--precision {precision} applies to TensorRT engines (--formats onnx,tensorrt); "
                            "ONNX models are exported in fp32")
    if use_engine and runtime != "native":
        raise ArtforgeError("--formats tensorrt needs --runtime native: the embedded runtime serves the ONNX "
                            "file through ONNX Runtime")


def onnx_metadata(ckpt: Checkpoint, name: str, spec) -> dict[str, Any]:
    """What travels inside the ONNX file: enough to know where it came from and how to feed it."""
    return {"family": ckpt.family, "config": ckpt.meta["config"], "checkpoint_step": ckpt.step,
            "checkpoint_sha256": ckpt.meta["files"]["model.safetensors"]["sha256"], "model_name": name,
            "normalization": spec.normalization,
            "artforge_version": package_versions()["artforge"]}


def check_engine_parity(engine: Path, onnx_path: Path, spec, max_batch: int, precision: str) -> list[ParityResult]:
    float_tol, uint8_tol = ENGINE_TOLERANCE[precision]
    session = onnx_session(onnx_path)
    names = [t.name for t in spec.outputs]
    return run_parity(spec, max_batch, 99, lambda inputs: session.run(names, inputs),
                      lambda inputs: run_engine(engine, inputs, names), float_tol, uint8_tol,
                      f"the TensorRT {precision} engine differs from ONNX Runtime")


def write_export_record(work: Path, ckpt: Checkpoint, spec, result: ExportResult, options: TritonOptions,
                        precision: str) -> Path:
    """export.json beside the model: provenance, spec and parity figures, for people and tools."""
    record = {"checkpoint": str(ckpt.path), "checkpoint_step": ckpt.step, "family": ckpt.family,
              "spec": spec.to_json(), "triton": asdict(options), "precision": precision,
              "onnx": asdict(result.onnx), "parity": [asdict(r) for r in result.parity],
              "engine_parity": [asdict(r) for r in result.engine_parity], "versions": package_versions()}
    path = work / "export.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path
