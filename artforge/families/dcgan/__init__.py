"""The DCGAN family: a style-conditional image generator, (noise, style index) -> image.

Everything artforge needs to know about the family is declared here or named from here: its
network config and networks (network.py), its serving contract (DCGANSpec, here), its
training (train.py), all in this package; its client verb is the generators' shared `artforge
generate` (artforge/families/generate.py).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from artforge.contract import TensorSpec
from artforge.registry import Family, register
from artforge.imaging import UINT8_NHWC, unit_to_uint8
from artforge.families.dcgan.network import DCGANConfig, Generator
from artforge.spec import ModelSpec

NAME = "dcgan"


class DCGANServing(nn.Module):
    """(z, style) -> uint8 NHWC image (and optionally the float NCHW image for parity tests)."""

    def __init__(self, generator: nn.Module, float_output: bool):
        super().__init__()
        self.generator = generator
        self.float_output = float_output

    def forward(self, z: torch.Tensor, style: torch.Tensor):
        images = self.generator(z, style[:, 0])  # style: (B, 1) int64 -> (B,)
        if self.float_output:
            return unit_to_uint8(images), images
        return unit_to_uint8(images)


class DCGANSpec(ModelSpec):
    """Noise and a style index in, a ready-to-save image out."""

    def __init__(self, config, classes: list[str] | None = None, float_output: bool = False):
        size = config.image_size
        outputs = [TensorSpec("image", "uint8", (size, size, 3), "generated image, RGB, 0-255, NHWC")]
        if float_output:
            outputs.append(TensorSpec("image_float", "float32", (3, size, size), "same image in [-1, 1], NCHW"))
        super().__init__(
            family=NAME,
            inputs=(TensorSpec("z", "float32", (config.z_dim,), "standard normal noise"),
                    # the class label: which art style of the data set (its subfolders) to draw. The wire
                    # name stays "style": renaming it would stop new versions joining models already
                    # exported and break their clients (a new version must keep its tensors)
                    TensorSpec("style", "int64", (1,), f"class label: art-style index 0..{config.num_classes - 1} "
                               "of the training data's subfolders (metadata 'styles' names them)",
                               min_value=0, max_value=config.num_classes - 1)),
            outputs=tuple(outputs),
            # class_input: which input holds the class, so `artforge evaluate --critic` can check it came out
            metadata={"styles": list(classes or range(config.num_classes)), "class_input": "style",
                      "image_size": size},
            normalization=UINT8_NHWC,
        )
        self.config = config
        self.float_output = float_output

    def serving_network(self, network: nn.Module) -> nn.Module:
        return DCGANServing(network, self.float_output).eval()

    def sample_inputs(self, batch: int, seed: int, sizes: dict[str, int] | None = None) -> dict[str, np.ndarray]:
        styles = np.random.default_rng(seed + 1).integers(0, self.config.num_classes, batch)
        return generation_inputs(self.config.z_dim, styles, seed)


def generation_inputs(z_dim: int, styles: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """DCGAN inputs for a seed: the same noise whether images are made in-process or over gRPC."""
    z = np.random.default_rng(seed).standard_normal((len(styles), z_dim)).astype(np.float32)
    return {"z": z, "style": np.asarray(styles, np.int64).reshape(-1, 1)}


FAMILY = register(Family(
    name=NAME, description="style-conditional DCGAN image generator: (z, style index) -> image",
    config_cls=DCGANConfig, build_network=Generator,
    client="artforge.families.generate:VERB", trainer="artforge.families.dcgan.train:COMMAND",
    make_spec=lambda config, meta, float_output=False: DCGANSpec(config, meta.get("classes"), float_output)))
