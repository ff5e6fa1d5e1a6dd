"""Damage for restoration training and its fixed held-out set, synthesised from clean images.

Local damage is marked in the mask (1 = this pixel is damaged): free-form brush strokes and
rectangles of missing paint, scratches and cracks. Global damage is not: fading, colour cast, noise
and JPEG blocking touch every pixel. Everything is drawn from the numpy Generator it is given, so a
(seed, index) pair always gives the same damage and held-out scores compare across runs.
"""
from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw


@dataclass(frozen=True)
class DamageMix:
    """How often each kind of damage appears on an image (independently)."""

    holes: float = 0.85  # brush strokes and rectangles of missing paint (masked)
    scratches: float = 0.5  # thin light or dark lines (masked)
    fading: float = 0.3
    colour_cast: float = 0.3
    noise: float = 0.3
    jpeg: float = 0.3


def damage(clean: np.ndarray, rng: np.random.Generator, mix: DamageMix = DamageMix()) -> tuple[np.ndarray, np.ndarray]:
    """(H, W, 3) uint8 -> (damaged (H, W, 3) uint8, mask (H, W) uint8 in {0, 1})."""
    height, width = clean.shape[:2]
    mask = Image.new("L", (width, height), 0)
    if rng.random() < mix.holes:
        draw_holes(ImageDraw.Draw(mask), width, height, rng)
    scratches = Image.new("L", (width, height), 0)
    if rng.random() < mix.scratches:
        draw_scratches(ImageDraw.Draw(scratches), width, height, rng)
    image = clean.astype(np.float32)
    if rng.random() < mix.fading:
        paper = np.array([236, 226, 200], np.float32) + rng.normal(0, 8, 3)
        amount = rng.uniform(0.2, 0.5)
        image = image * (1 - amount) + paper * amount
    if rng.random() < mix.colour_cast:
        image = image * rng.uniform(0.8, 1.2, 3).astype(np.float32)
    holes, lines = np.asarray(mask) > 0, np.asarray(scratches) > 0
    image[holes] = np.array([240, 234, 220], np.float32) + rng.normal(0, 6, 3)  # bare canvas where paint is gone
    image[lines] = 245.0 if rng.random() < 0.5 else 25.0
    if rng.random() < mix.noise:
        image = image + rng.normal(0, rng.uniform(5, 20), image.shape).astype(np.float32)
    damaged = np.clip(np.round(image), 0, 255).astype(np.uint8)
    if rng.random() < mix.jpeg:
        damaged = jpeg_round_trip(damaged, int(rng.integers(10, 36)))
    return damaged, (holes | lines).astype(np.uint8)


def draw_holes(draw: ImageDraw.ImageDraw, width: int, height: int, rng: np.random.Generator) -> None:
    """1-3 free-form strokes (random walks with a thick brush) and 0-2 rectangles."""
    side = min(width, height)
    for _ in range(int(rng.integers(1, 4))):
        points = [(rng.uniform(0, width), rng.uniform(0, height))]
        for _ in range(int(rng.integers(2, 7))):
            angle, length = rng.uniform(0, 2 * np.pi), rng.uniform(0.1, 0.3) * side
            x, y = points[-1]
            points.append((float(np.clip(x + length * np.cos(angle), 0, width)),
                           float(np.clip(y + length * np.sin(angle), 0, height))))
        brush = max(2, int(rng.uniform(0.04, 0.1) * side))
        draw.line(points, fill=255, width=brush, joint="curve")
        for x, y in points:  # round ends and joints, as a brush leaves them
            draw.ellipse((x - brush / 2, y - brush / 2, x + brush / 2, y + brush / 2), fill=255)
    for _ in range(int(rng.integers(0, 3))):
        w, h = rng.uniform(0.1, 0.3, 2) * np.array([width, height])
        x, y = rng.uniform(0, width - w), rng.uniform(0, height - h)
        draw.rectangle((x, y, x + w, y + h), fill=255)


def draw_scratches(draw: ImageDraw.ImageDraw, width: int, height: int, rng: np.random.Generator) -> None:
    """1-4 thin lines, straight or bent once, like scratches and cracks."""
    for _ in range(int(rng.integers(1, 5))):
        points = [(rng.uniform(0, width), rng.uniform(0, height)) for _ in range(int(rng.integers(2, 4)))]
        draw.line(points, fill=255, width=int(rng.integers(1, 3)))


def jpeg_round_trip(image: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))


def damage_batch(clean: np.ndarray, seeds: list[int | tuple],
                 mix: DamageMix = DamageMix()) -> tuple[np.ndarray, np.ndarray]:
    """(N, H, W, 3) uint8 and one seed per image -> damaged (N, H, W, 3), masks (N, H, W)."""
    pairs = [damage(image, np.random.default_rng(seed), mix) for image, seed in zip(clean, seeds)]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
