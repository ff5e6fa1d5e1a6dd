"""What the wire carries, added to any ONNX graph: pictures as uint8 (batch, height, width, channels) RGB in
and out, converted to and from what the network was trained on (a value range, NCHW or NHWC, RGB or BGR)
inside the graph; and a batch axis (of 1) for tensors a network takes or gives without one.

The same conversion is written twice, here only: as ONNX nodes added to the served graph, and in numpy
for the parity gate's reference (the network run on the converted request, its answer converted back).
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from artforge.errors import ArtforgeError
from artforge.export.declarations import Picture

TO_NCHW, TO_NHWC = (0, 3, 1, 2), (0, 2, 3, 1)
REVERSED = np.array([2, 1, 0], np.int64)  # RGB <-> BGR on the channel axis
MIN_OPSET = 11  # Clip with tensor bounds and Round
MIN_OPSET_AXES = 13  # Squeeze and Unsqueeze with their axes as an input


# ---- numpy: the parity gate's reference ----
def pixels_to_network(pixels: np.ndarray, picture: Picture) -> np.ndarray:
    """(B, H, W, C) uint8 -> float32 in the network's range, layout and channel order."""
    x = pixels.astype(np.float32) * np.float32((picture.high - picture.low) / 255) + np.float32(picture.low)
    if picture.order == "bgr" and x.shape[-1] == 3:
        x = x[..., ::-1]
    if picture.mean:
        x = (x - np.asarray(picture.mean, np.float32)) / np.asarray(picture.std, np.float32)
    if picture.layout == "nchw":
        x = x.transpose(TO_NCHW)
    return np.ascontiguousarray(x)


def network_to_pixels(values: np.ndarray, picture: Picture) -> np.ndarray:
    """The network's float picture -> (B, H, W, C) uint8, rounded to the nearest level."""
    x = values.astype(np.float32)
    if picture.layout == "nchw":
        x = x.transpose(TO_NHWC)
    if picture.mean:
        x = x * np.asarray(picture.std, np.float32) + np.asarray(picture.mean, np.float32)
    if picture.order == "bgr" and x.shape[-1] == 3:
        x = x[..., ::-1]
    scaled = (x - np.float32(picture.low)) * np.float32(255 / (picture.high - picture.low))
    return np.round(np.clip(scaled, 0, 255)).astype(np.uint8)


# ---- ONNX: the same conversions as nodes of the served graph ----
def channel_count(shape: list, picture: Picture) -> int:
    """The static channel axis of a picture tensor's network shape (batch first), 1 or 3."""
    if len(shape) != 4:
        raise ArtforgeError(f"--picture {picture.name}: the tensor has {len(shape)} axes; a picture has 4 "
                            f"(batch, channels, height, width in {picture.layout.upper()} order)")
    channels = shape[1] if picture.layout == "nchw" else shape[3]
    if channels not in (1, 3):
        raise ArtforgeError(f"--picture {picture.name}: its channel axis ({picture.layout.upper()}) is {channels}, "
                            "not 1 or 3; is the layout right? (add :nhwc or :nchw)")
    if picture.mean and len(picture.mean) != channels:
        raise ArtforgeError(f"--picture {picture.name}: {len(picture.mean)} mean values for {channels} channel(s)")
    return channels


def wire_shape(shape: list, picture: Picture) -> list:
    """The network shape (batch first) of a picture tensor as (batch, height, width, channels)."""
    channel_count(shape, picture)
    return [shape[i] for i in TO_NHWC] if picture.layout == "nchw" else list(shape)


def constant(graph_name: str, value) -> TensorProto:
    return numpy_helper.from_array(np.asarray(value), graph_name)


class Chain:
    """ONNX nodes applied one after another to one tensor, with the constants they take."""

    def __init__(self, start: str, prefix: str):
        self.last, self.prefix, self.nodes, self.consts = start, prefix, [], []

    def op(self, kind: str, name: str, *values, output: str | None = None, **attributes) -> "Chain":
        """Append `kind`(last, *values as constants) -> PREFIX/name (or `output`)."""
        inputs = [self.last]
        for i, value in enumerate(values):
            self.consts.append(constant(f"{self.prefix}/{name}_{i}", value))
            inputs.append(self.consts[-1].name)
        self.last = output or f"{self.prefix}/{name}"
        self.nodes.append(helper.make_node(kind, inputs, [self.last], **attributes))
        return self


def input_nodes(picture: Picture, wire: str, network: str, channels: int) -> tuple[list, list]:
    """Nodes (and their constants) from the uint8 wire tensor `wire` to the float tensor `network`."""
    chain = Chain(wire, f"{wire}/artforge_pixels").op("Cast", "float", to=TensorProto.FLOAT)
    chain.op("Mul", "scaled", np.float32((picture.high - picture.low) / 255)).op("Add", "ranged",
                                                                                  np.float32(picture.low))
    if picture.order == "bgr" and channels == 3:
        chain.op("Gather", "bgr", REVERSED, axis=3)
    if picture.mean:  # per channel, on the last axis while the picture is NHWC
        chain.op("Sub", "centred", np.float32(picture.mean)).op("Div", "normalised", np.float32(picture.std))
    if picture.layout == "nchw":
        chain.op("Transpose", "nchw", perm=list(TO_NCHW))
    chain.op("Identity", "network", output=network)
    return chain.nodes, chain.consts


