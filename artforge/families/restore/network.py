"""The restoration generator, pix2pix's U-Net or Pix2PixHD's global generator (`arch`), taking the
damaged image and its damage mask.

Networks and their config only; training and export import them.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from artforge.families.image_to_image import MultiScaleDiscriminator, ResnetGenerator, UNetGenerator

ARCHITECTURES = ("unet", "hd")


@dataclass(frozen=True)
class RestoreConfig:
    """Architecture of a restoration network; stored in every checkpoint."""

    width: int = 32  # channels of the first level, doubling per level up to 256
    depth: int = 5  # stride-2 levels: the receptive field and the size multiple (2**depth) padded to
    arch: str = "unet"  # unet: pix2pix's U-Net, skips at every level; hd: Pix2PixHD's global generator
    blocks: int = 9  # hd only: residual blocks at the coarsest level (where its receptive field grows)

    def __post_init__(self) -> None:
        if self.arch not in ARCHITECTURES:
            raise ValueError(f"restore arch must be one of {ARCHITECTURES}, got {self.arch!r}")
        if not 3 <= self.depth <= 8:
            raise ValueError(f"restore depth must be 3..8, got {self.depth}")
        if not 4 <= self.width <= 128:
            raise ValueError(f"restore width must be 4..128, got {self.width}")
        if not 1 <= self.blocks <= 16:
            raise ValueError(f"restore blocks must be 1..16, got {self.blocks}")


def pull_push_fill(image: torch.Tensor, known: torch.Tensor, levels: int) -> torch.Tensor:
    """Fill unknown pixels with a smooth guess from the known ones (pull-push, Gortler et al. 1996):
    average known pixels into a pyramid of `levels` halvings, then fill each level's holes from the
    coarser one. image (B, C, H, W), known (B, 1, H, W) in {0, 1}; H and W multiples of 2**levels.
    Fixed arithmetic, no weights: it exports to ONNX like any layer."""
    images, weights = [image * known], [known]
    for _ in range(levels):
        images.append(F.avg_pool2d(images[-1], 2))
        weights.append(F.avg_pool2d(weights[-1], 2))
    filled = images[-1] / weights[-1].clamp_min(1e-6)  # where a whole coarse cell is unknown: 0, mid grey
    for total, weight in zip(reversed(images[:-1]), reversed(weights[:-1])):
        coarse = F.interpolate(filled, scale_factor=2.0, mode="bilinear", align_corners=False)
        mean = total / weight.clamp_min(1e-6)
        filled = torch.where(weight > 0, mean, coarse)
    return torch.where(known > 0, image, filled)


class RestoreNet(nn.Module):
    """(damaged image (B, 3, H, W) in [-1, 1], mask (B, 1, H, W) in {0, 1}) -> restored image in [-1, 1].

    The mask says where paint is missing or scratched; an all-zero mask means "unknown", and the
    network then finds local damage itself. Global damage (fading, cast, noise, JPEG) is never
    masked: the whole image is re-made, not only the masked pixels. Masked pixels are first filled
    from their surroundings (pull_push_fill), and the generator corrects that guess (its output is
    the filled image plus a learnt correction): it starts where classical inpainting ends.

    arch "unet" keeps full-resolution detail through its skips; arch "hd" (Pix2PixHD's global
    generator: `depth` downsamplings, `blocks` residual blocks at the coarsest level) sees farther
    for the same compute, which large holes in 512 px+ images need.
    """

    def __init__(self, config: RestoreConfig):
        super().__init__()
        self.config = config
        if config.arch == "hd":
            self.generator = ResnetGenerator(config.width, config.blocks, channels=4, downsamples=config.depth,
                                             out_channels=3, residual=True)
        else:
            self.unet = UNetGenerator(4, 3, config.width, config.depth, residual=True)

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        height, width = image.shape[-2:]
        multiple = 2 ** self.config.depth
        pad = (0, (-width) % multiple, 0, (-height) % multiple)
        # one pad for both (two pads of equal size but for channels tripped ONNX Runtime's buffer reuse)
        both = F.pad(torch.cat([image, mask], dim=1), pad, mode="replicate")
        image, mask = both[:, :3], both[:, 3:]
        filled = pull_push_fill(image, 1 - mask, self.config.depth)
        generator = self.generator if self.config.arch == "hd" else self.unet
        return generator(torch.cat([filled, mask * 2 - 1], dim=1))[:, :, :height, :width]


def restore_discriminator(scales: int) -> MultiScaleDiscriminator:
    """70x70 PatchGANs on (damaged image, mask, restored or clean image), 7 channels, at `scales` scales."""
    return MultiScaleDiscriminator(7, scales, width=64, layers=3)
