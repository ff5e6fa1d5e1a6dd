"""Conditional DCGAN training: alternating D and G updates, non-saturating loss on logits, EMA generator.

    train_dcgan(data="data/art", out="runs/dcgan", size=32, steps=2000)

Rank 0 writes everything in RUN: train_options.json, log.jsonl, samples/step_N.png, checkpoints/step_N/.
"""
from __future__ import annotations

import copy
import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from artforge.checkpoint import config_from_dict, find_latest_checkpoint, load_checkpoint, save_checkpoint
from artforge.errors import ArtforgeError
from artforge.imaging import make_grid, parse_colour, save_png, uint8_to_unit, unit_to_uint8
from artforge.models import load_weights
from artforge.models.dcgan import DCGANConfig, Discriminator, Generator
from artforge.training.common import (Distributed, RunLog, close_distributed, ema_decay_at, init_distributed,
                                      resolve_options, step_generator, update_ema, write_run_options)
from artforge.training.dataset import ImageFolder, load_image_folder

log = logging.getLogger(__name__)
FAMILY = "dcgan"
# options a resumed run may change; every other one must match the run being resumed
RESUMABLE_CHANGES = {"steps", "sample_every", "checkpoint_every", "keep", "device", "progress", "resume", "data", "out"}


@dataclass
class DCGANTrainOptions:
    """Everything that defines a DCGAN run; written to RUN/train_options.json."""

    out: str
    data: str = ""
    size: int = 32
    steps: int = 2000
    batch_size: int = 64
    seed: int = 0
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    ema_decay: float = 0.999
    z_dim: int = 100
    g_width: int = 64
    d_width: int = 64
    bf16: bool = False
    flip: bool = True
    fit: str = "crop"  # how an image becomes a square sample: "crop" (centre) or "pad" (letterboxed)
    background: str = "white"  # what transparent areas and padding become
    sample_every: int = 250
    checkpoint_every: int = 500
    keep: int = 3
    device: str = "auto"
    resume: bool = False
    progress: bool = True


@dataclass
class GANState:
    """The networks and optimisers of a run, and the step they have reached."""

    G: nn.Module
    D: nn.Module
    G_ema: nn.Module
    opt_G: torch.optim.Optimizer
    opt_D: torch.optim.Optimizer
    step: int = 0

    def to_tree(self) -> dict[str, Any]:
        return {"G": self.G.state_dict(), "D": self.D.state_dict(), "G_ema": self.G_ema.state_dict(),
                "opt_G": self.opt_G.state_dict(), "opt_D": self.opt_D.state_dict(),
                "torch_rng": torch.get_rng_state(), "step": self.step}

    def load_tree(self, tree: dict[str, Any], where: str) -> None:
        for name in ("G", "D", "G_ema"):
            load_weights(getattr(self, name), tree[name], f"{where} ({name})")
        self.opt_G.load_state_dict(tree["opt_G"])
        self.opt_D.load_state_dict(tree["opt_D"])
        torch.set_rng_state(tree["torch_rng"])
        self.step = int(tree["step"])


def train_dcgan(**kwargs: Any) -> Path:
    """Train (or with resume=True continue) a conditional DCGAN; returns the last checkpoint's path.

    Pass only the options you choose; with resume=True the others come from the run's saved options.
    """
    opts = resolve_options(kwargs, DCGANTrainOptions, RESUMABLE_CHANGES)
    ctx = init_distributed(opts.device)
    try:
        return run_training(opts, ctx)
    finally:
        close_distributed(ctx)


def run_training(opts: DCGANTrainOptions, ctx: Distributed) -> Path:
    run = Path(opts.out)
    if not opts.data:
        raise ArtforgeError("--data is required: a folder with one subfolder of images per style")
    if opts.batch_size % ctx.world_size:
        raise ArtforgeError(f"--batch-size {opts.batch_size} must divide among {ctx.world_size} processes")
    data = load_image_folder(Path(opts.data), opts.size, progress=opts.progress and ctx.is_main, fit=opts.fit,
                             background=parse_colour(opts.background))
    config = DCGANConfig(image_size=opts.size, num_classes=len(data.classes), z_dim=opts.z_dim,
                         g_width=opts.g_width, d_width=opts.d_width)
    state = build_state(config, opts, ctx.device)
    if opts.resume:
        restore_state(state, run, config, data)
    if ctx.is_main:
        write_run_options(run, opts)
    wrapped = wrap_for_ddp(state, ctx)
    return training_loop(opts, ctx, state, wrapped, data, config)


def build_state(config: DCGANConfig, opts: DCGANTrainOptions, device: torch.device) -> GANState:
    torch.manual_seed(opts.seed)  # network initialisation
    G, D = Generator(config).to(device), Discriminator(config).to(device)
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    betas = (opts.beta1, opts.beta2)
    return GANState(G, D, G_ema, torch.optim.Adam(G.parameters(), opts.lr, betas),
                    torch.optim.Adam(D.parameters(), opts.lr, betas))


