"""KServe v2 inference messages built and read directly in protobuf, sent as bytes on a plain gRPC method.

tritonclient's `infer` wraps each tensor in an InferInput, copies it into a message, and wraps the answer
again; at one client on a cheap model that bookkeeping was a third of a request's time (perf_analyzer's
C++ client sent the same bytes 0.2-0.5 ms faster: benchmarks/results/dcgan-perf-analyzer-epyc.md). Here a
request is one protobuf message whose tensors travel as raw bytes (`raw_input_contents`, the form Triton
reads without conversion), serialised once, and the answer's tensors are numpy views of its bytes.

    method = infer_method(channel)                  # grpc.Channel or grpc.aio.Channel
    answer = method(request_bytes("dcgan", [("z", "FP32", z)], ["image"]), timeout=10)
    outputs = read_outputs(answer)                  # {"image": array}
"""
from __future__ import annotations

import numpy as np
from tritonclient.grpc import service_pb2
from tritonclient.utils import deserialize_bytes_tensor, serialize_byte_tensor

from artforge.contract import WIRE_DTYPES
from artforge.errors import ArtforgeError

INFER_METHOD = "/inference.GRPCInferenceService/ModelInfer"
NUMPY_DTYPES = {wire: np.dtype(name) for name, wire in WIRE_DTYPES.items()}


def infer_method(channel):
    """ModelInfer on this channel, taking and returning serialised messages (no (de)serialiser: bytes pass)."""
    return channel.unary_unary(INFER_METHOD)


def request_bytes(model: str, inputs: list[tuple[str, str, np.ndarray]], outputs: list[str]) -> bytes:
    """One ModelInferRequest, serialised: (name, wire type, array) per input, the outputs wanted by name."""
    request = service_pb2.ModelInferRequest(model_name=model)
    for name, wire, value in inputs:
        request.inputs.add(name=name, datatype=wire, shape=value.shape)
        request.raw_input_contents.append(tensor_bytes(wire, value))
    for name in outputs:
        request.outputs.add(name=name)
    return request.SerializeToString()


def tensor_bytes(wire: str, value: np.ndarray) -> bytes:
    """A tensor in Triton's raw form: little-endian C order; strings as 4-byte length + bytes each."""
    if wire == "BYTES":  # tritonclient returns the whole serialised tensor as one bytes item
        serialised = serialize_byte_tensor(value)
        return serialised.item() if serialised.size else b""
    return np.ascontiguousarray(value, NUMPY_DTYPES[wire].newbyteorder("<")).tobytes()


def read_outputs(answer: bytes, wanted: list[str] | None = None) -> dict[str, np.ndarray]:
    """The arrays of a serialised ModelInferResponse (those named in `wanted`, in that order; all when None)."""
    response = service_pb2.ModelInferResponse.FromString(answer)
    arrays = {}
    for tensor, raw in zip(response.outputs, response.raw_output_contents):
        if tensor.datatype == "BYTES":
            value = deserialize_bytes_tensor(raw)
        else:
            value = np.frombuffer(raw, NUMPY_DTYPES[tensor.datatype].newbyteorder("<"))
        arrays[tensor.name] = value.reshape(tuple(tensor.shape))
    if wanted is None:
        return arrays
    missing = [name for name in wanted if name not in arrays]
    if missing:
        raise ArtforgeError(f"the server's answer lacks {missing}; it holds {sorted(arrays)}")
    return {name: arrays[name] for name in wanted}
