"""Training shared by the token families (poems, music): a decoder-only transformer (with the key/value
cache it is served with, families/transformer.py) learning the next token of a family's sequences.

A family turns its data into sequences of token ids (a poem's characters, a chorale's events) and
splits them into training and held-out ones; this module does the rest: the sequences joined into
one stream, each preceded by the end token (id 0, which also starts every prompt), batches of random
windows of `context` + 1 tokens, AdamW with linear warm-up and cosine decay, gradient clipping,
held-out perplexity (`--eval-every`, and at every checkpoint), resume, DDP.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch

from artforge.errors import ArtforgeError
from artforge.families.transformer import DecoderLM, causal_lm_loss, sequence_perplexity
from artforge.options import RunControl, option
from artforge.training.distributed import Distributed, step_generator
from artforge.training.run_options import RUN_CONTROL_CHANGES
from artforge.training.loop import FamilyTrainer

END = 0  # ends a sequence and starts the next: every family's token 0
WARMUP_STEPS = 100
RESUMABLE_CHANGES = RUN_CONTROL_CHANGES | {"eval_every"}


@dataclass(kw_only=True)
class TokenModelOptions(RunControl):
    """The options every token family has; a family's own (data, context default) come first."""

    batch_size: int = option(32, help="windows per step, split among processes")
    layers: int = option(4, help="transformer blocks")
    heads: int = option(4, help="attention heads per block")
    width: int = option(256, help="model width (a multiple of heads)")
    dropout: float = option(0.1, help="dropout while training")
    lr: float = option(1e-3, help="AdamW peak learning rate (warm-up over 100 steps, cosine decay to 10%%)")
    weight_decay: float = option(0.1, help="AdamW weight decay")
    heldout: float = option(0.05, help="share of the data held out of training to measure perplexity on",
                            flag="--held-out", aliases=("--heldout",))  # as the others spell it; old one works
    eval_every: int = option(0, help="measure held-out perplexity every N steps into log.jsonl (0: at "
                                     "checkpoints only)")


@dataclass
class Sequences:
    """A family's data as token ids, split: `train` is learnt from, `heldout` only measured."""

    train: list[list[int]]
    heldout: list[list[int]]
    what: str  # "poems", "pieces": for messages and checkpoint facts


def token_stream(sequences: list[list[int]]) -> torch.Tensor:
    """Every sequence preceded by END, and one END after the last: what the model learns to continue."""
    ids: list[int] = []
    for sequence in sequences:
        ids += [END] + sequence
    return torch.tensor(ids + [END], dtype=torch.long)


class TokenModelTrainer(FamilyTrainer):
    """The transformer, AdamW and the token stream; a family adds its data, config and samples."""

    unit = "token"

    def __init__(self, config: Any, lm: DecoderLM, sequences: Sequences, opts: Any, ctx: Distributed):
        super().__init__(config, opts.batch_size * opts.context)
        ctx.check_batch(opts.batch_size)
        if len(sequences.train) < 2 or not sequences.heldout:
            raise ArtforgeError(f"{opts.data} gives {len(sequences.train)} {sequences.what} to train on and "
                                f"{len(sequences.heldout)} held out: too few")
        self.opts, self.ctx, self.sequences = opts, ctx, sequences
        self.stream = token_stream(sequences.train)
        if len(self.stream) <= opts.context + 1:
            raise ArtforgeError(f"{opts.data} holds {len(self.stream)} tokens of training {sequences.what}, fewer "
                                f"than one window of --context {opts.context}: use a smaller context or more data")
        self.lm = lm.to(ctx.device)
        self.model = ctx.wrap(self.lm)
        decay = [p for p in self.lm.parameters() if p.dim() >= 2]  # no decay on norms and biases
        rest = [p for p in self.lm.parameters() if p.dim() < 2]
        self.optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": opts.weight_decay},
                                            {"params": rest, "weight_decay": 0.0}], lr=opts.lr, betas=(0.9, 0.95))

    def state(self):
        return {"lm": self.lm, "optimizer": self.optimizer}

    def learning_rate(self, step: int) -> float:
        if step < WARMUP_STEPS:
            return self.opts.lr * (step + 1) / WARMUP_STEPS
        progress = (step - WARMUP_STEPS) / max(1, self.opts.steps - WARMUP_STEPS)
        return self.opts.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))

    def train_step(self, step: int) -> dict[str, float]:
        g = step_generator(self.opts.seed, step)
        span = self.opts.context + 1
        starts = torch.randint(0, len(self.stream) - span + 1, (self.opts.batch_size,), generator=g)
        mine = starts[self.ctx.rank::self.ctx.world_size]
        windows = torch.stack([self.stream[s:s + span] for s in mine.tolist()]).to(self.ctx.device)
        for group in self.optimizer.param_groups:
            group["lr"] = self.learning_rate(step)
        self.model.train()
        with self.ctx.autocast():
            loss = causal_lm_loss(self.model, windows)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.lm.parameters(), 1.0)
        self.optimizer.step()
        return {"loss": loss.item(), "lr": self.optimizer.param_groups[0]["lr"]}

    def heldout_perplexity(self) -> float:
        return sequence_perplexity(self.lm, [[END] + s + [END] for s in self.sequences.heldout])

    def quality_measures(self) -> dict[str, float]:
        return {"heldout_perplexity": self.heldout_perplexity()}

    def inference_weights(self) -> dict[str, torch.Tensor]:
        return self.lm.state_dict()

    def checkpoint_facts(self) -> dict[str, Any]:
        what = self.sequences.what
        return {"training": {**dataclasses.asdict(self.opts), what: len(self.sequences.train),
                             f"heldout_{what}": len(self.sequences.heldout),
                             "heldout_perplexity": self.heldout_perplexity()}}
