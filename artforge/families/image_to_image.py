"""Building blocks the image-to-image GAN families share (pix2pix, Isola et al. 2017; CycleGAN, Zhu
et al. 2017; Pix2PixHD, Wang et al. 2018): U-Net and ResNet generators, the 70x70 PatchGAN and its
multi-scale form, with instance norm, and the least-squares and feature-matching losses they train with.

The restore and translate families import them.
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

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every layer's activations (after each LeakyReLU), the logits last: what feature matching compares."""
        taps = []
        for layer in self.net:
            x = layer(x)
            if isinstance(layer, nn.LeakyReLU):
                taps.append(x)
        return [*taps, x]


class MultiScaleDiscriminator(nn.Module):
    """Pix2PixHD's discriminator: `scales` PatchGANs of one shape, the k-th judging the input
    downsampled k times (3x3 average, stride 2): the coarse ones see global structure at 512 px and
    up, the finest one texture. forward -> per scale, that PatchGAN's features (logits last)."""

    def __init__(self, in_channels: int, scales: int = 2, width: int = 64, layers: int = 3):
        super().__init__()
        self.scales = nn.ModuleList(PatchDiscriminator(in_channels, width, layers) for _ in range(scales))
        self._register_load_state_dict_pre_hook(self._accept_single_scale)

    def forward(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        outputs = []
        for i, patch in enumerate(self.scales):
            if i:
                x = F.avg_pool2d(x, 3, 2, 1, count_include_pad=False)
            outputs.append(patch.features(x))
        return outputs

    @staticmethod
    def _accept_single_scale(state: dict, prefix: str, *args) -> None:
        """Training states written before the multi-scale form held one PatchGAN (keys `net.*`):
        they are scale 0 of a one-scale discriminator, so those runs still resume."""
        for key in [k for k in state if k.startswith(prefix + "net.")]:
            state[prefix + "scales.0." + key[len(prefix):]] = state.pop(key)


def lsgan_discriminator_loss(real: list[list[torch.Tensor]], fake: list[list[torch.Tensor]]) -> torch.Tensor:
    """Least squares (Mao et al. 2017), averaged over scales: real patches -> 1, generated -> 0."""
    terms = [0.5 * ((r[-1].float() - 1) ** 2).mean() + 0.5 * (f[-1].float() ** 2).mean() for r, f in zip(real, fake)]
    return sum(terms) / len(terms)


def lsgan_generator_loss(fake: list[list[torch.Tensor]]) -> torch.Tensor:
    return sum(((f[-1].float() - 1) ** 2).mean() for f in fake) / len(fake)


def feature_matching_loss(real: list[list[torch.Tensor]], fake: list[list[torch.Tensor]]) -> torch.Tensor:
    """Pix2PixHD's feature-matching loss: L1 between the discriminators' intermediate activations on
    the real and the generated image, averaged over layers and scales (real activations held fixed).
    It gives the generator a dense, stable signal where the adversarial term alone is noisy."""
    terms = [F.l1_loss(f.float(), r.detach().float()) for rs, fs in zip(real, fake) for r, f in zip(rs[:-1], fs[:-1])]
    return sum(terms) / len(terms)


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
    """CycleGAN's generator (Johnson et al.'s layout) and Pix2PixHD's global generator (the same with
    more downsamplings): 7x7, `downsamples` stride-2 convolutions (channels doubling up to
    `max_width`), `blocks` residual blocks, as many nearest x2 + 3x3 convolutions, 7x7 to the image.
    Any H and W (padded to a multiple of 2**downsamples by replicating the edge, cropped back).
    `residual`: the output is the input's first `out_channels` channels plus a learnt correction that
    starts at zero (clamped to [-1, 1]) instead of a tanh image, as in UNetGenerator.
    """

    def __init__(self, width: int = 32, blocks: int = 6, channels: int = 3, downsamples: int = 2,
                 max_width: int = 256, out_channels: int | None = None, residual: bool = False):
        super().__init__()
        self.downsamples, self.residual = downsamples, residual
        self.out_channels = out_channels or channels
        widths = [min(width * 2 ** i, max_width) for i in range(downsamples + 1)]
        down = [layer for c_in, c_out in zip(widths, widths[1:]) for layer in conv_norm_relu(c_in, c_out, 3, 2)]
        up = [layer for c_in, c_out in zip(widths[:0:-1], widths[-2::-1])
              for layer in (nn.Upsample(scale_factor=2.0, mode="nearest"), *conv_norm_relu(c_in, c_out, 3))]
        to_image = nn.Conv2d(width, self.out_channels, 7)
        if residual:
            nn.init.zeros_(to_image.weight)
            nn.init.zeros_(to_image.bias)
        self.net = nn.Sequential(
            *conv_norm_relu(channels, width, 7), *down, *(ResidualBlock(widths[-1]) for _ in range(blocks)), *up,
            nn.ReflectionPad2d(3), to_image, *([] if residual else [nn.Tanh()]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        multiple = 2 ** self.downsamples
        x = F.pad(x, (0, (-width) % multiple, 0, (-height) % multiple), mode="replicate")
        out = self.net(x)
        if self.residual:
            out = (x[:, :self.out_channels] + out).clamp(-1, 1)
        return out[:, :, :height, :width]
