"""Models artforge did not train: an ONNX file, or a PyTorch module with its weights.

The serving contract is read from the graph (names, dtypes, static and dynamic axes) and completed or
narrowed by the user's declarations (artforge/export/declarations.py). The result is a ModelSpec like a
family's, so everything after it (pictures on the wire, the parity gate, limits, config.pbtxt, warm-up,
the client and the bench) is the same code that serves artforge's own models.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from onnx import TensorProto
from torch import nn

from artforge.contract import DynamicDim, TensorSpec
from artforge.errors import ArtforgeError
from artforge.export.declarations import Axis, InputDeclaration, Picture, by_name
from artforge.export.pictures import wire_shape
from artforge.spec import ModelSpec

FAMILY = "imported"  # config.pbtxt's artforge.family for every model artforge did not train
ONNX_DTYPES = {TensorProto.FLOAT: "float32", TensorProto.FLOAT16: "float16", TensorProto.UINT8: "uint8",
               TensorProto.INT32: "int32", TensorProto.INT64: "int64", TensorProto.BOOL: "bool"}
# a dynamic axis nobody gave a range: what the parity gate, warm-up and request limits use
DEFAULT_RANGE = DynamicDim(16, 64, 512)


@dataclass
class GraphTensor:
    """An input or output of a graph: numpy dtype name and shape, batch first (str: a named dynamic axis,
    None: a dynamic axis without a name; shape None: the graph does not say)."""

    name: str
    dtype: str
    shape: list | None


@dataclass
class ImportedSpec(ModelSpec):
    """The contract of an imported model; the network (a PyTorch module) is served as it is."""

    fixed_batch: bool = False  # the graph's batch axis is 1: one item per call
    value_ranges: dict[str, tuple[float, float]] = field(default_factory=dict)

    def serving_network(self, network: nn.Module) -> nn.Module:
        return network

    def sample_inputs(self, batch: int, seed: int, sizes: dict[str, int] | None = None) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(seed)
        sizes = sizes or self.optimal_sizes()
        return {t.name: sample_tensor(t, t.concrete_shape(batch, sizes), rng) for t in self.inputs}

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        axes = super().dynamic_axes()
        if self.fixed_batch:
            axes = {name: {a: n for a, n in named.items() if a} for name, named in axes.items()}
        return axes


def sample_tensor(t: TensorSpec, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Random values a request could hold: within the declared value range, pixels 0..255, else N(0, 1) / 0."""
    kind = np.dtype(t.dtype).kind
    low, high = t.min_value, t.max_value
    if t.dtype == "uint8":
        return rng.integers(0 if low is None else low, 256 if high is None else high + 1, shape, dtype=np.uint8)
    if kind == "f":
        values = rng.standard_normal(shape) if low is None or high is None else rng.uniform(low, high, shape)
        return values.astype(t.dtype)
    if kind in "iu":
        if low is None or high is None:
            return np.zeros(shape, t.dtype)  # index 0 is valid wherever an index is taken
        return rng.integers(low, high + 1, shape).astype(t.dtype)
    return rng.integers(0, 2, shape).astype(bool)


# ---- the graph's own contract ----
def graph_tensors(values, initializers: set[str] = frozenset()) -> list[GraphTensor]:
    """Inputs or outputs of a graph (older exporters list the weights among the inputs: left out)."""
    out = []
    for value in values:
        if value.name in initializers:
            continue
        kind = value.type.tensor_type.elem_type
        if kind not in ONNX_DTYPES:
            raise ArtforgeError(f"tensor '{value.name}' is {TensorProto.DataType.Name(kind).lower()}; imported models "
                                f"may have {', '.join(ONNX_DTYPES.values())} inputs and outputs")
        shape = None
        if value.type.tensor_type.HasField("shape"):
            shape = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                     for d in value.type.tensor_type.shape.dim]
        out.append(GraphTensor(value.name, ONNX_DTYPES[kind], shape))
    return out


