"""Serving contracts: one spec per model family, declared once.

The ONNX export (names, dynamic axes, sample inputs), the TensorRT optimisation profile, the
Triton config.pbtxt and the client's input checks are all generated from a ModelSpec, so tensor
names and shapes cannot drift apart between stages. A new family is a new spec, not new branches.

Shapes are per item: the batch dimension is implied first, as in Triton's `dims`. A string in a
shape names a dynamic dimension (e.g. "height"); its min/opt/max come from `dynamic_dims`.
"""
from __future__ import annotations

import abc

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from artforge.errors import ArtforgeError
from artforge.imaging import uint8_to_unit, unit_to_uint8
from artforge.photos import photo_crops

TRITON_DTYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16", "uint8": "TYPE_UINT8", "int64": "TYPE_INT64",
                 "int32": "TYPE_INT32"}
# names Triton's metadata and KServe v2 use for the same dtypes
WIRE_DTYPES = {"float32": "FP32", "float16": "FP16", "uint8": "UINT8", "int64": "INT64", "int32": "INT32"}


@dataclass(frozen=True)
class TensorSpec:
    """One named input or output tensor of a served model."""

    name: str
    dtype: str  # numpy dtype name
    shape: tuple[int | str, ...]  # per item, batch excluded; str = dynamic dimension
    description: str = ""
    min_value: float | None = None  # values outside [min_value, max_value] are refused by the server
    max_value: float | None = None
    positive_sum: bool = False  # each item must sum to more than 0 (a mix of weights)

    @property
    def triton_dtype(self) -> str:
        return TRITON_DTYPES[self.dtype]

    @property
    def wire_dtype(self) -> str:
        return WIRE_DTYPES[self.dtype]

    @property
    def dims(self) -> list[int]:
        """Triton dims: -1 where dynamic."""
        return [d if isinstance(d, int) else -1 for d in self.shape]

    def concrete_shape(self, batch: int, sizes: dict[str, int]) -> tuple[int, ...]:
        return (batch, *(d if isinstance(d, int) else sizes[d] for d in self.shape))

    def limits(self, ranges: dict[str, "DynamicDim"]) -> dict[str, Any]:
        """What a request may hold in this tensor (serving/request_limits.py reads it)."""
        dims = [[d, d] if isinstance(d, int) else [ranges[d].min, ranges[d].max] for d in self.shape]
        limit: dict[str, Any] = {"dims": dims}
        if np.dtype(self.dtype).kind == "f":
            limit["finite"] = True
        for key, value in (("min", self.min_value), ("max", self.max_value)):
            if value is not None:
                limit[key] = value
        if self.positive_sum:
            limit["positive_sum"] = True
        return limit


@dataclass(frozen=True)
class DynamicDim:
    """Range of a dynamic dimension: what TensorRT profiles and the parity gate exercise."""

    min: int
    opt: int
    max: int


