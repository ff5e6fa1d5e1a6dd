"""Procedural abstract art: a small, real data set every machine can make, since nothing can be downloaded.

Each style is a function (rng, size) -> PIL image, drawn at twice the size and downsampled so
edges are anti-aliased. Palettes and compositions are random, so a model has something to learn;
images are deterministic for (seed, style, index).
"""
from __future__ import annotations

import colorsys
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from tqdm import tqdm

from artforge.errors import ArtforgeError
from artforge.options import Command, Progress, option

SUPERSAMPLE = 2
Painter = Callable[[np.random.Generator, int], Image.Image]


def random_palette(rng: np.random.Generator, n: int, saturation=(0.5, 0.95), value=(0.55, 1.0)) -> list[tuple]:
    """n colours around a random base hue, spread by a random harmony (analogous to complementary)."""
    base, spread = rng.random(), rng.choice([0.08, 0.33, 0.5])
    colours = []
    for i in range(n):
        hue = (base + spread * i + rng.normal(0, 0.03)) % 1.0
        rgb = colorsys.hsv_to_rgb(hue, rng.uniform(*saturation), rng.uniform(*value))
        colours.append(tuple(int(255 * c) for c in rgb))
    return colours


def paint_grid(rng: np.random.Generator, size: int) -> Image.Image:
    """Mondrian-like: a white canvas split by black lines into rectangles, a few filled with colour."""
    s = size * SUPERSAMPLE
    image = Image.new("RGB", (s, s), (245, 242, 232))
    draw = ImageDraw.Draw(image)
    colours = [(200, 30, 30), (30, 60, 170), (240, 200, 30)]
    colours = [tuple(int(np.clip(c + rng.normal(0, 18), 0, 255)) for c in col) for col in colours]
    rects = [(0, 0, s, s)]
    for _ in range(rng.integers(3, 7)):
        i = int(np.argmax([(r[2] - r[0]) * (r[3] - r[1]) for r in rects]))
        x0, y0, x1, y1 = rects.pop(i)
        if (x1 - x0 >= y1 - y0) and x1 - x0 > s // 6:
            cut = int(rng.uniform(0.3, 0.7) * (x1 - x0)) + x0
            rects += [(x0, y0, cut, y1), (cut, y0, x1, y1)]
        elif y1 - y0 > s // 6:
            cut = int(rng.uniform(0.3, 0.7) * (y1 - y0)) + y0
            rects += [(x0, y0, x1, cut), (x0, cut, x1, y1)]
        else:
            rects.append((x0, y0, x1, y1))
    for rect in rects:
        if rng.random() < 0.45:
            draw.rectangle(rect, fill=colours[rng.integers(len(colours))])
    line = max(2, int(s * rng.uniform(0.025, 0.045)))
    for x0, y0, x1, y1 in rects:
        draw.rectangle((x0, y0, x1, y1), outline=(15, 15, 15), width=line)
    return image


def paint_circles(rng: np.random.Generator, size: int) -> Image.Image:
    """Concentric rings on a dark ground (after Kandinsky's colour studies): a target near the middle.

    Three to five rings, each at least 2.5 px wide at 32x32, so the style stays legible at the
    smallest model size, and the dark ground sets it apart from the full-bleed waves.
    """
    s = size * SUPERSAMPLE
    palette = random_palette(rng, int(rng.integers(3, 6)))
    ground = colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.2, 0.6), rng.uniform(0.08, 0.22))
    cx, cy = rng.uniform(0.35, 0.65, size=2) * s
    width = s * rng.uniform(0.08, 0.12)
    rings = int(rng.integers(3, 6))
    y, x = np.mgrid[0:s, 0:s]
    index = np.floor(np.hypot(x - cx, y - cy) / width).astype(int)
    colours = np.asarray(palette + [tuple(int(255 * c) for c in ground)], np.uint8)
    pixels = colours[np.where(index < rings, index % len(palette), len(palette))]
    return Image.fromarray(pixels)


def paint_stripes(rng: np.random.Generator, size: int) -> Image.Image:
    """Colour field: two to four soft-edged horizontal bands floating on a ground (Rothko-like)."""
    s = size * SUPERSAMPLE
    palette = random_palette(rng, 4, saturation=(0.4, 0.9), value=(0.35, 0.95))
    image = Image.new("RGB", (s, s), palette[0])
    draw = ImageDraw.Draw(image)
    bands = int(rng.integers(2, 5))
    margin = s * rng.uniform(0.06, 0.12)
    edges = np.sort(rng.uniform(margin, s - margin, size=bands * 2 - 1))
    edges = np.concatenate([[margin], edges[: bands * 2 - 2], [s - margin]])
    for b in range(bands):
        top, bottom = edges[2 * b], edges[2 * b + 1]
        draw.rectangle((margin, top, s - margin, bottom), fill=palette[1 + b % 3])
    return image.filter(ImageFilter.GaussianBlur(s * 0.015))


