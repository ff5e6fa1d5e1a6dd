"""StyleGAN2 (Karras et al. 2020) for 16-128 px, written to export: its config, generator and discriminator.

Generator: a mapping network (z, optionally joined by a class embedding, to w), then a synthesis
network from a learned 4x4 constant, two modulated and demodulated 3x3 convolutions per resolution,
explicit per-layer noise and skip toRGB outputs summed across resolutions. Discriminator: residual,
with a minibatch standard-deviation feature and, for class-conditional data, a projection head.
Every weight uses the equalised learning rate (stored N(0, 1), scaled at run time).

Differences from the paper's code, each for export or CPU training:
- modulation scales the activations, convolves with the shared weight and then demodulates (the
  paper's "non-fused" form): no grouped convolution whose groups depend on the batch size;
- upsampling is bilinear x2 before the convolution (the paper: transposed convolution and a [1,3,3,1]
  blur, the same low-pass filter), downsampling a 2x2 average: plain ONNX operators;
- noise comes in as one flat input per image (every layer's map, concatenated), so a seed gives the
  same picture in PyTorch, ONNX Runtime and Triton;
- each layer, toRGB included, has its own w slot (num_ws), so style mixing and truncation address
  every layer;
- the truncation centre is the mean w of each class (per-class truncation keeps the class);
- `padding="reflect"` (an option; zeros by default, as in the paper) pads the 3x3 convolutions of
  both networks by mirroring: zeros tell every layer where the border is, and at small budgets the
  generator painted a frame around its images. Mirroring removes the frame and gives more variety
  within a style, but also the positional cue that places a layout (measured in docs/families/stylegan.md).
  Checkpoints without the field were trained with zeros and keep them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from artforge.training.conditioning import check_conditioning, uses_classifier, uses_projection

SQRT2 = math.sqrt(2.0)
PADDINGS = ("zeros", "reflect")


def padded_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, padding: str) -> torch.Tensor:
    """A 'same' convolution whose border is filled with zeros or by mirroring the image."""
    pad = weight.shape[-1] // 2
    if pad and padding == "reflect":
        return F.conv2d(F.pad(x, (pad, pad, pad, pad), mode="reflect"), weight, bias)
    return F.conv2d(x, weight, bias, padding=pad)


@dataclass(frozen=True)
class StyleGANConfig:
    """Architecture of a StyleGAN2 generator; stored in every checkpoint."""

    image_size: int = 32
    num_classes: int = 1  # 1: unconditional; more: a class embedding joins z in the mapping network
    z_dim: int = 128
    w_dim: int = 128
    mapping_layers: int = 4  # the paper has 8; 4 is enough at 32-64 px and trains faster
    channel_base: int = 1024  # channels at resolution r: min(channel_max, channel_base // r)
    channel_max: int = 128
    padding: str = "zeros"  # of the 3x3 convolutions: "zeros" (the paper's, and older checkpoints') or "reflect"
    # how the discriminator is told the class (training/conditioning.py); checkpoints without it used projection
    conditioning: str = "projection"

    def __post_init__(self) -> None:
        if self.image_size not in (16, 32, 64, 128):
            raise ValueError(f"stylegan image_size must be 16, 32, 64 or 128, got {self.image_size}")
        if self.num_classes < 1 or not 1 <= self.mapping_layers <= 8:
            raise ValueError("stylegan needs at least one class and 1..8 mapping layers")
        if min(self.z_dim, self.w_dim) < 8 or self.channels(self.image_size) < 8:
            raise ValueError("stylegan z_dim, w_dim and channels at full resolution must be at least 8")
        if self.padding not in PADDINGS:
            raise ValueError(f"stylegan padding must be one of {', '.join(PADDINGS)}, got {self.padding!r}")
        check_conditioning(self.conditioning, "stylegan")

    def channels(self, resolution: int) -> int:
        return min(self.channel_max, self.channel_base // resolution)

    @property
    def resolutions(self) -> list[int]:
        return [2 ** i for i in range(2, int(math.log2(self.image_size)) + 1)]

    @property
    def num_ws(self) -> int:
        """w slots: at 4x4 one convolution and toRGB, at every other resolution two convolutions and toRGB."""
        return 2 + 3 * (len(self.resolutions) - 1)

    @property
    def noise_shapes(self) -> list[int]:
        """Side of each convolution's noise map, in the order of the flat noise input."""
        return [4] + [r for r in self.resolutions[1:] for _ in range(2)]

    @property
    def noise_size(self) -> int:
        return sum(side * side for side in self.noise_shapes)


