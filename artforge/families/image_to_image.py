"""Building blocks the image-to-image GAN families share (pix2pix, Isola et al. 2017; CycleGAN, Zhu
et al. 2017): a U-Net generator and the 70x70 PatchGAN discriminator, with instance norm.

Networks only, no training; the restore family (and the translation family after it) import them.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def down_block(c_in: int, c_out: int, norm: bool) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 4, 2, 1)]
    if norm:
        layers.append(nn.InstanceNorm2d(c_out, affine=True))
    return nn.Sequential(*layers, nn.LeakyReLU(0.2))


class UpBlock(nn.Module):
    """Nearest x2 then a 3x3 convolution (no transposed-convolution checkerboard), instance norm, ReLU."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, 1, 1)
        self.norm = nn.InstanceNorm2d(c_out, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.norm(self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))))


class UNetGenerator(nn.Module):
    """(B, C_in, H, W) in [-1, 1], any H and W -> (B, C_out, H, W) in [-1, 1].

    `depth` stride-2 levels, each skip-connected to its mirror; the input is padded (replicating its
    edge, valid for any size) to a multiple of 2**depth and the output cropped back, inside the graph.
    Unlike pix2pix's U-Net the input itself joins the last convolution, so full-resolution detail
    need not squeeze through the first stride-2 level. `residual`: the output is the input's first
    C_out channels plus a learnt correction (clamped to [-1, 1]) instead of a tanh image: a repair
    network then starts from the identity and learns only what to change.
    """

    def __init__(self, in_channels: int, out_channels: int = 3, width: int = 32, depth: int = 5,
                 max_width: int = 256, residual: bool = False):
        super().__init__()
        self.depth, self.residual, self.out_channels = depth, residual, out_channels
        widths = [min(width * 2 ** i, max_width) for i in range(depth)]  # channels after each level
        # the first level has no norm (pix2pix), nor the innermost: its 1x1 maps would normalise to zero
        self.down = nn.ModuleList(down_block(c_in, c_out, norm=0 < i < depth - 1)
                                  for i, (c_in, c_out) in enumerate(zip([in_channels, *widths[:-1]], widths)))
        self.up = nn.ModuleList(UpBlock(widths[i] * (1 if i == depth - 1 else 2), widths[i - 1])
                                for i in range(depth - 1, 0, -1))
        self.to_image = nn.Conv2d(widths[0] * 2 + in_channels, out_channels, 3, 1, 1)
        if residual:  # start as the identity: the correction is zero until training says otherwise
            nn.init.zeros_(self.to_image.weight)
            nn.init.zeros_(self.to_image.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        multiple = 2 ** self.depth
        source = F.pad(x, (0, (-width) % multiple, 0, (-height) % multiple), mode="replicate")
        x, skips = source, []
        for level in self.down:
            x = level(x)
            skips.append(x)
        for level, skip in zip(self.up, reversed(skips[:-1])):
            x = torch.cat([level(x), skip], dim=1)
        x = self.to_image(torch.cat([F.interpolate(x, scale_factor=2.0, mode="nearest"), source], dim=1))
        out = (source[:, :self.out_channels] + x).clamp(-1, 1) if self.residual else torch.tanh(x)
        return out[:, :, :height, :width]


class PatchDiscriminator(nn.Module):
    """(B, C, H, W) -> (B, 1, H', W') logits, one per overlapping patch: 70x70 with layers=3."""

    def __init__(self, in_channels: int, width: int = 64, layers: int = 3):
        super().__init__()
        blocks: list[nn.Module] = [nn.Conv2d(in_channels, width, 4, 2, 1), nn.LeakyReLU(0.2)]
        c = width
        for i in range(1, layers + 1):
            c_out = min(width * 2 ** i, width * 8)
            stride = 2 if i < layers else 1
            blocks += [nn.Conv2d(c, c_out, 4, stride, 1), nn.InstanceNorm2d(c_out, affine=True), nn.LeakyReLU(0.2)]
            c = c_out
        blocks.append(nn.Conv2d(c, 1, 4, 1, 1))
        self.net = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ResidualBlock(nn.Module):
    """Two reflection-padded 3x3 convolutions with instance norm, added to the input."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3),
                                  nn.InstanceNorm2d(channels, affine=True), nn.ReLU(),
                                  nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3),
                                  nn.InstanceNorm2d(channels, affine=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def conv_norm_relu(c_in: int, c_out: int, kernel: int, stride: int = 1) -> list[nn.Module]:
    pad = [nn.ReflectionPad2d(kernel // 2)] if stride == 1 else []
    return [*pad, nn.Conv2d(c_in, c_out, kernel, stride, 0 if stride == 1 else 1),
            nn.InstanceNorm2d(c_out, affine=True), nn.ReLU()]


class ResnetGenerator(nn.Module):
    """CycleGAN's generator (Johnson et al.'s layout): 7x7, two stride-2 convolutions, `blocks` residual
    blocks, two nearest x2 + 3x3 convolutions, 7x7 to the image; any H and W (padded to a multiple of 4
    by replicating the edge, cropped back)."""

    def __init__(self, width: int = 32, blocks: int = 6, channels: int = 3):
        super().__init__()
        c = width
        self.net = nn.Sequential(
            *conv_norm_relu(channels, c, 7), *conv_norm_relu(c, 2 * c, 3, 2), *conv_norm_relu(2 * c, 4 * c, 3, 2),
            *(ResidualBlock(4 * c) for _ in range(blocks)),
            nn.Upsample(scale_factor=2.0, mode="nearest"), *conv_norm_relu(4 * c, 2 * c, 3),
            nn.Upsample(scale_factor=2.0, mode="nearest"), *conv_norm_relu(2 * c, c, 3),
            nn.ReflectionPad2d(3), nn.Conv2d(c, channels, 7), nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        x = F.pad(x, (0, (-width) % 4, 0, (-height) % 4), mode="replicate")
        return self.net(x)[:, :, :height, :width]
