"""Conditional DCGAN (Radford et al. 2016) for 32x32 and 64x64 art, one style label per image.

This file holds networks and their config only; training and export import it.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from artforge.training.conditioning import check_conditioning, uses_classifier, uses_projection


@dataclass(frozen=True)
class DCGANConfig:
    """Architecture of a conditional DCGAN; stored in every checkpoint."""

    image_size: int = 32  # 32 or 64
    num_classes: int = 5  # art styles the generator is conditioned on
    z_dim: int = 100
    g_width: int = 64  # channels of the generator's last hidden layer
    d_width: int = 64  # channels of the discriminator's first layer
    channels: int = 3
    # how the discriminator is told the class (training/image_gan.py); checkpoints without it used projection
    conditioning: str = "projection"

    def __post_init__(self) -> None:
        check_conditioning(self.conditioning, "DCGAN")
        if self.image_size not in (32, 64):
            raise ValueError(f"DCGAN image_size must be 32 or 64, got {self.image_size}")
        if self.num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {self.num_classes}")

    @property
    def num_upsamplings(self) -> int:
        # 4x4 seed doubled to the image size: 3 times for 32, 4 times for 64
        return {32: 3, 64: 4}[self.image_size]


class ConditionalBatchNorm2d(nn.Module):
    """Batch norm whose scale and shift are looked up per style (de Vries et al. 2017).

    Concatenating a label embedding to z instead lets the label dominate the first layer's
    variance; batch norm then scales the noise's share down to almost nothing, and the
    generator paints one image per style whatever z is.
    """

    def __init__(self, channels: int, num_classes: int):
        super().__init__()
        self.norm = nn.BatchNorm2d(channels, affine=False)
        self.scale = nn.Embedding(num_classes, channels)
        self.shift = nn.Embedding(num_classes, channels)
        nn.init.normal_(self.scale.weight, 1.0, 0.02)
        nn.init.zeros_(self.shift.weight)

    def forward(self, x: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        return self.norm(x) * self.scale(label)[:, :, None, None] + self.shift(label)[:, :, None, None]


class Generator(nn.Module):
    """(z, label) -> image in [-1, 1]: transposed convolutions, style-conditional batch norm, ReLU, tanh."""

    def __init__(self, config: DCGANConfig):
        super().__init__()
        self.config = config
        c = config
        widths = [c.g_width * 2 ** i for i in reversed(range(c.num_upsamplings))]
        # (B, z, 1, 1) -> (B, widths[0], 4, 4), then doubled in size and halved in width per block
        self.convs = nn.ModuleList([nn.ConvTranspose2d(c.z_dim, widths[0], 4, 1, 0, bias=False)])
        self.convs.extend(nn.ConvTranspose2d(a, b, 4, 2, 1, bias=False) for a, b in zip(widths, widths[1:]))
        self.norms = nn.ModuleList(ConditionalBatchNorm2d(w, c.num_classes) for w in widths)
        self.to_image = nn.ConvTranspose2d(widths[-1], c.channels, 4, 2, 1, bias=False)
        self.apply(init_dcgan_weights)

    def forward(self, z: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        # z: (B, z_dim) float, label: (B,) int64 -> (B, 3, S, S) float in [-1, 1]
        h = z[:, :, None, None]
        for conv, norm in zip(self.convs, self.norms):
            h = torch.relu(norm(conv(h), label))
        return torch.tanh(self.to_image(h))


class Discriminator(nn.Module):
    """(image, label) -> (real/fake logit, class logits or None): told the class by projection (Miyato &
    Koyama 2018), by an auxiliary classifier (AC-GAN), or both, as the config's `conditioning` says."""

    def __init__(self, config: DCGANConfig):
        super().__init__()
        c = config
        widths = [c.d_width * 2 ** i for i in range(c.num_upsamplings)]
        # no batch norm on the first layer, as in the paper
        layers: list[nn.Module] = [nn.Conv2d(c.channels, widths[0], 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True)]
        for w_in, w_out in zip(widths, widths[1:]):
            layers += [nn.Conv2d(w_in, w_out, 4, 2, 1, bias=False), nn.BatchNorm2d(w_out), nn.LeakyReLU(0.2, True)]
        self.features = nn.Sequential(*layers)  # (B, 3, S, S) -> (B, widths[-1], 4, 4)
        self.to_logit = nn.Conv2d(widths[-1], 1, 4, 1, 0)
        self.project = nn.Embedding(c.num_classes, widths[-1]) if uses_projection(c.conditioning) else None
        self.classify = nn.Linear(widths[-1], c.num_classes) if uses_classifier(c.conditioning) else None
        self.apply(init_dcgan_weights)
        if self.project is not None:
            nn.init.normal_(self.project.weight, 0.0, 0.02)  # start near an unconditional D

    def forward(self, image: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        h = self.features(image)
        logit = self.to_logit(h).flatten(1).squeeze(1)  # (B,)
        pooled = h.mean(dim=(2, 3))  # (B, C); a sum would make the untrained logits huge
        if self.project is not None:
            logit = logit + (self.project(label) * pooled).sum(dim=1)
        return logit, None if self.classify is None else self.classify(pooled)


def init_dcgan_weights(module: nn.Module) -> None:
    """The paper's initialisation: N(0, 0.02) for convolutions, N(1, 0.02) for batch-norm scales."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d) and module.affine:
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)
