"""The music family: a decoder-only transformer over symbolic music events (note on/off, waits,
velocity), streamed from Triton a token at a time and turned into MIDI, a piano roll and audio.

Everything artforge needs to know about the family is declared here or named from here: its config
and vocabulary (here; the events in events.py), its network (the shared transformer with a
key/value cache, families/transformer.py), its serving contract (CachedLMSpec), its data (corpus.py:
MIDI folders and the Bach chorales inside music21), training (train.py), evaluation (evaluator.py)
and its client verb (`artforge compose`, compose.py).
"""
from __future__ import annotations

from dataclasses import dataclass

from artforge.families.music.events import EventVocab
from artforge.registry import Family, register
from artforge.families.transformer import CachedLMSpec, DecoderLM

NAME = "music"


@dataclass(frozen=True)
class MusicConfig:
    """The event vocabulary and the transformer's shape; stored in every checkpoint."""

    steps_per_beat: int = 4  # the time grid: 4 = sixteenth notes
    max_wait: int = 16  # the longest single wait token, in grid steps
    velocity_bins: int = 8
    low: int = 21
    high: int = 108
    context: int = 512
    layers: int = 4
    heads: int = 4
    width: int = 256

    def __post_init__(self) -> None:
        if not (1 <= self.steps_per_beat <= 24 and 1 <= self.max_wait <= 256 and 1 <= self.velocity_bins <= 128
                and 0 <= self.low <= self.high <= 127):
            raise ValueError("music grid, waits, velocity bins or pitch range out of bounds")
        if not 8 <= self.context <= 4096 or not 1 <= self.layers <= 48 or self.width % self.heads:
            raise ValueError("music context must be 8..4096, layers 1..48, width a multiple of heads")

    @property
    def events(self) -> EventVocab:
        return EventVocab(self.steps_per_beat, self.max_wait, self.velocity_bins, self.low, self.high)


def build_network(config: MusicConfig, dropout: float = 0.0) -> DecoderLM:
    return DecoderLM(config.events.size, config.context, config.layers, config.heads, config.width, dropout)


def make_spec(config: MusicConfig, meta: dict | None = None, float_output: bool = False) -> CachedLMSpec:
    events = config.events
    return CachedLMSpec(NAME, events.texts(), config.context, config.layers, config.heads, config.width,
                        metadata={"steps_per_beat": config.steps_per_beat, "events": "wait:N vel:V on:P off:P",
                                  "vocab": {"max_wait": config.max_wait, "velocity_bins": config.velocity_bins,
                                            "low": config.low, "high": config.high}},
                        tokenizer="events", max_new_tokens=4096)


FAMILY = register(Family(
    name=NAME, description="music: a transformer over note events, streamed token by token (key/value cache) "
                           "to MIDI, piano roll and audio",
    config_cls=MusicConfig, build_network=build_network, make_spec=make_spec,
    trainer="artforge.families.music.train:COMMAND", client="artforge.families.music.compose:VERB",
    evaluator="artforge.families.music.evaluator:EVALUATOR"))
