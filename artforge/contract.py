"""The serving contract's vocabulary: tensors, their dtypes and sizes, and the checks on them.

Numpy only, no torch: a client machine can check requests against a model's contract without
installing PyTorch (`artforge.serving.client` imports this module, never artforge.spec).

Shapes are per item: the batch dimension is implied first, as in Triton's `dims`. A string in a
shape names a dynamic dimension (e.g. "height"); its min/opt/max come from `dynamic_dims`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
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
        """What a request may hold in this tensor (artforge/serving/request_limits.py reads it)."""
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


@dataclass(frozen=True)
class TokenStream:
    """A model served as a loop: the exported network is one decoding step (tokens so far -> logits of
    the next token), and Triton's Python backend runs the loop, samples each token and streams it back
    as its own response (a decoupled model; clients use gRPC streaming, `Client.stream`).

    This is the contract clients see in place of the step network's tensors: a prompt and sampling
    settings in; one token id and its text per response out. It has the ModelSpec methods the
    repository writer reads (inputs, outputs, dynamic_dims, input_limits, sample_inputs).
    """

    tokens_input: str  # the step network's int64 input, (batch, length)
    logits_output: str  # its float32 output, (batch, vocab)
    vocab: tuple[str, ...]  # token id -> its text, sent with every token
    eos: int | None = None  # a token that ends the stream (sent, then the final response)
    max_context: int = 256  # the step network sees at most the last this many tokens
    max_new_tokens: int = 1024  # the most tokens one request may ask for
    tokenizer: str = "char"  # how clients turn text into ids: 'char' = one vocab entry per character
    bos: int | None = None  # a token clients put before every prompt (the start of a poem, a piece)
    # A step network with a key/value cache: its cache input and output and the cache's per-item
    # shape with the length axis named, e.g. (layers, 2, heads, "past_length", head_dim). Without
    # them the loop reruns the latest window every token.
    cache_input: str | None = None
    cache_output: str | None = None
    cache_shape: tuple = ()
    # With it, concurrent streams decode as one batch (continuous batching): the step network's
    # (batch, 1) int64 input saying how many of the last cache entries are each row's own.
    cache_length_input: str | None = None

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        last = len(self.vocab) - 1
        return (TensorSpec("prompt", "int64", ("length",), "token ids to continue", min_value=0, max_value=last),
                TensorSpec("max_tokens", "int32", (1,), "tokens to generate", min_value=1,
                           max_value=self.max_new_tokens),
                TensorSpec("temperature", "float32", (1,), "0: always the likeliest token; 1: as learnt",
                           min_value=0, max_value=10),
                TensorSpec("top_k", "int32", (1,), "sample among the k likeliest (0: all)", min_value=0,
                           max_value=len(self.vocab)),
                TensorSpec("top_p", "float32", (1,), "sample among the likeliest tokens whose probability "
                           "reaches p (1: all)", min_value=0, max_value=1),
                TensorSpec("seed", "int64", (1,), "same seed, same tokens", min_value=0))

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        # one token per response, or the few that queued while the server was busy sending
        return (TensorSpec("token", "int64", ("tokens",), "the next token ids"),
                TensorSpec("text", "object", ("tokens",), "their texts, UTF-8"))

    @property
    def dynamic_dims(self) -> dict[str, DynamicDim]:
        return {"length": DynamicDim(1, min(8, self.max_context), self.max_context)}

    def optimal_sizes(self) -> dict[str, int]:
        return {"length": self.dynamic_dims["length"].opt}

    def input_limits(self) -> dict[str, dict[str, Any]]:
        return {t.name: t.limits(self.dynamic_dims) for t in self.inputs}

    def sample_inputs(self, batch: int, seed: int, sizes: dict[str, int] | None = None) -> dict[str, np.ndarray]:
        length = (sizes or self.optimal_sizes())["length"]
        prompt = np.random.default_rng(seed).integers(0, len(self.vocab), (batch, length), dtype=np.int64)
        return {"prompt": prompt, "max_tokens": np.full((batch, 1), 2, np.int32),
                "temperature": np.ones((batch, 1), np.float32), "top_k": np.zeros((batch, 1), np.int32),
                "top_p": np.ones((batch, 1), np.float32), "seed": np.full((batch, 1), seed, np.int64)}

    def to_json(self) -> dict[str, Any]:
        """What the served model.py needs to run the loop (config.pbtxt's artforge.stream)."""
        return {"tokens_input": self.tokens_input, "logits_output": self.logits_output, "vocab": list(self.vocab),
                "eos": self.eos, "max_context": self.max_context, "tokenizer": self.tokenizer, "bos": self.bos,
                "cache_input": self.cache_input, "cache_output": self.cache_output,
                "cache_shape": list(self.cache_shape), "max_new_tokens": self.max_new_tokens,
                "cache_length_input": self.cache_length_input}

    def encode(self, text: str) -> np.ndarray:
        """Text -> prompt ids for a 'char' tokenizer; a character the model never saw is an error."""
        if self.tokenizer != "char":
            raise ArtforgeError(f"this client encodes text for 'char' tokenizers only, not '{self.tokenizer}'")
        index = {piece: i for i, piece in enumerate(self.vocab)}
        unknown = sorted({c for c in text if c not in index})
        if unknown:
            raise ArtforgeError(f"the prompt has characters the model does not know: {''.join(unknown)!r}")
        start = [] if self.bos is None else [self.bos]
        if not text and not start:
            raise ArtforgeError("the prompt is empty and this model has no start token to begin from")
        return np.array([start + [index[c] for c in text]], np.int64)


SAMPLER_NAMES = ("ddim", "dpmpp_2m")  # the `sampler` input's values, in order (artforge/serving/denoising.py)
MAX_SEED = 2**31 - 1


@dataclass(frozen=True)
class DenoisingLoop:
    """A diffusion model served as a loop: the exported network is the denoiser (a noisy picture, its
    timestep and a class -> the network's prediction), and Triton's Python backend runs the whole sampler
    (artforge/serving/denoising.py), streaming the predicted clean picture every `previews` steps and
    then the final picture (a decoupled model; clients use gRPC streaming, `Client.stream`).

    This is the contract clients see in place of the denoiser's tensors: a class, a seed and the
    sampler's settings in; a picture and the steps done per response out. It has the ModelSpec methods
    the repository writer reads (inputs, outputs, dynamic_dims, input_limits, sample_inputs).
    """

    sample_input: str  # the denoiser's (batch, channels, size, size) float32 noisy picture
    timestep_input: str  # its (batch, 1) int64 training timestep
    class_input: str  # its (batch, 1) int64 class; num_classes is the null class (classifier-free guidance)
    output: str  # its (batch, channels, size, size) float32 prediction (noise, v or the clean picture)
    image_size: int
    num_classes: int
    schedule: dict[str, Any] = field(hash=False)  # diffusers' scheduler config keys (denoising.py reads them)
    channels: int = 3
    max_steps: int = 200  # the most steps one request may ask for
    default_steps: int = 20
    default_guidance: float = 2.0

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        return (TensorSpec("style", "int64", (1,), f"class index 0..{self.num_classes - 1} (metadata 'styles' names "
                           "them)", min_value=0, max_value=self.num_classes - 1),
                TensorSpec("seed", "int64", (1,), "same seed, same picture", min_value=0, max_value=MAX_SEED),
                TensorSpec("steps", "int32", (1,), "denoising steps (more: finer, slower)", min_value=1,
                           max_value=self.max_steps),
                TensorSpec("guidance", "float32", (1,), "classifier-free guidance: 0 ignores the class, 1 follows "
                           "it as learnt, more follows it harder", min_value=0, max_value=20),
                TensorSpec("sampler", "int32", (1,), f"{' or '.join(f'{i}: {n}' for i, n in enumerate(SAMPLER_NAMES))}",
                           min_value=0, max_value=len(SAMPLER_NAMES) - 1),
                TensorSpec("previews", "int32", (1,), "send the predicted picture every N steps (0: the final "
                           "picture only)", min_value=0, max_value=self.max_steps))

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        return (TensorSpec("image", "uint8", (self.image_size, self.image_size, 3), "a preview, or the final "
                           "picture when `step` equals the steps asked"),
                TensorSpec("step", "int32", (1,), "steps done when this picture was sent"))

    @property
    def dynamic_dims(self) -> dict[str, DynamicDim]:
        return {}

    def optimal_sizes(self) -> dict[str, int]:
        return {}

    def input_limits(self) -> dict[str, dict[str, Any]]:
        return {t.name: t.limits({}) for t in self.inputs}

    def controls(self) -> dict[str, float]:
        """The inputs that are settings, with their defaults: what a generator request fills in by name."""
        return {"steps": self.default_steps, "guidance": self.default_guidance, "sampler": 1, "previews": 0}

    def sample_inputs(self, batch: int, seed: int, sizes: dict[str, int] | None = None) -> dict[str, np.ndarray]:
        return {"style": np.zeros((batch, 1), np.int64), "seed": np.full((batch, 1), seed, np.int64),
                "steps": np.full((batch, 1), 2, np.int32), "guidance": np.full((batch, 1), 2.0, np.float32),
                "sampler": np.ones((batch, 1), np.int32), "previews": np.zeros((batch, 1), np.int32)}

    def to_json(self) -> dict[str, Any]:
        """What the served model.py needs to run the sampler (config.pbtxt's artforge.sampler)."""
        return {"sample_input": self.sample_input, "timestep_input": self.timestep_input,
                "class_input": self.class_input, "output": self.output, "image_size": self.image_size,
                "num_classes": self.num_classes, "schedule": dict(self.schedule), "channels": self.channels,
                "max_steps": self.max_steps, "default_steps": self.default_steps,
                "default_guidance": self.default_guidance, "samplers": list(SAMPLER_NAMES)}


def denoising_loop_from_json(data: dict[str, Any]) -> DenoisingLoop:
    return DenoisingLoop(data["sample_input"], data["timestep_input"], data["class_input"], data["output"],
                         int(data["image_size"]), int(data["num_classes"]), dict(data["schedule"]),
                         int(data.get("channels", 3)), int(data.get("max_steps", 200)),
                         int(data.get("default_steps", 20)), float(data.get("default_guidance", 2.0)))


def stream_from_json(data: dict[str, Any]) -> TokenStream:
    return TokenStream(data["tokens_input"], data["logits_output"], tuple(data["vocab"]), data.get("eos"),
                       int(data.get("max_context", 256)), int(data.get("max_new_tokens", 1024)),
                       tokenizer=data.get("tokenizer", "char"), bos=data.get("bos"),
                       cache_input=data.get("cache_input"), cache_output=data.get("cache_output"),
                       cache_shape=tuple(data.get("cache_shape", ())),
                       cache_length_input=data.get("cache_length_input"))
