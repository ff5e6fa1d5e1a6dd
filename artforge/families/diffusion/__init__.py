"""The diffusion family: a class-conditional denoising diffusion model (diffusers' UNet2DModel), sampled on
the server with DDIM or DPM-Solver++ and classifier-free guidance, previews streamed as it goes.

Everything artforge needs to know about the family is declared here or named from here: its network
config and denoiser (network.py), its serving contract (DiffusionSpec, here: the denoiser's tensors, and
the sampling loop clients see), its training (train.py); its client verb is the generators' shared
`artforge generate` (artforge/families/generate.py), which streams previews from models served as a loop.
"""
from __future__ import annotations

import numpy as np
from torch import nn

from artforge.contract import SAMPLER_NAMES, DenoisingLoop, TensorSpec
from artforge.families.diffusion.network import DiffusionConfig, Denoiser
from artforge.registry import Family, register
from artforge.spec import ModelSpec

NAME = "diffusion"


class DiffusionSpec(ModelSpec):
    """The denoiser's tensors (what ONNX, TensorRT and the parity gate see) and the sampler clients use."""

    def __init__(self, config: DiffusionConfig, classes: list[str] | None = None, float_output: bool = False):
        size, channels = config.image_size, config.channels
        sampler = DenoisingLoop("sample", "timestep", "class_label", "prediction", size, config.num_classes,
                                config.schedule(), channels)
        super().__init__(
            family=NAME,
            inputs=(TensorSpec("sample", "float32", (channels, size, size), "noisy picture, NCHW, the [-1, 1] scale"),
                    TensorSpec("timestep", "int64", (1,), "training timestep", min_value=0,
                               max_value=config.num_train_timesteps - 1),
                    TensorSpec("class_label", "int64", (1,), f"class index; {config.num_classes} is no class",
                               min_value=0, max_value=config.num_classes)),
            outputs=(TensorSpec("prediction", "float32", (channels, size, size), config.prediction_type),),
            # class_input: which served input holds the class (`artforge evaluate --critic` checks it came out);
            # controls: the sampler's settings, which generator requests fill in by name
            metadata={"styles": list(classes or range(config.num_classes)), "class_input": "style",
                      "image_size": size, "controls": sampler.controls(),
                      "samplers": list(SAMPLER_NAMES)},
            sampler=sampler,
        )
        self.config = config

    def serving_network(self, network: nn.Module) -> nn.Module:
        return network.eval()

    def sample_inputs(self, batch: int, seed: int, sizes: dict[str, int] | None = None) -> dict[str, np.ndarray]:
        rng, size = np.random.default_rng(seed), self.config.image_size
        return {"sample": rng.standard_normal((batch, self.config.channels, size, size)).astype(np.float32),
                "timestep": rng.integers(0, self.config.num_train_timesteps, (batch, 1)),
                "class_label": rng.integers(0, self.config.num_classes + 1, (batch, 1))}


FAMILY = register(Family(
    name=NAME, description="class-conditional diffusion (diffusers UNet2DModel): DDIM / DPM-Solver++ on the server, "
                           "classifier-free guidance, streamed previews",
    config_cls=DiffusionConfig, build_network=Denoiser,
    client="artforge.families.generate:VERB", trainer="artforge.families.diffusion.train:COMMAND",
    make_spec=lambda config, meta, float_output=False: DiffusionSpec(config, meta.get("classes"), float_output)))
