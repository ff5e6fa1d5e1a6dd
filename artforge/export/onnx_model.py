"""PyTorch -> ONNX from a ModelSpec: named tensors, dynamic axes, metadata, checked and slimmed."""
from __future__ import annotations

import inspect
import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx
import torch
from torch import nn

from artforge.errors import ArtforgeError
from artforge.spec import ModelSpec

log = logging.getLogger(__name__)
OPSET = 18


@dataclass
class OnnxReport:
    nodes_exported: int
    nodes_final: int
    opset: int
    bytes: int


def export_onnx(network: nn.Module, spec: ModelSpec, path: Path, metadata: dict[str, Any],
                slim: bool = True) -> OnnxReport:
    """Export `spec.serving_network(network)` to `path`; returns node counts before/after clean-up."""
    model = trace_to_onnx(spec.serving_network(network), spec)
    nodes_exported = len(model.graph.node)
    if slim:
        model = slim_graph(model)
    add_metadata(model, {**metadata, "spec": spec.to_json()})
    check_model(model, path)
    data = model.SerializeToString(deterministic=True)
    Path(path).write_bytes(data)
    return OnnxReport(nodes_exported, len(model.graph.node), OPSET, len(data))


def trace_to_onnx(serving: nn.Module, spec: ModelSpec) -> onnx.ModelProto:
    # trace at batch 2 (batch 1 can be specialised away) and the optimal spatial sizes
    sample = spec.sample_inputs(2, seed=0, sizes=spec.optimal_sizes())
    args = tuple(torch.from_numpy(sample[t.name]) for t in spec.inputs)
    dims = {"batch": torch.export.Dim("batch", min=1, max=4096)}
    for name, d in spec.dynamic_dims.items():
        dims[name] = torch.export.Dim(name, min=d.min, max=max(d.max, 4096))
    # positional, in input order: a network's own argument names need not be the tensor names
    dynamic_shapes = tuple({axis: dims[n] for axis, n in spec.dynamic_axes()[t.name].items()} for t in spec.inputs)
    if takes_varargs(serving):  # forward(*inputs) receives them as one tuple
        dynamic_shapes = (dynamic_shapes,)
    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # the exporter is chatty about its own internals
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                serving, args, dynamo=True, opset_version=OPSET, external_data=False, verbose=False,
                input_names=[t.name for t in spec.inputs], output_names=[t.name for t in spec.outputs],
                dynamic_shapes=dynamic_shapes)
    except Exception as e:  # the exporter raises many types; the user needs one line and the cause
        lines = str(e).splitlines()
        summary = next((line for line in lines if "Error" in line and ":" in line), lines[0])
        raise ArtforgeError(f"torch.onnx.export failed for the {spec.family} model: {summary.strip()}") from e
    finally:
        quiet.setLevel(level)
    model = program.model_proto
    rename_dynamic_dims(model, spec)
    return model


def takes_varargs(network: nn.Module) -> bool:
    parameters = inspect.signature(network.forward).parameters.values()
    return any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in parameters)


def rename_dynamic_dims(model: onnx.ModelProto, spec: ModelSpec) -> None:
    """Give every dynamic axis its spec name ('batch', 'height', ...) on inputs and outputs alike."""
    axes = spec.dynamic_axes()
    for value in (*model.graph.input, *model.graph.output):
        shape = value.type.tensor_type.shape
        for axis, name in axes.get(value.name, {}).items():
            shape.dim[axis].Clear()
            shape.dim[axis].dim_param = name


def slim_graph(model: onnx.ModelProto) -> onnx.ModelProto:
    """Constant folding and pattern fusion with onnxslim (a maintained ONNX simplifier)."""
    import onnxslim

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return onnxslim.slim(model)
        except Exception as e:  # an optimisation only (it recurses past Python's limit on deep U-Nets, for one)
            log.warning("onnxslim could not simplify the graph (%s: %s); kept as exported",
                        type(e).__name__, str(e)[:200])
            return model


def add_metadata(model: onnx.ModelProto, metadata: dict[str, Any], keep_others: bool = False) -> None:
    """Write metadata as artforge.KEY props, replacing earlier artforge ones (and with `keep_others` False,
    every other prop: an imported model keeps what its authors wrote)."""
    others = [(p.key, p.value) for p in model.metadata_props if keep_others and not p.key.startswith("artforge.")]
    del model.metadata_props[:]
    for key, value in others:
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    for key in sorted(metadata):
        value = metadata[key]
        entry = model.metadata_props.add()
        entry.key = f"artforge.{key}"
        entry.value = value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def read_metadata(path: Path) -> dict[str, Any]:
    """artforge metadata_props of an ONNX file, JSON-decoded."""
    model = onnx.load(str(path), load_external_data=False)
    out = {}
    for entry in model.metadata_props:
        if entry.key.startswith("artforge."):
            try:
                out[entry.key[9:]] = json.loads(entry.value)
            except json.JSONDecodeError:
                out[entry.key[9:]] = entry.value
    return out


def check_model(model: onnx.ModelProto, where: Path) -> None:
    """The full ONNX checker with strict shape inference."""
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        first = str(e).strip().splitlines()[0]
        raise ArtforgeError(f"exported ONNX model for {where} fails onnx.checker: {first}") from None