@dataclass
class ModelSpec(abc.ABC):
    """The serving contract of one model family; subclasses fill in tensors and the wrapper."""

    family: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    dynamic_dims: dict[str, DynamicDim] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)  # e.g. style names, shown to clients

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

    def profile_shapes(self, max_batch: int, opt_batch: int | None = None) -> dict[str, tuple[tuple, tuple, tuple]]:
        """TensorRT optimisation profile: (min, opt, max) shape of every input."""
        opt_batch = opt_batch or max(1, max_batch // 2)
        lo = {n: d.min for n, d in self.dynamic_dims.items()}
        mid = {n: d.opt for n, d in self.dynamic_dims.items()}
        hi = {n: d.max for n, d in self.dynamic_dims.items()}
        return {t.name: (t.concrete_shape(1, lo), t.concrete_shape(opt_batch, mid), t.concrete_shape(max_batch, hi))
                for t in self.inputs}

    def limit_dynamic_dims(self, max_dim: int) -> None:
        """Serve sizes up to `max_dim` on every dynamic axis (warm-up, parity and profiles follow)."""
        self.dynamic_dims = {name: DynamicDim(min(d.min, max_dim), min(d.opt, max_dim), max_dim)
                             for name, d in self.dynamic_dims.items()}

    def input_limits(self) -> dict[str, dict[str, Any]]:
        """Per input: the sizes and values a request may hold."""
        return {t.name: t.limits(self.dynamic_dims) for t in self.inputs}

    def check_inputs(self, inputs: dict[str, np.ndarray], max_batch: int | None = None) -> int:
        return check_inputs(self.inputs, inputs, max_batch)

    def to_json(self) -> dict[str, Any]:
        return {"family": self.family,
                "inputs": [tensor_json(t) for t in self.inputs],
                "outputs": [tensor_json(t) for t in self.outputs],
                "dynamic_dims": {n: vars(d) for n, d in self.dynamic_dims.items()},
                "metadata": self.metadata}


def check_inputs(specs: tuple[TensorSpec, ...], inputs: dict[str, np.ndarray], max_batch: int | None = None) -> int:
    """Raise a one-line error naming the tensor when an input does not fit; return the batch size."""
    missing = [t.name for t in specs if t.name not in inputs]
    unknown = sorted(set(inputs) - {t.name for t in specs})
    if missing or unknown:
        raise ArtforgeError(f"model inputs are {[t.name for t in specs]}; missing {missing}, unknown {unknown}")
    batches = set()
    for t in specs:
        check_tensor(t, inputs[t.name])
        batches.add(inputs[t.name].shape[0])
    if len(batches) != 1:
        raise ArtforgeError(f"inputs have different batch sizes {sorted(batches)}; they must agree")
    batch = batches.pop()
    if batch < 1 or (max_batch and batch > max_batch):
        raise ArtforgeError(f"batch size {batch} is outside 1..{max_batch} that the model accepts")
    return batch


def tensor_json(t: TensorSpec) -> dict[str, Any]:
    return {"name": t.name, "dtype": t.dtype, "shape": list(t.shape), "description": t.description}


def check_tensor(spec: TensorSpec, value: np.ndarray) -> None:
    if not isinstance(value, np.ndarray):
        raise ArtforgeError(f"input '{spec.name}' must be a numpy array, got {type(value).__name__}")
    if value.dtype != np.dtype(spec.dtype):
        raise ArtforgeError(f"input '{spec.name}' must be {spec.dtype}, got {value.dtype}")
    if value.ndim != len(spec.shape) + 1:
        raise ArtforgeError(f"input '{spec.name}' must have shape (batch, {', '.join(map(str, spec.shape))}), "
                            f"got {value.shape}")
    for axis, (want, got) in enumerate(zip(spec.shape, value.shape[1:]), start=1):
        if isinstance(want, int) and want != got:
            raise ArtforgeError(f"input '{spec.name}' must have shape (batch, {', '.join(map(str, spec.shape))}), "
                                f"got {value.shape} (axis {axis} is {got}, not {want})")


class DCGANServing(nn.Module):
    """(z, style) -> uint8 NHWC image (and optionally the float NCHW image for parity tests)."""

    def __init__(self, generator: nn.Module, float_output: bool):
        super().__init__()
        self.generator = generator
        self.float_output = float_output

    def forward(self, z: torch.Tensor, style: torch.Tensor):
        images = self.generator(z, style[:, 0])  # style: (B, 1) int64 -> (B,)
        if self.float_output:
            return unit_to_uint8(images), images
        return unit_to_uint8(images)


class DCGANSpec(ModelSpec):
    """Noise and a style index in, a ready-to-save image out."""

    def __init__(self, config, classes: list[str] | None = None, float_output: bool = False):
        size = config.image_size
        outputs = [TensorSpec("image", "uint8", (size, size, 3), "generated image, RGB, 0-255, NHWC")]
        if float_output:
            outputs.append(TensorSpec("image_float", "float32", (3, size, size), "same image in [-1, 1], NCHW"))
        super().__init__(
            family="dcgan",
            inputs=(TensorSpec("z", "float32", (config.z_dim,), "standard normal noise"),
                    TensorSpec("style", "int64", (1,), f"style index 0..{config.num_classes - 1}",
                               min_value=0, max_value=config.num_classes - 1)),
            outputs=tuple(outputs),
            metadata={"styles": list(classes or range(config.num_classes)), "image_size": size},
        )
        self.config = config
        self.float_output = float_output

    def serving_network(self, network: nn.Module) -> nn.Module:
        return DCGANServing(network, self.float_output).eval()

    def sample_inputs(self, batch: int, seed: int, sizes: dict[str, int] | None = None) -> dict[str, np.ndarray]:
        styles = np.random.default_rng(seed + 1).integers(0, self.config.num_classes, batch)
        return generation_inputs(self.config.z_dim, styles, seed)


def generation_inputs(z_dim: int, styles: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """DCGAN inputs for a seed: the same noise whether images are made in-process or over gRPC."""
    z = np.random.default_rng(seed).standard_normal((len(styles), z_dim)).astype(np.float32)
    return {"z": z, "style": np.asarray(styles, np.int64).reshape(-1, 1)}


class StyleServing(nn.Module):
    """(content uint8 NHWC, style weights) -> stylised uint8 NHWC image (and the float image)."""

    def __init__(self, network: nn.Module, float_output: bool):
        super().__init__()
        self.network = network
        self.float_output = float_output

    def forward(self, content: torch.Tensor, style_weights: torch.Tensor):
        images = uint8_to_unit(content.permute(0, 3, 1, 2))  # (B, H, W, 3) uint8 -> (B, 3, H, W) in [-1, 1]
        # weights are normalised here too, so a blend such as [1, 1] means half and half
        weights = style_weights / style_weights.sum(dim=1, keepdim=True).clamp_min(1e-6)
        stylised = self.network(images, weights)
        if self.float_output:
            return unit_to_uint8(stylised), stylised
        return unit_to_uint8(stylised)


class StyleSpec(ModelSpec):
    """A photo of any size and a style-weight vector in, the stylised photo out."""

    def __init__(self, config, styles: list[str] | None = None, float_output: bool = False):
        outputs = [TensorSpec("image", "uint8", ("height", "width", 3), "stylised image, RGB, 0-255, NHWC")]
        if float_output:
            outputs.append(TensorSpec("image_float", "float32", (3, "height", "width"), "same in [-1, 1], NCHW"))
        super().__init__(
            family="style",
            inputs=(TensorSpec("content", "uint8", ("height", "width", 3), "photo, RGB, 0-255, NHWC"),
                    TensorSpec("style_weights", "float32", (config.num_styles,),
                               "one weight per style, normalised to sum 1 (one-hot picks a style)",
                               min_value=0, positive_sum=True)),
            outputs=tuple(outputs),
            dynamic_dims={"height": DynamicDim(16, 256, 2048), "width": DynamicDim(16, 256, 2048)},
            metadata={"styles": list(styles or range(config.num_styles)), "min_size": 16},
        )
        self.config = config
        self.float_output = float_output

    def serving_network(self, network: nn.Module) -> nn.Module:
        return StyleServing(network, self.float_output).eval()

    def sample_inputs(self, batch: int, seed: int, sizes: dict[str, int] | None = None) -> dict[str, np.ndarray]:
        sizes = sizes or self.optimal_sizes()
        rng = np.random.default_rng(seed)
        content = rng.integers(0, 256, (batch, sizes["height"], sizes["width"], 3), dtype=np.uint8)
        weights = rng.dirichlet(np.ones(self.config.num_styles), batch).astype(np.float32)
        return {"content": content, "style_weights": weights}

    def representative_inputs(self, batch: int, seed: int, sizes: dict[str, int] | None = None,
                              held_out: bool = False) -> dict[str, np.ndarray]:
        """Crops of the built-in photos, each with one style (requests mostly pick one)."""
        sizes = sizes or self.optimal_sizes()
        content = photo_crops(batch, sizes["height"], sizes["width"], seed, held_out=held_out)
        styles = np.random.default_rng(seed).integers(0, self.config.num_styles, batch)
        return {"content": content, "style_weights": np.eye(self.config.num_styles, dtype=np.float32)[styles]}
