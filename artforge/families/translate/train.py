"""CycleGAN training: two generators, two PatchGAN discriminators, least-squares GAN loss, cycle and
identity losses, and a history pool of generated images per domain (Zhu et al. 2017).

    train_translate(domain_a="photos", domain_b="paintings/", out="runs/translate", steps=3000)

A domain is a folder of images (subfolders are fine), `photos` (crops of the scikit-image photos,
two held out) or `procedural:STYLE` (that procedural art style, painted into RUN). Every random draw
of a step, the history pools' included, comes from (seed, step), and the pools travel with the
checkpoint: a resumed run matches an uninterrupted one. A share of each domain is held out for
`artforge evaluate` (FD/KID to the target domain, cycle error).
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
from artforge.families.translate import NAME as FAMILY
from artforge.families.translate.network import TranslateConfig, TranslateNet, domain_discriminator
from artforge.image_folders import split_image_folder
from artforge.imaging import make_grid, parse_colour, save_png, uint8_to_unit, unit_to_uint8
from artforge.options import RunControl, option, with_defaults
from artforge.photos import photo_crops
from artforge.training.distributed import Distributed, step_generator
from artforge.training.loop import FamilyTrainer, TrainCommand, train
from artforge.training.run_options import RUN_CONTROL_CHANGES, resolve_options
from artforge.training.synth import STYLES, paint

log = logging.getLogger(__name__)
RESUMABLE_CHANGES = RUN_CONTROL_CHANGES | {"domain_a", "domain_b"}
PHOTOS, PROCEDURAL = "photos", "procedural:"
HELD_OUT_IMAGES = 64


@dataclass
@with_defaults(steps=3000)
class TranslateTrainOptions(RunControl):
    """Everything that defines a translation run; written to RUN/train_options.json."""

    out: str = option(help="run folder for checkpoints, samples and logs", required=True)
    domain_a: str = option(PHOTOS, help="domain A: a folder of images, 'photos' (scikit-image photos) or "
                                        "'procedural:STYLE' (e.g. procedural:waves)")
    domain_b: str = option("procedural:waves", help="domain B, the same kinds as --domain-a")
    size: int = option(64, help="side of the square training crops (a multiple of 4)")
    batch_size: int = option(4, help="images of each domain per step, split among processes")
    lr: float = option(2e-4, help="Adam learning rate of generators and discriminators")
    cycle_weight: float = option(10.0, help="weight of the cycle losses |G_BA(G_AB(a)) - a| and |G_AB(G_BA(b)) - b|")
    identity_weight: float = option(0.5, help="identity loss weight, as a share of --cycle-weight")
    pool_size: int = option(50, help="generated images kept per domain; discriminators see a mix of old and new")
    width: int = option(32, help="generator width")
    blocks: int = option(6, help="generator residual blocks")
    pool: int = option(1000, help="images drawn for a 'photos' or 'procedural' domain")
    held_out: float = option(0.1, help="with a folder: share of its images held out, never trained on")
    bf16: bool = option(False, help="bfloat16 autocast (fast on CPUs with AMX and on GPUs)")
    fit: str = option("crop", help="how a folder image becomes a square: crop (centre) or pad", choices=["crop", "pad"])
    background: str = option("white", help="colour for transparent areas and padding: a name, #rrggbb or r,g,b")


def train_translate(**kwargs: Any) -> Path:
    """Train (or with resume=True continue) a CycleGAN; returns the last checkpoint's path."""
    opts = resolve_options(kwargs, TranslateTrainOptions, RESUMABLE_CHANGES)
    if opts.size < 32 or opts.size % 4:  # the PatchGAN's last normalised map needs 32 px to be wider than 1
        raise ArtforgeError(f"--size {opts.size} must be at least 32 and a multiple of 4")
    return train(TranslateTrainer, opts)


COMMAND = TrainCommand(
    TranslateTrainOptions, train_translate, help="train an unpaired style converter (CycleGAN) between two domains",
    description="Train two generators (A->B, B->A) and two PatchGANs on two unpaired image sets, with cycle and\n"
                "identity losses. RUN gets samples/step_N.png (held-out rows: A, A->B, B, B->A), log.jsonl and\n"
                "checkpoints/step_N/ holding both directions.",
    examples="  artforge train translate --out runs/translate                # photos <-> procedural waves\n"
             "  artforge train translate --domain-a photos/ --domain-b paintings/ --out runs/translate --size 128\n"
             "  artforge evaluate runs/translate --out eval/   # FD/KID to the target domain, cycle error")


