"""The StyleGAN2 family: a style-based, class-conditional image generator, the DCGAN's upgrade.

Everything artforge needs to know about the family is declared here or named from here: its config
and networks (network.py), its serving contract (StyleGANSpec, here), its training with DiffAugment
(training/augment.py), lazy R1 and style mixing (train.py); its client verb is the generators' shared
`artforge generate` (artforge/families/generate.py), which reads the truncation and mixing controls from the
contract below.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from artforge.contract import TensorSpec
from artforge.registry import Family, register
from artforge.families.stylegan.network import Generator, StyleGANConfig
from artforge.generation import generation_request
from artforge.imaging import UINT8_NHWC, unit_to_uint8
from artforge.spec import ModelSpec

NAME = "stylegan"
MAX_TRUNCATION = 2.0  # psi above 1 exaggerates a style; past 2 images break down


class StyleGANServing(nn.Module):
    """(z, style, truncation, noise, z_mix, mix_from) -> uint8 NHWC image (and the float image for parity)."""

    def __init__(self, generator: Generator, float_output: bool):
        super().__init__()
        self.generator = generator
        self.float_output = float_output

    def forward(self, z, style, truncation, noise, z_mix, mix_from):
        images = self.generator(z, style[:, 0], noise, truncation[:, 0], z_mix, mix_from[:, 0])
        if self.float_output:
            return unit_to_uint8(images), images
        return unit_to_uint8(images)


def style_slots(config: StyleGANConfig) -> list[str]:
    """What each w slot drives, for --mix-from: low slots set layout, high ones colour and texture."""
    names = ["4x4 conv", "4x4 rgb"]
    for r in config.resolutions[1:]:
        names += [f"{r}x{r} conv (up)", f"{r}x{r} conv", f"{r}x{r} rgb"]
    return names


class StyleGANSpec(ModelSpec):
    """Latent, style, truncation, noise and an optional second latent in; an image out."""

    def __init__(self, config: StyleGANConfig, classes: list[str] | None = None, float_output: bool = False):
        size, last_class = config.image_size, config.num_classes - 1
        outputs = [TensorSpec("image", "uint8", (size, size, 3), "generated image, RGB, 0-255, NHWC")]
        if float_output:
            outputs.append(TensorSpec("image_float", "float32", (3, size, size), "same image, about [-1, 1], NCHW"))
        super().__init__(
            family=NAME,
            inputs=(TensorSpec("z", "float32", (config.z_dim,), "latent: standard normal"),
                    TensorSpec("style", "int64", (1,), f"class label: art-style index 0..{last_class} (metadata "
                               "'styles' names them)", min_value=0, max_value=last_class),
                    TensorSpec("truncation", "float32", (1,), "psi: 1 = none, 0 = the style's average image",
                               min_value=0.0, max_value=MAX_TRUNCATION),
                    TensorSpec("noise", "float32", (config.noise_size,), "standard normal: every layer's noise map, "
                               f"concatenated (sides {config.noise_shapes}); fixed noise, fixed image"),
                    TensorSpec("z_mix", "float32", (config.z_dim,), "second latent for style mixing"),
                    TensorSpec("mix_from", "int64", (1,), f"w slot from which z_mix takes over; {config.num_ws} = "
                               "no mixing (metadata 'style_slots' says what each slot drives)",
                               min_value=0, max_value=config.num_ws)),
            outputs=tuple(outputs),
            metadata={"styles": list(classes or range(config.num_classes)), "class_input": "style",
                      "controls": {"truncation": 1.0, "mix_from": config.num_ws}, "image_size": size,
                      "style_slots": style_slots(config),
                      "mixing": {"latent": "z", "second": "z_mix", "layer": "mix_from"}},
            normalization=UINT8_NHWC,
            parity_tolerance=1e-3,  # ~30 chained modulated layers: float error grows with depth
        )
        self.config = config
        self.float_output = float_output

    def serving_network(self, network: nn.Module) -> nn.Module:
        return StyleGANServing(network, self.float_output).eval()

    def sample_inputs(self, batch: int, seed: int, sizes: dict[str, int] | None = None) -> dict[str, np.ndarray]:
        """Requests with every control exercised: random truncation and mixing layer (parity covers them)."""
        request = generation_request(self.inputs, {**self.metadata, "controls": {}}, self.input_limits(), batch, seed)
        rng = np.random.default_rng(seed + 1)
        request["truncation"] = rng.uniform(0.3, 1.0, (batch, 1)).astype(np.float32)
        return request

    def representative_inputs(self, batch: int, seed: int, sizes: dict[str, int] | None = None,
                              held_out: bool = False) -> dict[str, np.ndarray]:
        """Requests as `artforge generate` makes them: controls at their defaults."""
        return generation_request(self.inputs, self.metadata, self.input_limits(), batch, seed)


@torch.no_grad()
def generate_images(generator: Generator, config: StyleGANConfig, labels: np.ndarray, seed: int,
                    psi: float = 1.0) -> np.ndarray:
    """(N, S, S, 3) uint8 from a network in-process, with the requests `artforge generate` sends for a seed."""
    spec = StyleGANSpec(config)
    request = generation_request(spec.inputs, spec.metadata, spec.input_limits(), len(labels), seed,
                                 classes=labels, controls={"truncation": psi})
    device = next(generator.parameters()).device
    serving = StyleGANServing(generator, False).eval()
    tensors = [torch.from_numpy(request[t.name]).to(device) for t in spec.inputs]
    return torch.cat([serving(*(t[i:i + 256] for t in tensors)).cpu() for i in range(0, len(labels), 256)]).numpy()


FAMILY = register(Family(
    name=NAME, description="StyleGAN2 image generator: (z, style, truncation, noise) -> image; style mixing",
    config_cls=StyleGANConfig, build_network=Generator,
    client="artforge.families.generate:VERB", trainer="artforge.families.stylegan.train:COMMAND",
    make_spec=lambda config, meta, float_output=False: StyleGANSpec(config, meta.get("classes"), float_output)))
