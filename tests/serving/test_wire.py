"""artforge's KServe v2 messages against tritonclient's own (the reference), and a server error through the
thin path still a one-line error naming the server."""
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.grpc import service_pb2
from tritonclient.grpc._utils import _get_inference_request
from tritonclient.utils import serialize_byte_tensor

from artforge.errors import ArtforgeError
from artforge.serving.client import AsyncClient, Client
from artforge.serving.wire import read_outputs, request_bytes

INPUTS = [("z", "FP32", np.random.default_rng(0).standard_normal((2, 5)).astype(np.float32)),
          ("style", "INT64", np.array([[3], [1]], np.int64)),
          ("image", "UINT8", np.arange(2 * 3 * 4 * 3, dtype=np.uint8).reshape(2, 3, 4, 3)),
          ("flag", "BOOL", np.array([[True], [False]])),
          ("text", "BYTES", np.array([[b"ab"], ["\u6708".encode()]], dtype=object))]


def tritonclients_request(model: str, outputs: list[str]) -> service_pb2.ModelInferRequest:
    tensors = []
    for name, wire, value in INPUTS:
        tensors.append(grpcclient.InferInput(name, list(value.shape), wire))
        tensors[-1].set_data_from_numpy(value)
    return _get_inference_request(model_name=model, inputs=tensors, model_version="", request_id="",
                                  outputs=[grpcclient.InferRequestedOutput(n) for n in outputs], sequence_id=0,
                                  sequence_start=False, sequence_end=False, priority=0, timeout=None,
                                  parameters=None)


def test_a_request_is_the_message_tritonclient_builds_for_the_same_tensors():
    ours = service_pb2.ModelInferRequest.FromString(request_bytes("m", INPUTS, ["image", "score"]))
    assert ours == tritonclients_request("m", ["image", "score"])


def test_an_answers_tensors_read_as_tritonclient_reads_them():
    response = service_pb2.ModelInferResponse(model_name="m")
    for name, wire, value in INPUTS:
        response.outputs.add(name=name, datatype=wire, shape=value.shape)
        raw = serialize_byte_tensor(value).item() if wire == "BYTES" else value.tobytes()
        response.raw_output_contents.append(raw)
    reference = grpcclient.InferResult(response)
    arrays = read_outputs(response.SerializeToString(), ["text", "z", "flag", "style", "image"])
    assert list(arrays) == ["text", "z", "flag", "style", "image"]
    for name, _, value in INPUTS:
        assert arrays[name].dtype == reference.as_numpy(name).dtype and arrays[name].shape == value.shape
        assert np.array_equal(arrays[name], reference.as_numpy(name)) and np.array_equal(arrays[name], value)
    with pytest.raises(ArtforgeError, match=r"lacks \['mask'\]"):
        read_outputs(response.SerializeToString(), ["mask"])


def test_a_prepared_request_answers_as_infer_does_and_errors_stay_one_line(triton):
    inputs = {"z": np.random.default_rng(1).standard_normal((2, 16)).astype(np.float32),
              "style": np.array([[0], [4]], np.int64)}
    with Client(triton.grpc_url) as client:
        request = client.prepare("dcgan", inputs)
        assert np.array_equal(client.send(request)["image"], client.infer("dcgan", inputs)["image"])
        wrong = request.__class__("dcgan", request_bytes("dcgan", [("z", "FP32", inputs["z"])], ["image"]),
                                  ["image"])  # past the client's checks: the server's own refusal
        with pytest.raises(ArtforgeError, match=r"^inference on dcgan failed on Triton at 127\.0\.0\.1:\d+: .*style"):
            client.send(wrong)

    async def twice():
        async with AsyncClient(triton.grpc_url) as client:
            return await client.send(client.prepare("dcgan", inputs)), await client.infer("dcgan", inputs)

    import asyncio
    sent, inferred = asyncio.run(twice())
    assert np.array_equal(sent["image"], inferred["image"])
