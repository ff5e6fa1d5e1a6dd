"""The critic family: an art classifier, (image of any size) -> label probabilities, embedding, OOD score.

It judges art the way the field does with deep networks (style/genre/artist classification), and
judges generators: `artforge evaluate --critic` asks it whether a generator's "waves" look like
waves. Everything about the family is declared here or named from here: its config and network
(network.py), its serving contract (CriticSpec, here), its training (train.py) and its client verb
(`artforge critique`, critique.py).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from artforge.contract import DynamicDim, TensorSpec
from artforge.families.critic.network import EMBEDDING_DIM, CriticConfig, CriticNet
from artforge.registry import Family, register
from artforge.photos import photo_crops
from artforge.spec import ModelSpec

NAME = "critic"
MIN_SIDE, MAX_SIDE = 16, 2048


def scaled_ood_score(critic: CriticNet, embedding: torch.Tensor) -> torch.Tensor:
    """Mahalanobis distance over the square root of the dimensions: about 1 for art like the training
    set's, and float32-stable enough for the parity gate (raw distances run to the tens)."""
    return critic.ood_score(embedding) / math.sqrt(EMBEDDING_DIM)


class CriticServing(nn.Module):
    """uint8 NHWC images -> (probabilities (B, K), embedding (B, 1280), ood_score (B, 1))."""

    def __init__(self, critic: CriticNet):
        super().__init__()
        self.critic = critic

    def forward(self, image: torch.Tensor):
        logits, embedding = self.critic(image.permute(0, 3, 1, 2).float() / 255)  # -> (B, 3, H, W) in [0, 1]
        return logits.softmax(dim=1), embedding, scaled_ood_score(self.critic, embedding)[:, None]


class CriticSpec(ModelSpec):
    """An image of any size in; label probabilities, its embedding and how unfamiliar it looks out."""

    def __init__(self, config: CriticConfig, meta: dict):
        labels = list(meta.get("classes") or range(config.num_classes))
        super().__init__(
            family=NAME,
            inputs=(TensorSpec("image", "uint8", ("height", "width", 3), "picture, RGB, 0-255, NHWC, any size "
                               f"(resized to {config.input_size}x{config.input_size} inside the model)"),),
            outputs=(TensorSpec("probabilities", "float32", (config.num_classes,),
                                "probability of each label (metadata 'labels' names them)"),
                     TensorSpec("embedding", "float32", (EMBEDDING_DIM,),
                                "pooled EfficientNet-Lite0 features of the fine-tuned critic, for similarity search"),
                     TensorSpec("ood_score", "float32", (1,),
                                "Mahalanobis distance to the nearest label's training images over sqrt(1280); "
                                "above metadata 'ood_threshold' the picture looks like none of them")),
            dynamic_dims={"height": DynamicDim(MIN_SIDE, 256, MAX_SIDE), "width": DynamicDim(MIN_SIDE, 256, MAX_SIDE)},
            metadata={"labels": labels, "min_size": MIN_SIDE, "input_size": config.input_size,
                      "ood_threshold": meta.get("ood_threshold"), "held_out": meta.get("held_out")},
            normalization={"input": "uint8 NHWC RGB", "inside": "resized, ImageNet mean/std"},
            # 16 blocks deep in float32, PyTorch and ONNX Runtime sum in different orders: a trained
            # critic's embedding differed by 2.8e-4 (relative) at batch 3, beyond the default 1e-4
            parity_tolerance=1e-3,
        )
        self.config = config

    def serving_network(self, network: nn.Module) -> nn.Module:
        return CriticServing(network).eval()

    def sample_inputs(self, batch: int, seed: int, sizes: dict[str, int] | None = None) -> dict[str, np.ndarray]:
        sizes = sizes or self.optimal_sizes()
        image = np.random.default_rng(seed).integers(0, 256, (batch, sizes["height"], sizes["width"], 3), np.uint8)
        return {"image": image}

    def representative_inputs(self, batch: int, seed: int, sizes: dict[str, int] | None = None,
                              held_out: bool = False) -> dict[str, np.ndarray]:
        sizes = sizes or self.optimal_sizes()
        return {"image": photo_crops(batch, sizes["height"], sizes["width"], seed, held_out=held_out)}


FAMILY = register(Family(
    name=NAME, description="art critic: (image) -> label probabilities, embedding, out-of-distribution score",
    config_cls=CriticConfig, build_network=CriticNet,
    client="artforge.families.critic.critique:VERB", trainer="artforge.families.critic.train:COMMAND",
    make_spec=lambda config, meta, float_output=False: CriticSpec(config, meta)))