def paint_splatter(rng: np.random.Generator, size: int) -> Image.Image:
    """Drip painting: blobs and dots of paint flung on a pale canvas, some running down in drips."""
    s = size * SUPERSAMPLE
    ground = tuple(int(v) for v in rng.integers(200, 250, size=3))
    image = Image.new("RGB", (s, s), ground)
    draw = ImageDraw.Draw(image)
    palette = random_palette(rng, 4, value=(0.1, 0.9))
    for _ in range(int(rng.integers(12, 30))):
        colour = palette[rng.integers(len(palette))]
        x, y = rng.uniform(0, s, size=2)
        r = s * rng.uniform(0.01, 0.07)
        draw.ellipse((x - r, y - r * rng.uniform(0.6, 1.4), x + r, y + r), fill=colour)
        if rng.random() < 0.5:  # a drip runs down from the blob
            draw.line((x, y, x + rng.normal(0, 2), y + s * rng.uniform(0.1, 0.4)), fill=colour,
                      width=max(1, int(r / 3)))
    for _ in range(int(rng.integers(30, 80))):  # fine spatter
        x, y = rng.uniform(0, s, size=2)
        r = s * rng.uniform(0.003, 0.012)
        draw.ellipse((x - r, y - r, x + r, y + r), fill=palette[rng.integers(len(palette))])
    return image


def paint_waves(rng: np.random.Generator, size: int) -> Image.Image:
    """Flowing waves: bands of colour displaced by two sine waves, at a random angle."""
    s = size * SUPERSAMPLE
    palette = random_palette(rng, int(rng.integers(3, 6)))
    y, x = np.mgrid[0:s, 0:s] / s
    angle = rng.uniform(-0.6, 0.6)
    u = x * np.cos(angle) + y * np.sin(angle)
    v = -x * np.sin(angle) + y * np.cos(angle)
    f1, f2 = rng.uniform(1.0, 3.0), rng.uniform(3.0, 6.0)
    wave = v + rng.uniform(0.05, 0.12) * np.sin(2 * np.pi * f1 * u + rng.uniform(0, 6.3))
    wave += rng.uniform(0.01, 0.04) * np.sin(2 * np.pi * f2 * u + rng.uniform(0, 6.3))
    index = np.floor(wave * rng.uniform(5, 10)).astype(int) % len(palette)
    return Image.fromarray(np.asarray(palette, np.uint8)[index])


STYLES: dict[str, Painter] = {
    "grid": paint_grid,
    "circles": paint_circles,
    "stripes": paint_stripes,
    "splatter": paint_splatter,
    "waves": paint_waves,
}


def paint(style: str, size: int, seed: int, index: int) -> Image.Image:
    """One image of `style`, the same for the same (seed, style, index)."""
    style_id = list(STYLES).index(style)
    rng = np.random.default_rng([seed, style_id, index])
    return STYLES[style](rng, size).resize((size, size), Image.LANCZOS)


def synthesize_dataset(out: Path, size: int = 64, per_style: int = 500, seed: int = 0,
                       styles: list[str] | None = None, progress: bool = True) -> dict:
    """Write OUT/<style>/<index>.png for every style and OUT/dataset.json; return the description."""
    styles = styles or list(STYLES)
    unknown = [s for s in styles if s not in STYLES]
    if unknown:
        raise ArtforgeError(f"unknown style(s) {unknown}; choose from {list(STYLES)}")
    if size < 8 or per_style < 1:
        raise ArtforgeError(f"--size must be at least 8 and --per-style at least 1 (got {size}, {per_style})")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ArtforgeError(f"--out {out} is a file, not a folder")
    jobs = [(style, i) for style in styles for i in range(per_style)]
    for style, i in tqdm(jobs, desc="painting", unit="img", disable=not progress):
        folder = out / style
        folder.mkdir(parents=True, exist_ok=True)
        paint(style, size, seed, i).save(folder / f"{i:05d}.png")
    description = {"generator": "artforge procedural art", "size": size, "per_style": per_style,
                   "seed": seed, "styles": styles}
    (out / "dataset.json").write_text(json.dumps(description, indent=2) + "\n")
    return description


# ---- `artforge data synth` ----
@dataclass(kw_only=True)
class SynthOptions(Progress):
    out: str = option(help="folder to write OUT/<style>/<index>.png into", required=True)
    size: int = option(64, help="image side in pixels")
    per_style: int = option(500, help="images per style")
    seed: int = option(0, help="the same seed paints the same images")
    styles: list[str] | None = option(None, help="subset of styles (default: all)", many=True, choices=list(STYLES))


def synth_command(opts: SynthOptions) -> None:
    description = synthesize_dataset(Path(opts.out), size=opts.size, per_style=opts.per_style, seed=opts.seed,
                                     styles=opts.styles, progress=opts.progress)
    total = description["per_style"] * len(description["styles"])
    print(f"wrote {total} images in {len(description['styles'])} styles to {opts.out}")


COMMAND = Command(
    "synth", help="paint a procedural abstract-art data set (one subfolder of PNGs per style)",
    description="Paint a deterministic procedural abstract-art data set: "
                f"styles {', '.join(STYLES)}, with random palettes and compositions.",
    examples="  artforge data synth --out data/art --size 64 --per-style 500 --seed 0",
    options=SynthOptions, run=synth_command)