class EqualLinear(nn.Module):
    """Linear layer with the equalised learning rate; `lr_mul` slows it (the mapping network uses 0.01)."""

    def __init__(self, c_in: int, c_out: int, bias_init: float = 0.0, lr_mul: float = 1.0, activate: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(c_out, c_in) / lr_mul)
        self.bias = nn.Parameter(torch.full((c_out,), float(bias_init) / lr_mul))
        self.scale, self.lr_mul, self.activate = lr_mul / math.sqrt(c_in), lr_mul, activate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)
        return F.leaky_relu(x, 0.2) * SQRT2 if self.activate else x


class EqualConv2d(nn.Module):
    """Convolution with the equalised learning rate; `down` averages 2x2 after it."""

    def __init__(self, c_in: int, c_out: int, kernel: int, bias: bool = True, activate: bool = True,
                 down: bool = False, padding: str = "zeros"):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(c_out, c_in, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(c_out)) if bias else None
        self.scale, self.activate, self.down = 1 / math.sqrt(c_in * kernel * kernel), activate, down
        self.padding = padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = padded_conv2d(x, self.weight * self.scale, self.bias, self.padding)
        if self.down:
            x = F.avg_pool2d(x, 2)
        return F.leaky_relu(x, 0.2) * SQRT2 if self.activate else x


def normalize_2nd_moment(x: torch.Tensor) -> torch.Tensor:
    return x * torch.rsqrt(x.square().mean(dim=1, keepdim=True) + 1e-8)


class MappingNetwork(nn.Module):
    """(z, labels) -> w. Holds `w_avg` (num_classes, w_dim): each class's mean w, the truncation centre."""

    def __init__(self, config: StyleGANConfig):
        super().__init__()
        self.embed = nn.Embedding(config.num_classes, config.z_dim) if config.num_classes > 1 else None
        c_in = config.z_dim * (2 if self.embed is not None else 1)
        dims = [c_in] + [config.w_dim] * config.mapping_layers
        self.layers = nn.Sequential(*(EqualLinear(a, b, lr_mul=0.01, activate=True) for a, b in zip(dims, dims[1:])))
        self.register_buffer("w_avg", torch.zeros(config.num_classes, config.w_dim))

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        x = normalize_2nd_moment(z)
        if self.embed is not None:
            x = torch.cat([x, normalize_2nd_moment(self.embed(labels))], dim=1)
        return self.layers(x)

    def truncate(self, w: torch.Tensor, labels: torch.Tensor, psi: torch.Tensor) -> torch.Tensor:
        """Pull w towards its class's mean: psi (B,) 1 = unchanged, 0 = the class's average image."""
        centre = self.w_avg[labels]
        return centre + psi[:, None] * (w - centre)


class ModulatedConv2d(nn.Module):
    """A convolution whose input channels are scaled per image by an affine map of w (the style), and
    (demodulate) whose output is rescaled so each output channel has unit expected variance again."""

    def __init__(self, c_in: int, c_out: int, w_dim: int, kernel: int, demodulate: bool = True, up: bool = False,
                 padding: str = "zeros"):
        super().__init__()
        self.affine = EqualLinear(w_dim, c_in, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(c_out, c_in, kernel, kernel))
        self.scale, self.demodulate, self.up = 1 / math.sqrt(c_in * kernel * kernel), demodulate, up
        self.padding = padding

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        styles = self.affine(w)  # (B, c_in)
        weight = self.weight * self.scale
        if self.up:
            x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
        x = padded_conv2d(x * styles[:, :, None, None], weight, None, self.padding)
        if self.demodulate:  # 1/sqrt(sum over inputs and taps of (weight * style)^2), per image and output
            energy = styles.square() @ weight.square().sum(dim=(2, 3)).t()  # (B, c_out)
            x = x * torch.rsqrt(energy + 1e-8)[:, :, None, None]
        return x


