"""Serving contracts: one spec per model family, declared once.

The ONNX export (names, dynamic axes, sample inputs), the TensorRT optimisation profiles, the
Triton config.pbtxt and the client's input checks are all generated from a ModelSpec, so tensor
names and shapes cannot drift apart between stages. A new family is a new spec, not new branches.
The tensors themselves (TensorSpec, DynamicDim, dtypes, checks) live in artforge.contract, which
needs no torch.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch import nn

from artforge.contract import DenoisingLoop, DynamicDim, TensorSpec, TokenStream, check_inputs, tensor_json


@dataclass
class ModelSpec(abc.ABC):
    """The serving contract of one model family; subclasses fill in tensors and the wrapper."""

    family: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    dynamic_dims: dict[str, DynamicDim] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)  # e.g. style names, shown to clients
    # how wire values map to the network's (written into the ONNX file), and what one batch item is
    normalization: dict[str, Any] = field(default_factory=dict)
    unit: str = "image"
    # set for models served as a loop: the network above is one decoding step, clients see the stream
    stream: TokenStream | None = None
    # set for diffusion models served as a loop: the network above is the denoiser, clients see pictures
    sampler: DenoisingLoop | None = None
    # the export's parity gate on float outputs, |difference| / max(1, |value|), unless --tolerance says
    parity_tolerance: float = 1e-4

    @abc.abstractmethod
    def serving_network(self, network: nn.Module) -> nn.Module:
        """Wrap the checkpoint's network so that inputs and outputs are exactly these tensors."""

    @abc.abstractmethod
    def sample_inputs(self, batch: int, seed: int, sizes: dict[str, int] | None = None) -> dict[str, np.ndarray]:
        """Valid random inputs (numpy) for tracing, parity checks and benchmarks."""

    def representative_inputs(self, batch: int, seed: int, sizes: dict[str, int] | None = None,
                              held_out: bool = False) -> dict[str, np.ndarray]:
        """Inputs like real requests, for int8 calibration and for measuring a variant's quality cost.

        Families whose sample inputs are already drawn like real requests (noise) keep this default;
        image families return real photos, held-out ones when `held_out` (never calibrated on).
        """
        return self.sample_inputs(batch, seed, sizes)

    def input(self, name: str) -> TensorSpec:
        return next(t for t in self.inputs if t.name == name)

    def optimal_sizes(self) -> dict[str, int]:
        return {name: d.opt for name, d in self.dynamic_dims.items()}

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        """ONNX dynamic axes: batch on every tensor plus each named dimension."""
        axes = {}
        for t in (*self.inputs, *self.outputs):
            axes[t.name] = {0: "batch", **{i + 1: d for i, d in enumerate(t.shape) if isinstance(d, str)}}
        return axes

    def limit_dynamic_dims(self, max_dim: int) -> None:
        """Serve sizes up to `max_dim` on every dynamic axis (warm-up, parity and profiles follow)."""
        self.dynamic_dims = {name: DynamicDim(min(d.min, max_dim), min(d.opt, max_dim), max_dim)
                             for name, d in self.dynamic_dims.items()}

    def input_limits(self) -> dict[str, dict[str, Any]]:
        """Per input: the sizes and values a request may hold."""
        return {t.name: t.limits(self.dynamic_dims) for t in self.inputs}

    def check_inputs(self, inputs: dict[str, np.ndarray], max_batch: int | None = None) -> int:
        return check_inputs(self.inputs, inputs, max_batch)

    @property
    def loop(self) -> TokenStream | DenoisingLoop | None:
        """The loop Triton's Python backend runs around the network (many responses a request), if any."""
        return self.stream or self.sampler

    def served(self) -> "ModelSpec | TokenStream | DenoisingLoop":
        """The contract clients see: these tensors, or the token stream or sampler a loop model serves."""
        return self.loop or self

    def to_json(self) -> dict[str, Any]:
        return {"family": self.family,
                "inputs": [tensor_json(t) for t in self.inputs],
                "outputs": [tensor_json(t) for t in self.outputs],
                "dynamic_dims": {n: vars(d) for n, d in self.dynamic_dims.items()},
                "metadata": self.metadata}
