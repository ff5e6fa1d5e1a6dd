"""Reduced-precision variants of an exported model for ONNX Runtime on the CPU, and what they cost.

int8: static QDQ quantisation (onnxruntime.quantization) calibrated on the spec's representative
inputs (real photos for image models); its quality cost is measured on held-out ones, in grey levels,
and for generators also as FD/KID of its images against fp32's (artforge.evaluation).
bf16 is not offered: ONNX Runtime's CPU provider has no bf16 convolution kernels.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from artforge.benchmarks.measure import latency_summary, time_calls
from artforge.export.parity import onnx_session
from artforge.errors import ArtforgeError
from artforge.evaluation.evaluate import image_output
from artforge.evaluation.features import FEATURE_SPACE_SHORT, ArtFeatures
from artforge.evaluation.metrics import image_features, measure_features
from artforge.generation import generation_request

log = logging.getLogger(__name__)
QUALITY_IMAGES = 256  # generated per FD/KID of a variant: enough for the measure to settle below its floor


class CalibrationReader:
    """onnxruntime.quantization's CalibrationDataReader over the spec's representative inputs."""

    def __init__(self, spec, batches: int = 16):
        sizes = spec.optimal_sizes()
        self.batches = iter([spec.representative_inputs(1, seed=5000 + i, sizes=sizes) for i in range(batches)])

    def get_next(self):
        return next(self.batches, None)

    def rewind(self):  # part of the reader protocol; one pass is all calibration needs here
        return None


def quantize_int8(onnx_path: Path, spec, out: Path) -> Path:
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    quantize_static(str(onnx_path), str(out), CalibrationReader(spec), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    op_types_to_quantize=["Conv", "ConvTranspose", "MatMul", "Gemm"])
    return out


def measure_variant(name: str, path: Path, reference_path: Path, spec, seconds: float, threads: int) -> dict[str, Any]:
    """Batch-1 latency at the optimal size and the mean |difference| of the first output vs fp32, in grey
    levels, on held-out representative inputs."""
    session, reference = onnx_session(path, threads), onnx_session(reference_path, threads)
    output = spec.outputs[0].name
    inputs = spec.sample_inputs(1, seed=77, sizes=spec.optimal_sizes())
    times = time_calls(lambda: session.run([output], inputs), warmup=3, min_calls=10, min_seconds=seconds)
    checks = [spec.representative_inputs(1, seed=900 + i, sizes=spec.optimal_sizes(), held_out=True)
              for i in range(4)]
    diffs = [np.abs(session.run([output], x)[0].astype(np.float64) - reference.run([output], x)[0].astype(np.float64))
             for x in checks]
    return {"variant": name, "latency_ms": latency_summary(times), "mean_abs_diff_levels": float(np.mean(diffs)),
            "max_abs_diff_levels": float(np.max(diffs))}


def generator_requests(spec, count: int, seed: int, batch: int = 32) -> list[dict[str, np.ndarray]] | None:
    """Requests drawn from a generator's contract as `artforge evaluate` draws them; None if not a generator."""

    try:
        image_output(spec.outputs)
        return [generation_request(spec.inputs, spec.metadata, spec.input_limits(), min(batch, count - start), seed + k)
                for k, start in enumerate(range(0, count, batch))]
    except ArtforgeError:
        return None


def distribution_cost(path: Path, reference_path: Path, spec, threads: int, count: int) -> dict[str, Any]:
    """FD/KID of a variant's images against fp32's for the same requests, next to the floor: fp32 against
    fp32 for other requests (what sampling alone gives). Generators only; {} for other models."""

    requests, others = generator_requests(spec, count, 4000), generator_requests(spec, count, 8000)
    if requests is None:
        return {}
    name = image_output(spec.outputs)
    session, reference = onnx_session(path, threads), onnx_session(reference_path, threads)

    def images(s, rs):
        return np.concatenate([s.run([name], r)[0] for r in rs])

    extractor = ArtFeatures()  # fp32's features once: both measures are against them
    fp32, variant, other = (image_features(images(s, rs), extractor) for s, rs in
                            ((reference, requests), (session, requests), (reference, others)))
    cost, floor = measure_features(fp32, variant), measure_features(fp32, other)
    return {"feature_space": FEATURE_SPACE_SHORT, "images": count, "fd_vs_fp32": cost.fd, "kid_vs_fp32": cost.kid,
            "fd_floor": floor.fd, "kid_floor": floor.kid}


def measure_variants(onnx_path: Path, spec, work: Path, seconds: float, threads: int,
                     quality_images: int | None = None) -> list[dict[str, Any]]:
    rows = [measure_variant("fp32", onnx_path, onnx_path, spec, seconds, threads)]
    try:
        int8 = quantize_int8(onnx_path, spec, work / "model.int8.onnx")
        rows.append(measure_variant("int8", int8, onnx_path, spec, seconds, threads))
    except Exception as e:  # quantisation support varies by operator; report, do not fail the benchmark
        log.warning("int8 quantisation failed: %s", str(e).splitlines()[0])
        rows.append({"variant": "int8", "error": str(e).splitlines()[0]})
        return rows
    rows[-1]["distribution"] = distribution_cost(int8, onnx_path, spec, threads, quality_images or QUALITY_IMAGES)
    return rows
