"""The restoration generator: pix2pix's U-Net taking the damaged image and its damage mask.

Networks and their config only; training and export import them.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from artforge.families.image_to_image import PatchDiscriminator, UNetGenerator


@dataclass(frozen=True)
class RestoreConfig:
    """Architecture of a restoration network; stored in every checkpoint."""

    width: int = 32  # channels of the U-Net's first level, doubling per level up to 256
    depth: int = 5  # stride-2 levels: the receptive field and the size multiple (2**depth) padded to

    def __post_init__(self) -> None:
        if not 3 <= self.depth <= 8:
            raise ValueError(f"restore depth must be 3..8, got {self.depth}")
        if not 4 <= self.width <= 128:
            raise ValueError(f"restore width must be 4..128, got {self.width}")


class RestoreNet(nn.Module):
    """(damaged image (B, 3, H, W) in [-1, 1], mask (B, 1, H, W) in {0, 1}) -> restored image in [-1, 1].

    The mask says where paint is missing or scratched; an all-zero mask means "unknown", and the
    network then finds local damage itself. Global damage (fading, cast, noise, JPEG) is never
    masked: the whole image is re-made, not only the masked pixels.
    """

    def __init__(self, config: RestoreConfig):
        super().__init__()
        self.config = config
        self.unet = UNetGenerator(4, 3, config.width, config.depth)

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.unet(torch.cat([image, mask * 2 - 1], dim=1))


def restore_discriminator(config: RestoreConfig) -> PatchDiscriminator:
    """70x70 PatchGAN on (damaged image, mask, restored or clean image): 7 channels."""
    return PatchDiscriminator(7, width=64, layers=3)