def domain_images(domain: str, opts: TranslateTrainOptions, salt: int,
                  progress: bool) -> tuple[torch.Tensor, np.ndarray, dict]:
    """(training images (N, 3, S, S) uint8, held-out (M, S, S, 3) uint8, a description) of one domain."""
    size, seed = opts.size, opts.seed + salt
    if domain == PHOTOS:
        train_part = torch.from_numpy(photo_crops(opts.pool, size, size, seed)).permute(0, 3, 1, 2).contiguous()
        return train_part, photo_crops(HELD_OUT_IMAGES, size, size, seed + 1, held_out=True), {"source": "photos"}
    if domain.startswith(PROCEDURAL):
        return procedural_domain(domain[len(PROCEDURAL):], opts.pool, size, seed)

    return split_image_folder(Path(domain), size, opts.held_out, seed, HELD_OUT_IMAGES, progress, opts.fit,
                              parse_colour(opts.background))


def procedural_domain(style: str, count: int, size: int, seed: int) -> tuple[torch.Tensor, np.ndarray, dict]:
    if style not in STYLES:
        raise ArtforgeError(f"unknown procedural style '{style}'; choose from {list(STYLES)}")
    images = np.stack([np.asarray(paint(style, size, seed, i)) for i in range(count + HELD_OUT_IMAGES)])
    return (torch.from_numpy(images[:count]).permute(0, 3, 1, 2).contiguous(), images[count:],
            {"source": f"procedural {style}", "images": count})


