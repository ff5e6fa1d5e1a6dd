"""The decoder-only transformer of the token families (poems, music), written to export with its
key/value cache.

One network, two ways to call it:
- training: `lm(tokens)` -> logits at every position (causal attention, no cache);
- serving: `lm.step(tokens, past, cached)` -> (logits of the last position, present), where `past`
  holds the keys and values of every earlier token, (batch, layers, 2, heads, past_length, head_dim),
  and `present` the same with these tokens appended. Prefill is a step with an empty past (length 0),
  decoding a step with one token: the exported graph is that one function, so the two cannot drift
  apart, and decoding one token costs one token's work instead of the whole window's. `cached`
  (batch, 1) is how many of the last cache entries are each row's own: streams of different lengths
  decode in one batch with their caches padded at the front (continuous batching, artforge/serving/decoding.py).

Positions are learnt (GPT-2): a sequence holds at most `context` tokens, cache included; the
decoding loop (artforge/serving/decoding.py) starts a fresh cache from the latest tokens when it is full.
The output layer is the token embedding transposed (tied weights, and no second copy on disk).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from artforge.contract import DynamicDim, TensorSpec, TokenStream
from artforge.serving.decoding import CachedSteps, decode
from artforge.spec import ModelSpec


class Block(nn.Module):
    """Pre-norm self-attention and MLP, each added back to the residual stream."""

    def __init__(self, width: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, past: torch.Tensor | None, mask: torch.Tensor | None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, L, W); past (B, 2, heads, P, head_dim) or None (training: causal, no cache)."""
        b, length, width = x.shape
        q, k, v = (t.reshape(b, length, self.heads, width // self.heads).transpose(1, 2)
                   for t in self.qkv(self.norm1(x)).split(width, dim=2))
        if past is not None:
            k, v = torch.cat([past[:, 0], k], dim=2), torch.cat([past[:, 1], v], dim=2)
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=past is None,
                                                  dropout_p=self.dropout if self.training else 0.0)
        x = x + self.drop(self.proj(attended.transpose(1, 2).reshape(b, length, width)))
        x = x + self.drop(self.mlp(self.norm2(x)))
        return x, torch.stack([k, v], dim=1)


class DecoderLM(nn.Module):
    """Token ids -> next-token logits; `step` is the cached form that serving exports."""

    def __init__(self, vocab_size: int, context: int, layers: int, heads: int, width: int, dropout: float = 0.0):
        super().__init__()
        if width % heads:
            raise ValueError(f"transformer width {width} must be a multiple of its {heads} heads")
        self.context, self.layers, self.heads, self.head_dim = context, layers, heads, width // heads
        self.embed = nn.Embedding(vocab_size, width)
        self.position = nn.Embedding(context, width)
        self.blocks = nn.ModuleList(Block(width, heads, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(width)
        self.drop = nn.Dropout(dropout)
        self.apply(init_weights)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, T) ids, T <= context -> (B, T, vocab) logits of each next token."""
        x = self.drop(self.embed(tokens) + self.position(torch.arange(tokens.shape[1], device=tokens.device)))
        for block in self.blocks:
            x, _ = block(x, None, None)
        return self.logits(x)

    def step(self, tokens: torch.Tensor, past: torch.Tensor, cached: torch.Tensor | None = None
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """tokens (B, L) following a cache `past` (B, layers, 2, heads, P, head_dim)
        -> (logits of the token after the last (B, vocab), present (B, layers, 2, heads, P + L, head_dim)).

        `cached` (B, 1) says how many of the last P cache entries hold each row's tokens (None: all P).
        Streams decoded together in one batch have caches of different lengths: each row's cache is
        padded at the front to the longest, and the padding is masked out of attention.
        """
        batch, length, slots = tokens.shape[0], tokens.shape[1], past.shape[4]
        if cached is None:
            cached = torch.full((batch, 1), slots, dtype=torch.long, device=tokens.device)
        positions = cached + torch.arange(length, device=tokens.device)  # (B, L): row i's tokens so far, on
        real = torch.arange(slots, device=tokens.device) >= slots - cached  # (B, P): not padding
        # new token j sees its row's cached tokens and the new ones up to itself: (B, 1, L, P + L)
        causal = torch.arange(length, device=tokens.device)[:, None] >= torch.arange(length, device=tokens.device)
        mask = torch.cat([real[:, None, :].expand(batch, length, slots), causal.expand(batch, length, length)], dim=2)
        x = self.embed(tokens) + self.position(positions)
        present = []
        for i, block in enumerate(self.blocks):
            x, kv = block(x, past[:, i], mask[:, None])
            present.append(kv)
        return self.logits(x[:, -1]), torch.stack(present, dim=1)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(self.norm(x), self.embed.weight)

    def empty_cache(self, batch: int = 1) -> torch.Tensor:
        return torch.zeros(batch, self.layers, 2, self.heads, 0, self.head_dim)

    def cache_shape(self) -> tuple[int, int, int, str, int]:
        """Per item, with the past's length named: the contract's shape of `past` and `present`."""
        return (self.layers, 2, self.heads, "past_length", self.head_dim)


def init_weights(module: nn.Module) -> None:
    """GPT-2's: normal(0, 0.02) weights, zero biases."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, 0.0, 0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)


class CachedStep(nn.Module):
    """The exported step: (tokens, past, cached) -> (logits, present)."""

    def __init__(self, lm: DecoderLM):
        super().__init__()
        self.lm = lm

    def forward(self, tokens: torch.Tensor, past: torch.Tensor, cached: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.lm.step(tokens, past, cached)


def causal_lm_loss(lm: DecoderLM, windows: torch.Tensor, ignore_index: int = -100) -> torch.Tensor:
    """Mean cross-entropy of predicting windows[:, 1:] from windows[:, :-1] (`ignore_index` targets skipped)."""
    logits = lm(windows[:, :-1])
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), windows[:, 1:].reshape(-1),
                           ignore_index=ignore_index)