def output_nodes(picture: Picture, network: str, wire: str, channels: int) -> tuple[list, list]:
    """Nodes (and their constants) from the network's float tensor `network` to the uint8 wire tensor `wire`."""
    chain = Chain(network, f"{wire}/artforge_pixels")
    if picture.layout == "nchw":
        chain.op("Transpose", "nhwc", perm=list(TO_NHWC))
    if picture.mean:
        chain.op("Mul", "spread", np.float32(picture.std)).op("Add", "unnormalised", np.float32(picture.mean))
    if picture.order == "bgr" and channels == 3:
        chain.op("Gather", "rgb", REVERSED, axis=3)
    chain.op("Cast", "float", to=TensorProto.FLOAT).op("Sub", "shifted", np.float32(picture.low))
    chain.op("Mul", "scaled", np.float32(255 / (picture.high - picture.low)))
    chain.op("Clip", "clipped", np.float32(0), np.float32(255)).op("Round", "rounded")
    chain.op("Cast", "pixels", output=wire, to=TensorProto.UINT8)
    return chain.nodes, chain.consts


def rename_uses(graph: onnx.GraphProto, old: str, new: str, outputs: bool = False) -> None:
    """Every node input (and with `outputs`, node output) called `old`, in subgraphs too, becomes `new`."""
    for node in graph.node:
        names = node.output if outputs else node.input
        for i, name in enumerate(names):
            if name == old:
                names[i] = new
        for attribute in node.attribute:
            for sub in (*attribute.graphs, *([attribute.g] if attribute.HasField("g") else [])):
                rename_uses(sub, old, new)  # outer-scope names are read, never written, inside subgraphs


def set_wire_type(value: onnx.ValueInfoProto, shape: list) -> None:
    """Make a graph input/output uint8 of `shape` (ints static, strings named, None unknown)."""
    value.type.tensor_type.elem_type = TensorProto.UINT8
    dims = value.type.tensor_type.shape
    dims.ClearField("dim")
    for size in shape:
        dim = dims.dim.add()
        if isinstance(size, int):
            dim.dim_value = size
        elif size:
            dim.dim_param = size


def add_pictures(model: onnx.ModelProto, pictures: dict[str, Picture], shapes: dict[str, list]) -> onnx.ModelProto:
    """A copy of `model` whose `pictures` (inputs or outputs; `shapes`: their network shapes) are uint8 NHWC."""
    if pictures:
        check_opset(model, MIN_OPSET, "--picture")
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    inputs = {v.name: v for v in graph.input}
    outputs = {v.name: v for v in graph.output}
    for name, picture in pictures.items():
        channels = channel_count(shapes[name], picture)
        inner = f"{name}/artforge_network"
        drop_value_info(graph, name)
        if name in inputs:
            check_float(inputs[name], picture)
            rename_uses(graph, name, inner)
            nodes, consts = input_nodes(picture, name, inner, channels)
            prepend(graph, nodes)
            set_wire_type(inputs[name], wire_shape(shapes[name], picture))
        elif name in outputs:
            check_float(outputs[name], picture)
            rename_uses(graph, name, inner)
            rename_uses(graph, name, inner, outputs=True)
            nodes, consts = output_nodes(picture, inner, name, channels)
            graph.node.extend(nodes)
            set_wire_type(outputs[name], wire_shape(shapes[name], picture))
        else:
            raise ArtforgeError(f"--picture {name}: the model has no input or output of that name; its inputs are "
                                f"{list(inputs)}, its outputs {list(outputs)}")
        graph.initializer.extend(consts)
    return out


def prepend(graph: onnx.GraphProto, nodes: list) -> None:
    """Put `nodes` before the graph's own (ONNX wants nodes in topological order)."""
    existing = list(graph.node)
    graph.ClearField("node")
    graph.node.extend([*nodes, *existing])


def drop_value_info(graph: onnx.GraphProto, name: str) -> None:
    """Shape annotations of the renamed tensor would now describe the wrong thing; inference redoes them."""
    keep = [v for v in graph.value_info if v.name != name]
    graph.ClearField("value_info")
    graph.value_info.extend(keep)


def check_float(value: onnx.ValueInfoProto, picture: Picture) -> None:
    if value.type.tensor_type.elem_type != TensorProto.FLOAT:
        kind = TensorProto.DataType.Name(value.type.tensor_type.elem_type).lower()
        raise ArtforgeError(f"--picture {picture.name}: the tensor is {kind}; pictures are converted from and to "
                            "float32 tensors")


def check_opset(model: onnx.ModelProto, needed: int, what: str) -> None:
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < needed:
        raise ArtforgeError(f"{what} needs ONNX opset {needed} or later; the file has opset {opset} "
                            "(convert it with onnx.version_converter.convert_version)")


def add_batch_axes(model: onnx.ModelProto, inputs: list[str], outputs: list[str]) -> onnx.ModelProto:
    """A copy of `model` whose `inputs` and `outputs` carry a leading batch axis of 1 (squeezed inside)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    values = {v.name: v for v in (*graph.input, *graph.output)}
    axes = constant("artforge_batch_axis", np.array([0], np.int64))
    for name in (*inputs, *outputs):
        inner = f"{name}/artforge_unbatched"
        drop_value_info(graph, name)
        rename_uses(graph, name, inner)
        if name in inputs:
            prepend(graph, [helper.make_node("Squeeze", [name, axes.name], [inner])])
        else:
            rename_uses(graph, name, inner, outputs=True)
            graph.node.append(helper.make_node("Unsqueeze", [inner, axes.name], [name]))
        dims = values[name].type.tensor_type.shape.dim
        dims.insert(0, onnx.TensorShapeProto.Dimension(dim_value=1))
    if inputs or outputs:
        check_opset(model, MIN_OPSET_AXES, "serving a tensor without a batch axis")
        graph.initializer.append(axes)
    return out
