"""What the class-conditional image generators share in training: a folder with one subfolder of images per
class (an art style, a category of drawings); for the GANs (DCGAN, StyleGAN2) also a generator, its weight
average (EMA), a discriminator and their two optimisers. A GAN family's trainer subclasses
ClassFolderGANTrainer and adds its networks and its step; the diffusion family's, ClassFolderTrainer.
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

from artforge.errors import ArtforgeError
from artforge.imaging import parse_colour
from artforge.options import RunControl, option
from artforge.training.augment import POLICIES
from artforge.training.conditioning import CONDITIONINGS
from artforge.training.distributed import Distributed
from artforge.image_folders import ImageFolder, load_image_folder
from artforge.training.loop import FamilyTrainer

log = logging.getLogger(__name__)


@dataclass(kw_only=True)
class ClassFolderOptions(RunControl):
    """Options every class-folder GAN run has: its data, how images become squares, quality logging."""

    data: str = option("", help="image folder, one subfolder per class (required unless --resume)")
    fit: str = option("crop", help="how an image becomes a square sample: crop (centre) or pad (the whole "
                                   "picture, letterboxed on --background)", choices=["crop", "pad"])
    background: str = option("white", help="colour for transparent areas and padding: a name, #rrggbb or r,g,b")
    bf16: bool = option(False, help="bfloat16 autocast (fast on CPUs with AMX and on GPUs)")
    balance_classes: bool = option(False, help="draw every class equally often into the training batches, "
                                               "however many pictures it has (a folder with unequal classes: "
                                               "the rare ones are then learnt from as many batches as the "
                                               "others, their pictures seen more often)")
    eval_every: int = option(0, help="every N steps (and at 0 and the end), measure FD/KID/precision/recall "
                                     "of --eval-count images against the data into log.jsonl and quality.png")
    eval_count: int = option(256, help="images generated (and real ones drawn) for each --eval-every measurement")


@dataclass(kw_only=True)
class ClassGANOptions(ClassFolderOptions):
    """A class-folder GAN's options: the data's, and how its discriminator is told the class."""

    conditioning: str = option("projection", choices=list(CONDITIONINGS),
                               help="how the discriminator is told the class: projection (the label's embedding "
                                    "dotted with its features), acgan (an auxiliary classifier whose verdict on "
                                    "the generated pictures the generator is also trained on: draws the class on "
                                    "real data; docs/conditioning.md), or both")
    class_weight: float = option(1.0, help="weight of the auxiliary classifier's loss against the real/fake loss "
                                           "(acgan, both)")
    augment: str = option("none", help="differentiable augmentation of everything the discriminator sees: "
                                       "diffaugment (colour, translation, cutout), geometric (no colour: for "
                                       "classes told apart by colour), none", choices=list(POLICIES))


def load_class_folder(opts: Any, ctx: Distributed) -> ImageFolder:
    """The run's images (opts: data, size, fit, background, batch_size, progress), checked before any work."""
    if not opts.data:
        raise ArtforgeError("--data is required: a folder with one subfolder of images per class")
    ctx.check_batch(opts.batch_size)
    data = load_image_folder(Path(opts.data), opts.size, progress=opts.progress and ctx.is_main, fit=opts.fit,
                             background=parse_colour(opts.background))
    notice = "" if opts.balance_classes or not ctx.is_main else unequal_classes(data)
    if notice:
        log.warning(notice)
    return data


def unequal_classes(data: ImageFolder, ratio: float = 2.0) -> str:
    """A one-line notice when the largest class has `ratio` times the pictures of the smallest, else ''."""
    counts = data.class_counts()
    if max(counts) < ratio * min(counts):
        return ""
    fewest, most = counts.index(min(counts)), counts.index(max(counts))
    return (f"the classes of {data.root} are unequal ({data.classes[fewest]}: {counts[fewest]} pictures, "
            f"{data.classes[most]}: {counts[most]}): batches follow the folder, so the rare classes are learnt "
            f"from fewer of them; --balance-classes draws every class equally often")


class ClassFolderTrainer(FamilyTrainer):
    """A generator trained on a class folder (set self.data and self.opts): resume checks the classes, and
    --eval-every and the checkpoint's facts come from the folder."""

    data: ImageFolder

    def check_resumable(self, checkpoint) -> None:
        super().check_resumable(checkpoint)
        if checkpoint.meta.get("classes") != self.data.classes:
            raise ArtforgeError(f"--resume: checkpoint {checkpoint.path} was trained on classes "
                                f"{checkpoint.meta.get('classes')}, the data folder has {self.data.classes}")

    def real_images(self, count: int, rng: np.random.Generator) -> np.ndarray:
        """Up to `count` training images, (N, H, W, 3) uint8, drawn without replacement (for --eval-every)."""
        return self.data.images[torch.from_numpy(rng.permutation(len(self.data))[:count])].permute(0, 2, 3, 1).numpy()

    def checkpoint_facts(self) -> dict[str, Any]:
        return {"classes": self.data.classes, "dataset": self.data.describe(), "seed": self.opts.seed,
                "training": dataclasses.asdict(self.opts), "normalization": {"range": [-1, 1], "layout": "NCHW"}}


class ClassFolderGANTrainer(ClassFolderTrainer):
    """A GAN on a class folder: set self.data, self.opts, self.ctx, self.G, self.G_ema, self.D, self.opt_G
    and self.opt_D; the generator's average is what inference uses."""

    G: nn.Module
    G_ema: nn.Module
    D: nn.Module
    opt_G: torch.optim.Optimizer
    opt_D: torch.optim.Optimizer

    def state(self) -> dict[str, nn.Module | torch.optim.Optimizer]:
        return {"G": self.G, "D": self.D, "G_ema": self.G_ema, "opt_G": self.opt_G, "opt_D": self.opt_D}

    def inference_weights(self) -> dict[str, torch.Tensor]:
        return self.G_ema.state_dict()
