"""Fast neural style transfer (Johnson et al. 2016) with conditional instance norm (Dumoulin et al. 2017).

One network holds N styles: every instance norm has a scale and shift per style, and a style-weight
vector picks one style (one-hot) or blends several (0.5/0.5 mixes two).
This file holds networks and their config only; training and export import it.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

# first-layer channels, residual blocks, kernel of the full-resolution convolutions, early downsampling
WIDTHS = {"full": (32, 5, 9, False), "lite": (16, 3, 5, False), "fast": (16, 3, 3, True)}
SIZE_MULTIPLE = 4  # two stride-2 downsamplings


@dataclass(frozen=True)
class StyleNetConfig:
    """Architecture of a style-transfer network; stored in every checkpoint."""

    num_styles: int = 1
    channels: int = 32
    residual_blocks: int = 5
    outer_kernel: int = 9  # Johnson's 9x9; the lite preset uses 5x5, the full-resolution convs dominate its cost
    # the first convolution strides by 2 and the last upsampling ends with channels / 2: no layer but the
    # output's has more than channels / 2 at full resolution, where Johnson's layout spends most of its work
    early_downsampling: bool = False

    def __post_init__(self) -> None:
        if self.num_styles < 1 or self.channels < 1 or self.residual_blocks < 0:
            raise ValueError(f"invalid StyleNetConfig {self}")

    @classmethod
    def preset(cls, width: str, num_styles: int) -> "StyleNetConfig":
        if width not in WIDTHS:
            raise ValueError(f"width must be one of {sorted(WIDTHS)}, got '{width}'")
        channels, blocks, kernel, early = WIDTHS[width]
        return cls(num_styles=num_styles, channels=channels, residual_blocks=blocks, outer_kernel=kernel,
                   early_downsampling=early)


class ConditionalInstanceNorm2d(nn.Module):
    """Instance norm whose scale and shift are the style weights' mix of per-style parameters."""

    def __init__(self, channels: int, num_styles: int):
        super().__init__()
        self.norm = nn.InstanceNorm2d(channels, affine=False)
        self.scale = nn.Parameter(torch.ones(num_styles, channels))
        self.shift = nn.Parameter(torch.zeros(num_styles, channels))

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        # weights: (B, N) summing to 1 -> per-sample (B, C) scale and shift
        scale = (weights @ self.scale)[:, :, None, None]
        shift = (weights @ self.shift)[:, :, None, None]
        return self.norm(x) * scale + shift


class ConvNormReLU(nn.Module):
    """Reflection-padded convolution (optionally after nearest 2x upsampling), CIN, ReLU."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, num_styles: int, upsample: bool = False,
                 relu: bool = True):
        super().__init__()
        self.upsample = upsample
        self.pad = nn.ReflectionPad2d(kernel // 2)
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride)
        self.norm = ConditionalInstanceNorm2d(c_out, num_styles)
        self.relu = relu

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        if self.upsample:  # nearest + conv instead of a transposed conv: no checkerboard artefacts
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        x = self.norm(self.conv(self.pad(x)), weights)
        return torch.relu(x) if self.relu else x


class ResidualBlock(nn.Module):
    def __init__(self, channels: int, num_styles: int):
        super().__init__()
        self.a = ConvNormReLU(channels, channels, 3, 1, num_styles)
        self.b = ConvNormReLU(channels, channels, 3, 1, num_styles, relu=False)

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return x + self.b(self.a(x, weights), weights)


class StyleTransferNet(nn.Module):
    """(image in [-1, 1], style weights) -> stylised image in [-1, 1], any height and width."""

    def __init__(self, config: StyleNetConfig):
        super().__init__()
        self.config = config
        c, n = config.channels, config.num_styles
        k = config.outer_kernel
        if config.early_downsampling:  # full -> 1/2 -> 1/4 res, blocks at 2c, then 1/2 (c), full (c / 2)
            down = [ConvNormReLU(3, c, k, 2, n), ConvNormReLU(c, 2 * c, 3, 2, n)]
            widths = (2 * c, c, max(c // 2, 1))
        else:  # Johnson's: full res (c), 1/2 (2c), 1/4 (4c), blocks at 4c, then back up
            down = [ConvNormReLU(3, c, k, 1, n), ConvNormReLU(c, 2 * c, 3, 2, n), ConvNormReLU(2 * c, 4 * c, 3, 2, n)]
            widths = (4 * c, 2 * c, c)
        self.down = nn.ModuleList(down)
        self.blocks = nn.ModuleList(ResidualBlock(widths[0], n) for _ in range(config.residual_blocks))
        self.up = nn.ModuleList([ConvNormReLU(widths[0], widths[1], 3, 1, n, upsample=True),
                                 ConvNormReLU(widths[1], widths[2], 3, 1, n, upsample=True)])
        self.to_image = nn.Sequential(nn.ReflectionPad2d(k // 2), nn.Conv2d(widths[2], 3, k, 1))

    def forward(self, image: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        # image: (B, 3, H, W) in [-1, 1]; weights: (B, num_styles), rows summing to 1
        height, width = image.shape[-2:]
        # pad to a multiple of 4 so that the two downsamplings and upsamplings meet again
        x = F.pad(image, (0, (-width) % SIZE_MULTIPLE, 0, (-height) % SIZE_MULTIPLE), mode="reflect")
        for layer in self.down:
            x = layer(x, weights)
        for block in self.blocks:
            x = block(x, weights)
        for layer in self.up:
            x = layer(x, weights)
        return torch.tanh(self.to_image(x))[:, :, :height, :width]
