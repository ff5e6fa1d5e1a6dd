"""Poem training: next-character prediction on poems, with held-out perplexity.

    train_poem(data="data/tang300", out="runs/poem", steps=2000)

The poems are split by their text (corpus.heldout): a share never trained on measures perplexity.
The vocabulary is the characters of the training poems seen at least --min-count times. The shared
token trainer (artforge/families/token_model.py) does the rest: the poems joined into one stream, each after
the end token, random windows of `context` + 1 characters, AdamW, held-out perplexity, resume, DDP.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from artforge.errors import ArtforgeError
from artforge.families.poem import END, NAME, PoemConfig, build_network, encode
from artforge.families.poem.corpus import heldout, read_text_poems
from artforge.families.transformer import DecoderLM, sample_sequences, sequence_perplexity
from artforge.options import option
from artforge.training.distributed import Distributed
from artforge.training.run_options import resolve_options
from artforge.training.loop import TrainCommand, train
from artforge.families.token_model import RESUMABLE_CHANGES, Sequences, TokenModelOptions, TokenModelTrainer


@dataclass
class PoemTrainOptions(TokenModelOptions):
    """Everything that defines a poem run; written to RUN/train_options.json."""

    data: str = option(help="a UTF-8 text file or folder of *.txt: poems separated by blank lines (make one with "
                            "`artforge data poems`)", required=True)
    out: str = option(help="run folder for checkpoints, samples and logs", required=True)
    context: int = option(128, help="characters the model sees at once (a longer poem is written on in a "
                                    "window of the latest half context)")
    min_count: int = option(1, help="characters seen fewer times than this become the unknown token")


def train_poem(**kwargs: Any) -> Path:
    """Train (or with resume=True continue) a poem model; returns the last checkpoint's path."""
    return train(PoemTrainer, resolve_options(kwargs, PoemTrainOptions, RESUMABLE_CHANGES))


COMMAND = TrainCommand(
    PoemTrainOptions, train_poem, help="train a character transformer on poems",
    description="Train a decoder-only transformer, one character per token, on a text file or folder of poems\n"
                "(blank lines between poems). RUN gets samples/step_N.txt (poems written from nothing),\n"
                "log.jsonl with the held-out perplexity, checkpoints/step_N/ and train_options.json.",
    examples="  artforge data poems --source tang300 --out data/tang300\n"
             "  artforge train poem --data data/tang300 --out runs/poem --steps 2000\n"
             "  artforge train poem --data data/english --out runs/sonnets --context 256 --eval-every 250")


def load_poems(opts: PoemTrainOptions) -> tuple[list[str], list[str]]:
    """(training poems, held-out poems) of --data."""
    path = Path(opts.data)
    if not path.exists():
        raise ArtforgeError(f"--data {path} does not exist (make one with `artforge data poems`)")
    if not 0 < opts.heldout < 0.5:
        raise ArtforgeError(f"--held-out {opts.heldout} must be between 0 and 0.5")
    poems = list(read_text_poems(path))
    return [p for p in poems if not heldout(p, opts.heldout)], [p for p in poems if heldout(p, opts.heldout)]


def vocabulary(poems: list[str], min_count: int) -> str:
    """The characters seen at least min_count times, most frequent first (ties in code-point order)."""
    counts = Counter("".join(poems))
    return "".join(c for c, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if n >= min_count)


class PoemTrainer(TokenModelTrainer):
    family = NAME

    def __init__(self, opts: PoemTrainOptions, ctx: Distributed):
        train_poems, heldout_poems = load_poems(opts)
        config = PoemConfig(vocabulary(train_poems, opts.min_count), opts.context, opts.layers, opts.heads,
                            opts.width)
        sequences = Sequences([encode(config, p) for p in train_poems], [encode(config, p) for p in heldout_poems],
                              "poems")
        torch.manual_seed(opts.seed)
        super().__init__(config, build_network(config, opts.dropout), sequences, opts, ctx)

    def write_samples(self, path: Path) -> None:
        poems = write_poems(self.lm, self.config, count=8, seed=self.opts.seed)
        path.with_suffix(".txt").write_text("\n\n".join(poems) + "\n", encoding="utf-8")


def heldout_perplexity(lm: DecoderLM, config: PoemConfig, poems: list[str]) -> float:
    """Per character, each poem read from its start (END first) to its closing END; a character outside
    the vocabulary is scored as the unknown token."""
    return sequence_perplexity(lm, [[END] + encode(config, p) + [END] for p in poems])


def write_poems(lm: DecoderLM, config: PoemConfig, count: int, seed: int, prompt: str = "", max_tokens: int = 0,
                temperature: float = 0.8, top_p: float = 0.9, top_k: int = 0) -> list[str]:
    """Poems written in-process by the served loop (with the key/value cache), from END + prompt to END
    or max_tokens (default: twice the context); poem i with seed `seed + i`."""
    written = sample_sequences(lm, [END] + encode(config, prompt), count, seed, max_tokens or 2 * config.context,
                               temperature, top_p, top_k, eos=END)
    return [prompt + "".join(config.vocab[t] for t in ids) for ids in written]