def merge_declaration(t: GraphTensor, d: InputDeclaration | None) -> GraphTensor:
    """The graph's input as the user declared it: a declaration may name, bound or fix dynamic axes, never
    contradict what the graph fixes (a static size, the dtype, the number of axes)."""
    if d is None:
        if t.shape is None:
            raise ArtforgeError(f"the graph does not give the shape of input '{t.name}': declare it with "
                                f"--input {t.name}:{t.dtype}:SHAPE")
        return GraphTensor(t.name, t.dtype, [auto_name(t.name, i, s) for i, s in enumerate(t.shape)])
    if t.dtype and d.dtype != t.dtype:
        raise ArtforgeError(f"--input {t.name} says {d.dtype}; the graph's input '{t.name}' is {t.dtype}")
    if t.shape is not None and len(t.shape) != len(d.axes):
        raise ArtforgeError(f"--input {t.name} has {len(d.axes)} axes; the graph's input '{t.name}' has "
                            f"{len(t.shape)} ({shape_text(t.shape)})")
    graph = t.shape or [None] * len(d.axes)
    return GraphTensor(t.name, d.dtype, [merge_axis(t.name, i, g, a) for i, (g, a) in enumerate(zip(graph, d.axes))])


def merge_axis(tensor: str, axis: int, graph: int | str | None, declared: Axis) -> int | str:
    if isinstance(graph, int) and graph > 0:
        if declared.size != graph:
            raise ArtforgeError(f"--input {tensor}: axis {axis} is {declared.size or 'dynamic'}, but the graph fixes "
                                f"it at {graph}")
        return graph
    if not declared.dynamic:
        return declared.size
    return declared.name or auto_name(tensor, axis, graph)


def auto_name(tensor: str, axis: int, size: int | str | None) -> int | str:
    """A dynamic axis without a name gets one of its own (no other axis shares its size)."""
    if isinstance(size, int) and size > 0:
        return size
    if axis == 0:
        return "batch"
    return size if isinstance(size, str) and size else f"{''.join(c if c.isalnum() else '_' for c in tensor)}_{axis}"


def shape_text(shape: list) -> str:
    return ", ".join("?" if s is None else str(s) for s in shape)


def declared_ranges(declarations: dict[str, InputDeclaration], merged: list[GraphTensor]) -> dict[str, DynamicDim]:
    """Each dynamic axis name (batch aside) with its range: declared, or DEFAULT_RANGE."""
    ranges: dict[str, DynamicDim] = {}
    for t in merged:
        d = declarations.get(t.name)
        for axis, size in enumerate(t.shape[1:], start=1):
            if isinstance(size, int):
                continue
            given = d.axes[axis] if d else Axis()
            dim = axis_range(given)
            if size in ranges and given.min is not None and ranges[size] != dim:
                raise ArtforgeError(f"axis '{size}' is declared with two ranges ({ranges[size].min}..{ranges[size].max}"
                                    f" and {dim.min}..{dim.max})")
            if size not in ranges or given.min is not None:
                ranges[size] = dim
    return ranges


def axis_range(axis: Axis) -> DynamicDim:
    if axis.min is None:
        return DEFAULT_RANGE
    return DynamicDim(axis.min, min(max(DEFAULT_RANGE.opt, axis.min), axis.max), axis.max)


def without_batch_axis(tensors: list[GraphTensor]) -> list[str]:
    """Tensors whose first axis cannot be a batch (a static size other than 1, or no axes at all): the served
    graph gives them a batch axis of 1 (artforge/export/pictures.py, add_batch_axes)."""
    return [t.name for t in tensors
            if t.shape is not None and (not t.shape or (isinstance(t.shape[0], int) and t.shape[0] != 1))]


def with_batch_axis(tensors: list[GraphTensor], names: list[str]) -> list[GraphTensor]:
    return [GraphTensor(t.name, t.dtype, [1, *t.shape]) if t.name in names else t for t in tensors]


def batch_is_fixed(inputs: list[GraphTensor]) -> bool:
    """True when the network takes one item at a time (a first axis fixed at 1), False when it batches freely."""
    if not inputs:
        raise ArtforgeError("the model has no inputs")
    return any(isinstance(t.shape[0], int) for t in inputs)


