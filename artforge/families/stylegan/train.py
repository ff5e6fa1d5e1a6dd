"""StyleGAN2 training: non-saturating logistic loss, lazy R1, style mixing, EMA generator, DiffAugment.

    train_stylegan(data="data/art", out="runs/stylegan", size=32, steps=2000)

The recipe is StyleGAN2-ADA's small-data configuration with DiffAugment in place of ADA: Adam
(lr 0.0025, betas 0 / 0.99), R1 on real images every 16 steps with gamma = 0.0002 * size^2 / batch
(the ADA paper's heuristic), style mixing with probability 0.9, generator weights averaged with a
half-life of 10,000 images (ramped up over the first images), no path-length regularisation (ADA
drops it for small images too). Rank 0 writes RUN as every family does.
"""
from __future__ import annotations

import copy
import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from artforge.families.stylegan import NAME as FAMILY
from artforge.families.stylegan import generate_images
from artforge.training.augment import diff_augment
from artforge.families.stylegan.network import PADDINGS, Discriminator, Generator, StyleGANConfig
from artforge.evaluation.metrics import ImageQualityJudge
from artforge.imaging import make_grid, save_png, uint8_to_unit
from artforge.options import option, with_defaults
from artforge.training.distributed import Distributed, step_generator
from artforge.training.ema import update_ema
from artforge.training.run_options import RUN_CONTROL_CHANGES, resolve_options
from artforge.training.conditioning import class_accuracy, class_loss
from artforge.training.image_gan import ClassFolderGANTrainer, ClassGANOptions, load_class_folder
from artforge.training.loop import TrainCommand, train

log = logging.getLogger(__name__)
RESUMABLE_CHANGES = RUN_CONTROL_CHANGES | {"data", "eval_every", "eval_count"}
R1_EVERY = 16  # lazy regularisation: the penalty every 16 steps, scaled by 16


@dataclass
@with_defaults(sample_every=250, augment="diffaugment")
class StyleGANTrainOptions(ClassGANOptions):
    """Everything that defines a StyleGAN2 run; written to RUN/train_options.json."""

    out: str = option(help="run folder for checkpoints, samples and logs", required=True)
    size: int = option(32, help="image side in pixels", choices=[16, 32, 64, 128])
    batch_size: int = option(32, help="global batch size, split among processes")
    lr: float = option(0.0025, help="Adam learning rate of both players (the mapping network runs at 1/100 of it)")
    r1_gamma: float | None = option(None, help="R1 penalty weight (default 0.0002 * size^2 / batch-size)")
    mixing: float = option(0.9, help="share of generator batches trained with two latents (style mixing)")
    ema_kimg: float = option(10.0, help="half-life of the generator's weight average, in thousands of images")
    z_dim: int = option(128, help="latent dimensions")
    w_dim: int = option(128, help="style (w) dimensions")
    mapping_layers: int = option(4, help="mapping network depth (the paper: 8)")
    channel_base: int = option(1024, help="channels at resolution r: min(channel-max, channel-base / r); the "
                                          "default fits a laptop CPU, a GPU takes 4096 / 256")
    channel_max: int = option(128, help="most channels at any resolution")
    padding: str = option("zeros", help="how the 3x3 convolutions fill the border: zeros (the paper's), or reflect "
                                        "(mirror the image): no frame around samples and more variety within a "
                                        "style, but weaker layouts; better without --augment, worse with it "
                                        "(docs/families/stylegan.md)", choices=list(PADDINGS))


def train_stylegan(**kwargs: Any) -> Path:
    """Train (or with resume=True continue) a StyleGAN2; returns the last checkpoint's path."""
    opts = resolve_options(kwargs, StyleGANTrainOptions, RESUMABLE_CHANGES)
    if opts.r1_gamma is None:  # saved filled in, so a resume keeps it
        opts = dataclasses.replace(opts, r1_gamma=0.0002 * opts.size ** 2 / opts.batch_size)
    return train(StyleGANTrainer, opts, ImageQualityJudge)


