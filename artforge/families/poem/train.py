"""Poem training: next-character prediction on poems, with held-out perplexity.

    train_poem(data="data/tang300", out="runs/poem", steps=2000)

The poems are split by their text (corpus.heldout): a share never trained on measures perplexity.
Training poems are joined into one stream, each preceded by the end-of-poem token, and batches
are random windows of `context` + 1 tokens from it (AdamW, linear warm-up, cosine decay). The
vocabulary is the characters of the training poems seen at least --min-count times.
"""
from __future__ import annotations

import dataclasses
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from artforge.errors import ArtforgeError
from artforge.families.poem import END, NAME, PoemConfig, build_network, encode
from artforge.families.poem.corpus import heldout, read_text_poems
from artforge.families.transformer import DecoderLM, causal_lm_loss
from artforge.options import RunControl, option
from artforge.serving.decoding import CachedSteps, decode
from artforge.training.common import RUN_CONTROL_CHANGES, Distributed, resolve_options, step_generator
from artforge.training.loop import FamilyTrainer, TrainCommand, train

RESUMABLE_CHANGES = RUN_CONTROL_CHANGES | {"eval_every"}
WARMUP_STEPS = 100


@dataclass
class PoemTrainOptions(RunControl):
    """Everything that defines a poem run; written to RUN/train_options.json."""

    data: str = option(help="a UTF-8 text file or folder of *.txt: poems separated by blank lines (make one with "
                            "`artforge data poems`)", required=True)
    out: str = option(help="run folder for checkpoints, samples and logs", required=True)
    steps: int = option(2000, help="train until this many steps in total")
    batch_size: int = option(32, help="windows per step, split among processes")
    context: int = option(128, help="tokens the model sees at once (a poem longer than this is written in "
                                    "overlapping windows)")
    layers: int = option(4, help="transformer blocks")
    heads: int = option(4, help="attention heads per block")
    width: int = option(256, help="model width (a multiple of heads)")
    dropout: float = option(0.1, help="dropout while training")
    lr: float = option(1e-3, help="AdamW peak learning rate (warm-up over 100 steps, cosine decay to 10%%)")
    weight_decay: float = option(0.1, help="AdamW weight decay")
    heldout: float = option(0.05, help="share of the poems held out of training to measure perplexity on")
    min_count: int = option(1, help="characters seen fewer times than this become the unknown token")
    seed: int = option(0, help="seeds initialisation and batches")
    eval_every: int = option(0, help="measure held-out perplexity every N steps into log.jsonl (0: at "
                                     "checkpoints only)")
    sample_every: int = option(500, help="write sample poems every N steps")
    checkpoint_every: int = option(500, help="write a checkpoint every N steps")


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


@dataclass
class Corpus:
    train: list[str]
    heldout: list[str]


def load_corpus(opts: PoemTrainOptions) -> Corpus:
    path = Path(opts.data)
    if not path.exists():
        raise ArtforgeError(f"--data {path} does not exist (make one with `artforge data poems`)")
    if not 0 < opts.heldout < 0.5:
        raise ArtforgeError(f"--heldout {opts.heldout} must be between 0 and 0.5")
    poems = list(read_text_poems(path))
    split = Corpus([p for p in poems if not heldout(p, opts.heldout)], [p for p in poems if heldout(p, opts.heldout)])
    if len(split.train) < 2 or not split.heldout:
        raise ArtforgeError(f"{path} has {len(poems)} poems: too few to hold out {opts.heldout:.0%} and train "
                            "on the rest (poems are separated by blank lines)")
    return split


def vocabulary(poems: list[str], min_count: int) -> str:
    """The characters seen at least min_count times, most frequent first (ties in code-point order)."""
    counts = Counter("".join(poems))
    return "".join(c for c, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if n >= min_count)


def token_stream(config: PoemConfig, poems: list[str]) -> torch.Tensor:
    """Every poem preceded by END, and one END after the last: what the model learns to continue."""
    ids = []
    for poem in poems:
        ids += [END] + encode(config, poem)
    return torch.tensor(ids + [END], dtype=torch.long)


