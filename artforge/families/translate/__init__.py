"""The translation family (CycleGAN): unpaired conversion between two image domains, e.g. photo <-> painting.

One checkpoint holds both generators; it is served as one Triton model with a `direction` input. Both
generators run on every batch and each item keeps its direction's result (torch.where): no
data-dependent branch in the graph, so requests of either direction batch together, at twice the
compute of one direction. Config and networks: network.py; training: train.py; client verb
(`artforge translate`): client.py; evaluation (FD/KID to the target domain, cycle error): evaluator.py.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from artforge.contract import DynamicDim, TensorSpec
from artforge.registry import Family, register
from artforge.families.translate.network import TranslateConfig, TranslateNet
from artforge.imaging import UINT8_NHWC, uint8_to_unit, unit_to_uint8
from artforge.photos import photo_crops
from artforge.spec import ModelSpec

NAME = "translate"
DIRECTIONS = ("a2b", "b2a")
MIN_SIDE, MAX_SIDE = 16, 2048


class TranslateServing(nn.Module):
    """(image uint8 NHWC, direction (B, 1) int64: 0 a2b, 1 b2a) -> translated uint8 NHWC (and the float image)."""

    def __init__(self, network: TranslateNet, float_output: bool):
        super().__init__()
        self.network = network
        self.float_output = float_output

    def forward(self, image: torch.Tensor, direction: torch.Tensor):
        x = uint8_to_unit(image.permute(0, 3, 1, 2))
        out = torch.where(direction.view(-1, 1, 1, 1) == 0, self.network.a_to_b(x), self.network.b_to_a(x))
        if self.float_output:
            return unit_to_uint8(out), out
        return unit_to_uint8(out)


class TranslateSpec(ModelSpec):
    """A picture of any size and a direction in, the picture in the other domain out."""

    def __init__(self, config: TranslateConfig, meta: dict, float_output: bool = False):
        domains = list(meta.get("domains") or ["A", "B"])
        outputs = [TensorSpec("translated", "uint8", ("height", "width", 3), "the picture in the other domain")]
        if float_output:
            outputs.append(TensorSpec("translated_float", "float32", (3, "height", "width"), "same in [-1, 1], NCHW"))
        super().__init__(
            family=NAME,
            inputs=(TensorSpec("image", "uint8", ("height", "width", 3), "picture, RGB, 0-255, NHWC"),
                    TensorSpec("direction", "int64", (1,), f"0: {domains[0]} -> {domains[1]} (a2b), "
                               f"1: {domains[1]} -> {domains[0]} (b2a)", min_value=0, max_value=1)),
            outputs=tuple(outputs),
            dynamic_dims={"height": DynamicDim(MIN_SIDE, 256, MAX_SIDE), "width": DynamicDim(MIN_SIDE, 256, MAX_SIDE)},
            metadata={"domains": domains, "directions": list(DIRECTIONS), "min_size": MIN_SIDE,
                      "choices": {"direction": [f"{domains[0]}2{domains[1]}", f"{domains[1]}2{domains[0]}"]},
                      "held_out": meta.get("held_out")},
            normalization=UINT8_NHWC,
        )
        self.config = config
        self.float_output = float_output

    def serving_network(self, network: nn.Module) -> nn.Module:
        return TranslateServing(network, self.float_output).eval()

    def sample_inputs(self, batch: int, seed: int, sizes: dict[str, int] | None = None) -> dict[str, np.ndarray]:
        sizes, rng = sizes or self.optimal_sizes(), np.random.default_rng(seed)
        return {"image": rng.integers(0, 256, (batch, sizes["height"], sizes["width"], 3), dtype=np.uint8),
                "direction": rng.integers(0, 2, (batch, 1)).astype(np.int64)}

    def representative_inputs(self, batch: int, seed: int, sizes: dict[str, int] | None = None,
                              held_out: bool = False) -> dict[str, np.ndarray]:
        sizes = sizes or self.optimal_sizes()
        image = photo_crops(batch, sizes["height"], sizes["width"], seed, held_out=held_out)
        return {"image": image, "direction": np.random.default_rng(seed).integers(0, 2, (batch, 1)).astype(np.int64)}


FAMILY = register(Family(
    name=NAME, description="unpaired style conversion (CycleGAN): (image, direction a2b|b2a) -> the other domain",
    config_cls=TranslateConfig, build_network=TranslateNet,
    client="artforge.families.translate.client:VERB", trainer="artforge.families.translate.train:COMMAND",
    evaluator="artforge.families.translate.evaluator:EVALUATOR",
    make_spec=lambda config, meta, float_output=False: TranslateSpec(config, meta, float_output)))