COMMAND = TrainCommand(
    StyleGANTrainOptions, train_stylegan, help="train a class-conditional StyleGAN2 (the DCGAN's upgrade)",
    description="Train StyleGAN2 on a folder with one subfolder of images per style, with DiffAugment for small\n"
                "data sets (a few hundred images). RUN gets samples/step_N.png (one row per style),\n"
                "log.jsonl, checkpoints/step_N/ (safetensors + JSON) and train_options.json.",
    examples="  artforge train stylegan --data data/art --out runs/stylegan --size 32 --steps 3000\n"
             "  artforge train stylegan --data data/art --out runs/sg --eval-every 500   # FD/KID curve\n"
             "  artforge train stylegan --out runs/stylegan --resume --steps 6000        # continue, same result")


class StyleGANTrainer(ClassFolderGANTrainer):
    """Generator, discriminator, the generator's weight average (EMA) and two Adam optimisers.

    Gradients are averaged across processes by hand (Distributed.average_gradients), not by DDP:
    the R1 penalty differentiates a gradient, which DDP's hooks do not support.
    """

    family = FAMILY

    def __init__(self, opts: StyleGANTrainOptions, ctx: Distributed):
        self.data = load_class_folder(opts, ctx)
        super().__init__(StyleGANConfig(opts.size, len(self.data.classes), opts.z_dim, opts.w_dim, opts.mapping_layers,
                                        opts.channel_base, opts.channel_max, opts.padding, opts.conditioning),
                         opts.batch_size)
        self.opts, self.ctx = opts, ctx
        torch.manual_seed(opts.seed)
        self.G, self.D = Generator(self.config).to(ctx.device), Discriminator(self.config).to(ctx.device)
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        self.opt_G = torch.optim.Adam(self.G.parameters(), opts.lr, betas=(0.0, 0.99), eps=1e-8)
        ratio = R1_EVERY / (R1_EVERY + 1)  # lazy regularisation: D's Adam adjusted as in StyleGAN2
        self.opt_D = torch.optim.Adam(self.D.parameters(), opts.lr * ratio, betas=(0.0, 0.99 ** ratio), eps=1e-8)

    def train_step(self, step: int) -> dict[str, float]:
        g = step_generator(self.opts.seed, step)
        real, labels = self.real_batch(g)
        report = self.discriminator_step(real, labels, g, regularise=step % R1_EVERY == 0)
        report.update(self.generator_step(labels, g))
        update_ema(self.G_ema, self.G, self.ema_beta(step))
        if (step + 1) % self.opts.checkpoint_every == 0 or step + 1 == self.opts.steps:  # every process is here
            self.ctx.check_in_step(self.G_ema, "generator")
        return report

    def real_batch(self, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """This process's share of the step's real images (flipped at random) in [-1, 1] and their labels."""
        b = self.opts.batch_size
        index = self.data.draw(b, g, self.opts.balance_classes)
        flip = torch.rand(b, generator=g) < 0.5
        mine = slice(self.ctx.rank, None, self.ctx.world_size)
        real = uint8_to_unit(self.data.images[index[mine]])
        real = torch.where(flip[mine, None, None, None], real.flip(3), real)
        return real.to(self.ctx.device), self.data.labels[index[mine]].to(self.ctx.device)

    def fake_batch(self, labels: torch.Tensor, g: torch.Generator, G: nn.Module) -> torch.Tensor:
        """Generated images for `labels`, with per-layer noise and (for a `mixing` share) a second latent
        taking over from a random layer: style mixing, so neighbouring layers' styles stay independent."""
        b, config, dev = self.opts.batch_size, self.config, self.ctx.device
        z, z_mix = torch.randn(b, config.z_dim, generator=g), torch.randn(b, config.z_dim, generator=g)
        noise = torch.randn(b, config.noise_size, generator=g)
        mixed = torch.rand(b, generator=g) < self.opts.mixing
        cut = torch.randint(1, config.num_ws, (b,), generator=g)
        mix_from = torch.where(mixed, cut, torch.full_like(cut, config.num_ws))
        mine = slice(self.ctx.rank, None, self.ctx.world_size)
        with self.ctx.autocast():
            return G(z[mine].to(dev), labels, noise[mine].to(dev), None, z_mix[mine].to(dev), mix_from[mine].to(dev))

    def discriminate(self, images: torch.Tensor, labels: torch.Tensor,
                     g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor | None]:
        """D's real/fake logits and class logits (None without a classifier) for augmented `images`."""
        with self.ctx.autocast():
            logits, classes = self.D(diff_augment(images, self.opts.augment, g), labels)
        return logits.float(), classes

    def discriminator_step(self, real, labels, g, regularise: bool) -> dict[str, float]:
        with torch.no_grad():
            fake = self.fake_batch(labels, g, self.G)
        self.opt_D.zero_grad(set_to_none=True)
        real = real.detach().requires_grad_(regularise)
        (d_real, class_real), (d_fake, _) = self.discriminate(real, labels, g), self.discriminate(fake.float(),
                                                                                                 labels, g)
        loss = F.softplus(d_fake).mean() + F.softplus(-d_real).mean()
        report = {"loss_d": loss.item(), "d_real": d_real.mean().item(), "d_fake": d_fake.mean().item()}
        # the classifier learns classes from real pictures only (on generated ones too, as in AC-GAN's
        # paper, it would reward pictures that are easy to name)
        loss = loss + class_loss(class_real, labels, self.opts.class_weight)
        report.update(class_accuracy("d_class_real", class_real, labels))
        if regularise:  # R1: the gradient's squared norm on real images, pushing D to be flat there
            (grad,) = torch.autograd.grad(d_real.sum(), real, create_graph=True)
            penalty = grad.square().sum(dim=(1, 2, 3)).mean()
            loss = loss + penalty * (self.opts.r1_gamma / 2 * R1_EVERY)
            report["r1"] = penalty.item()
        loss.backward()
        self.ctx.average_gradients(self.D)
        self.opt_D.step()
        return report

    def generator_step(self, labels, g) -> dict[str, float]:
        self.opt_G.zero_grad(set_to_none=True)
        fake = self.fake_batch(labels, g, self.G)
        d_fake, class_fake = self.discriminate(fake.float(), labels, g)
        loss = F.softplus(-d_fake).mean()  # non-saturating
        (loss + class_loss(class_fake, labels, self.opts.class_weight)).backward()
        self.ctx.average_gradients(self.G)
        self.opt_G.step()
        return {"loss_g": loss.item(), **class_accuracy("d_class_fake", class_fake, labels)}

    def ema_beta(self, step: int) -> float:
        """Weight kept by the average per step: a half-life of ema_kimg thousand images, shorter at first
        (at most 5% of the images seen so far) so the average does not hold on to the initialisation."""
        seen = (step + 1) * self.opts.batch_size
        half_life = min(self.opts.ema_kimg * 1000, seen * 0.05)
        return 0.5 ** (self.opts.batch_size / max(half_life, 1e-8))

    def before_outputs(self) -> None:
        compute_style_centres(self.G_ema, self.config, self.opts.seed)

    def write_samples(self, path: Path) -> None:
        per_style, classes = 8, self.config.num_classes
        labels = np.repeat(np.arange(classes), per_style)
        # one seed per column: the same latents in every style's row
        images = np.concatenate([generate_images(self.G_ema, self.config, labels[i * per_style:(i + 1) * per_style],
                                                 self.opts.seed + 104729) for i in range(classes)])
        save_png(make_grid(images, per_style), path.with_suffix(".png"), upscale=max(1, 128 // self.config.image_size))

    def quality_images(self, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """EMA generator images for uniformly drawn styles (as `artforge evaluate` asks), and real ones."""
        compute_style_centres(self.G_ema, self.config, self.opts.seed)
        rng = np.random.default_rng(seed)
        generated = generate_images(self.G_ema, self.config, rng.integers(0, self.config.num_classes, count), seed)
        return generated, self.real_images(count, rng)


@torch.no_grad()
def compute_style_centres(G: Generator, config: StyleGANConfig, seed: int, per_class: int = 2048) -> None:
    """Set the mapping network's w_avg to each class's mean w over fixed latents: the truncation centre
    of exactly these weights (the paper tracks a running mean of the live generator instead)."""
    g = torch.Generator().manual_seed(seed + 15485863)
    device = G.mapping.w_avg.device
    for label in range(config.num_classes):
        z = torch.randn(per_class, config.z_dim, generator=g).to(device)
        G.mapping.w_avg[label] = G.mapping(z, torch.full((per_class,), label, device=device)).mean(dim=0)
