"""Pixel conventions shared by training, export (inside the graph) and clients, and the one
image reader every command uses.

Networks see float images in [-1, 1], NCHW; files and the wire carry uint8 0-255, NHWC.
"""
from __future__ import annotations

import io
import math
import threading
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from artforge.errors import ImageError, ImageTooLarge
from artforge.files import atomic_write_bytes
from artforge.photos import centre_crop

# what the image families' serving contracts do with pixels (travels in every ONNX file they export)
UINT8_NHWC = {"image_input": "uint8 NHWC 0-255", "image_output": "uint8 NHWC 0-255", "network_range": [-1, 1]}
WHITE = (255, 255, 255)
MAX_PIXELS = 100_000_000  # 10,000 x 10,000; decoded RGB that is 300 MB
FITS = ("crop", "pad")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff"}
# Pillow's own bomb check refuses images over 179 Mpx outright; read_image checks the size itself,
# after JPEG draft decoding has had its chance to shrink the image
_bomb_check_lock = threading.Lock()


def read_image(path: str | Path, background: tuple[int, int, int] = WHITE, max_pixels: int = MAX_PIXELS,
               size_hint: int | None = None) -> np.ndarray:
    """(H, W, 3) uint8 from any image file Pillow reads, the way a person sees it.

    Transparency (RGBA, LA, palette or colour-key) is composited onto `background`; grey, 16-bit and
    CMYK are converted; EXIF orientation is applied. A JPEG is decoded at a reduced scale when
    `size_hint` (the side the caller will resize to) allows. Images over `max_pixels` after that are
    refused with ImageTooLarge; unreadable files with ImageError. Pillow's warnings are left to the
    caller (a folder loader counts them).
    """
    path = Path(path)
    try:
        with open_unchecked(path) as picture:
            if size_hint and picture.format == "JPEG":
                picture.draft("RGB", (size_hint, size_hint))  # decodes at 1/2, 1/4 or 1/8 scale, never below the hint
            width, height = picture.size
            if width * height > max_pixels:
                raise ImageTooLarge(f"image {path} is {width}x{height} ({width * height / 1e6:.0f} megapixels), "
                                    f"over the limit of {max_pixels / 1e6:.0f} megapixels")
            return to_rgb(ImageOps.exif_transpose(picture), background)
    except ImageError:
        raise
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as e:
        raise ImageError(f"cannot read image {path}: {e}") from None


def read_image_within(path: Path, limit: dict, background: tuple[int, int, int] = WHITE) -> np.ndarray:
    """(H, W, 3) uint8 within a served input's size limits (`limit['dims']`), or a one-line error naming the file."""
    image = read_image(path, background)
    (min_h, max_h), (min_w, max_w) = limit.get("dims", [[1, 1 << 30], [1, 1 << 30]])[:2]
    height, width = image.shape[:2]
    if not (min_h <= height <= max_h and min_w <= width <= max_w):
        raise ImageError(f"image {path} is {width}x{height}; the model takes {min_w}-{max_w} x {min_h}-{max_h} "
                         "pixels (resize it, or export the model with a larger --max-dim)")
    return image


def input_images(source: Path) -> list[Path]:
    """An --input: the image itself, or the images in a folder (sorted), or a one-line error."""
    source = Path(source)
    if not source.exists():
        raise ImageError(f"--input {source} does not exist")
    if not source.is_dir():
        return [source]
    images = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not images:
        raise ImageError(f"--input folder {source} has no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return images


def open_unchecked(path: Path) -> Image.Image:
    """Image.open without Pillow's decompression-bomb limit (read_image applies its own)."""
    with _bomb_check_lock:
        limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            return Image.open(path)
        finally:
            Image.MAX_IMAGE_PIXELS = limit


def to_rgb(picture: Image.Image, background: tuple[int, int, int]) -> np.ndarray:
    """Any Pillow mode as (H, W, 3) uint8, transparent areas on `background`."""
    if picture.mode in ("I", "I;16", "I;16B", "I;16L"):  # 16-bit grey: scale, do not clip at 255
        grey = np.asarray(picture).astype(np.float64) / 257.0
        return np.repeat(np.clip(np.round(grey), 0, 255).astype(np.uint8)[..., None], 3, axis=2)
    if picture.mode == "F":
        grey = np.asarray(picture, np.float64)
        grey = grey / max(float(grey.max()), 1e-12) * 255.0 if grey.max() > 1.0 else grey * 255.0
        return np.repeat(np.clip(np.round(grey), 0, 255).astype(np.uint8)[..., None], 3, axis=2)
    if picture.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in picture.info:
        canvas = Image.new("RGBA", picture.size, (*background, 255))
        canvas.alpha_composite(picture.convert("RGBA"))
        picture = canvas
    return np.asarray(picture.convert("RGB"))


def fit_square(image: np.ndarray, size: int, fit: str = "crop", background: tuple[int, int, int] = WHITE) -> np.ndarray:
    """(size, size, 3): `crop` fills the square and cuts the longer side; `pad` keeps the whole picture,
    letterboxed on `background`."""

    if fit == "crop":
        return centre_crop(image, size)
    if fit != "pad":
        raise ValueError(f"fit must be one of {FITS}, got '{fit}'")
    picture = Image.fromarray(image)
    scale = size / max(picture.size)
    inner = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
    canvas = Image.new("RGB", (size, size), background)
    canvas.paste(picture.resize(inner, Image.LANCZOS if scale < 1 else Image.BICUBIC, reducing_gap=3.0),
                 ((size - inner[0]) // 2, (size - inner[1]) // 2))
    return np.asarray(canvas)


def parse_colour(text: str) -> tuple[int, int, int]:
    """'white', 'black', '#rrggbb' or 'r,g,b' as an RGB triple (the --background option)."""
    from PIL import ImageColor

    try:
        if "," in text:
            rgb = tuple(int(v) for v in text.split(","))
            if len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb):
                raise ValueError
            return rgb
        return ImageColor.getrgb(text)[:3]
    except ValueError:
        raise ImageError(f"--background '{text}' is not a colour; use a name (white), #rrggbb or r,g,b") from None


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

    picture = Image.fromarray(image)
    if upscale > 1:
        picture = picture.resize((picture.width * upscale, picture.height * upscale), Image.NEAREST)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    atomic_write_bytes(Path(path), buffer.getvalue())


def save_gif(frames: np.ndarray, path: Path, fps: float = 12.0, upscale: int = 1) -> None:
    """Write (N, H, W, 3) uint8 frames as a looping animated GIF, atomically (one palette per frame)."""

    pictures = [Image.fromarray(frame) for frame in frames]
    if upscale > 1:
        pictures = [p.resize((p.width * upscale, p.height * upscale), Image.NEAREST) for p in pictures]
    buffer = io.BytesIO()
    pictures[0].save(buffer, format="GIF", save_all=True, append_images=pictures[1:], loop=0,
                     duration=max(20, round(1000 / fps)))
    atomic_write_bytes(Path(path), buffer.getvalue())
