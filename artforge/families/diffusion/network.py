"""The diffusion family's denoiser: diffusers' class-conditional UNet2DModel, sized for CPU budgets.

This file holds the network and its config only; training, export and serving import it. diffusers
is imported when a network is built (an optional, heavy dependency: `pip install 'artforge[diffusers]'`),
so listing families or reading a checkpoint's facts does not need it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from artforge.errors import ArtforgeError

PREDICTIONS = ("v_prediction", "epsilon")
# per level, the channels as multiples of `width` (the lowest resolution last)
WIDTH_MULTIPLES = (1, 2, 2, 2)


@dataclass(frozen=True)
class DiffusionConfig:
    """Architecture and noise schedule of a class-conditional denoiser; stored in every checkpoint."""

    image_size: int = 32
    num_classes: int = 5  # the data's classes; class index num_classes is "no class" (classifier-free guidance)
    width: int = 32  # channels at full resolution
    levels: int = 3  # resolutions: 32 px -> 32, 16, 8
    layers_per_block: int = 1
    attention: bool = True  # self-attention at the lowest resolution (and in the middle block)
    norm_groups: int = 32
    prediction_type: str = "v_prediction"  # what the network predicts: v (Salimans & Ho 2022) or the noise
    num_train_timesteps: int = 1000
    beta_schedule: str = "squaredcos_cap_v2"  # the cosine schedule (improved DDPM), fit for small pictures
    channels: int = 3

    def __post_init__(self) -> None:
        if self.num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {self.num_classes}")
        if not 1 <= self.levels <= len(WIDTH_MULTIPLES):
            raise ValueError(f"levels must be 1 to {len(WIDTH_MULTIPLES)}, got {self.levels}")
        if self.image_size % 2 ** (self.levels - 1) or self.image_size < 8:
            raise ValueError(f"image_size {self.image_size} must be at least 8 and divide by 2^(levels - 1)")
        if self.prediction_type not in PREDICTIONS:
            raise ValueError(f"prediction_type must be one of {PREDICTIONS}, got '{self.prediction_type}'")
        if self.width % self.norm_groups:
            raise ValueError(f"width {self.width} must be a multiple of norm_groups {self.norm_groups}")

    @property
    def block_channels(self) -> tuple[int, ...]:
        return tuple(self.width * m for m in WIDTH_MULTIPLES[:self.levels])

    def schedule(self) -> dict[str, Any]:
        """The noise schedule in diffusers' scheduler-config keys (what artforge/serving/denoising.py reads)."""
        return {"num_train_timesteps": self.num_train_timesteps, "beta_schedule": self.beta_schedule,
                "beta_start": 0.0001, "beta_end": 0.02, "prediction_type": self.prediction_type,
                "timestep_spacing": "trailing"}


def unet_arguments(config: DiffusionConfig) -> dict[str, Any]:
    """UNet2DModel's constructor arguments for a config (also what its diffusers folder's config.json holds)."""
    last_down, last_up = ("AttnDownBlock2D", "AttnUpBlock2D") if config.attention else ("DownBlock2D", "UpBlock2D")
    plain = config.levels - 1
    return dict(sample_size=config.image_size, in_channels=config.channels, out_channels=config.channels,
                layers_per_block=config.layers_per_block, block_out_channels=config.block_channels,
                down_block_types=("DownBlock2D",) * plain + (last_down,),
                up_block_types=(last_up,) + ("UpBlock2D",) * plain,
                norm_num_groups=config.norm_groups, add_attention=config.attention,
                num_class_embeds=config.num_classes + 1)


def build_unet(config: DiffusionConfig) -> nn.Module:
    try:
        from diffusers import UNet2DModel  # optional and heavy: imported when a denoiser is built
    except ImportError:
        raise ArtforgeError("the diffusion family needs diffusers: pip install 'artforge[diffusers]'") from None
    return UNet2DModel(**unet_arguments(config))


class Denoiser(nn.Module):
    """(noisy picture (B, C, H, W) in the [-1, 1] scale, timestep (B, 1) int64, class (B, 1) int64)
    -> the prediction (B, C, H, W) the config's prediction_type names."""

    def __init__(self, config: DiffusionConfig):
        super().__init__()
        self.config = config
        self.unet = build_unet(config)

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, class_label: torch.Tensor) -> torch.Tensor:
        return self.unet(sample, timestep[:, 0], class_labels=class_label[:, 0]).sample
