"""Differentiable augmentation (DiffAugment, Zhao et al. 2020) for training GANs on a few hundred images.

The discriminator sees real and generated images through the same random colour, translation and
cutout changes; every change is differentiable, so the generator learns through them and does not
learn to make augmented images. Without it a discriminator memorises a small data set within a few
thousand images and the generator's gradients turn to noise. Randomness comes from the torch
Generator passed in, so a resumed run augments exactly as an uninterrupted one.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

# --augment NAME -> the operations applied, in order (the DiffAugment paper's policies)
POLICIES = {"diffaugment": "color,translation,cutout", "geometric": "translation,cutout", "none": ""}


def diff_augment(images: torch.Tensor, policy: str, g: torch.Generator) -> torch.Tensor:
    """images (B, 3, H, W) in [-1, 1], augmented per image by each operation of `policy` (a POLICIES
    name or a comma-separated list of color, translation, cutout)."""
    for op in POLICIES.get(policy, policy).split(","):
        if op == "color":
            images = colour(images, g)
        elif op == "translation":
            images = translate(images, g)
        elif op == "cutout":
            images = cutout(images, g)
        elif op not in ("", "none"):
            raise ValueError(f"unknown DiffAugment operation '{op}'")
    return images


def uniform(g: torch.Generator, batch: int, like: torch.Tensor) -> torch.Tensor:
    return torch.rand(batch, 1, 1, 1, generator=g).to(like.device, like.dtype)


def colour(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Brightness +-0.5, saturation x0..2, contrast x0.5..1.5 (the paper's ranges, on [-1, 1] images)."""
    b = x.shape[0]
    x = x + (uniform(g, b, x) - 0.5)
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * (uniform(g, b, x) * 2) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (uniform(g, b, x) + 0.5) + mean


def translate(x: torch.Tensor, g: torch.Generator, ratio: float = 0.125) -> torch.Tensor:
    """Shift each image by up to `ratio` of its side in x and y, filling with zeros."""
    b, _, h, w = x.shape
    sy, sx = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = torch.randint(-sy, sy + 1, (b,), generator=g).to(x.device)
    dx = torch.randint(-sx, sx + 1, (b,), generator=g).to(x.device)
    padded = F.pad(x, (sx, sx, sy, sy))
    rows = torch.arange(h, device=x.device)[None] + sy - dy[:, None]  # (B, H)
    cols = torch.arange(w, device=x.device)[None] + sx - dx[:, None]  # (B, W)
    batch = torch.arange(b, device=x.device)[:, None, None]
    return padded[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)  # indexing puts C last


def cutout(x: torch.Tensor, g: torch.Generator, ratio: float = 0.5) -> torch.Tensor:
    """Zero one square of `ratio` x the side per image, centred anywhere (it may hang over the edge)."""
    b, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    y0 = torch.randint(0, h + (1 - ch % 2), (b,), generator=g).to(x.device) - ch // 2
    x0 = torch.randint(0, w + (1 - cw % 2), (b,), generator=g).to(x.device) - cw // 2
    rows = torch.arange(h, device=x.device)[None]
    cols = torch.arange(w, device=x.device)[None]
    inside_y = (rows >= y0[:, None]) & (rows < y0[:, None] + ch)  # (B, H)
    inside_x = (cols >= x0[:, None]) & (cols < x0[:, None] + cw)  # (B, W)
    keep = ~(inside_y[:, :, None] & inside_x[:, None, :])
    return x * keep[:, None].to(x.dtype)
