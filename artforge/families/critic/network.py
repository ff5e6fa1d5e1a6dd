"""The critic: EfficientNet-Lite0 with a classification head and an out-of-distribution score.

This file holds the network and its config only; training and export import it. Images of any size
are resized inside the network, so training, export and serving share one preprocessing.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from artforge.feature_network import IMAGENET_MEAN, IMAGENET_STD, efficientnet_lite0_network

EMBEDDING_DIM = 1280  # EfficientNet-Lite0's pooled features
BLOCKS = 16  # EfficientNet-Lite0's MBConv blocks, the unit of fine-tuning depth


@dataclass(frozen=True)
class CriticConfig:
    """Architecture of a critic; stored in every checkpoint."""

    num_classes: int = 5  # labels of the training data (its subfolders)
    input_size: int = 160  # every image is resized to input_size x input_size inside the network
    dropout: float = 0.2  # before the classification layer, in training only

    def __post_init__(self) -> None:
        if self.num_classes < 2:
            raise ValueError(f"a critic needs at least 2 classes, got {self.num_classes}")
        if not 32 <= self.input_size <= 512:
            raise ValueError(f"critic input_size must be 32..512, got {self.input_size}")


class CriticNet(nn.Module):
    """(B, 3, H, W) float images in [0, 1], any size -> class logits (B, K) and embedding (B, 1280).

    The out-of-distribution score is the Mahalanobis distance of the embedding to the nearest class
    (Lee et al. 2018: class means, one shared covariance); its statistics are fitted after training
    and travel with the weights as buffers.
    """

    def __init__(self, config: CriticConfig):
        super().__init__()
        self.config = config
        self.backbone = efficientnet_lite0_network()
        self.backbone._fc = nn.Identity()  # ImageNet's 1000-way layer is replaced by the head below
        self.head = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(EMBEDDING_DIM, config.num_classes))
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN)[None, :, None, None])
        self.register_buffer("std", torch.tensor(IMAGENET_STD)[None, :, None, None])
        self.register_buffer("class_means", torch.zeros(config.num_classes, EMBEDDING_DIM))
        self.register_buffer("precision", torch.eye(EMBEDDING_DIM))  # inverse of the shared covariance

    def resize(self, images: torch.Tensor) -> torch.Tensor:
        size = self.config.input_size
        # antialiased, so a 2048-pixel photo is averaged down rather than sampled with aliasing
        x = F.interpolate(images, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        return (x - self.mean) / self.std

    def frozen_features(self, x: torch.Tensor, tuned_blocks: int) -> torch.Tensor:
        """Stem and the blocks fine-tuning leaves alone, on resized and normalised images."""
        net = self.backbone
        x = net._swish(net._bn0(net._conv_stem(x)))
        for block in net._blocks[:BLOCKS - tuned_blocks]:
            x = block(x)
        return x

    def tuned_features(self, x: torch.Tensor, tuned_blocks: int) -> torch.Tensor:
        """The last `tuned_blocks` blocks, the head convolution and the average pool -> (B, 1280)."""
        net = self.backbone
        for block in net._blocks[BLOCKS - tuned_blocks:]:
            x = block(x)
        return net._swish(net._bn1(net._conv_head(x))).mean(dim=(2, 3))

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return self.tuned_features(self.frozen_features(self.resize(images), 0), 0)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        embedding = self.embed(images)
        return self.head(embedding), embedding

    def ood_score(self, embedding: torch.Tensor) -> torch.Tensor:
        """(B, 1280) -> (B,) Mahalanobis distance to the nearest class mean; large = unlike the training art."""
        diff = embedding[:, None, :] - self.class_means[None]  # (B, K, D)
        squared = torch.einsum("bkd,de,bke->bk", diff, self.precision, diff)
        return squared.amin(dim=1).clamp_min(0).sqrt()


@torch.no_grad()
def fit_ood_statistics(critic: CriticNet, embeddings: torch.Tensor, labels: torch.Tensor,
                       shrinkage: float = 0.1) -> None:
    """Class means and the shared covariance of training embeddings (N, D), into the critic's buffers.

    With fewer images than dimensions the covariance is singular; shrinking it towards a scaled
    identity (as Ledoit and Wolf do, with a fixed weight) keeps its inverse stable.
    """
    embeddings = embeddings.double()
    means = torch.stack([embeddings[labels == k].mean(0) for k in range(critic.config.num_classes)])
    centred = embeddings - means[labels]
    covariance = centred.T @ centred / len(embeddings)
    scale = covariance.diagonal().mean()
    covariance = (1 - shrinkage) * covariance + shrinkage * scale * torch.eye(len(covariance), dtype=torch.float64)
    critic.class_means.copy_(means.float())
    critic.precision.copy_(torch.linalg.inv(covariance).float())
