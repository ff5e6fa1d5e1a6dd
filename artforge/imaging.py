"""Pixel conventions shared by training, export (inside the graph) and clients.

Networks see float images in [-1, 1], NCHW; files and the wire carry uint8 0-255, NHWC.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from artforge.files import atomic_write_bytes


def uint8_to_unit(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) uint8 in 0..255 -> float in [-1, 1]."""
    return images.float() / 127.5 - 1.0


def unit_to_uint8(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) float in [-1, 1] -> (B, H, W, 3) uint8, rounded to the nearest level."""
    scaled = (images.float().clamp(-1, 1) + 1.0) * 127.5
    return torch.round(scaled).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def make_grid(images: np.ndarray, ncols: int, pad: int = 2, background: int = 255) -> np.ndarray:
    """(N, H, W, 3) uint8 -> one (rows*(H+pad)+pad, cols*(W+pad)+pad, 3) uint8 image."""
    n, h, w, c = images.shape
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    grid = np.full((nrows * (h + pad) + pad, ncols * (w + pad) + pad, c), background, np.uint8)
    for i, image in enumerate(images):
        r, col = divmod(i, ncols)
        y, x = pad + r * (h + pad), pad + col * (w + pad)
        grid[y : y + h, x : x + w] = image
    return grid


def save_png(image: np.ndarray, path: Path, upscale: int = 1) -> None:
    """Write an (H, W, 3) uint8 array as PNG atomically; `upscale` enlarges small art for viewing."""
    import io

    picture = Image.fromarray(image)
    if upscale > 1:
        picture = picture.resize((picture.width * upscale, picture.height * upscale), Image.NEAREST)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    atomic_write_bytes(Path(path), buffer.getvalue())
