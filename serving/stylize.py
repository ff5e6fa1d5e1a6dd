"""`artforge stylize`: photos through a style-transfer model on Triton, over gRPC.

    weights = style_weights(info, style="ink")                # one-hot
    weights = style_weights(info, blend="ink=0.5,mosaic=0.5")  # a mix
    result = stylize_image(client, "stylize", photo, weights)  # (H, W, 3) uint8
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from artforge.errors import ArtforgeError
from artforge.imaging import save_png
from artforge.serving.generate import resolve_style
from artforge.training.dataset import IMAGE_SUFFIXES

log = logging.getLogger(__name__)
FAMILY = "style"


def style_weights(styles: list, style: str | int | None = None, blend: str | None = None) -> np.ndarray:
    """(N,) float32 weights summing to 1 from --style K or --blend K1=w1,K2=w2."""
    if (style is None) == (blend is None):
        raise ArtforgeError("give exactly one of --style K or --blend K1=0.5,K2=0.5")
    weights = np.zeros(len(styles), np.float32)
    if style is not None:
        weights[resolve_style(style, styles)] = 1.0
        return weights
    for part in blend.split(","):
        name, _, value = part.partition("=")
        try:
            amount = float(value)
        except ValueError:
            raise ArtforgeError(f"--blend part '{part}' must look like STYLE=WEIGHT, e.g. ink=0.5") from None
        if amount < 0:
            raise ArtforgeError(f"--blend weight of '{name}' is negative ({amount}); weights must be >= 0")
        weights[resolve_style(name.strip(), styles)] += amount
    total = float(weights.sum())
    if total <= 0:
        raise ArtforgeError("--blend weights sum to 0; give at least one positive weight")
    if abs(total - 1.0) > 1e-3:
        log.warning("--blend weights sum to %.3g; normalised to 1", total)
    return weights / total


def read_photo(path: Path, min_size: int) -> np.ndarray:
    """(H, W, 3) uint8, or a one-line error naming the file."""
    try:
        with Image.open(path) as picture:
            photo = np.asarray(picture.convert("RGB"))
    except (OSError, UnidentifiedImageError, ValueError) as e:
        raise ArtforgeError(f"cannot read image {path}: {e}") from None
    if min(photo.shape[:2]) < min_size:
        raise ArtforgeError(f"image {path} is {photo.shape[1]}x{photo.shape[0]}; the model needs at least "
                            f"{min_size}x{min_size}")
    return photo


def stylize_image(client, model: str, photo: np.ndarray, weights: np.ndarray) -> np.ndarray:
    result = client.infer(model, {"content": photo[None], "style_weights": weights[None].astype(np.float32)},
                          ["image"])
    return result["image"][0]


def stylize_paths(client, model: str, source: Path, out: Path, style=None, blend=None,
                  progress: bool = True) -> list[Path]:
    """Stylise one photo into OUT.png, or every image in a folder into folder OUT/."""
    info = client.model(model)
    if info.family != FAMILY:
        raise ArtforgeError(f"model '{model}' is a '{info.family or 'non-artforge'}' model; "
                            f"'artforge stylize' needs a '{FAMILY}' model")
    weights = style_weights(info.metadata.get("styles", []), style, blend)
    min_size = int(info.metadata.get("min_size", 16))
    source, out = Path(source), Path(out)
    if not source.exists():
        raise ArtforgeError(f"--input {source} does not exist")
    if source.is_dir():
        photos = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not photos:
            raise ArtforgeError(f"--input folder {source} has no images")
        targets = [out / f"{p.stem}.png" for p in photos]
    else:
        photos, targets = [source], [out if out.suffix.lower() == ".png" else out / f"{source.stem}.png"]
    for photo_path, target in tqdm(list(zip(photos, targets)), desc="stylizing", unit="img",
                                   disable=not progress or len(photos) == 1):
        save_png(stylize_image(client, model, read_photo(photo_path, min_size), weights), target)
    return targets
