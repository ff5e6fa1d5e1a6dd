"""The decoder-only transformer of the token families (poems, music), written to export with its
key/value cache.

One network, two ways to call it:
- training: `lm(tokens)` -> logits at every position (causal attention, no cache);
- serving: `lm.step(tokens, past)` -> (logits of the last position, present), where `past` holds the
  keys and values of every earlier token, (batch, layers, 2, heads, past_length, head_dim), and
  `present` the same with these tokens appended. Prefill is a step with an empty past (length 0),
  decoding a step with one token: the exported graph is that one function, so the two cannot drift
  apart, and decoding one token costs one token's work instead of the whole window's.

Positions are learnt (GPT-2): a sequence holds at most `context` tokens, cache included; the
decoding loop (serving/decoding.py) starts a fresh cache from the latest tokens when it is full.
The output layer is the token embedding transposed (tied weights, and no second copy on disk).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


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

    def step(self, tokens: torch.Tensor, past: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """tokens (B, L) following a cache `past` (B, layers, 2, heads, P, head_dim), P + L <= context
        -> (logits of the token after the last (B, vocab), present (B, layers, 2, heads, P + L, head_dim))."""
        length, cached = tokens.shape[1], past.shape[4]
        positions = torch.arange(length, device=tokens.device) + cached
        # new token i sees every cached token and the new ones up to itself
        mask = positions[:, None] >= torch.arange(cached + length, device=tokens.device)[None, :]
        x = self.embed(tokens) + self.position(positions)
        present = []
        for i, block in enumerate(self.blocks):
            x, kv = block(x, past[:, i], mask)
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
    """The exported step: (tokens, past) -> (logits, present)."""

    def __init__(self, lm: DecoderLM):
        super().__init__()
        self.lm = lm

    def forward(self, tokens: torch.Tensor, past: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.lm.step(tokens, past)


def causal_lm_loss(lm: DecoderLM, windows: torch.Tensor, ignore_index: int = -100) -> torch.Tensor:
    """Mean cross-entropy of predicting windows[:, 1:] from windows[:, :-1] (`ignore_index` targets skipped)."""
    logits = lm(windows[:, :-1])
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), windows[:, 1:].reshape(-1),
                           ignore_index=ignore_index)
