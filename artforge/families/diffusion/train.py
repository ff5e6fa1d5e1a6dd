"""Class-conditional diffusion training: the denoising objective on a class folder, EMA weights, label
dropout for classifier-free guidance.

    train_diffusion(data="data/art", out="runs/diffusion", size=32, steps=4000)

Each step draws pictures, timesteps and noise; the network learns to predict v (or the noise) of the
noised pictures, with each label replaced by the null class one time in ten, so that the same network
also draws without a class (what guidance pushes away from). The schedule is the one the served
sampler uses (artforge/serving/denoising.py, checked against diffusers'). Rank 0 writes everything in
RUN: train_options.json, log.jsonl, samples/step_N.png (one row per class), checkpoints/step_N/.
`--diffusers-out DIR` also writes the result as a diffusers folder (DDIMPipeline: unet/ + scheduler/).
"""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from artforge.contract import DenoisingLoop
from artforge.errors import ArtforgeError
from artforge.evaluation.metrics import ImageQualityJudge
from artforge.families.diffusion import NAME as FAMILY
from artforge.families.diffusion import DiffusionSpec
from artforge.families.diffusion.network import PREDICTIONS, Denoiser, DiffusionConfig
from artforge.imaging import make_grid, save_png, uint8_to_unit
from artforge.options import option, with_defaults
from artforge.registry import load_network
from artforge.serving import denoising
from artforge.serving.generators import torch_denoiser
from artforge.training.distributed import Distributed, step_generator
from artforge.training.ema import ema_decay_at, update_ema
from artforge.training.image_gan import ClassFolderOptions, ClassFolderTrainer, load_class_folder
from artforge.training.loop import TrainCommand, train
from artforge.training.run_options import RUN_CONTROL_CHANGES, resolve_options

RESUMABLE_CHANGES = RUN_CONTROL_CHANGES | {"data", "eval_every", "eval_count", "diffusers_out"}
WARMUP_STEPS = 200
SAMPLE_STEPS, SAMPLE_GUIDANCE = 20, 2.0  # how samples and --eval-every pictures are drawn (DPM-Solver++ 2M)


@dataclass
@with_defaults(sample_every=1000)
class DiffusionTrainOptions(ClassFolderOptions):
    """Everything that defines a diffusion run; written to RUN/train_options.json."""

    out: str = option(help="run folder for checkpoints, samples and logs", required=True)
    size: int = option(32, help="image side in pixels", choices=[16, 32, 64])
    batch_size: int = option(32, help="global batch size, split among processes")
    lr: float = option(2e-4, help="AdamW learning rate (linear warm-up over the first 200 steps)")
    ema_decay: float = option(0.999, help="decay of the weight average that samples and exports use")
    width: int = option(32, help="U-Net channels at full resolution (doubled at lower ones; 32 trains ~100 "
                                 "pictures/s at 32 px on 2 cores with --bf16, 64 a quarter of that)")
    levels: int = option(3, help="U-Net resolutions (32 px, 3 levels: 32, 16, 8)")
    layers_per_block: int = option(1, help="residual blocks per level")
    attention: bool = option(True, help="self-attention at the lowest resolution", flag="--attention")
    norm_groups: int = option(32, help="group-norm groups (must divide --width)")
    prediction: str = option("v_prediction", help="what the network learns to predict: v (steady at every "
                                                  "noise level) or the noise (epsilon)", choices=list(PREDICTIONS))
    label_dropout: float = option(0.1, help="share of labels replaced by 'no class' while training, so that "
                                            "classifier-free guidance can push away from it")
    diffusers_out: str = option("", help="also write the final model as a diffusers folder (DDIMPipeline: unet/ and "
                                         "scheduler/) that diffusers itself loads")
    flip: bool = option(True, cli=False)


def train_diffusion(**kwargs: Any) -> Path:
    """Train (or with resume=True continue) a class-conditional diffusion model; the last checkpoint's path."""
    opts = resolve_options(kwargs, DiffusionTrainOptions, RESUMABLE_CHANGES)
    last = train(DiffusionTrainer, opts, ImageQualityJudge)
    if opts.diffusers_out and last is not None:
        write_diffusers_folder(last, Path(opts.diffusers_out))
    return last


COMMAND = TrainCommand(
    DiffusionTrainOptions, train_diffusion, help="train a class-conditional diffusion model (diffusers UNet2DModel)",
    description="Train a class-conditional denoising diffusion model on a folder with one subfolder of images per "
                "class.\nRUN gets samples/step_N.png (one row per class, DPM-Solver++ 20 steps, guidance 2), "
                "log.jsonl (loss, images/s),\ncheckpoints/step_N/ (safetensors + JSON) and train_options.json. Export "
                "it like any model;\nthe server runs the sampler (artforge generate --model diffusion).",
    examples="  artforge train diffusion --data data/art --out runs/diffusion --size 32 --steps 4000\n"
             "  artforge train diffusion --out runs/diffusion --resume --steps 8000   # continue, same result\n"
             "  artforge train diffusion --data data/art --out runs/d --steps 500 --diffusers-out runs/d/diffusers")