class PoemTrainer(FamilyTrainer):
    family = NAME
    unit = "token"

    def __init__(self, opts: PoemTrainOptions, ctx: Distributed):
        self.corpus = load_corpus(opts)
        config = PoemConfig(vocabulary(self.corpus.train, opts.min_count), opts.context, opts.layers, opts.heads,
                            opts.width)
        super().__init__(config, opts.batch_size * opts.context)
        ctx.check_batch(opts.batch_size)
        self.opts, self.ctx = opts, ctx
        self.stream = token_stream(config, self.corpus.train)
        if len(self.stream) <= opts.context + 1:
            raise ArtforgeError(f"{opts.data} holds {len(self.stream)} tokens of training poems, fewer than one "
                                f"window of --context {opts.context}: use a smaller context or more poems")
        torch.manual_seed(opts.seed)
        self.lm = build_network(config, opts.dropout).to(ctx.device)
        self.model = ctx.wrap(self.lm)
        decay = [p for n, p in self.lm.named_parameters() if p.dim() >= 2]
        rest = [p for n, p in self.lm.named_parameters() if p.dim() < 2]
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

    def quality_measures(self) -> dict[str, float]:
        return {"heldout_perplexity": heldout_perplexity(self.lm, self.config, self.corpus.heldout)}

    def write_samples(self, path: Path) -> None:
        poems = write_poems(self.lm, self.config, count=8, seed=self.opts.seed)
        text = "\n\n".join(poems) + "\n"
        path.with_suffix(".txt").write_text(text, encoding="utf-8")

    def inference_weights(self) -> dict[str, torch.Tensor]:
        return self.lm.state_dict()

    def checkpoint_facts(self) -> dict[str, Any]:
        return {"training": {**dataclasses.asdict(self.opts),
                             "poems": len(self.corpus.train), "heldout_poems": len(self.corpus.heldout),
                             "heldout_perplexity": heldout_perplexity(self.lm, self.config, self.corpus.heldout)}}


@torch.no_grad()
def heldout_perplexity(lm: DecoderLM, config: PoemConfig, poems: list[str], batch: int = 32) -> float:
    """exp(mean negative log-likelihood per token) of held-out poems, each read from its start (END
    first) to its closing END, in windows of the context. Tokens are characters, so it is per
    character; a character outside the vocabulary is scored as the unknown token."""
    was_training = lm.training
    lm.eval()
    device = lm.embed.weight.device
    windows = [w for poem in poems for w in poem_windows([END] + encode(config, poem) + [END], config.context + 1)]
    total, count = 0.0, 0
    for i in range(0, len(windows), batch):
        chunk = windows[i:i + batch]
        width = max(len(w) for w, _ in chunk)
        padded = torch.full((len(chunk), width), -100, dtype=torch.long)
        for row, (w, first_target) in enumerate(chunk):
            padded[row, :len(w)] = torch.tensor(w)
        inputs = padded[:, :-1].clamp(min=0).to(device)
        targets = padded[:, 1:].clone()
        for row, (w, first_target) in enumerate(chunk):
            targets[row, :first_target] = -100  # predicted already by the window before
        logits = lm(inputs).float().cpu()
        total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100,
                                 reduction="sum").item()
        count += int((targets != -100).sum())
    lm.train(was_training)
    return math.exp(total / max(count, 1))


def poem_windows(ids: list[int], span: int) -> list[tuple[list[int], int]]:
    """Windows of at most `span` tokens covering a sequence: (window, index of its first new target).
    Each later window starts half a span on and scores only the tokens the one before did not."""
    if len(ids) <= span:
        return [(ids, 0)]
    step, windows, scored = span // 2, [], 1
    for start in range(0, len(ids) - 1, step):
        window = ids[start:start + span]
        windows.append((window, scored - start - 1))
        scored = start + len(window)
        if scored >= len(ids):
            break
    return windows


@torch.no_grad()
def write_poems(lm: DecoderLM, config: PoemConfig, count: int, seed: int, prompt: str = "", max_tokens: int = 0,
                temperature: float = 0.8, top_p: float = 0.9, top_k: int = 0) -> list[str]:
    """Poems written in-process by the served loop (serving/decoding.py, with the key/value cache), from
    END + prompt to END or max_tokens (default: twice the context); poem i with seed `seed + i`."""
    was_training = lm.training
    lm.eval()
    device = lm.embed.weight.device

    def step(new, past):
        logits, present = lm.step(torch.from_numpy(new).to(device), torch.from_numpy(past).to(device))
        return logits.float().cpu().numpy(), present.float().cpu().numpy()

    steps = CachedSteps(step, lm.empty_cache().numpy(), config.context)
    poems = []
    for i in range(count):
        ids = decode(steps, [END] + encode(config, prompt), max_tokens or 2 * config.context, temperature, top_k,
                     seed + i, eos=END, top_p=top_p)
        poems.append(prompt + "".join(config.vocab[t] for t in ids))
    lm.train(was_training)
    return poems
