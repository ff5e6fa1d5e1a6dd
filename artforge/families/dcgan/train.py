"""Conditional DCGAN training: alternating D and G updates, non-saturating loss on logits, EMA generator.

    train_dcgan(data="data/art", out="runs/dcgan", size=32, steps=2000)

Rank 0 writes everything in RUN: train_options.json, log.jsonl, samples/step_N.png, checkpoints/step_N/.
"""
from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from artforge.families.dcgan import NAME as FAMILY
from artforge.imaging import make_grid, save_png, uint8_to_unit, unit_to_uint8
from artforge.families.dcgan.network import DCGANConfig, Discriminator, Generator
from artforge.options import option, with_defaults
from artforge.training.distributed import Distributed, step_generator
from artforge.training.ema import ema_decay_at, update_ema
from artforge.training.run_options import RUN_CONTROL_CHANGES, resolve_options
from artforge.evaluation.metrics import ImageQualityJudge
from artforge.image_folders import ImageFolder
from artforge.training.augment import diff_augment
from artforge.training.conditioning import class_accuracy, class_loss
from artforge.training.image_gan import ClassFolderGANTrainer, ClassGANOptions, load_class_folder
from artforge.training.loop import TrainCommand, train
from artforge.families.dcgan import generation_inputs

log = logging.getLogger(__name__)
# options a resumed run may change; every other one must match the run being resumed
RESUMABLE_CHANGES = RUN_CONTROL_CHANGES | {"data", "eval_every", "eval_count"}
AUGMENT_STREAM = 1  # step_generator stream of a step's augmentations (stream 0 draws its batch)


@dataclass
@with_defaults(sample_every=250)
class DCGANTrainOptions(ClassGANOptions):
    """Everything that defines a DCGAN run; written to RUN/train_options.json."""

    out: str = option(help="run folder for checkpoints, samples and logs", required=True)
    size: int = option(32, help="image side in pixels", choices=[32, 64])
    batch_size: int = option(64, help="global batch size, split among processes")
    lr: float = option(2e-4, help="Adam learning rate of both players")
    beta1: float = option(0.5, cli=False)
    beta2: float = option(0.999, cli=False)
    ema_decay: float = option(0.999, help="decay of the generator's weight average")
    z_dim: int = option(100, help="noise dimensions")
    g_width: int = option(64, help="generator width")
    d_width: int = option(64, help="discriminator width")
    flip: bool = option(True, cli=False)


def train_dcgan(**kwargs: Any) -> Path:
    """Train (or with resume=True continue) a conditional DCGAN; returns the last checkpoint's path.

    Pass only the options you choose; with resume=True the others come from the run's saved options.
    """
    return train(DCGANTrainer, resolve_options(kwargs, DCGANTrainOptions, RESUMABLE_CHANGES), ImageQualityJudge)


COMMAND = TrainCommand(
    DCGANTrainOptions, train_dcgan, help="train a style-conditional DCGAN image generator",
    description="Train a style-conditional DCGAN on a folder with one subfolder of images per style.\n"
                "RUN gets samples/step_N.png (one row per style), log.jsonl (losses, images/s),\n"
                "checkpoints/step_N/ (safetensors + JSON) and train_options.json.",
    examples="  artforge train dcgan --data data/art --out runs/dcgan --size 32 --steps 3000\n"
             "  artforge train dcgan --out runs/dcgan --resume --steps 6000   # continue, same result\n"
             "  torchrun --nproc-per-node 2 -m artforge train dcgan --data data/art --out runs/ddp")