class StyleLayer(nn.Module):
    """Modulated 3x3 convolution, plus its noise map times a learned strength, bias, leaky ReLU."""

    def __init__(self, c_in: int, c_out: int, w_dim: int, up: bool = False, padding: str = "zeros"):
        super().__init__()
        self.conv = ModulatedConv2d(c_in, c_out, w_dim, 3, up=up, padding=padding)
        self.noise_strength = nn.Parameter(torch.zeros(()))
        self.bias = nn.Parameter(torch.zeros(c_out))

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        x = self.conv(x, w) + noise * self.noise_strength
        return F.leaky_relu(x + self.bias[None, :, None, None], 0.2) * SQRT2


class ToRGB(nn.Module):
    def __init__(self, c_in: int, w_dim: int):
        super().__init__()
        self.conv = ModulatedConv2d(c_in, 3, w_dim, 1, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(3))

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return self.conv(x, w) + self.bias[None, :, None, None]


class SynthesisNetwork(nn.Module):
    """(ws (B, num_ws, w_dim), noise (B, noise_size)) -> image (B, 3, S, S), about [-1, 1] (not clamped)."""

    def __init__(self, config: StyleGANConfig):
        super().__init__()
        self.config = config
        c4 = config.channels(4)
        self.const = nn.Parameter(torch.randn(c4, 4, 4))
        pad = config.padding
        self.layers = nn.ModuleList([StyleLayer(c4, c4, config.w_dim, padding=pad)])
        self.to_rgb = nn.ModuleList([ToRGB(c4, config.w_dim)])
        for r in config.resolutions[1:]:
            c_prev, c = config.channels(r // 2), config.channels(r)
            self.layers.extend([StyleLayer(c_prev, c, config.w_dim, up=True, padding=pad),
                                StyleLayer(c, c, config.w_dim, padding=pad)])
            self.to_rgb.append(ToRGB(c, config.w_dim))

    def forward(self, ws: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        noises = self.split_noise(noise)
        x = self.const[None].expand(ws.shape[0], -1, -1, -1)
        x = self.layers[0](x, ws[:, 0], noises[0])
        image = self.to_rgb[0](x, ws[:, 1])
        for i in range(1, len(self.to_rgb)):  # resolution 4 * 2**i: w slots 3i-1, 3i, 3i+1
            x = self.layers[2 * i - 1](x, ws[:, 3 * i - 1], noises[2 * i - 1])
            x = self.layers[2 * i](x, ws[:, 3 * i], noises[2 * i])
            image = F.interpolate(image, scale_factor=2.0, mode="bilinear", align_corners=False) \
                + self.to_rgb[i](x, ws[:, 3 * i + 1])
        return image

    def split_noise(self, noise: torch.Tensor) -> list[torch.Tensor]:
        sides = self.config.noise_shapes
        parts = torch.split(noise, [s * s for s in sides], dim=1)
        return [part.reshape(-1, 1, s, s) for part, s in zip(parts, sides)]


class Generator(nn.Module):
    """(z, labels, noise[, truncation psi, z_mix, mix_from]) -> image (B, 3, S, S) in about [-1, 1].

    Style mixing: layers from slot `mix_from` on take their w from `z_mix` (mix_from = num_ws: none).
    """

    def __init__(self, config: StyleGANConfig):
        super().__init__()
        self.config = config
        self.mapping = MappingNetwork(config)
        self.synthesis = SynthesisNetwork(config)

    def forward(self, z: torch.Tensor, labels: torch.Tensor, noise: torch.Tensor, psi: torch.Tensor | None = None,
                z_mix: torch.Tensor | None = None, mix_from: torch.Tensor | None = None) -> torch.Tensor:
        return self.synthesis(self.styles(z, labels, psi, z_mix, mix_from), noise)

    def styles(self, z: torch.Tensor, labels: torch.Tensor, psi: torch.Tensor | None = None,
               z_mix: torch.Tensor | None = None, mix_from: torch.Tensor | None = None) -> torch.Tensor:
        """ws (B, num_ws, w_dim): w for every layer, truncated and mixed as asked."""
        w = self.mapped(z, labels, psi)
        ws = w[:, None].expand(-1, self.config.num_ws, -1)
        if z_mix is not None and mix_from is not None:
            slot = torch.arange(self.config.num_ws, device=z.device)[None, :, None]
            ws = torch.where(slot >= mix_from.reshape(-1, 1, 1), self.mapped(z_mix, labels, psi)[:, None], ws)
        return ws

    def mapped(self, z: torch.Tensor, labels: torch.Tensor, psi: torch.Tensor | None) -> torch.Tensor:
        w = self.mapping(z, labels)
        return w if psi is None else self.mapping.truncate(w, labels, psi)


class MinibatchStd(nn.Module):
    """Appends the standard deviation across a group of images (one feature map): the discriminator
    sees how varied a batch is, which penalises a generator that makes one picture."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        group = next(g for g in (4, 3, 2, 1) if b % g == 0)
        y = x.reshape(group, -1, c, h, w)
        y = (y.var(dim=0, unbiased=False) + 1e-8).sqrt().mean(dim=(1, 2, 3))  # (B / group,)
        y = y.repeat(group).reshape(b, 1, 1, 1).expand(b, 1, h, w)
        return torch.cat([x, y], dim=1)


class DiscriminatorBlock(nn.Module):
    """Two 3x3 convolutions, the second halving the resolution, plus a 1x1 skip; summed / sqrt(2)."""

    def __init__(self, c_in: int, c_out: int, padding: str = "zeros"):
        super().__init__()
        self.conv0 = EqualConv2d(c_in, c_in, 3, padding=padding)
        self.conv1 = EqualConv2d(c_in, c_out, 3, down=True, padding=padding)
        self.skip = EqualConv2d(c_in, c_out, 1, bias=False, activate=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = self.skip(F.avg_pool2d(x, 2))
        return (skip + self.conv1(self.conv0(x))) / SQRT2


class Discriminator(nn.Module):
    """(images (B, 3, S, S), labels) -> ((B,) logits, (B, classes) class logits or None). Class-conditional
    by projection (Miyato & Koyama 2018: the last features dotted with a learned embedding of the label), by
    an auxiliary classifier on the same features (AC-GAN), or both: the config's `conditioning`."""

    def __init__(self, config: StyleGANConfig):
        super().__init__()
        size, c = config.image_size, config.channels
        self.from_rgb = EqualConv2d(3, c(size), 1)
        self.blocks = nn.Sequential(*(DiscriminatorBlock(c(r), c(r // 2), config.padding)
                                      for r in config.resolutions[:0:-1]))
        c4 = c(4)
        self.epilogue = nn.Sequential(MinibatchStd(), EqualConv2d(c4 + 1, c4, 3, padding=config.padding), nn.Flatten(),
                                      EqualLinear(c4 * 16, c4, activate=True))
        conditional = config.num_classes > 1
        self.project = nn.Embedding(config.num_classes, c4) if conditional and uses_projection(config.conditioning) \
            else None
        self.classify = EqualLinear(c4, config.num_classes) if conditional and uses_classifier(config.conditioning) \
            else None
        self.out = EqualLinear(c4, 1 if self.project is None else c4)

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        features = self.epilogue(self.blocks(self.from_rgb(images)))
        classes = None if self.classify is None else self.classify(features)
        x = self.out(features)
        if self.project is None:
            return x[:, 0], classes
        return (x * normalize_2nd_moment(self.project(labels))).sum(dim=1) / math.sqrt(x.shape[1]), classes
