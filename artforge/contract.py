"""The serving contract's vocabulary: tensors, their dtypes and sizes, and the checks on them.

Numpy only, no torch: a client machine can check requests against a model's contract without
installing PyTorch (`artforge.serving.client` imports this module, never artforge.spec).

Shapes are per item: the batch dimension is implied first, as in Triton's `dims`. A string in a
shape names a dynamic dimension (e.g. "height"); its min/opt/max come from `dynamic_dims`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from artforge.errors import ArtforgeError

TRITON_DTYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16", "uint8": "TYPE_UINT8", "int64": "TYPE_INT64",
                 "int32": "TYPE_INT32", "bool": "TYPE_BOOL", "object": "TYPE_STRING"}
# names Triton's metadata and KServe v2 use for the same dtypes
WIRE_DTYPES = {"float32": "FP32", "float16": "FP16", "uint8": "UINT8", "int64": "INT64", "int32": "INT32",
               "bool": "BOOL", "object": "BYTES"}  # object: text and bytes, numpy's dtype for Triton strings


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
