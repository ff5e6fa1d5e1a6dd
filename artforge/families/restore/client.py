"""`artforge restore`: a damaged picture (and optionally its damage mask) through a restoration model
on Triton, over gRPC.

    restored = restore_image(client, "restore", damaged, mask)   # (H, W, 3) uint8; mask (H, W) 0/1 or None

A mask is a grey or black-and-white image of the same size, white where the picture is damaged; it is
thresholded at half grey (anti-aliased edges count as damaged from 128 up). Without a mask the
model gets an all-zero one and finds local damage itself.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from artforge.errors import ArtforgeError
from artforge.families.restore import NAME as FAMILY
from artforge.imaging import WHITE, parse_colour, read_image, read_image_within, save_png
from artforge.options import Command, ImageInput, ServerAddress, option, with_defaults
from artforge.serving.client import Client


def read_mask(path: Path, height: int, width: int) -> np.ndarray:
    """(H, W) uint8 in {0, 1} from a mask image the size of the picture, or a one-line error."""
    mask = read_image(path, background=(0, 0, 0))  # transparent areas: undamaged
    if mask.shape[:2] != (height, width):
        raise ArtforgeError(f"mask {path} is {mask.shape[1]}x{mask.shape[0]} but the image is {width}x{height}; "
                            "a mask must have the image's size")
    return (mask.max(axis=2) >= 128).astype(np.uint8)


def restore_image(client, model: str, image: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    mask = np.zeros(image.shape[:2], np.uint8) if mask is None else mask
    result = client.infer(model, {"image": image[None], "mask": mask[None, ..., None]}, ["restored"])
    return result["restored"][0]


def restore_path(client, model: str, source: Path, out: Path, mask_path: Path | None = None,
                 background: tuple[int, int, int] = WHITE) -> Path:
    info = client.model(model)
    if info.family != FAMILY:
        raise ArtforgeError(f"model '{model}' is a '{info.family or 'non-artforge'}' model; "
                            f"'artforge restore' needs a '{FAMILY}' model")
    if out.suffix.lower() != ".png":
        raise ArtforgeError(f"--out {out} must end in .png")
    image = read_image_within(source, info.limits.get("image", {}), background)
    mask = read_mask(mask_path, *image.shape[:2]) if mask_path else None
    save_png(restore_image(client, model, image, mask), out)
    return out


# ---- `artforge restore`: the restoration family's client command ----
@dataclass(kw_only=True)
@with_defaults(timeout=120.0)
class RestoreOptions(ServerAddress, ImageInput):
    model: str = option("restore", help="model name on the server")
    mask: str | None = option(None, help="white where the picture is damaged, same size (grey levels: >= 128 is "
                                         "damaged); without one the model finds the damage itself")
    out: str = option(help="the restored picture, .png", required=True)


def run(args: RestoreOptions) -> None:
    with Client(args.url, timeout_s=args.timeout) as client:
        out = restore_path(client, args.model, Path(args.input), Path(args.out),
                           Path(args.mask) if args.mask else None, parse_colour(args.background))
    print(f"wrote {out}")


VERB = Command(
    "restore", help="restore a damaged picture with a restoration model on Triton (gRPC)",
    description="Send a damaged picture (any size) and optionally a mask of the damage to a restoration "
                "model served by Triton; save the restored picture as PNG.",
    examples="  artforge restore --input damaged.png --mask mask.png --out fixed.png     # model 'restore'\n"
             "  artforge restore --model restore --input scan.jpg --out fixed.png     # no mask: it looks",
    options=RestoreOptions, run=run)
