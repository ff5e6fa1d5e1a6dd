"""Restoration training (pix2pix): L1 to the clean image plus a conditional PatchGAN (least squares);
with arch="hd", Pix2PixHD's recipe: its global generator, PatchGANs at several scales and their
feature-matching loss. An optional perceptual loss compares loss-network features (the style family's).

    train_restore(out="runs/restore", size=64, steps=3000)          # crops of the scikit-image photos
    train_restore(data="paintings/", out="runs/restore", size=128)  # any folder of clean images
    train_restore(out="runs/restore-hd", arch="hd", size=128)       # for 512 px and larger pictures

Damage is synthesised on the fly from the clean images (damage.py), seeded by (seed, step, item), so
a resumed run sees the same batches. A fixed held-out set (never trained on) is damaged once by
(seed, index): every checkpoint records its PSNR there, samples/step_N.png shows it (rows: clean,
damaged, restored), and `artforge evaluate` scores it against classical inpainting.
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from artforge.errors import ArtforgeError
from artforge.evaluation.restoration import psnr
from artforge.families.image_to_image import feature_matching_loss, lsgan_discriminator_loss, lsgan_generator_loss
from artforge.families.restore import NAME as FAMILY
from artforge.families.restore.damage import damage_batch
from artforge.families.restore.network import ARCHITECTURES, RestoreConfig, RestoreNet, restore_discriminator
from artforge.feature_network import load_loss_network, relative_error
from artforge.image_folders import split_image_folder
from artforge.imaging import make_grid, parse_colour, save_png, uint8_to_unit, unit_to_uint8
from artforge.options import RunControl, option, with_defaults
from artforge.photos import HELD_OUT_PHOTOS, TRAINING_PHOTOS, photo_crops
from artforge.training.distributed import Distributed, step_generator
from artforge.training.loop import FamilyTrainer, TrainCommand, train
from artforge.training.run_options import RUN_CONTROL_CHANGES, resolve_options

log = logging.getLogger(__name__)
RESUMABLE_CHANGES = RUN_CONTROL_CHANGES | {"data"}
BUILTIN = "builtin"
HELD_OUT_IMAGES = 64


@dataclass
@with_defaults(steps=3000)
class RestoreTrainOptions(RunControl):
    """Everything that defines a restoration run; written to RUN/train_options.json."""

    out: str = option(help="run folder for checkpoints, samples and logs", required=True)
    data: str = option(BUILTIN, help="folder of clean images (subfolders are fine), or 'builtin': crops of the "
                                     "scikit-image photos (two photos held out)")
    size: int = option(64, help="side of the square training crops")
    batch_size: int = option(16, help="global batch size, split among processes")
    lr: float = option(2e-4, help="Adam learning rate of both players")
    l1_weight: float = option(100.0, help="weight of the L1 distance to the clean image (the GAN loss has 1)")
    unknown_mask: float = option(0.25, help="share of training items whose mask is hidden (all 0), so the model "
                                            "also restores when the user has no mask")
    arch: str = option("unet", help="generator: unet (pix2pix's U-Net) or hd (Pix2PixHD's global generator, with "
                                    "multi-scale PatchGANs and feature matching: for 512 px and up)",
                       choices=list(ARCHITECTURES))
    width: int = option(32, help="generator width (channels of its first level)")
    depth: int | None = option(None, help="generator stride-2 levels (default 5 for unet, 4 for hd)")
    blocks: int = option(9, help="hd: residual blocks at the coarsest level")
    scales: int | None = option(None, help="discriminator scales, each half the previous size (default 1 for unet, "
                                           "2 for hd); --size must be at least 32 * 2**(scales-1)")
    feature_matching: float | None = option(None, help="weight of the discriminator feature-matching loss "
                                                       "(default 0 for unet, 10 for hd)")
    perceptual: float = option(0.0, help="weight of the loss-network feature distance to the clean image "
                                         "(EfficientNet-Lite0 from its wheel, the style family's layers); 0: off")
    pool: int = option(2000, help="with --data builtin: how many crops of the training photos to draw from")
    held_out: float = option(0.1, help="with a folder: share of its images held out, never trained on")
    bf16: bool = option(False, help="bfloat16 autocast (fast on CPUs with AMX and on GPUs)")
    fit: str = option("crop", help="how a folder image becomes a square: crop (centre) or pad", choices=["crop", "pad"])
    background: str = option("white", help="colour for transparent areas and padding: a name, #rrggbb or r,g,b")


def train_restore(**kwargs: Any) -> Path:
    """Train (or with resume=True continue) a restoration network; returns the last checkpoint's path."""
    opts = with_arch_defaults(resolve_options(kwargs, RestoreTrainOptions, RESUMABLE_CHANGES))
    smallest = 32 * 2 ** (opts.scales - 1)  # 32: the coarsest PatchGAN's last normalised map must be wider than 1
    if opts.size < smallest or opts.size % 2 ** opts.depth:
        raise ArtforgeError(f"--size {opts.size} must be at least {smallest} (32 px at the coarsest of "
                            f"{opts.scales} discriminator scales) and a multiple of 2**depth = {2 ** opts.depth}")
    return train(RestoreTrainer, opts)


