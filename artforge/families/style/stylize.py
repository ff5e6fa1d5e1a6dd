"""`artforge stylize`: photos through a style-transfer model on Triton, over gRPC.

    weights = style_weights(info, style="ink")                # one-hot
    weights = style_weights(info, blend="ink=0.5,mosaic=0.5")  # a mix
    result = stylize_image(client, "stylize", photo, weights)  # (H, W, 3) uint8
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from artforge.errors import ArtforgeError
from artforge.families.style import NAME as FAMILY
from artforge.imaging import WHITE, input_images, parse_colour, read_image_within, save_png
from artforge.options import Command, ImageInput, Progress, ServerAddress, option, with_defaults
from artforge.serving.client import Client, resolve_label

log = logging.getLogger(__name__)


def style_weights(styles: list, style: str | int | None = None, blend: str | None = None) -> np.ndarray:
    """(N,) float32 weights summing to 1 from --style K or --blend K1=w1,K2=w2 (a 1-style model needs neither)."""
    if style is None and blend is None and len(styles) == 1:
        return np.ones(1, np.float32)
    if (style is None) == (blend is None):
        raise ArtforgeError("give exactly one of --style K or --blend K1=0.5,K2=0.5")
    weights = np.zeros(len(styles), np.float32)
    if style is not None:
        weights[resolve_label(style, styles, kind="style")] = 1.0
        return weights
    for part in blend.split(","):
        name, _, value = part.partition("=")
        try:
            amount = float(value)
        except ValueError:
            raise ArtforgeError(f"--blend part '{part}' must look like STYLE=WEIGHT, e.g. ink=0.5") from None
        if not math.isfinite(amount) or amount < 0:
            raise ArtforgeError(f"--blend weight of '{name}' is {amount}; weights must be finite and >= 0")
        weights[resolve_label(name.strip(), styles, kind="style")] += amount
    total = float(weights.sum())
    if total <= 0:
        raise ArtforgeError("--blend weights sum to 0; give at least one positive weight")
    if abs(total - 1.0) > 1e-3:
        log.warning("--blend weights sum to %.3g; normalised to 1", total)
    return weights / total


def single_target(out_text: str, source: Path) -> Path:
    """--out for one photo: OUT.png, or a folder (ending in '/' or existing) that gets SOURCE.png."""
    out = Path(out_text)
    if out_text.endswith("/") or out.is_dir():
        return out / f"{source.stem}.png"
    if out.suffix.lower() != ".png":
        raise ArtforgeError(f"--out {out} must end in .png (one image) or '/' (a folder); results are PNG")
    return out


def stylize_image(client, model: str, photo: np.ndarray, weights: np.ndarray) -> np.ndarray:
    result = client.infer(model, {"content": photo[None], "style_weights": weights[None].astype(np.float32)},
                          ["image"])
    return result["image"][0]


def stylize_paths(client, model: str, source: Path, out: str | Path, style=None, blend=None,
                  progress: bool = True, background: tuple[int, int, int] = WHITE) -> list[Path]:
    """Stylise one photo into OUT.png, or every image in a folder into folder OUT/."""
    info = client.model(model)
    if info.family != FAMILY:
        raise ArtforgeError(f"model '{model}' is a '{info.family or 'non-artforge'}' model; "
                            f"'artforge stylize' needs a '{FAMILY}' model")
    weights = style_weights(info.metadata.get("styles", []), style, blend)
    limit = info.limits.get("content", {})
    out_text = str(out)
    source, out = Path(source), Path(out)
    photos = input_images(source)
    if source.is_dir():
        targets = [out / f"{p.stem}.png" for p in photos]
    else:
        targets = [single_target(out_text, source)]
    for photo_path, target in tqdm(list(zip(photos, targets)), desc="stylizing", unit="img",
                                   disable=not progress or len(photos) == 1):
        photo = read_image_within(photo_path, limit, background)
        try:
            result = stylize_image(client, model, photo, weights)
        except ArtforgeError as e:
            raise ArtforgeError(f"{photo_path}: {e}") from None
        save_png(result, target)
    return targets


# ---- `artforge stylize`: the style family's client command (Family(client=...) names this module) ----
@dataclass(kw_only=True)
@with_defaults(timeout=120.0)
class StylizeOptions(ServerAddress, ImageInput, Progress):
    model: str = option("style", help="model name on the server ('artforge export' names it after the family "
                                      "unless --name)")
    style: str | None = option(None, help="style index or name")
    blend: str | None = option(None, help="mix of styles, e.g. ink=0.5,mosaic=0.5 (normalised to sum 1)")
    out: str = option(help="OUT.png for one image, or a folder", required=True)


def run(args: StylizeOptions) -> None:
    with Client(args.url, timeout_s=args.timeout) as client:
        written = stylize_paths(client, args.model, Path(args.input), args.out, style=args.style,
                                blend=args.blend, progress=args.progress, background=parse_colour(args.background))
    print(f"wrote {len(written)} image(s): {written[0] if len(written) == 1 else args.out}")


VERB = Command(
    "stylize", help="stylise photos with a style-transfer model on Triton (gRPC)",
    description="Send a photo (any size, up to 2048x2048 and beyond) or a folder of photos to a style "
                "model served by Triton and save the results as PNG.",
    examples="  artforge stylize --input photo.jpg --style ink --out ink.png          # model 'style'\n"
             "  artforge stylize --input photo.jpg --blend ink=0.5,mosaic=0.5 --out mix.png\n"
             "  artforge stylize --model stylize --input photos/ --style 1 --out stylised/\n"
             "a model with one style needs neither --style nor --blend.",
    options=StylizeOptions, run=run)