class DCGANTrainer(ClassFolderGANTrainer):
    """Generator, discriminator, the generator's weight average (EMA) and two Adam optimisers."""

    family = FAMILY

    def __init__(self, opts: DCGANTrainOptions, ctx: Distributed):
        self.data = load_class_folder(opts, ctx)
        super().__init__(DCGANConfig(image_size=opts.size, num_classes=len(self.data.classes), z_dim=opts.z_dim,
                                     g_width=opts.g_width, d_width=opts.d_width, conditioning=opts.conditioning),
                         opts.batch_size)
        self.opts, self.ctx = opts, ctx
        torch.manual_seed(opts.seed)  # network initialisation
        self.G, self.D = Generator(self.config).to(ctx.device), Discriminator(self.config).to(ctx.device)
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        betas = (opts.beta1, opts.beta2)
        self.opt_G = torch.optim.Adam(self.G.parameters(), opts.lr, betas)
        self.opt_D = torch.optim.Adam(self.D.parameters(), opts.lr, betas)
        # D runs three forwards a step; broadcasting its BN buffers in between would break autograd
        self.G_train, self.D_train = ctx.wrap(self.G), ctx.wrap(self.D, broadcast_buffers=False)
        self.G_train.train(), self.D_train.train()

    def train_step(self, step: int) -> dict[str, float]:
        real, labels, z = batch_for_step(self.data, self.opts, step, self.ctx)
        losses = gan_step(self, real, labels, z, step_generator(self.opts.seed, step, stream=AUGMENT_STREAM))
        update_ema(self.G_ema, self.G, ema_decay_at(step, self.opts.ema_decay))
        return losses

    def before_outputs(self) -> None:
        recalibrate_batchnorm(self.G_ema, self.config, self.opts.seed)

    def write_samples(self, path: Path) -> None:
        write_samples(self.G_ema, self.config, path.with_suffix(".png"), self.opts.seed)

    @torch.no_grad()
    def quality_images(self, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """EMA generator images for uniformly drawn styles (as `artforge evaluate` asks), and real ones."""

        rng = np.random.default_rng(seed)
        inputs = generation_inputs(self.config.z_dim, rng.integers(0, self.config.num_classes, count), seed)
        device = self.ctx.device
        z, labels = torch.from_numpy(inputs["z"]).to(device), torch.from_numpy(inputs["style"][:, 0]).to(device)
        generated = torch.cat([unit_to_uint8(self.G_ema.eval()(z[i:i + 256], labels[i:i + 256])).cpu()
                               for i in range(0, count, 256)])
        return generated.numpy(), self.real_images(count, rng)


def batch_for_step(data: ImageFolder, opts: DCGANTrainOptions, step: int, ctx: Distributed):
    """This process's share of the global batch of `step`: real images in [-1, 1], labels, noise."""
    g = step_generator(opts.seed, step)
    index = data.draw(opts.batch_size, g, opts.balance_classes)
    z = torch.randn(opts.batch_size, opts.z_dim, generator=g)
    flip = torch.rand(opts.batch_size, generator=g) < 0.5
    mine = slice(ctx.rank, None, ctx.world_size)
    real = uint8_to_unit(data.images[index[mine]])
    if opts.flip:
        real = torch.where(flip[mine, None, None, None], real.flip(3), real)
    dev = ctx.device
    return real.to(dev), data.labels[index[mine]].to(dev), z[mine].to(dev)


def gan_step(trainer: DCGANTrainer, real, labels, z, g: torch.Generator) -> dict[str, float]:
    """One discriminator update, then one generator update (non-saturating loss on logits; with an
    auxiliary classifier, its class loss on real pictures for D and on generated ones for G). D sees
    every picture through --augment's random changes, drawn from `g`."""
    G, autocast, weight = trainer.G_train, trainer.ctx.autocast, trainer.opts.class_weight

    def D(images, labels):
        return trainer.D_train(diff_augment(images, trainer.opts.augment, g), labels)

    with autocast():
        fake = G(z, labels)
    # D: real -> 1, fake -> 0. Two backward passes, one per forward, so DDP reduces each once.
    trainer.opt_D.zero_grad(set_to_none=True)
    with autocast():
        d_real, class_real = D(real, labels)
    d_real = d_real.float()
    loss_real = F.binary_cross_entropy_with_logits(d_real, torch.ones_like(d_real))
    (loss_real + class_loss(class_real, labels, weight)).backward()
    with autocast():
        d_fake, class_fake = D(fake.detach(), labels)
    d_fake = d_fake.float()
    loss_fake = F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake))
    # the classifier learns classes from real pictures only (trained on generated ones too, as in AC-GAN's
    # paper, it rewards pictures that are easy to name); DDP wants every parameter in every backward
    (loss_fake + untouched(class_fake)).backward()
    trainer.opt_D.step()
    # G: make D call the fakes real, -log D(G(z)), through the updated D (and name them as asked)
    trainer.opt_G.zero_grad(set_to_none=True)
    with autocast():
        d_gen, class_gen = D(fake, labels)
    d_gen = d_gen.float()
    loss_G = F.binary_cross_entropy_with_logits(d_gen, torch.ones_like(d_gen))
    (loss_G + class_loss(class_gen, labels, weight)).backward()
    trainer.opt_G.step()
    return {"loss_d": (loss_real + loss_fake).item(), "loss_g": loss_G.item(),
            "d_real": torch.sigmoid(d_real).mean().item(), "d_fake": torch.sigmoid(d_fake).mean().item(),
            **class_accuracy("d_class_real", class_real, labels), **class_accuracy("d_class_fake", class_gen, labels)}


def untouched(tensor: torch.Tensor | None) -> torch.Tensor | float:
    """Zero that still depends on `tensor`, so DDP sees its parameters used in this backward pass."""
    return 0.0 if tensor is None else tensor.sum() * 0.0


@torch.no_grad()
def recalibrate_batchnorm(G_ema: nn.Module, config: DCGANConfig, seed: int, batches: int = 8, batch: int = 64) -> None:
    """Recompute the EMA generator's batch-norm statistics from its own activations.

    EMA weights with the live generator's running statistics do not match; re-estimating them
    (BigGAN's "standing statistics") makes eval-mode samples, and so the exported model, sharp.
    """
    device = next(G_ema.parameters()).device
    norms = [m for m in G_ema.modules() if isinstance(m, nn.BatchNorm2d)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
    G_ema.train()
    g = torch.Generator().manual_seed(seed + 7919)
    for _ in range(batches):
        z = torch.randn(batch, config.z_dim, generator=g).to(device)
        labels = torch.randint(config.num_classes, (batch,), generator=g).to(device)
        G_ema(z, labels)
    for m in norms:
        m.momentum = 0.1
    G_ema.eval()


def sample_grid_inputs(config: DCGANConfig, per_style: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed noise for sample grids: one row per style, the same noise in every row."""
    g = torch.Generator().manual_seed(seed + 104729)
    z = torch.randn(per_style, config.z_dim, generator=g).repeat(config.num_classes, 1)
    labels = torch.arange(config.num_classes).repeat_interleave(per_style)
    return z, labels


@torch.no_grad()
def write_samples(G_ema: nn.Module, config: DCGANConfig, path: Path, seed: int, per_style: int = 8) -> None:
    z, labels = sample_grid_inputs(config, per_style, seed)
    device = next(G_ema.parameters()).device
    images = unit_to_uint8(G_ema.eval()(z.to(device), labels.to(device))).cpu().numpy()
    save_png(make_grid(images, per_style), path, upscale=max(1, 128 // config.image_size))
