"""`artforge restore`: a damaged picture (and optionally its damage mask) through a restoration model
on Triton, over gRPC.

    restored = restore_image(client, "restore", damaged, mask)   # (H, W, 3) uint8; mask (H, W) 0/1 or None

A mask is a grey or black-and-white image of the same size, white where the picture is damaged; it is
thresholded at half grey (anti-aliased edges count as damaged from 128 up). Without a mask the
model gets an all-zero one and finds local damage itself.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from artforge.errors import ArtforgeError
from artforge.families.restore import NAME as FAMILY
from artforge.imaging import WHITE, read_image, read_image_within, save_png
from artforge.options import ClientVerb


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
def add_arguments(p) -> None:
    p.add_argument("--model", default="restore", help="model name on the server")
    p.add_argument("--input", required=True, help="the damaged picture (any size, 16 px and up)")
    p.add_argument("--mask", help="white where the picture is damaged, same size (grey levels: >= 128 is damaged); "
                                  "without one the model finds the damage itself")
    p.add_argument("--out", required=True, help="the restored picture, .png")
    p.add_argument("--url", default="127.0.0.1:8001", help="Triton gRPC address")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the answer")
    p.add_argument("--background", default="white", help="colour for transparent areas of the picture")


def run(args) -> None:
    from artforge.imaging import parse_colour
    from artforge.serving.client import Client

    with Client(args.url, timeout_s=args.timeout) as client:
        out = restore_path(client, args.model, Path(args.input), Path(args.out),
                           Path(args.mask) if args.mask else None, parse_colour(args.background))
    print(f"wrote {out}")


VERB = ClientVerb(
    "restore", help="restore a damaged picture with a restoration model on Triton (gRPC)",
    description="Send a damaged picture (any size) and optionally a mask of the damage to a restoration "
                "model served by Triton; save the restored picture as PNG.",
    examples="  artforge restore --input damaged.png --mask mask.png --out fixed.png     # model 'restore'\n"
             "  artforge restore --model restore --input scan.jpg --out fixed.png     # no mask: it looks",
    add_arguments=add_arguments, run=run)