def with_arch_defaults(opts: RestoreTrainOptions) -> RestoreTrainOptions:
    """Fill the options whose default depends on --arch (saved filled in, so a resume keeps them)."""
    hd = opts.arch == "hd"
    return dataclasses.replace(
        opts, depth=opts.depth if opts.depth is not None else 4 if hd else 5,
        scales=opts.scales if opts.scales is not None else 2 if hd else 1,
        feature_matching=opts.feature_matching if opts.feature_matching is not None else 10.0 if hd else 0.0)


COMMAND = TrainCommand(
    RestoreTrainOptions, train_restore, help="train an art-restoration network (pix2pix: inpainting and repair)",
    description="Train a U-Net to undo synthesised damage (missing paint, scratches, fading, colour cast, noise,\n"
                "JPEG blocking) on clean images, with L1 and a conditional PatchGAN. RUN gets samples/step_N.png\n"
                "(held-out: clean, damaged, restored), log.jsonl, checkpoints/step_N/ with held-out PSNR.",
    examples="  artforge train restore --out runs/restore --steps 3000            # scikit-image photos, 64 px\n"
             "  artforge train restore --data paintings/ --out runs/restore --size 128\n"
             "  artforge train restore --arch hd --out runs/restore-hd --size 128   # Pix2PixHD, for 512 px+\n"
             "  artforge evaluate runs/restore --out eval/   # against OpenCV and scikit-image inpainting")


def clean_images(opts: RestoreTrainOptions, progress: bool) -> tuple[torch.Tensor, np.ndarray, dict]:
    """(training pool (N, 3, S, S) uint8, held-out (M, S, S, 3) uint8, a description of the data)."""
    if opts.data == BUILTIN:
        pool = torch.from_numpy(photo_crops(opts.pool, opts.size, opts.size, opts.seed)).permute(0, 3, 1, 2)
        held = photo_crops(HELD_OUT_IMAGES, opts.size, opts.size, opts.seed + 1, held_out=True)
        return pool.contiguous(), held, {"source": "scikit-image photos", "training_photos": list(TRAINING_PHOTOS),
                                         "held_out_photos": list(HELD_OUT_PHOTOS), "pool": opts.pool}

    return split_image_folder(Path(opts.data), opts.size, opts.held_out, opts.seed, HELD_OUT_IMAGES, progress,
                              opts.fit, parse_colour(opts.background))


def perceptual_network(weight: float, device: torch.device) -> nn.Module | None:
    if not weight:
        return None

    return load_loss_network(None).to(device)