def restore_state(state: GANState, run: Path, config: DCGANConfig, data: ImageFolder) -> None:
    latest = find_latest_checkpoint(run)
    if latest is None:
        raise ArtforgeError(f"--resume: run folder {run} has no checkpoint yet; start it without --resume")
    checkpoint = load_checkpoint(latest, expect_family=FAMILY)
    saved_config = config_from_dict(DCGANConfig, checkpoint.meta["config"], str(latest))
    if saved_config != config:
        raise ArtforgeError(f"--resume: checkpoint {latest} has config {saved_config}, "
                            f"but these options and data give {config}")
    if checkpoint.meta.get("classes") != data.classes:
        raise ArtforgeError(f"--resume: checkpoint {latest} was trained on styles {checkpoint.meta.get('classes')}, "
                            f"the data folder has {data.classes}")
    state.load_tree(checkpoint.training_state(), str(latest))
    log.info("resumed %s at step %d", run, state.step)


def wrap_for_ddp(state: GANState, ctx: Distributed) -> tuple[nn.Module, nn.Module]:
    if not ctx.enabled:
        return state.G, state.D
    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    # D runs three forwards a step; broadcasting its BN buffers in between would break autograd
    return (DistributedDataParallel(state.G, device_ids=ids),
            DistributedDataParallel(state.D, device_ids=ids, broadcast_buffers=False))


def batch_for_step(data: ImageFolder, opts: DCGANTrainOptions, step: int, ctx: Distributed):
    """This process's share of the global batch of `step`: real images in [-1, 1], labels, noise."""
    g = step_generator(opts.seed, step)
    index = torch.randint(len(data), (opts.batch_size,), generator=g)
    z = torch.randn(opts.batch_size, opts.z_dim, generator=g)
    flip = torch.rand(opts.batch_size, generator=g) < 0.5
    mine = slice(ctx.rank, None, ctx.world_size)
    real = uint8_to_unit(data.images[index[mine]])
    if opts.flip:
        real = torch.where(flip[mine, None, None, None], real.flip(3), real)
    dev = ctx.device
    return real.to(dev), data.labels[index[mine]].to(dev), z[mine].to(dev)


def train_step(state: GANState, G: nn.Module, D: nn.Module, real, labels, z, bf16: bool) -> dict[str, float]:
    """One discriminator update, then one generator update (non-saturating loss on logits)."""
    autocast = torch.autocast(real.device.type, dtype=torch.bfloat16, enabled=bf16)
    with autocast:
        fake = G(z, labels)
    # D: real -> 1, fake -> 0. Two backward passes, one per forward, so DDP reduces each once.
    state.opt_D.zero_grad(set_to_none=True)
    with autocast:
        d_real = D(real, labels).float()
    loss_real = F.binary_cross_entropy_with_logits(d_real, torch.ones_like(d_real))
    loss_real.backward()
    with autocast:
        d_fake = D(fake.detach(), labels).float()
    loss_fake = F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake))
    loss_fake.backward()
    state.opt_D.step()
    # G: make D call the fakes real, -log D(G(z)), through the updated D
    state.opt_G.zero_grad(set_to_none=True)
    with autocast:
        d_gen = D(fake, labels).float()
    loss_G = F.binary_cross_entropy_with_logits(d_gen, torch.ones_like(d_gen))
    loss_G.backward()
    state.opt_G.step()
    return {"loss_d": (loss_real + loss_fake).item(), "loss_g": loss_G.item(),
            "d_real": torch.sigmoid(d_real).mean().item(), "d_fake": torch.sigmoid(d_fake).mean().item()}


def training_loop(opts, ctx: Distributed, state: GANState, wrapped, data: ImageFolder, config: DCGANConfig) -> Path:
    run = Path(opts.out)
    G, D = wrapped
    G.train(), D.train()
    history = RunLog(run / "log.jsonl", resume_step=state.step) if ctx.is_main else None
    bar = tqdm(total=opts.steps, initial=state.step, desc="dcgan", unit="step", mininterval=0.5,
               disable=not (opts.progress and ctx.is_main))
    last = find_latest_checkpoint(run)
    tick = time.perf_counter()
    while state.step < opts.steps:
        real, labels, z = batch_for_step(data, opts, state.step, ctx)
        losses = train_step(state, G, D, real, labels, z, opts.bf16)
        update_ema(state.G_ema, state.G, ema_decay_at(state.step, opts.ema_decay))
        state.step += 1
        now = time.perf_counter()
        record = {"step": state.step, **losses, "images_per_s": opts.batch_size / max(now - tick, 1e-9)}
        tick = now
        bar.update(1)
        bar.set_postfix(loss_d=f"{losses['loss_d']:.3f}", loss_g=f"{losses['loss_g']:.3f}",
                        img_s=f"{record['images_per_s']:.0f}", refresh=False)  # redrawn at mininterval
        if not ctx.is_main:
            continue
        history.write(record)
        done = state.step == opts.steps
        if done or state.step % opts.sample_every == 0 or state.step % opts.checkpoint_every == 0:
            recalibrate_batchnorm(state.G_ema, config, opts.seed)
        if done or state.step % opts.sample_every == 0:
            write_samples(state.G_ema, config, run / "samples" / f"step_{state.step:08d}.png", opts.seed)
        if done or state.step % opts.checkpoint_every == 0:
            last = save_checkpoint(run, family=FAMILY, config=config, step=state.step,
                                   weights=state.G_ema.state_dict(), training_state=state.to_tree(),
                                   extra=checkpoint_facts(opts, data), keep=opts.keep)
    bar.close()
    return last


def checkpoint_facts(opts: DCGANTrainOptions, data: ImageFolder) -> dict[str, Any]:
    return {"classes": data.classes, "dataset": data.describe(), "seed": opts.seed,
            "training": dataclasses.asdict(opts), "normalization": {"range": [-1, 1], "layout": "NCHW"}}


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
