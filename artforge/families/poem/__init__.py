"""The poem family: a character-level decoder-only transformer that writes poems, streamed token by
token over Triton gRPC.

Everything artforge needs to know about the family is declared here or named from here: its config
and vocabulary (here), its network (the shared transformer with a key/value cache,
families/transformer.py), its serving contract (the shared CachedLMSpec: one cached step network,
served as a loop), its corpora (corpus.py, `artforge data poems`), training and held-out perplexity (train.py),
the form measures of classical Chinese poems (form.py) and its client verb (`artforge write`,
write.py).

Token ids: 0 ends a poem (and starts one: every prompt begins with it), 1 stands for a character
the training poems never had, the rest are the characters of the training poems, in the config.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

from artforge.registry import Family, register
from artforge.families.transformer import CachedLMSpec, DecoderLM

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
    index = vocab_index(config.characters)
    return [index.get(c, UNKNOWN) for c in text]


@functools.lru_cache(maxsize=8)
def vocab_index(characters: str) -> dict[str, int]:
    return {c: i for i, c in enumerate(characters, start=len(SPECIALS))}


def make_spec(config: PoemConfig, meta: dict | None = None, float_output: bool = False) -> CachedLMSpec:
    """One cached decoding step exported; clients see a stream of characters, each prompt after END."""
    return CachedLMSpec(NAME, config.vocab, config.context, config.layers, config.heads, config.width,
                        metadata={"unknown_token": UNKNOWN,
                                  "training": (meta or {}).get("training", {}).get("data", "")})


FAMILY = register(Family(
    name=NAME, description="poems: a character transformer, streamed a character at a time (key/value cache)",
    config_cls=PoemConfig, build_network=build_network, make_spec=make_spec,
    trainer="artforge.families.poem.train:COMMAND", client="artforge.families.poem.write:VERB",
    evaluator="artforge.families.poem.evaluator:EVALUATOR"))