class DiffusionTrainer(ClassFolderTrainer):
    """The denoiser, its weight average (EMA, what inference uses) and AdamW."""

    family = FAMILY

    def __init__(self, opts: DiffusionTrainOptions, ctx: Distributed):
        self.data = load_class_folder(opts, ctx)
        try:
            config = DiffusionConfig(image_size=opts.size, num_classes=len(self.data.classes), width=opts.width,
                                     levels=opts.levels, layers_per_block=opts.layers_per_block,
                                     attention=opts.attention, norm_groups=opts.norm_groups,
                                     prediction_type=opts.prediction)
        except ValueError as e:
            raise ArtforgeError(f"diffusion options: {e}") from None
        super().__init__(config, opts.batch_size)
        self.opts, self.ctx = opts, ctx
        torch.manual_seed(opts.seed)  # network initialisation
        self.net = Denoiser(config).to(ctx.device)
        self.ema = copy.deepcopy(self.net).eval().requires_grad_(False)
        self.optimizer = torch.optim.AdamW(self.net.parameters(), lr=opts.lr, weight_decay=0.0)
        self.train_net = ctx.wrap(self.net)
        self.signal = torch.from_numpy(denoising.alphas_cumprod(config.schedule())).to(ctx.device)

    def state(self):
        return {"net": self.net, "ema": self.ema, "optimizer": self.optimizer}

    def inference_weights(self) -> dict[str, torch.Tensor]:
        return self.ema.state_dict()

    def train_step(self, step: int) -> dict[str, float]:
        pictures, labels, t, noise = self.batch_for_step(step)
        signal = self.signal[t].view(-1, 1, 1, 1)
        noisy = signal.sqrt() * pictures + (1 - signal).sqrt() * noise
        if self.config.prediction_type == "epsilon":
            target = noise
        else:  # v: the velocity from the picture towards the noise
            target = signal.sqrt() * noise - (1 - signal).sqrt() * pictures
        for group in self.optimizer.param_groups:
            group["lr"] = self.opts.lr * min(1.0, (step + 1) / WARMUP_STEPS)
        self.train_net.train()
        with self.ctx.autocast():
            prediction = self.train_net(noisy, t[:, None], labels[:, None])
        loss = F.mse_loss(prediction.float(), target)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.net.parameters(), 1.0)
        self.optimizer.step()
        update_ema(self.ema, self.net, ema_decay_at(step, self.opts.ema_decay))
        if (step + 1) % self.opts.checkpoint_every == 0 or step + 1 == self.opts.steps:  # every process is here
            self.ctx.check_in_step(self.ema, "EMA denoiser")  # what rank 0 writes must be what every rank has
        return {"loss": loss.item(), "lr": self.optimizer.param_groups[0]["lr"]}

    def batch_for_step(self, step: int):
        """This process's share of step `step`'s batch: pictures in [-1, 1], labels (some dropped to the null
        class), timesteps and noise, all drawn from the step's generator."""
        g, opts = step_generator(self.opts.seed, step), self.opts
        index = self.data.draw(opts.batch_size, g, opts.balance_classes)
        flip = torch.rand(opts.batch_size, generator=g) < 0.5
        drop = torch.rand(opts.batch_size, generator=g) < opts.label_dropout
        t = torch.randint(0, self.config.num_train_timesteps, (opts.batch_size,), generator=g)
        size = self.config.image_size
        noise = torch.randn(opts.batch_size, self.config.channels, size, size, generator=g)
        mine = slice(self.ctx.rank, None, self.ctx.world_size)
        pictures = uint8_to_unit(self.data.images[index[mine]])
        if opts.flip:
            pictures = torch.where(flip[mine, None, None, None], pictures.flip(3), pictures)
        labels = torch.where(drop[mine], self.config.num_classes, self.data.labels[index[mine]])
        device = self.ctx.device
        return pictures.to(device), labels.to(device), t[mine].to(device), noise[mine].to(device)

    def write_samples(self, path: Path) -> None:
        per_class = 8
        labels = np.repeat(np.arange(self.config.num_classes), per_class)
        seeds = np.tile(np.arange(per_class) + self.opts.seed * 1000, self.config.num_classes)
        images = self.sample(labels, seeds)
        save_png(make_grid(images, per_class), path.with_suffix(".png"), upscale=max(1, 128 // self.config.image_size))

    def quality_images(self, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """EMA pictures for uniformly drawn classes (as `artforge evaluate` asks), and real ones."""
        rng = np.random.default_rng(seed)
        labels = rng.integers(0, self.config.num_classes, count)
        return self.sample(labels, rng.integers(0, 2**31 - 1, count)), self.real_images(count, rng)

    def sample(self, labels: np.ndarray, seeds: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 from the EMA network, with the sampler the server runs."""
        loop = self.sampling_loop().to_json()
        denoise = torch_denoiser(self.ema.eval())
        pictures = [denoising.Denoising(loop, label, seed, SAMPLE_STEPS, SAMPLE_GUIDANCE, "dpmpp_2m")
                    for label, seed in zip(labels, seeds)]
        return np.concatenate([denoising.sample(denoise, pictures[i:i + 64]) for i in range(0, len(pictures), 64)])

    def sampling_loop(self) -> DenoisingLoop:
        return DiffusionSpec(self.config).sampler


def write_diffusers_folder(checkpoint_path: Path, out: Path) -> None:
    """A checkpoint as a diffusers folder: DDIMPipeline's model_index.json, unet/ (UNet2DModel, safetensors) and
    scheduler/ (DDIMScheduler on the schedule artforge trained with); artforge.json names the classes."""
    from diffusers import DDIMPipeline, DDIMScheduler  # optional and heavy

    network, checkpoint = load_network(checkpoint_path, expect_family=FAMILY)
    schedule = network.config.schedule()
    scheduler = DDIMScheduler(**schedule, clip_sample=False, set_alpha_to_one=True)
    DDIMPipeline(unet=network.unet, scheduler=scheduler).save_pretrained(out, safe_serialization=True)
    classes = checkpoint.meta.get("classes", [])
    (out / "artforge.json").write_text(json.dumps({
        "classes": classes, "null_class": network.config.num_classes, "checkpoint": str(checkpoint.path),
        "note": "class-conditional: call the unet with class_labels (0..N-1, or null_class for no class)"}, indent=1))
