"""Which loss-network layers make the best style transfer here: short runs, scored on held-out photos.

    artforge loss-layers --out runs/loss-layers --steps 400 --size 128

Every candidate (style taps, content tap, loss network) trains the same lite network from the same
seed on the same batches; then each is scored on the held-out photos with the measures of
artforge.evaluation.transfer, which none of them trains on directly (the Gram error is averaged over
all six taps, so the judge also sees the layers a candidate does not train on).
OUT gets one run folder per candidate, loss_layers.json, loss_layers.md and loss_layers.png
(photos and styles on top, then one row per candidate).
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from artforge.evaluation.transfer import to_unit, transfer_judge, transfer_quality
from artforge.families.style.train import style_targets, train_style
from artforge.feature_network import vgg_from_file
from artforge.files import atomic_write_text, slug
from artforge.imaging import make_grid, save_png, unit_to_uint8
from artforge.options import Command, Progress, option
from artforge.photos import builtin_photos, centre_crop
from artforge.registry import load_network
from artforge.training.synth import paint

log = logging.getLogger(__name__)
DEFAULT_STYLES = ("waves", "splatter")  # procedural paintings, when the user gives no --style


@dataclass(frozen=True)
class Candidate:
    name: str
    style_layers: tuple[str, ...]
    content_layer: str
    loss_weights: str = ""  # a VGG file; empty: EfficientNet-Lite0


def candidates(vgg: str | None) -> list[Candidate]:
    stride_2_to_16 = ("block0", "block2", "block4", "block7")
    found = [Candidate("style b0,b2,b4,b7 / content b4", stride_2_to_16, "block4"),
             Candidate("style b0,b2,b4,b7 / content b2", stride_2_to_16, "block2"),
             Candidate("style b0,b2,b4,b7 / content b7", stride_2_to_16, "block7"),
             Candidate("style b2,b4,b7,b10 / content b4", ("block2", "block4", "block7", "block10"), "block4"),
             Candidate("style b0,b2 / content b4", ("block0", "block2"), "block4")]
    if vgg:
        found.append(Candidate("VGG relu1-4 / content relu2", ("relu1", "relu2", "relu3", "relu4"), "relu2", vgg))
    return found


def compare_loss_layers(out: Path, steps: int = 400, size: int = 128, styles: list[str] | None = None,
                        vgg: str | None = None, progress: bool = True) -> dict[str, Any]:
    out = Path(out)
    if vgg:
        vgg_from_file(Path(vgg))  # a bad file fails now, not after the EfficientNet runs
    styles = styles or write_default_styles(out / "styles", size)
    photos = np.stack([centre_crop(photo, size) for photo in builtin_photos(held_out=True)])
    style_images = unit_to_uint8(style_targets(styles, size)).numpy()
    judge = transfer_judge()
    rows, panels = [], []
    for candidate in candidates(vgg):
        run = out / slug(candidate.name)
        train_style(out=str(run), styles=styles, size=size, steps=steps, style_layers=",".join(candidate.style_layers),
                    content_layer=candidate.content_layer, loss_weights=candidate.loss_weights,
                    sample_every=steps, checkpoint_every=steps, keep=1, progress=progress,
                    width="lite")  # the network docs/families/style.md's comparison was measured with
        results = stylise_all(run, photos, len(styles))
        rows.append({"candidate": candidate.name, "style_layers": list(candidate.style_layers),
                     "content_layer": candidate.content_layer, "loss_network": candidate.loss_weights or
                     "efficientnet-lite0", **transfer_quality(results, photos, style_images, judge)})
        panels.append(results.reshape(-1, size, size, 3))
        log.info("%s: %s", candidate.name, rows[-1])
    document = {"steps": steps, "size": size, "styles": [str(s) for s in styles], "results": rows}
    write_outputs(out, document, photos, style_images, panels)
    return document


def write_default_styles(folder: Path, size: int) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for style in DEFAULT_STYLES:
        paths.append(str(folder / f"{style}.png"))
        paint(style, max(size, 256), seed=0, index=0).save(paths[-1])
    return paths


@torch.no_grad()
def stylise_all(run: Path, photos: np.ndarray, num_styles: int) -> np.ndarray:
    """(photos, styles, S, S, 3) uint8: every held-out photo in every style."""
    net, _ = load_network(run, expect_family="style")
    images = to_unit(photos)
    out = [unit_to_uint8(net(images, torch.eye(num_styles)[k].expand(len(photos), -1))).numpy()
           for k in range(num_styles)]
    return np.stack(out, axis=1)


def write_outputs(out: Path, document: dict[str, Any], photos, styles, panels: list[np.ndarray]) -> None:
    atomic_write_text(out / "loss_layers.json", json.dumps(document, indent=2) + "\n")
    atomic_write_text(out / "loss_layers.md", markdown(document))
    columns = len(panels[0])
    header = np.concatenate([photos, styles])[:columns]
    header = np.concatenate([header, np.full((columns - len(header), *photos.shape[1:]), 255, np.uint8)])
    save_png(make_grid(np.concatenate([header, *panels]), columns), out / "loss_layers.png")


def markdown(document: dict[str, Any]) -> str:
    lines = [f"Style runs of {document['steps']} steps at {document['size']} px, scored on held-out photos.", "",
             "| candidate (loss taps) | content SSIM (higher keeps more) | style colour distance, levels "
             "(lower) | style Gram error, all taps (lower) |", "|---|---|---|---|"]
    for r in document["results"]:
        lines.append(f"| {r['candidate']} | {r['content_ssim']:.3f} | {r['style_colour_levels']:.1f} | "
                     f"{r['style_gram_error']:.3f} |")
    return "\n".join(lines) + "\n"


# ---- `artforge loss-layers` ----
@dataclass(kw_only=True)
class StyleExperimentOptions(Progress):
    """What the style experiments (loss-layers, init-gain) share: short scored runs on a few styles."""

    out: str = option(help="folder for the runs and the reports", required=True)
    steps: int = option(400, help="training steps of each run")
    size: int = option(128, help="training and scoring size")
    style: list[str] | None = option(None, help="style image (repeat); default: procedural paintings", repeat=True)


@dataclass(kw_only=True)
class LossLayersOptions(StyleExperimentOptions):
    vgg: str | None = option(None, help="torchvision-format VGG16/19 weights: add a VGG candidate")


def loss_layers_command(opts: LossLayersOptions) -> None:
    compare_loss_layers(Path(opts.out), steps=opts.steps, size=opts.size, styles=opts.style, vgg=opts.vgg,
                        progress=opts.progress)
    print((Path(opts.out) / "loss_layers.md").read_text())
    print(f"reports: {opts.out}/loss_layers.json, loss_layers.md, loss_layers.png")


COMMAND = Command(
    "loss-layers", help="measure which loss-network layers give the best style transfer (short runs, scored)",
    description="Train the lite style network once per candidate choice of loss-network taps (same seed, "
                "same batches), stylise the held-out photos, and score each: content SSIM, style colour "
                "distance (sliced Wasserstein, grey levels) and style Gram error over all EfficientNet taps. "
                "Writes loss_layers.json, loss_layers.md and loss_layers.png (one row per candidate).",
    examples="  artforge loss-layers --out runs/loss-layers                     # about 10 min on 2 cores\n"
             "  artforge loss-layers --out runs/ll --style ink.jpg --steps 1000 --size 256\n"
             "  artforge loss-layers --out runs/ll --vgg vgg16.pth              # adds a VGG candidate",
    options=LossLayersOptions, run=loss_layers_command)
