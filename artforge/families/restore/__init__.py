"""The restoration family (pix2pix): a damaged artwork and its damage mask in, the restored image out.

Everything about the family is declared here or named from here: config and networks (network.py),
the damage it learns to undo (damage.py), its serving contract (RestoreSpec, here), its training
(train.py), its client verb (`artforge restore`, client.py) and its evaluation against classical
inpainting (evaluator.py).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from artforge.contract import DynamicDim, TensorSpec
from artforge.families.restore.damage import damage_batch
from artforge.families.restore.network import RestoreConfig, RestoreNet
from artforge.imaging import UINT8_NHWC, uint8_to_unit, unit_to_uint8
from artforge.photos import photo_crops
from artforge.registry import Family, register
from artforge.spec import ModelSpec

NAME = "restore"
MIN_SIDE, MAX_SIDE = 16, 2048


class RestoreServing(nn.Module):
    """(image uint8 NHWC, mask uint8 (B, H, W, 1) in {0, 1}) -> restored uint8 NHWC (and the float image)."""

    def __init__(self, network: RestoreNet, float_output: bool):
        super().__init__()
        self.network = network
        self.float_output = float_output

    def forward(self, image: torch.Tensor, mask: torch.Tensor):
        restored = self.network(uint8_to_unit(image.permute(0, 3, 1, 2)), mask.permute(0, 3, 1, 2).float())
        if self.float_output:
            return unit_to_uint8(restored), restored
        return unit_to_uint8(restored)


def smallest_side(config: RestoreConfig) -> int:
    """The hd generator normalises its coarsest maps (2**depth smaller than the padded picture), and
    instance norm needs more than one pixel there; the U-Net's innermost level has no norm."""
    return MIN_SIDE if config.arch == "unet" else max(MIN_SIDE, 2 ** (config.depth + 1))


class RestoreSpec(ModelSpec):
    """A damaged picture of any size and its mask in, the restored picture out."""

    def __init__(self, config: RestoreConfig, meta: dict, float_output: bool = False):
        min_side = smallest_side(config)
        outputs = [TensorSpec("restored", "uint8", ("height", "width", 3), "restored image, RGB, 0-255, NHWC")]
        if float_output:
            outputs.append(TensorSpec("restored_float", "float32", (3, "height", "width"), "same in [-1, 1], NCHW"))
        super().__init__(
            family=NAME,
            inputs=(TensorSpec("image", "uint8", ("height", "width", 3), "damaged picture, RGB, 0-255, NHWC"),
                    TensorSpec("mask", "uint8", ("height", "width", 1),
                               "1 where paint is missing or scratched, else 0; all 0 = unknown (the model looks)",
                               min_value=0, max_value=1)),
            outputs=tuple(outputs),
            dynamic_dims={"height": DynamicDim(min_side, 256, MAX_SIDE), "width": DynamicDim(min_side, 256, MAX_SIDE)},
            metadata={"min_size": min_side, "trained_size": meta.get("training", {}).get("size"),
                      "held_out": meta.get("held_out")},
            normalization=UINT8_NHWC,
        )
        self.config = config
        self.float_output = float_output

    def serving_network(self, network: nn.Module) -> nn.Module:
        return RestoreServing(network, self.float_output).eval()

    def sample_inputs(self, batch: int, seed: int, sizes: dict[str, int] | None = None) -> dict[str, np.ndarray]:
        sizes = sizes or self.optimal_sizes()
        rng = np.random.default_rng(seed)
        shape = (batch, sizes["height"], sizes["width"])
        return {"image": rng.integers(0, 256, (*shape, 3), dtype=np.uint8),
                "mask": (rng.random((*shape, 1)) < 0.1).astype(np.uint8)}

    def representative_inputs(self, batch: int, seed: int, sizes: dict[str, int] | None = None,
                              held_out: bool = False) -> dict[str, np.ndarray]:
        """Damaged crops of the built-in photos, as a restoration request looks."""

        sizes = sizes or self.optimal_sizes()
        clean = photo_crops(batch, sizes["height"], sizes["width"], seed, held_out=held_out)
        damaged, masks = damage_batch(clean, [(seed, i) for i in range(batch)])
        return {"image": damaged, "mask": masks[..., None]}


FAMILY = register(Family(
    name=NAME, description="art restoration (pix2pix U-Net): (damaged image, damage mask) -> restored image",
    config_cls=RestoreConfig, build_network=RestoreNet,
    client="artforge.families.restore.client:VERB", trainer="artforge.families.restore.train:COMMAND",
    evaluator="artforge.families.restore.evaluator:EVALUATOR",
    make_spec=lambda config, meta, float_output=False: RestoreSpec(config, meta, float_output)))