# ---- network contract + pictures -> the served spec ----
def served_tensor(t: GraphTensor, picture: Picture | None, declaration: InputDeclaration | None,
                  description: str) -> TensorSpec:
    """What the wire carries for one network tensor: uint8 NHWC for a picture, else the tensor itself."""
    if picture:
        return TensorSpec(t.name, "uint8", tuple(wire_shape(t.shape, picture)[1:]),
                          f"picture, uint8 (height, width, channels) RGB; the network sees {picture.low:g}.."
                          f"{picture.high:g} {picture.layout.upper()} {picture.order.upper()}")
    low, high = (declaration.min_value, declaration.max_value) if declaration else (None, None)
    return TensorSpec(t.name, t.dtype, tuple(t.shape[1:]), description, min_value=low, max_value=high)


def imported_spec(inputs: list[GraphTensor], outputs: list[GraphTensor], declarations: dict[str, InputDeclaration],
                  pictures: dict[str, Picture], ranges: dict[str, DynamicDim], fixed_batch: bool,
                  metadata: dict[str, Any]) -> ImportedSpec:
    """The served contract: the network's tensors, pictures as uint8 NHWC."""
    unknown = sorted(set(pictures) - {t.name for t in (*inputs, *outputs)})
    if unknown:
        raise ArtforgeError(f"--picture {unknown[0]}: the model has no input or output of that name; its inputs are "
                            f"{[t.name for t in inputs]}, its outputs {[t.name for t in outputs]}")
    served_in = tuple(served_tensor(t, pictures.get(t.name), declarations.get(t.name), "input") for t in inputs)
    served_out = tuple(served_tensor(t, pictures.get(t.name), None, "output") for t in outputs)
    normalization = {name: vars(p) for name, p in pictures.items()}
    return ImportedSpec(FAMILY, served_in, served_out, dict(ranges), metadata, normalization, unit="item",
                        fixed_batch=fixed_batch)


def network_spec(spec: ImportedSpec, inputs: list[GraphTensor], input_decls: list[InputDeclaration],
                 outputs: list[str]) -> ImportedSpec:
    """The contract the network itself has (float pictures), for tracing a PyTorch module; outputs unknown yet."""
    declarations = by_name(input_decls, "--input")
    network_inputs = tuple(served_tensor(t, None, declarations.get(t.name), "input") for t in inputs)
    network_outputs = tuple(TensorSpec(name, "float32", ()) for name in outputs)
    return replace(spec, inputs=network_inputs, outputs=network_outputs)


def contract(model_inputs: list[GraphTensor], model_outputs: list[GraphTensor], input_decls: list[InputDeclaration],
             picture_decls: list[Picture], metadata: dict[str, Any]
             ) -> tuple[ImportedSpec, list[GraphTensor], list[GraphTensor]]:
    """(served spec, the network's inputs as declared, its outputs) from a graph's tensors and the user's
    declarations."""
    declarations = by_name(input_decls, "--input")
    pictures = by_name(picture_decls, "--picture")
    names = [t.name for t in model_inputs]
    extra = sorted(set(declarations) - set(names))
    if extra:
        raise ArtforgeError(f"--input {extra[0]}: the model has no input of that name; its inputs are {names}")
    merged = [merge_declaration(t, declarations.get(t.name)) for t in model_inputs]
    ranges = declared_ranges(declarations, merged)
    outputs = [GraphTensor(t.name, t.dtype, [auto_name(t.name, i, s) for i, s in enumerate(t.shape)] if t.shape
                           else None) for t in model_outputs]
    unbatched = without_batch_axis(merged)
    merged = with_batch_axis(merged, unbatched)
    fixed = batch_is_fixed(merged)
    unbatched_outputs = without_batch_axis(outputs) if fixed else []
    if not fixed and without_batch_axis(outputs):
        raise ArtforgeError(f"outputs {without_batch_axis(outputs)} have no batch axis while the inputs batch "
                            "freely; declare the inputs' first axis as 1 to serve one item at a time")
    outputs = with_batch_axis(outputs, unbatched_outputs)
    metadata = {**metadata, "unbatched": unbatched + unbatched_outputs}
    return imported_spec(merged, outputs, declarations, pictures, ranges, fixed, metadata), merged, outputs
