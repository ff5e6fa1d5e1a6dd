"""The style-transfer family: one feed-forward network, N styles, (photo, style weights) -> image.

Everything artforge needs to know about the family is declared here or named from here: its
network config and network (network.py), its serving contract (StyleSpec, here), its training
(train.py) and its client verb (`artforge stylize`, stylize.py): all in this package.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from artforge.contract import DynamicDim, TensorSpec
from artforge.registry import Family, register
from artforge.imaging import UINT8_NHWC, uint8_to_unit, unit_to_uint8
from artforge.families.style.network import StyleNetConfig, StyleTransferNet
from artforge.photos import photo_crops
from artforge.spec import ModelSpec

NAME = "style"


class StyleServing(nn.Module):
    """(content uint8 NHWC, style weights) -> stylised uint8 NHWC image (and the float image)."""

    def __init__(self, network: nn.Module, float_output: bool):
        super().__init__()
        self.network = network
        self.float_output = float_output

    def forward(self, content: torch.Tensor, style_weights: torch.Tensor):
        images = uint8_to_unit(content.permute(0, 3, 1, 2))  # (B, H, W, 3) uint8 -> (B, 3, H, W) in [-1, 1]
        # weights are normalised here too, so a blend such as [1, 1] means half and half
        weights = style_weights / style_weights.sum(dim=1, keepdim=True).clamp_min(1e-6)
        stylised = self.network(images, weights)
        if self.float_output:
            return unit_to_uint8(stylised), stylised
        return unit_to_uint8(stylised)


class StyleSpec(ModelSpec):
    """A photo of any size and a style-weight vector in, the stylised photo out."""

    def __init__(self, config, styles: list[str] | None = None, float_output: bool = False):
        outputs = [TensorSpec("image", "uint8", ("height", "width", 3), "stylised image, RGB, 0-255, NHWC")]
        if float_output:
            outputs.append(TensorSpec("image_float", "float32", (3, "height", "width"), "same in [-1, 1], NCHW"))
        super().__init__(
            family=NAME,
            inputs=(TensorSpec("content", "uint8", ("height", "width", 3), "photo, RGB, 0-255, NHWC"),
                    TensorSpec("style_weights", "float32", (config.num_styles,),
                               "one weight per style, normalised to sum 1 (one-hot picks a style)",
                               min_value=0, positive_sum=True)),
            outputs=tuple(outputs),
            dynamic_dims={"height": DynamicDim(16, 256, 2048), "width": DynamicDim(16, 256, 2048)},
            metadata={"styles": list(styles or range(config.num_styles)), "min_size": 16},
            normalization=UINT8_NHWC,
        )
        self.config = config
        self.float_output = float_output

    def serving_network(self, network: nn.Module) -> nn.Module:
        return StyleServing(network, self.float_output).eval()

    def sample_inputs(self, batch: int, seed: int, sizes: dict[str, int] | None = None) -> dict[str, np.ndarray]:
        sizes = sizes or self.optimal_sizes()
        rng = np.random.default_rng(seed)
        content = rng.integers(0, 256, (batch, sizes["height"], sizes["width"], 3), dtype=np.uint8)
        weights = rng.dirichlet(np.ones(self.config.num_styles), batch).astype(np.float32)
        return {"content": content, "style_weights": weights}

    def representative_inputs(self, batch: int, seed: int, sizes: dict[str, int] | None = None,
                              held_out: bool = False) -> dict[str, np.ndarray]:
        """Crops of the built-in photos, each with one style (requests mostly pick one)."""
        sizes = sizes or self.optimal_sizes()
        content = photo_crops(batch, sizes["height"], sizes["width"], seed, held_out=held_out)
        styles = np.random.default_rng(seed).integers(0, self.config.num_styles, batch)
        return {"content": content, "style_weights": np.eye(self.config.num_styles, dtype=np.float32)[styles]}


FAMILY = register(Family(
    name=NAME, description="fast neural style transfer, N styles in one network: (photo, style weights) -> image",
    config_cls=StyleNetConfig, build_network=StyleTransferNet,
    client="artforge.families.style.stylize:VERB", trainer="artforge.families.style.train:COMMAND",
    evaluator="artforge.families.style.evaluator:EVALUATOR", peers="artforge.families.style.peer:get_peer",
    make_spec=lambda config, meta, float_output=False: StyleSpec(config, meta.get("styles"), float_output)))
