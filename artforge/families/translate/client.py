"""`artforge translate`: a picture (or a folder) to the other domain with a translation model on Triton.

    converted = translate_image(client, "translate", picture, direction=0)   # 0: a2b, 1: b2a
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from artforge.errors import ArtforgeError
from artforge.families.translate import DIRECTIONS
from artforge.families.translate import NAME as FAMILY
from artforge.imaging import WHITE, input_images, parse_colour, read_image_within, save_png
from artforge.options import Command, ImageInput, Progress, ServerAddress, option, with_defaults
from artforge.serving.client import Client


def direction_index(direction: str, domains: list[str]) -> int:
    """'a2b', 'b2a', or 'FROM2TO' with the model's domain names (e.g. photos2waves) -> 0 or 1."""
    named = [f"{domains[0]}2{domains[1]}", f"{domains[1]}2{domains[0]}"] if len(domains) == 2 else []
    for choices in (list(DIRECTIONS), named):
        if direction in choices:
            return choices.index(direction)
    raise ArtforgeError(f"--direction {direction} is not one of {list(DIRECTIONS) + named}")


def translate_image(client, model: str, picture: np.ndarray, direction: int) -> np.ndarray:
    result = client.infer(model, {"image": picture[None], "direction": np.array([[direction]], np.int64)},
                          ["translated"])
    return result["translated"][0]


def translate_paths(client, model: str, source: Path, out: str, direction: str, progress: bool = True,
                    background: tuple[int, int, int] = WHITE) -> list[Path]:
    info = client.model(model)
    if info.family != FAMILY:
        raise ArtforgeError(f"model '{model}' is a '{info.family or 'non-artforge'}' model; "
                            f"'artforge translate' needs a '{FAMILY}' model")
    index = direction_index(direction, [str(d) for d in info.metadata.get("domains", [])])
    pictures = input_images(source)
    if source.is_dir():
        targets = [Path(out) / f"{p.stem}.png" for p in pictures]
    elif out.endswith("/") or Path(out).is_dir():
        targets = [Path(out) / f"{source.stem}.png"]
    elif Path(out).suffix.lower() == ".png":
        targets = [Path(out)]
    else:
        raise ArtforgeError(f"--out {out} must end in .png (one picture) or '/' (a folder)")
    for path, target in tqdm(list(zip(pictures, targets)), desc="translating", unit="img",
                             disable=not progress or len(pictures) == 1):
        picture = read_image_within(path, info.limits.get("image", {}), background)
        save_png(translate_image(client, model, picture, index), target)
    return targets


@dataclass(kw_only=True)
@with_defaults(timeout=120.0)
class TranslateOptions(ServerAddress, ImageInput, Progress):
    model: str = option("translate", help="model name on the server")
    direction: str = option("a2b", help="a2b, b2a, or FROM2TO with the model's domain names (e.g. photos2waves)")
    out: str = option(help="OUT.png for one picture, or a folder", required=True)


def run(args: TranslateOptions) -> None:
    with Client(args.url, timeout_s=args.timeout) as client:
        written = translate_paths(client, args.model, Path(args.input), args.out, args.direction,
                                  progress=args.progress, background=parse_colour(args.background))
    print(f"wrote {len(written)} picture(s): {written[0] if len(written) == 1 else args.out}")


VERB = Command(
    "translate", help="convert pictures to the other domain with a CycleGAN model on Triton (gRPC)",
    description="Send a picture (any size) or a folder to a translation model served by Triton, in the "
                "direction asked, and save the results as PNG.",
    examples="  artforge translate --input photo.png --direction a2b --out art.png     # model 'translate'\n"
             "  artforge translate --input paintings/ --direction waves2photos --out photos/",
    options=TranslateOptions, run=run)