class HistoryPool:
    """Up to `size` generated images; a query returns, per image, the new one or (half the time, once
    full) a stored one that the new one replaces. Shrivastava et al. 2017, as CycleGAN uses it."""

    def __init__(self, size: int):
        self.size, self.images = size, None

    def query(self, images: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        if self.size == 0:
            return images
        images = images.detach()
        out = []
        for image in images:
            stored = 0 if self.images is None else len(self.images)
            swap, slot = torch.rand(1, generator=g).item() < 0.5, int(torch.randint(max(stored, 1), (1,), generator=g))
            if stored < self.size:
                self.images = image[None].clone() if self.images is None else torch.cat([self.images, image[None]])
                out.append(image)
            elif swap:
                out.append(self.images[slot].clone())
                self.images[slot] = image
            else:
                out.append(image)
        return torch.stack(out)

    def state(self) -> torch.Tensor:
        return torch.empty(0) if self.images is None else self.images.cpu()

    def load(self, images: torch.Tensor, device: torch.device) -> None:
        self.images = images.to(device) if len(images) else None


class CycleForward(nn.Module):
    """Every generator pass of a step in one forward, so DistributedDataParallel sees one forward and
    one backward: (fake_b, fake_a, rec_a, rec_b, idt_a, idt_b)."""

    def __init__(self, net: TranslateNet):
        super().__init__()
        self.net = net

    def forward(self, real_a: torch.Tensor, real_b: torch.Tensor):
        fake_b, fake_a = self.net.a_to_b(real_a), self.net.b_to_a(real_b)
        return (fake_b, fake_a, self.net.b_to_a(fake_b), self.net.a_to_b(fake_a),
                self.net.b_to_a(real_a), self.net.a_to_b(real_b))


class TranslateTrainer(FamilyTrainer):
    """Both generators (one network), both discriminators, their optimisers and history pools."""

    family = FAMILY

    def __init__(self, opts: TranslateTrainOptions, ctx: Distributed):
        ctx.check_batch(opts.batch_size)
        progress = opts.progress and ctx.is_main
        self.a, self.held_a, facts_a = domain_images(opts.domain_a, opts, 0, progress)
        self.b, self.held_b, facts_b = domain_images(opts.domain_b, opts, 1000, progress)
        self.data_facts = {"a": facts_a, "b": facts_b}
        super().__init__(TranslateConfig(opts.width, opts.blocks), opts.batch_size)
        self.opts, self.ctx = opts, ctx
        torch.manual_seed(opts.seed)
        self.net = TranslateNet(self.config).to(ctx.device)
        self.D_a, self.D_b = domain_discriminator().to(ctx.device), domain_discriminator().to(ctx.device)
        self.opt_G = torch.optim.Adam(self.net.parameters(), opts.lr, (0.5, 0.999))
        self.opt_D = torch.optim.Adam([*self.D_a.parameters(), *self.D_b.parameters()], opts.lr, (0.5, 0.999))
        self.cycle = ctx.wrap(CycleForward(self.net))
        self.D_a_train, self.D_b_train = ctx.wrap(self.D_a), ctx.wrap(self.D_b)
        self.pool_a, self.pool_b = HistoryPool(opts.pool_size), HistoryPool(opts.pool_size)
        self.cycle.train(), self.D_a_train.train(), self.D_b_train.train()

    def state(self) -> dict[str, nn.Module | torch.optim.Optimizer]:
        return {"net": self.net, "D_a": self.D_a, "D_b": self.D_b, "opt_G": self.opt_G, "opt_D": self.opt_D}

    def training_state(self, step: int) -> dict[str, Any]:
        return {**super().training_state(step), "pool_a": self.pool_a.state(), "pool_b": self.pool_b.state()}

    def load_training_state(self, tree: dict[str, Any], where: str) -> int:
        step = super().load_training_state(tree, where)
        self.pool_a.load(tree["pool_a"], self.ctx.device)
        self.pool_b.load(tree["pool_b"], self.ctx.device)
        return step

    def train_step(self, step: int) -> dict[str, float]:
        real_a, real_b, g = self.batch_for_step(step)
        opts, autocast = self.opts, self.ctx.autocast
        with autocast():
            fake_b, fake_a, rec_a, rec_b, idt_a, idt_b = self.cycle(real_a, real_b)
            # the discriminators judge without gradient sync: G's step leaves their weights alone
            adversarial = ((self.D_b(fake_b).float() - 1) ** 2).mean() + ((self.D_a(fake_a).float() - 1) ** 2).mean()
        cycle = F.l1_loss(rec_a.float(), real_a) + F.l1_loss(rec_b.float(), real_b)
        identity = F.l1_loss(idt_a.float(), real_a) + F.l1_loss(idt_b.float(), real_b)
        self.opt_G.zero_grad(set_to_none=True)
        (adversarial + opts.cycle_weight * cycle + opts.identity_weight * opts.cycle_weight * identity).backward()
        self.opt_G.step()
        loss_d = self.discriminator_step(real_a, real_b, self.pool_a.query(fake_a, g), self.pool_b.query(fake_b, g))
        return {"loss_gan": adversarial.item(), "loss_cycle": cycle.item(), "loss_identity": identity.item(),
                "loss_d": loss_d}

    def discriminator_step(self, real_a, real_b, fake_a, fake_b) -> float:
        """Real patches -> 1, generated ones -> 0, both domains; real and fake in one batch (instance norm
        is per image, so they do not mix)."""
        self.opt_D.zero_grad(set_to_none=True)
        total = 0.0
        for D, real, fake in ((self.D_a_train, real_a, fake_a), (self.D_b_train, real_b, fake_b)):
            with self.ctx.autocast():
                scores = D(torch.cat([real, fake.detach()])).float()
            n = len(real)
            loss = 0.5 * ((scores[:n] - 1) ** 2).mean() + 0.5 * (scores[n:] ** 2).mean()
            loss.backward()
            total += loss.item()
        self.opt_D.step()
        return total

    def batch_for_step(self, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Generator]:
        """This process's share of both domains' images at `step`, in [-1, 1], flipped at random."""
        g = step_generator(self.opts.seed, step)
        n = self.opts.batch_size
        index_a, index_b = torch.randint(len(self.a), (n,), generator=g), torch.randint(len(self.b), (n,), generator=g)
        flip = torch.rand(2, n, generator=g) < 0.5
        mine = slice(self.ctx.rank, None, self.ctx.world_size)

        def take(images, index, flips):
            x = uint8_to_unit(images[index[mine]])
            return torch.where(flips[mine, None, None, None], x.flip(3), x).to(self.ctx.device)

        return take(self.a, index_a, flip[0]), take(self.b, index_b, flip[1]), g

    @torch.no_grad()
    def write_samples(self, path: Path) -> None:
        self.net.eval()
        dev = self.ctx.device
        a = uint8_to_unit(torch.from_numpy(self.held_a[:8]).permute(0, 3, 1, 2)).to(dev)
        b = uint8_to_unit(torch.from_numpy(self.held_b[:8]).permute(0, 3, 1, 2)).to(dev)
        rows = [self.held_a[:8], unit_to_uint8(self.net.a_to_b(a)).cpu().numpy(),
                self.held_b[:8], unit_to_uint8(self.net.b_to_a(b)).cpu().numpy()]
        self.net.train()
        save_png(make_grid(np.concatenate(rows), 8), path.with_suffix(".png"), upscale=max(1, 128 // self.opts.size))

    def inference_weights(self) -> dict[str, torch.Tensor]:
        return self.net.state_dict()

    def checkpoint_facts(self) -> dict[str, Any]:
        return {"domains": [domain_name(self.opts.domain_a), domain_name(self.opts.domain_b)],
                "dataset": self.data_facts, "seed": self.opts.seed, "training": dataclasses.asdict(self.opts)}


def domain_name(domain: str) -> str:
    """A short name for a domain: 'photos', 'waves', or the folder's name."""
    if domain.startswith(PROCEDURAL):
        return domain[len(PROCEDURAL):]
    return domain if domain == PHOTOS else Path(domain).name or str(domain)
