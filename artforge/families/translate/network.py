"""CycleGAN's two generators (A->B and B->A) in one network, so one checkpoint holds both directions.

Networks and their config only; training and export import them.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from artforge.families.image_to_image import PatchDiscriminator, ResnetGenerator


@dataclass(frozen=True)
class TranslateConfig:
    """Architecture of a translation network pair; stored in every checkpoint."""

    width: int = 32  # channels of the generators' first layer
    blocks: int = 6  # residual blocks (CycleGAN: 6 at 128 px, 9 at 256 px and up)

    def __post_init__(self) -> None:
        if not 1 <= self.blocks <= 12 or not 4 <= self.width <= 128:
            raise ValueError(f"translate needs 1..12 blocks and width 4..128, got {self.blocks}, {self.width}")


class TranslateNet(nn.Module):
    """a_to_b and b_to_a: images in [-1, 1] of any size to the other domain."""

    def __init__(self, config: TranslateConfig):
        super().__init__()
        self.config = config
        self.a_to_b = ResnetGenerator(config.width, config.blocks)
        self.b_to_a = ResnetGenerator(config.width, config.blocks)


def domain_discriminator() -> PatchDiscriminator:
    """70x70 PatchGAN on one domain's images (unconditional: CycleGAN has no paired input)."""
    return PatchDiscriminator(3, width=64, layers=3)
