"""The parity gate: an exported model must compute what the checkpoint computes."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from artforge.errors import ArtforgeError
from artforge.spec import ModelSpec

UINT8_TOLERANCE = 1  # grey levels: float rounding may flip a pixel to the neighbouring level


@dataclass
class ParityResult:
    output: str
    batch: int
    sizes: dict[str, int]
    max_abs: float
    max_rel: float
    tolerance: float
    # float outputs: |difference| / max(1, |value|), so values above 1 (embeddings, distances) get the same
    # relative slack float32 gives them; uint8 outputs are held to the absolute tolerance in grey levels
    max_scaled: float = 0.0
    absolute: bool = False
    mean_abs: float = 0.0  # reduced precisions differ a little everywhere; the maximum alone hides how little

    @property
    def ok(self) -> bool:
        return (self.max_abs if self.absolute else self.max_scaled) <= self.tolerance

    def line(self) -> str:
        where = ", ".join(f"{k}={v}" for k, v in self.sizes.items())
        return (f"{self.output:<12} batch {self.batch:>3}{' ' + where if where else ''}: max abs {self.max_abs:.3g}, "
                f"mean abs {self.mean_abs:.2g}, max rel {self.max_rel:.3g} (tolerance {self.tolerance:g}) "
                f"{'ok' if self.ok else 'FAIL'}")


def onnx_session(path: Path, threads: int = 0):
    try:
        import onnxruntime as ort
    except ImportError:
        raise ArtforgeError("ONNX Runtime is not installed: pip install 'artforge[cpu]' (or 'artforge[gpu]' on "
                            "GPU machines; never both)") from None

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def parity_cases(spec: ModelSpec, max_batch: int) -> list[tuple[int, dict[str, int]]]:
    """Batch 1, 3 and max; spatial families also at their smallest and at odd sizes.

    The largest batch runs at the smallest spatial size: 64 photos of 256x256 would take minutes.
    """
    opt = spec.optimal_sizes()
    smallest = {n: d.min for n, d in spec.dynamic_dims.items()}
    cases = [(1, opt), (min(3, max_batch), opt), (max_batch, smallest)]
    if spec.dynamic_dims:
        cases.append((2, {n: d.min + 2 * i + 1 for i, (n, d) in enumerate(spec.dynamic_dims.items())}))  # odd
    return cases


def run_parity(spec: ModelSpec, cases: list[tuple[int, dict[str, int]]], seed: int, reference, candidate,
               float_tolerance: float, uint8_tolerance: float, failure: str) -> list[ParityResult]:
    """Compare candidate(inputs) with reference(inputs) output by output over (batch, sizes) cases.

    `failure` is the error's opening, e.g. "ONNX Runtime differs from PyTorch".
    """
    results = []
    for batch, sizes in cases:
        inputs = spec.sample_inputs(batch, seed=seed + batch, sizes=sizes)
        for t, want, have in zip(spec.outputs, reference(inputs), candidate(inputs)):
            result = compare(t.name, want, have, batch, sizes, float_tolerance)
            if want.dtype == np.uint8:
                result.tolerance, result.absolute = uint8_tolerance, True
            results.append(result)
    failed = [r for r in results if not r.ok]
    if failed:
        r = failed[0]
        by = f"{r.max_abs:.3g}" if r.absolute else f"{r.max_scaled:.3g} (|difference| / max(1, |value|))"
        raise ArtforgeError(f"parity check failed for output '{r.output}' at batch {r.batch}: {failure} by "
                            f"{by}, tolerance {r.tolerance:g}; the export was discarded")
    return results


@torch.no_grad()
def check_parity(network: nn.Module, spec: ModelSpec, onnx_path: Path, max_batch: int,
                 tolerance: float = 1e-4, seed: int = 1234) -> list[ParityResult]:
    """Run PyTorch and ONNX Runtime on fresh random inputs; raise if any output is off."""
    serving = spec.serving_network(network)
    session = onnx_session(onnx_path)

    def pytorch(inputs):
        out = serving(*(torch.from_numpy(inputs[t.name]) for t in spec.inputs))
        return [o.numpy() for o in (out if isinstance(out, tuple) else (out,))]

    def onnxruntime(inputs):
        return session.run([t.name for t in spec.outputs], inputs)

    return run_parity(spec, parity_cases(spec, max_batch), seed, pytorch, onnxruntime, tolerance, UINT8_TOLERANCE,
                      "ONNX Runtime differs from PyTorch")


def compare(name: str, want: np.ndarray, have: np.ndarray, batch: int, sizes: dict, tolerance: float) -> ParityResult:
    if want.shape != have.shape:
        raise ArtforgeError(f"parity check failed for output '{name}': shape {have.shape} from ONNX Runtime, "
                            f"{want.shape} from PyTorch")
    diff = np.abs(want.astype(np.float64) - have.astype(np.float64))
    rel = diff / np.maximum(np.abs(want.astype(np.float64)), 1e-6)
    scaled = diff / np.maximum(np.abs(want.astype(np.float64)), 1.0)
    return ParityResult(name, batch, dict(sizes), float(diff.max(initial=0)), float(rel.max(initial=0)), tolerance,
                        float(scaled.max(initial=0)), mean_abs=float(diff.mean()) if diff.size else 0.0)