@torch.no_grad()
def sequence_perplexity(lm: DecoderLM, sequences: list[list[int]], batch: int = 32) -> float:
    """exp(mean negative log-likelihood per predicted token) of whole sequences (each with its start and
    end tokens), read in windows of the context; longer ones in overlapping windows, each token scored
    once with at least half a context before it."""
    was_training = lm.training
    lm.eval()
    device = lm.embed.weight.device
    windows = [w for ids in sequences for w in scoring_windows(ids, lm.context + 1)]
    total, count = 0.0, 0
    for i in range(0, len(windows), batch):
        chunk = windows[i:i + batch]
        padded = torch.full((len(chunk), max(len(w) for w, _ in chunk)), -100, dtype=torch.long)
        for row, (w, _) in enumerate(chunk):
            padded[row, :len(w)] = torch.tensor(w)
        targets = padded[:, 1:].clone()
        for row, (_, first_new) in enumerate(chunk):
            targets[row, :first_new] = -100  # scored by the window before
        logits = lm(padded[:, :-1].clamp(min=0).to(device)).float().cpu()
        total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100,
                                 reduction="sum").item()
        count += int((targets != -100).sum())
    lm.train(was_training)
    return math.exp(total / max(count, 1))


def scoring_windows(ids: list[int], span: int) -> list[tuple[list[int], int]]:
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
def sample_sequences(lm: DecoderLM, prompt: list[int], count: int, seed: int, max_tokens: int,
                     temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0, eos: int | None = 0,
                     stop=None) -> list[list[int]]:
    """Continuations of `prompt` written in-process by the served loop (artforge/serving/decoding.py) with the
    key/value cache: sequence i with seed `seed + i`, each until `eos` (included) or max_tokens.
    `stop(tokens so far)` true ends a sequence early (e.g. enough bars of music)."""

    was_training = lm.training
    lm.eval()
    device = lm.embed.weight.device

    def step(new, past):
        logits, present = lm.step(torch.from_numpy(new).to(device), torch.from_numpy(past).to(device))
        return logits.float().cpu().numpy(), present.float().cpu().numpy()

    steps = CachedSteps(step, lm.empty_cache().numpy(), lm.context)
    written = []
    for i in range(count):
        ids: list[int] = []
        for token in decode(steps, prompt, max_tokens, temperature, top_k, seed + i, eos=eos, top_p=top_p):
            ids.append(token)
            if stop is not None and stop(ids):
                break
        written.append(ids)
    lm.train(was_training)
    return written


class CachedLMSpec(ModelSpec):
    """The serving contract of a token family: the exported network is one cached decoding step
    (tokens, past) -> (logits, present); clients see a stream of tokens (TokenStream) with END (0)
    both ending a sequence and starting every prompt."""

    def __init__(self, family: str, vocab: tuple[str, ...], context: int, layers: int, heads: int, width: int,
                 metadata: dict, tokenizer: str = "char", max_new_tokens: int = 1024):
        head_dim = width // heads
        cache = (layers, 2, heads, "past_length", head_dim)
        super().__init__(
            family=family,
            inputs=(TensorSpec("tokens", "int64", ("length",), "new token ids (the prompt, then one at a time)",
                               min_value=0, max_value=len(vocab) - 1),
                    TensorSpec("past", "float32", cache, "keys and values of the tokens before (length 0 at "
                               "first)"),
                    TensorSpec("cached", "int64", (1,), "how many of past's last entries are this row's tokens; "
                               "the ones before pad a batch of shorter caches", min_value=0, max_value=context - 1)),
            outputs=(TensorSpec("logits", "float32", (len(vocab),), "next-token logits"),
                     TensorSpec("present", "float32", (layers, 2, heads, "total_length", head_dim),
                                "past with the new tokens' keys and values appended")),
            dynamic_dims={"length": DynamicDim(1, 8, context), "past_length": DynamicDim(0, 16, context - 1)},
            metadata={"context": context, "end_token": 0, **metadata},
            unit="token",
            stream=TokenStream("tokens", "logits", vocab, eos=0, max_context=context, max_new_tokens=max_new_tokens,
                               tokenizer=tokenizer, bos=0, cache_input="past", cache_output="present",
                               cache_shape=cache, cache_length_input="cached"),
        )
        self.cache_item_shape = (layers, 2, heads, head_dim)
        self.context, self.vocab_size = context, len(vocab)

    def serving_network(self, network: nn.Module) -> nn.Module:
        return CachedStep(network).eval()

    def sample_inputs(self, batch: int, seed: int, sizes: dict[str, int] | None = None) -> dict[str, np.ndarray]:
        sizes = sizes or self.optimal_sizes()
        cached = sizes["past_length"]
        length = min(sizes["length"], self.context - cached)  # positions stop at the context
        layers, two, heads, head_dim = self.cache_item_shape
        rng = np.random.default_rng(seed)
        own = rng.integers(0, cached + 1, (batch, 1), dtype=np.int64)  # rows padded at the front, as batched
        own[0] = cached  # the longest row fills the cache
        return {"tokens": rng.integers(0, self.vocab_size, (batch, length), dtype=np.int64),
                "past": rng.standard_normal((batch, layers, two, heads, cached, head_dim), np.float32),
                "cached": own}
