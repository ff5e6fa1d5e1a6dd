"""The poem family: a character-level decoder-only transformer that writes poems, streamed token by
token over Triton gRPC.

Everything artforge needs to know about the family is declared here or named from here: its config
and vocabulary (here), its network (the shared transformer with a key/value cache,
families/transformer.py), its serving contract (PoemSpec: one cached step network, served as a
loop), its corpora (corpus.py, `artforge data poems`), training and held-out perplexity (train.py),
the form measures of classical Chinese poems (form.py) and its client verb (`artforge write`,
write.py).

Token ids: 0 ends a poem (and starts one: every prompt begins with it), 1 stands for a character
the training poems never had, the rest are the characters of the training poems, in the config.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torch import nn

from artforge.contract import DynamicDim, TensorSpec, TokenStream
from artforge.families.registry import Family, register
from artforge.families.transformer import CachedStep, DecoderLM
from artforge.spec import ModelSpec

NAME = "poem"
END, UNKNOWN = 0, 1
SPECIALS = ("", "\ufffd")  # the text of END (nothing) and UNKNOWN (the replacement character)


@dataclass(frozen=True)
class PoemConfig:
    """The vocabulary and the transformer's shape; stored in every checkpoint."""

    characters: str = "\n"  # token ids 2.. in order
    context: int = 128  # tokens a sequence may hold, prompt and cache included
    layers: int = 4
    heads: int = 4
    width: int = 256

    def __post_init__(self) -> None:
        if len(set(self.characters)) != len(self.characters):
            raise ValueError("poem characters must be distinct")
        if not 8 <= self.context <= 4096 or not 1 <= self.layers <= 48 or self.width % self.heads:
            raise ValueError("poem context must be 8..4096, layers 1..48, width a multiple of heads")

    @property
    def vocab(self) -> tuple[str, ...]:
        return (*SPECIALS, *self.characters)


def build_network(config: PoemConfig, dropout: float = 0.0) -> DecoderLM:
    return DecoderLM(len(config.vocab), config.context, config.layers, config.heads, config.width, dropout)


def encode(config: PoemConfig, text: str) -> list[int]:
    """Characters -> ids; one the vocabulary lacks becomes UNKNOWN."""
    index = {c: i for i, c in enumerate(config.vocab) if c}
    return [index.get(c, UNKNOWN) for c in text]


class PoemSpec(ModelSpec):
    """The exported network is one cached decoding step; clients see a stream of characters."""

    def __init__(self, config: PoemConfig, meta: dict | None = None, float_output: bool = False):
        heads, head_dim = config.heads, config.width // config.heads
        cache = (config.layers, 2, heads, "past_length", head_dim)
        super().__init__(
            family=NAME,
            inputs=(TensorSpec("tokens", "int64", ("length",), "new token ids (the prompt, then one at a time)",
                               min_value=0, max_value=len(config.vocab) - 1),
                    TensorSpec("past", "float32", cache, "keys and values of the tokens before (length 0 at "
                               "first)")),
            outputs=(TensorSpec("logits", "float32", (len(config.vocab),), "next-token logits"),
                     TensorSpec("present", "float32", (config.layers, 2, heads, "total_length", head_dim),
                                "past with the new tokens' keys and values appended")),
            dynamic_dims={"length": DynamicDim(1, 8, config.context), "past_length": DynamicDim(0, 16, config.context - 1)},
            metadata={"context": config.context, "end_token": END, "unknown_token": UNKNOWN,
                      "training": (meta or {}).get("training", {}).get("data", "")},
            unit="token",
            stream=TokenStream("tokens", "logits", config.vocab, eos=END, max_context=config.context,
                               max_new_tokens=1024, bos=END, cache_input="past", cache_output="present",
                               cache_shape=cache),
        )
        self.config = config

    def serving_network(self, network: nn.Module) -> nn.Module:
        return CachedStep(network).eval()

    def sample_inputs(self, batch: int, seed: int, sizes: dict[str, int] | None = None) -> dict[str, np.ndarray]:
        sizes = sizes or self.optimal_sizes()
        length, cached = sizes["length"], sizes["past_length"]
        length = min(length, self.config.context - cached)  # positions stop at the context
        rng = np.random.default_rng(seed)
        c = self.config
        return {"tokens": rng.integers(0, len(c.vocab), (batch, length), dtype=np.int64),
                "past": rng.standard_normal((batch, c.layers, 2, c.heads, cached, c.width // c.heads), np.float32)}


FAMILY = register(Family(
    name=NAME, description="poems: a character transformer, streamed a character at a time (key/value cache)",
    config_cls=PoemConfig, build_network=build_network, make_spec=PoemSpec,
    trainer="artforge.families.poem.train", client="artforge.families.poem.write",
    evaluator="artforge.families.poem.quality"))
