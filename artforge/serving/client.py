"""gRPC client for artforge models on Triton: input checks, retries, failover between replicas, sync and asyncio.

    client = Client("127.0.0.1:8001")
    outputs = client.infer("MODEL", {"input_name": array, ...})   # {"output_name": array}
"""
from __future__ import annotations

import asyncio
import json
import queue
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import grpc
import numpy as np

from artforge.errors import ArtforgeError, ServerUnavailable
from artforge.options import Command, Sampling, ServerAddress, option
from artforge.serving.replicas import GRPC_SCHEMES, Replica, ReplicaSet, split_targets
from artforge.serving.request_limits import shape_problem, value_problem
from artforge.serving.shared_memory import SharedMemoryTransfer, is_local
from artforge.serving.wire import NUMPY_DTYPES, infer_method, read_outputs, request_bytes
from artforge.contract import (DenoisingLoop, TensorSpec, TokenStream, check_inputs,
                               denoising_loop_from_json, stream_from_json)

# Triton and tritonclient allow messages up to 2 GiB; say so explicitly so a 2048x2048 image is never cut
MAX_MESSAGE_BYTES = 2**31 - 1
CHANNEL_ARGS = [("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)]


@dataclass
class ModelInfo:
    """What the server says about a model: tensors, largest batch and artforge metadata."""

    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    max_batch: int
    family: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    limits: dict[str, Any] = field(default_factory=dict)  # per input: what the server accepts
    stream: TokenStream | None = None  # set for models served as a token loop (Client.stream)
    sampler: DenoisingLoop | None = None  # set for diffusion models served as a sampling loop (Client.stream)

    @property
    def decoupled(self) -> bool:
        """Whether the model answers a request with a stream of responses (Client.stream) instead of one."""
        return bool(self.stream or self.sampler)

    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]

    def check_limits(self, inputs: dict[str, np.ndarray]) -> None:
        """Refuse here what the server would refuse: sizes and values outside the model's limits."""
        for name, value in inputs.items():
            limit = self.limits.get(name, {})
            problem = shape_problem(name, value.shape, limit, self.max_batch) or value_problem(name, value, limit)
            if problem:
                raise ArtforgeError(f"model '{self.name}': {problem}")


def resolve_label(label: str | int | None, labels: list, kind: str = "label") -> int | None:
    """A label (a style, a class) given by index or by name, checked against the model's labels."""
    if label is None:
        return None
    names = [str(s) for s in labels]
    if str(label) in names:
        return names.index(str(label))
    try:
        index = int(label)
    except ValueError:
        raise ArtforgeError(f"unknown {kind} '{label}'; the model has {names}") from None
    if not 0 <= index < len(names):
        raise ArtforgeError(f"{kind} {index} is out of range; the model has {len(names)} {kind}s: {names}")
    return index


@dataclass(frozen=True)
class PreparedRequest:
    """One inference request checked against the model and serialised (artforge/serving/wire.py)."""

    model: str
    message: bytes
    outputs: list[str]


def tensor_from_metadata(entry: dict[str, Any]) -> TensorSpec:
    dtype = NUMPY_DTYPES[entry["datatype"]].name
    dims = [int(d) for d in entry["shape"]][1:]  # first dim is the batch
    return TensorSpec(entry["name"], dtype, tuple(d if d >= 0 else f"dim{i}" for i, d in enumerate(dims)))


def model_info_from(metadata: dict[str, Any], config: dict[str, Any]) -> ModelInfo:
    params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
    return ModelInfo(metadata["name"], tuple(tensor_from_metadata(t) for t in metadata["inputs"]),
                     tuple(tensor_from_metadata(t) for t in metadata["outputs"]),
                     int(config.get("max_batch_size", 0)), params.get("artforge.family", ""),
                     json.loads(params.get("artforge.metadata", "{}") or "{}"),
                     json.loads(params.get("artforge.limits", "{}") or "{}"),
                     stream_from_json(json.loads(params["artforge.stream"])) if params.get("artforge.stream") else None,
                     denoising_loop_from_json(json.loads(params["artforge.sampler"]))
                     if params.get("artforge.sampler") else None)


def is_unavailable(error: Exception) -> bool:
    """Whether a failed call (tritonclient's exception or a plain gRPC error) found no server to answer."""
    if isinstance(error, grpc.RpcError):
        return error.code() == grpc.StatusCode.UNAVAILABLE
    return "UNAVAILABLE" in str(getattr(error, "status", lambda: "")() or "")


def failure_text(error: Exception) -> str:
    """What the server (or gRPC) said about a failed call."""
    return error.details() if isinstance(error, grpc.RpcError) else error.message()


def retry_or_raise(error: Exception, what: str, url: str, attempt: int, retries: int, backoff_s: float) -> float:
    """Seconds to wait before the next try of an UNAVAILABLE call; any other failure raises at once."""
    if not is_unavailable(error):
        raise ArtforgeError(f"{what} failed on Triton at {url}: {failure_text(error)}") from None
    if attempt == retries:
        raise ServerUnavailable(f"Triton at {url} is unavailable after {retries + 1} tries; "
                                "is 'artforge serve' running there?") from None
    return backoff_s * 2**attempt


class Client:
    """Synchronous gRPC client of one Triton server or several replicas (url 'a:8001,b:8001'; see
    artforge/serving/replicas.py): a call that finds a replica UNAVAILABLE goes to another, and with none left
    waits for one with backoff; any other failure is final. Large tensors to a server on this machine
    travel through system shared memory (artforge/serving/shared_memory.py) unless shared_memory=False."""

    def __init__(self, url: str = "127.0.0.1:8001", timeout_s: float = 60.0, retries: int = 4,
                 backoff_s: float = 0.2, shared_memory: bool = True):
        import tritonclient.grpc as grpcclient

        self.url = url
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self._grpc = grpcclient
        self.replicas = ReplicaSet(split_targets(url), self.connect, first_wait_s=backoff_s)
        self._models: dict[str, ModelInfo] = {}
        local = len(self.replicas.replicas) == 1 and is_local(self.replicas.replicas[0].url)
        self.transfer = SharedMemoryTransfer(self.replicas.replicas[0].client, grpcclient, NUMPY_DTYPES) \
            if shared_memory and local else None
        self._infer_methods: dict[str, Any] = {}  # replica url -> ModelInfer taking serialised requests

    def connect(self, target: str):
        """A connection to one target; a gRPC-scheme target (dns:///..., ipv4:...) is balanced by gRPC."""
        return self._grpc.InferenceServerClient(target, channel_args=self.channel_args(target))

    @staticmethod
    def channel_args(target: str) -> list[tuple[str, Any]]:
        balanced = [("grpc.lb_policy_name", "round_robin")] if target.startswith(GRPC_SCHEMES) else []
        return CHANNEL_ARGS + balanced

    def close(self) -> None:
        if self.transfer:
            self.transfer.close()
        self.replicas.close()
        for channel, _ in self._infer_methods.values():
            channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def replica(self) -> Replica:
        """A replica in service; when none is, wait for one to pass its readiness check (bounded)."""
        for attempt in range(self.retries + 1):
            replica = self.replicas.pick()
            if replica is not None:
                return replica
            if attempt < self.retries:
                time.sleep(self.replicas.next_return_s())
        raise self.unavailable()

    def unavailable(self) -> ServerUnavailable:
        return ServerUnavailable(f"Triton at {self.url} is unavailable after {self.retries + 1} tries; "
                                 "is 'artforge serve' running there?")

    def call(self, what: str, method: str, *args, **kwargs):
        """Run one RPC (a tritonclient method by name) on a replica in service."""
        return self.call_on(what, lambda replica: getattr(replica.client, method)(*args, **kwargs))

    def call_on(self, what: str, run: Callable[[Replica], Any]):
        """run(replica) on a replica in service; one that is UNAVAILABLE is taken out and the call goes to
        another (inference has no side effects); any other failure is final."""
        from tritonclient.utils import InferenceServerException

        for _ in range(self.retries + len(self.replicas.replicas)):
            replica = self.replica()
            try:
                with self.replicas.calling(replica):
                    return run(replica)
            except (InferenceServerException, grpc.RpcError) as e:
                if not is_unavailable(e):
                    raise ArtforgeError(f"{what} failed on Triton at {replica.url}: {failure_text(e)}") from None
                self.replicas.take_out(replica)
        raise self.unavailable()

    def infer_method(self, replica: Replica):
        """ModelInfer of a replica on a channel of its own, taking serialised requests (artforge/serving/wire.py)."""
        if replica.url not in self._infer_methods:
            channel = grpc.insecure_channel(replica.url, options=self.channel_args(replica.url))
            self._infer_methods[replica.url] = (channel, infer_method(channel))
        return self._infer_methods[replica.url][1]

    def models(self) -> list[str]:
        index = self.call("listing models", "get_model_repository_index", as_json=True)
        return sorted(m["name"] for m in index.get("models", []) if m.get("state", "READY") == "READY")

    def model(self, name: str) -> ModelInfo:
        """Model metadata (cached); an unknown name lists the models the server does have."""
        if name not in self._models:
            if name not in self.models():
                raise ArtforgeError(f"Triton at {self.url} has no ready model '{name}'; it serves {self.models()}")
            metadata = self.call(f"metadata of {name}", "get_model_metadata", name, as_json=True)
            config = self.call(f"config of {name}", "get_model_config", name, as_json=True)["config"]
            self._models[name] = model_info_from(metadata, config)
        return self._models[name]

    def checked_inputs(self, name: str, inputs: dict[str, np.ndarray]) -> list[tuple[str, str, np.ndarray]]:
        """(name, wire type, contiguous array) per model input, after the checks the server would make."""
        info = self.model(name)
        check_inputs(info.inputs, inputs, info.max_batch)  # a clear local error beats a server one
        info.check_limits(inputs)
        return [(spec.name, spec.wire_dtype, np.ascontiguousarray(inputs[spec.name])) for spec in info.inputs]

    def build_request(self, name: str, inputs: dict[str, np.ndarray], outputs: list[str] | None):
        """tritonclient's InferInputs and requested outputs for a stream (unary requests go by wire.py)."""
        tensors = []
        for input_name, wire, value in self.checked_inputs(name, inputs):
            tensor = self._grpc.InferInput(input_name, list(value.shape), wire)
            tensor.set_data_from_numpy(value)
            tensors.append(tensor)
        wanted = outputs or self.model(name).output_names()
        return tensors, [self._grpc.InferRequestedOutput(n) for n in wanted], wanted

    def prepare(self, name: str, inputs: dict[str, np.ndarray], outputs: list[str] | None = None) -> PreparedRequest:
        """A request checked and serialised once, for `send` to repeat (a load generator sends the same
        request many times, as perf_analyzer sends its --input-data)."""
        self.refuse_decoupled(name)
        wanted = outputs or self.model(name).output_names()
        return PreparedRequest(name, request_bytes(name, self.checked_inputs(name, inputs), wanted), wanted)

    def send(self, request: PreparedRequest) -> dict[str, np.ndarray]:
        """The answer to a prepared request, its tensors inside the gRPC messages."""
        return self.call_on(f"inference on {request.model}", lambda replica: read_outputs(
            self.infer_method(replica)(request.message, timeout=self.timeout_s), request.outputs))

    def refuse_decoupled(self, name: str) -> None:
        if self.model(name).decoupled:
            raise ArtforgeError(f"model '{name}' streams its answer (token by token, or picture previews): "
                                "use Client.stream")

    def infer(self, name: str, inputs: dict[str, np.ndarray],
              outputs: list[str] | None = None) -> dict[str, np.ndarray]:
        self.refuse_decoupled(name)
        checked = self.checked_inputs(name, inputs)
        wanted = outputs or self.model(name).output_names()
        arrays = {input_name: value for input_name, _, value in checked}
        key = self.transfer.knows(name, arrays, wanted) if self.transfer else None
        if key is not None:
            answer = self.shared_memory_infer(key, name, checked)
            if answer is not None:
                return answer
        answer = self.send(PreparedRequest(name, request_bytes(name, checked, wanted), wanted))
        if self.transfer:
            self.transfer.learn(name, arrays, answer)
        return answer

    def shared_memory_infer(self, key: tuple, name: str, checked) -> dict[str, np.ndarray] | None:
        from tritonclient.utils import InferenceServerException

        try:
            return self.transfer.infer(key, name, checked, self.timeout_s)
        except InferenceServerException as e:
            raise ArtforgeError(f"inference on {name} failed on Triton at {self.url}: {e.message()}") from None

    def stream(self, name: str, inputs: dict[str, np.ndarray]) -> Iterator[dict[str, np.ndarray]]:
        """The responses of a loop model as they arrive, one dict of outputs each, over one gRPC stream.

        Every wait is bounded by the client's timeout. Leaving the loop early cancels the request on
        the server, which then stops decoding. One stream at a time per Client.
        """
        if not self.model(name).decoupled:
            raise ArtforgeError(f"model '{name}' answers each request once: use Client.infer")
        request = self.build_request(name, inputs, None)
        try:
            first = True
            for _, outputs in self._stream_once(name, [request]):
                first = False
                yield outputs
        except ServerUnavailable:
            # The connection dropped before the first response (seen once in a while right after a
            # cancelled stream): the request did nothing yet and generation has no side effects, so it
            # is sent again once on a fresh stream. A stream that had begun is not resumed.
            if not first:
                raise
            yield from (outputs for _, outputs in self._stream_once(name, [request]))

    def stream_many(self, name: str,
                    requests: list[dict[str, np.ndarray]]) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        """(request index, outputs) as responses arrive for several requests sent at once on one gRPC stream,
        so that the server runs them together (a diffusion model steps its open requests as one batch)."""
        if not self.model(name).decoupled:
            raise ArtforgeError(f"model '{name}' answers each request once: use Client.infer")
        yield from self._stream_once(name, [self.build_request(name, inputs, None) for inputs in requests])

    def _stream_once(self, name, requests) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        from tritonclient.utils import InferenceServerException

        arrived: queue.Queue = queue.Queue()
        replica = self.replica()
        client = replica.client
        client.start_stream(callback=lambda result, error: arrived.put((result, error)))
        open_requests = set(range(len(requests)))
        try:
            with self.replicas.calling(replica):
                try:
                    for index, (tensors, requested, _) in enumerate(requests):
                        client.async_stream_infer(name, tensors, outputs=requested, request_id=str(index),
                                                  enable_empty_final_response=True)
                except InferenceServerException as e:
                    error = e
                else:
                    error = None
                while error is None and open_requests:
                    try:
                        result, error = arrived.get(timeout=self.timeout_s)
                    except queue.Empty:
                        raise ArtforgeError(f"model '{name}' on {replica.url} sent nothing for {self.timeout_s:g} s"
                                            ) from None
                    if error is not None:
                        break
                    response = result.get_response()
                    index = int(response.id or 0)
                    if response.outputs:
                        yield index, {n: result.as_numpy(n) for n in requests[index][2]}
                    if response.parameters["triton_final_response"].bool_param:
                        open_requests.discard(index)
                if error is None:
                    return
                if is_unavailable(error):
                    self.replicas.take_out(replica)
                    raise ServerUnavailable(f"streaming from {name} failed on Triton at {replica.url}: "
                                            f"{error.message()}")
                raise ArtforgeError(f"streaming from {name} failed on Triton at {replica.url}: {error.message()}")
        finally:
            client.stop_stream(cancel_requests=True)

    def stream_tokens(self, name: str, inputs: dict[str, np.ndarray]) -> Iterator[int]:
        """The token ids of a loop model's stream, one at a time as they arrive (a response may hold several)."""
        for outputs in self.stream(name, inputs):
            yield from (int(t) for t in outputs["token"].reshape(-1))

    def stream_text(self, name: str, prompt: str, max_tokens: int = 200, temperature: float = 1.0,
                    top_k: int = 0, seed: int = 0, top_p: float = 1.0) -> Iterator[str]:
        """Continue `prompt` on a token model, yielding each piece of text as the server makes it."""
        info = self.model(name)
        if not info.stream:
            raise ArtforgeError(f"model '{name}' is not a token model (it answers each request once)")
        inputs = {"prompt": info.stream.encode(prompt), "max_tokens": np.array([[max_tokens]], np.int32),
                  "temperature": np.array([[temperature]], np.float32), "top_k": np.array([[top_k]], np.int32),
                  "top_p": np.array([[top_p]], np.float32), "seed": np.array([[seed]], np.int64)}
        if "top_p" not in {t.name for t in info.inputs}:  # a repository exported before top_p existed
            inputs.pop("top_p")
        for outputs in self.stream(name, inputs):
            yield b"".join(outputs["text"].reshape(-1)).decode("utf-8")

    def statistics(self, name: str) -> dict[str, Any]:
        stats = self.call("statistics", "get_inference_statistics", name, as_json=True)
        return stats["model_stats"][0] if stats.get("model_stats") else {}


class AsyncClient:
    """asyncio twin of Client.infer on one server over grpc.aio (the same serialised messages as Client's,
    artforge/serving/wire.py); model metadata comes from a sync lookup."""

    def __init__(self, url: str = "127.0.0.1:8001", timeout_s: float = 60.0, retries: int = 4,
                 backoff_s: float = 0.2):
        self.url, self.timeout_s, self.retries, self.backoff_s = url, timeout_s, retries, backoff_s
        self._sync = Client(url, timeout_s, retries, backoff_s)
        self._channel = grpc.aio.insecure_channel(url, options=Client.channel_args(url))
        self._infer = infer_method(self._channel)

    async def close(self) -> None:
        await self._channel.close()
        self._sync.close()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    def model(self, name: str) -> ModelInfo:
        return self._sync.model(name)

    async def infer(self, name: str, inputs: dict[str, np.ndarray],
                    outputs: list[str] | None = None) -> dict[str, np.ndarray]:
        return await self.send(self._sync.prepare(name, inputs, outputs))

    def prepare(self, name: str, inputs: dict[str, np.ndarray], outputs: list[str] | None = None) -> PreparedRequest:
        return self._sync.prepare(name, inputs, outputs)

    async def send(self, request: PreparedRequest) -> dict[str, np.ndarray]:
        for attempt in range(self.retries + 1):
            try:
                return read_outputs(await self._infer(request.message, timeout=self.timeout_s), request.outputs)
            except grpc.RpcError as e:
                await asyncio.sleep(retry_or_raise(e, f"inference on {request.model}", self.url, attempt,
                                                   self.retries, self.backoff_s))


# ---- `artforge stream` ----
@dataclass(kw_only=True)
class StreamOptions(ServerAddress, Sampling):
    model: str = option(help="model name on the server", required=True)
    prompt: str = option(help="text to continue", required=True)
    max_tokens: int = option(100, help="tokens to generate")


def stream_command(opts: StreamOptions) -> None:
    with Client(opts.url, timeout_s=opts.timeout) as client:
        print(opts.prompt, end="", flush=True)
        for piece in client.stream_text(opts.model, opts.prompt, opts.max_tokens, opts.temperature, opts.top_k,
                                        opts.seed, opts.top_p):
            print(piece, end="", flush=True)
    print()


COMMAND = Command(
    "stream", help="continue a text prompt on a token model over a Triton gRPC stream, printing tokens as they come",
    description="For models served as a loop (token streams: poems, music events): sends the prompt once "
                "and prints each token the moment the server makes it. The same --seed gives the same "
                "text; --temperature 0 always takes the likeliest token.",
    examples="  artforge stream --model poem --prompt '床前明月光' --max-tokens 40\n"
             "  artforge stream --model poem --prompt 'Shall I' --temperature 0.8 --top-k 20 --seed 3",
    options=StreamOptions, run=stream_command)