def perceptual_loss(taps: nn.Module, restored: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """Scale-free feature distance (relative_error) averaged over the loss network's style layers."""

    with torch.no_grad():
        target = taps(clean)
    mine = taps(restored)
    layers = taps.info.style_layers
    return sum(relative_error(mine[name], target[name]).mean() for name in layers) / len(layers)


def held_out_set(clean: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The fixed damaged held-out images and masks: the same for a seed in every run and in evaluate."""
    return damage_batch(clean, [(seed, 99991, i) for i in range(len(clean))])


class RestoreTrainer(FamilyTrainer):
    """The U-Net, the PatchGAN and their Adam optimisers."""

    family = FAMILY

    def __init__(self, opts: RestoreTrainOptions, ctx: Distributed):
        ctx.check_batch(opts.batch_size)
        self.pool, held_clean, self.data_facts = clean_images(opts, opts.progress and ctx.is_main)
        self.held_clean = held_clean
        self.held_damaged, self.held_masks = held_out_set(held_clean, opts.seed)
        super().__init__(RestoreConfig(opts.width, opts.depth, opts.arch, opts.blocks), opts.batch_size)
        self.opts, self.ctx = opts, ctx
        torch.manual_seed(opts.seed)
        self.G, self.D = RestoreNet(self.config).to(ctx.device), restore_discriminator(opts.scales).to(ctx.device)
        self.loss_network = perceptual_network(opts.perceptual, ctx.device)
        self.opt_G = torch.optim.Adam(self.G.parameters(), opts.lr, (0.5, 0.999))
        self.opt_D = torch.optim.Adam(self.D.parameters(), opts.lr, (0.5, 0.999))
        self.G_train, self.D_train = ctx.wrap(self.G), ctx.wrap(self.D)
        self.G_train.train(), self.D_train.train()
        self.report: dict[str, float] = {}

    def state(self) -> dict[str, nn.Module | torch.optim.Optimizer]:
        return {"G": self.G, "D": self.D, "opt_G": self.opt_G, "opt_D": self.opt_D}

    def train_step(self, step: int) -> dict[str, float]:
        damaged, mask, clean = self.batch_for_step(step)
        autocast = self.ctx.autocast
        with autocast():
            restored = self.G_train(damaged, mask)
        condition = torch.cat([damaged, mask], dim=1)
        self.opt_D.zero_grad(set_to_none=True)
        with autocast():
            d_real = self.D_train(torch.cat([condition, clean], 1))
            d_fake = self.D_train(torch.cat([condition, restored.detach()], 1))
        loss_d = lsgan_discriminator_loss(d_real, d_fake)
        loss_d.backward()
        self.opt_D.step()
        self.opt_G.zero_grad(set_to_none=True)
        with autocast():
            d_gen = self.D_train(torch.cat([condition, restored], 1))
        losses = {"loss_gan": lsgan_generator_loss(d_gen), "loss_l1": F.l1_loss(restored.float(), clean)}
        weights = {"loss_gan": 1.0, "loss_l1": self.opts.l1_weight}
        if self.opts.feature_matching:
            losses["loss_fm"], weights["loss_fm"] = feature_matching_loss(d_real, d_gen), self.opts.feature_matching
        if self.loss_network is not None:
            losses["loss_perceptual"] = perceptual_loss(self.loss_network, restored.float(), clean)
            weights["loss_perceptual"] = self.opts.perceptual
        sum(weights[name] * loss for name, loss in losses.items()).backward()
        self.opt_G.step()
        return {"loss_d": loss_d.item(), **{name: loss.item() for name, loss in losses.items()}}

    def batch_for_step(self, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """This process's share of step `step`: damaged (B, 3, S, S) in [-1, 1], mask (B, 1, S, S), clean."""
        g = step_generator(self.opts.seed, step)
        index = torch.randint(len(self.pool), (self.opts.batch_size,), generator=g)
        flip = torch.rand(self.opts.batch_size, generator=g) < 0.5
        hide = torch.rand(self.opts.batch_size, generator=g) < self.opts.unknown_mask
        mine = list(range(self.ctx.rank, self.opts.batch_size, self.ctx.world_size))
        clean = self.pool[index[mine]]
        clean = torch.where(flip[mine, None, None, None], clean.flip(3), clean).permute(0, 2, 3, 1).numpy()
        damaged, masks = damage_batch(clean, [(self.opts.seed, step, i) for i in mine])
        masks = torch.from_numpy(masks)[:, None].float() * (~hide[mine])[:, None, None, None]
        dev = self.ctx.device
        to_unit = lambda images: uint8_to_unit(torch.from_numpy(images).permute(0, 3, 1, 2)).to(dev)  # noqa: E731
        return to_unit(damaged), masks.to(dev), to_unit(np.ascontiguousarray(clean))

    @torch.no_grad()
    def restore_held_out(self) -> np.ndarray:
        self.G.eval()
        dev = self.ctx.device
        images = uint8_to_unit(torch.from_numpy(self.held_damaged).permute(0, 3, 1, 2)).to(dev)
        masks = torch.from_numpy(self.held_masks)[:, None].float().to(dev)
        restored = torch.cat([unit_to_uint8(self.G(images[i:i + 32], masks[i:i + 32])).cpu()
                              for i in range(0, len(images), 32)])
        self.G.train()
        return restored.numpy()

    def before_outputs(self) -> None:
        restored = self.restore_held_out()
        masks = self.held_masks.astype(bool)
        self.report = {"psnr": psnr(restored, self.held_clean), "psnr_masked": psnr(restored, self.held_clean, masks),
                       "psnr_damaged": psnr(self.held_damaged, self.held_clean), "images": len(restored)}
        self.restored = restored
        log.info("held-out PSNR %.2f dB (masked %.2f dB; damaged input %.2f dB)", self.report["psnr"],
                 self.report["psnr_masked"], self.report["psnr_damaged"])

    def write_samples(self, path: Path) -> None:
        rows = [self.held_clean[:8], self.held_damaged[:8], self.restored[:8]]
        save_png(make_grid(np.concatenate(rows), 8), path.with_suffix(".png"), upscale=max(1, 128 // self.opts.size))

    def inference_weights(self) -> dict[str, torch.Tensor]:
        return self.G.state_dict()

    def checkpoint_facts(self) -> dict[str, Any]:
        return {"dataset": self.data_facts, "seed": self.opts.seed, "training": dataclasses.asdict(self.opts),
                "held_out": self.report}
