"""Exponential moving averages of a network's weights (the generators' EMA)."""
from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * model, for parameters only (buffers are recalibrated)."""
    for p_ema, p in zip(ema.parameters(), model.parameters()):
        p_ema.lerp_(p.detach(), 1.0 - decay)


def ema_decay_at(step: int, decay: float) -> float:
    # short runs would otherwise average in the random initialisation for thousands of steps
    return min(decay, (1.0 + step) / (10.0 + step))
