"""Networks of public checkpoint layouts, written for artforge so their state dicts load key for key.

- pytorch/examples fast_neural_style `TransformerNet` (neural_style/transformer_net.py): pixels 0..255 in,
  about 0..255 out; its saved models from older PyTorch carry InstanceNorm running stats, which it ignores.
- junyanz/pytorch-CycleGAN-and-pix2pix `ResnetGenerator` (CycleGAN) and `UnetGenerator` (pix2pix), from
  models/networks.py: -1..1 in and out, instance or batch norm, 6 or 9 residual blocks, 7 or 8 U-Net levels.

The module names and their order are those of the upstream files, so `latest_net_G.pth` or a
`*.model` state dict loads with strict=True; the code is artforge's own.
"""
from __future__ import annotations

import torch
from torch import nn


# ---- fast_neural_style ----
class ReflectConv(nn.Module):
    """Reflection padding of half the kernel, then a convolution (upstream: ConvLayer)."""

    def __init__(self, channels_in: int, channels_out: int, kernel: int, stride: int = 1, upsample: int = 0):
        super().__init__()
        self.upsample = upsample
        self.reflection_pad = nn.ReflectionPad2d(kernel // 2)
        self.conv2d = nn.Conv2d(channels_in, channels_out, kernel, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.upsample:  # nearest-neighbour upsampling first: no checkerboard (upstream: UpsampleConvLayer)
            x = nn.functional.interpolate(x, scale_factor=self.upsample, mode="nearest")
        return self.conv2d(self.reflection_pad(x))


class StyleResidual(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = ReflectConv(channels, channels, 3)
        self.in1 = nn.InstanceNorm2d(channels, affine=True)
        self.conv2 = ReflectConv(channels, channels, 3)
        self.in2 = nn.InstanceNorm2d(channels, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.in2(self.conv2(torch.relu(self.in1(self.conv1(x)))))


class FastStyleNet(nn.Module):
    """(B, 3, H, W) pixels 0..255 -> the stylised picture, about 0..255 (upstream: TransformerNet)."""

    def __init__(self):
        super().__init__()
        self.conv1, self.in1 = ReflectConv(3, 32, 9), nn.InstanceNorm2d(32, affine=True)
        self.conv2, self.in2 = ReflectConv(32, 64, 3, 2), nn.InstanceNorm2d(64, affine=True)
        self.conv3, self.in3 = ReflectConv(64, 128, 3, 2), nn.InstanceNorm2d(128, affine=True)
        for i in range(1, 6):
            setattr(self, f"res{i}", StyleResidual(128))
        self.deconv1, self.in4 = ReflectConv(128, 64, 3, upsample=2), nn.InstanceNorm2d(64, affine=True)
        self.deconv2, self.in5 = ReflectConv(64, 32, 3, upsample=2), nn.InstanceNorm2d(32, affine=True)
        self.deconv3 = ReflectConv(32, 3, 9)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.in1(self.conv1(x)))
        y = torch.relu(self.in2(self.conv2(y)))
        y = torch.relu(self.in3(self.conv3(y)))
        for i in range(1, 6):
            y = getattr(self, f"res{i}")(y)
        y = torch.relu(self.in4(self.deconv1(y)))
        y = torch.relu(self.in5(self.deconv2(y)))
        return self.deconv3(y)


# ---- CycleGAN and pix2pix generators ----
def norm_layer(kind: str, channels: int) -> nn.Module:
    """Upstream's 'instance' (no affine, no running stats) and 'batch' norms."""
    return nn.InstanceNorm2d(channels) if kind == "instance" else nn.BatchNorm2d(channels)


class ResnetBlock(nn.Module):
    def __init__(self, dim: int, norm: str, dropout: bool):
        super().__init__()
        bias = norm == "instance"  # a batch norm's shift makes the convolution's bias redundant
        layers = [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=bias), norm_layer(norm, dim), nn.ReLU(True)]
        layers += [nn.Dropout(0.5)] if dropout else []
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=bias), norm_layer(norm, dim)]
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
    """CycleGAN's generator: (B, C, H, W) in -1..1 -> tanh output, H and W multiples of 4."""

    def __init__(self, channels_in: int = 3, channels_out: int = 3, width: int = 64, norm: str = "instance",
                 blocks: int = 9, dropout: bool = False):
        super().__init__()
        bias = norm == "instance"
        layers = [nn.ReflectionPad2d(3), nn.Conv2d(channels_in, width, 7, bias=bias), norm_layer(norm, width),
                  nn.ReLU(True)]
        for mult in (1, 2):  # two stride-2 downsamplings
            layers += [nn.Conv2d(width * mult, width * mult * 2, 3, stride=2, padding=1, bias=bias),
                       norm_layer(norm, width * mult * 2), nn.ReLU(True)]
        layers += [ResnetBlock(width * 4, norm, dropout) for _ in range(blocks)]
        for mult in (4, 2):  # and back up
            layers += [nn.ConvTranspose2d(width * mult, width * mult // 2, 3, stride=2, padding=1, output_padding=1,
                                          bias=bias), norm_layer(norm, width * mult // 2), nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(width, channels_out, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class UnetLevel(nn.Module):
    """One level of pix2pix's U-Net: down, the levels below, up; all but the outermost concatenate their
    input to their output (upstream: UnetSkipConnectionBlock)."""

    def __init__(self, outer: int, inner: int, norm: str, inside: nn.Module | None = None, channels_in: int = 0,
                 outermost: bool = False, dropout: bool = False):
        super().__init__()
        self.outermost = outermost
        bias = norm == "instance"
        down = nn.Conv2d(channels_in or outer, inner, 4, stride=2, padding=1, bias=bias)
        if outermost:
            layers = [down, inside, nn.ReLU(True), nn.ConvTranspose2d(inner * 2, outer, 4, stride=2, padding=1),
                      nn.Tanh()]
        elif inside is None:  # the innermost level
            layers = [nn.LeakyReLU(0.2, True), down, nn.ReLU(True),
                      nn.ConvTranspose2d(inner, outer, 4, stride=2, padding=1, bias=bias), norm_layer(norm, outer)]
        else:
            layers = [nn.LeakyReLU(0.2, True), down, norm_layer(norm, inner), inside, nn.ReLU(True),
                      nn.ConvTranspose2d(inner * 2, outer, 4, stride=2, padding=1, bias=bias), norm_layer(norm, outer)]
            layers += [nn.Dropout(0.5)] if dropout else []
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) if self.outermost else torch.cat([x, self.model(x)], 1)


class UnetGenerator(nn.Module):
    """pix2pix's generator: (B, C, H, W) in -1..1 -> tanh output, H and W multiples of 2**levels."""

    def __init__(self, channels_in: int = 3, channels_out: int = 3, levels: int = 8, width: int = 64,
                 norm: str = "batch", dropout: bool = False):
        super().__init__()
        level = UnetLevel(width * 8, width * 8, norm)
        for _ in range(levels - 5):
            level = UnetLevel(width * 8, width * 8, norm, level, dropout=dropout)
        for outer in (4, 2, 1):
            level = UnetLevel(width * outer, width * outer * 2, norm, level)
        self.model = UnetLevel(channels_out, width, norm, level, channels_in=channels_in, outermost=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)
