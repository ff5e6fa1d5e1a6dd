"""Generator models (a class, noise or a seed, controls in; pictures out) behind one interface, served or
in-process: what `artforge generate` and `artforge evaluate` draw pictures from.

A generator answers a request in one call (DCGAN, StyleGAN2), or is a sampling loop (diffusion): then a
request's items go to the server as separate streamed requests sent at once, which the server steps as
one batch, and in-process the same numpy sampler (artforge/serving/denoising.py) runs over the
checkpoint's network. Either way a seed gives the same pictures served and in-process.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from artforge.contract import DenoisingLoop, TensorSpec
from artforge.errors import ArtforgeError
from artforge.registry import load_network, spec_for
from artforge.serving import denoising

# a sampling loop's pictures sent to the server at once (it steps up to its max_streams together)
SAMPLING_CHUNK = 64
Events = Callable[[int, int, np.ndarray], None]  # (item, steps done, (H, W, 3) uint8 picture) as they come


@dataclass
class Generator:
    """A generator model as the client sees it: its contract and a way to run a request."""

    inputs: tuple[TensorSpec, ...]
    metadata: dict[str, Any]
    limits: dict[str, Any]
    max_batch: int
    # (request, on_event or None) -> (B, H, W, 3) uint8; on_event sees a sampling loop's previews
    run: Callable[[dict[str, np.ndarray], Events | None], np.ndarray]
    source: dict[str, Any] = field(default_factory=dict)  # what makes the pictures: a checkpoint, a served model

    def images(self, request: dict[str, np.ndarray], on_event: Events | None = None) -> np.ndarray:
        count = len(next(iter(request.values())))
        step = self.max_batch or count
        return np.concatenate([self.run({k: v[i:i + step] for k, v in request.items()}, shifted(on_event, i))
                               for i in range(0, count, step)])


def shifted(on_event: Events | None, offset: int) -> Events | None:
    return None if on_event is None else lambda item, step, picture: on_event(item + offset, step, picture)


def generator_image_output(inputs: tuple[TensorSpec, ...], outputs: tuple[TensorSpec, ...], what: str) -> str:
    """The image output's name, if the contract is a generator's: fixed-size inputs (noise, a class,
    controls), none of them a picture, and a uint8 image out."""
    image = next((t.name for t in outputs if t.dtype == "uint8" and len(t.shape) == 3), None)
    if image is None or any(t.dtype == "uint8" or any(isinstance(d, str) for d in t.shape) for t in inputs):
        raise ArtforgeError(f"{what} is not a generator (noise and a class in, an image out); "
                            "`artforge generate` makes images with DCGAN, StyleGAN2 and diffusion models")
    return image


def remote_generator(client, name: str) -> Generator:
    """A model on Triton (client: an artforge.serving.client.Client)."""
    info = client.model(name)
    image = generator_image_output(info.inputs, info.outputs, f"model '{name}' ('{info.family or 'non-artforge'}')")
    source = {"model": name, "url": client.url, "family": info.family}
    if info.sampler:
        return Generator(info.inputs, info.metadata, info.limits, SAMPLING_CHUNK,
                         lambda request, on_event: streamed_pictures(client, name, request, on_event), source)
    return Generator(info.inputs, info.metadata, info.limits, info.max_batch,
                     lambda request, on_event: client.infer(name, request, [image])[image], source)


def streamed_pictures(client, name: str, request: dict[str, np.ndarray], on_event: Events | None) -> np.ndarray:
    """Each item of the request as its own streamed request, all sent at once; the final pictures."""
    count = len(next(iter(request.values())))
    items = [{k: v[i:i + 1] for k, v in request.items()} for i in range(count)]
    finals: dict[int, np.ndarray] = {}
    for index, outputs in client.stream_many(name, items):
        step, picture = int(outputs["step"].reshape(-1)[0]), outputs["image"][0]
        if on_event:
            on_event(index, step, picture)
        if step == int(items[index]["steps"].reshape(-1)[0]):
            finals[index] = picture
    missing = sorted(set(range(count)) - set(finals))
    if missing:
        raise ArtforgeError(f"model '{name}' ended {len(missing)} request(s) without a final picture")
    return np.stack([finals[i] for i in range(count)])


def local_generator(checkpoint: str | Path) -> Generator:
    """The checkpoint's serving network in-process (PyTorch), behind the same interface."""
    network, ckpt = load_network(checkpoint)
    spec = spec_for(ckpt)
    served = spec.served()
    generator_image_output(served.inputs, served.outputs, f"{checkpoint} (a '{ckpt.family}' model)")
    serving = spec.serving_network(network)
    source = {"checkpoint": str(ckpt.path), "step": ckpt.step, "family": ckpt.family}
    if spec.sampler:
        denoise = torch_denoiser(serving)
        return Generator(served.inputs, spec.metadata, served.input_limits(), SAMPLING_CHUNK,
                         lambda request, on_event: sample_locally(denoise, spec.sampler, request, on_event), source)
    index = [t.name for t in spec.outputs].index(generator_image_output(spec.inputs, spec.outputs, ""))

    @torch.no_grad()
    def run(request: dict[str, np.ndarray], on_event: Events | None) -> np.ndarray:
        out = serving(*(torch.from_numpy(request[t.name]) for t in spec.inputs))
        return (out if isinstance(out, tuple) else (out,))[index].numpy()

    return Generator(spec.inputs, spec.metadata, spec.input_limits(), 0, run, source)


def torch_denoiser(network: nn.Module) -> Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]:
    """denoise(x, t, class) over a PyTorch denoiser, for denoising.DenoiseBatch."""
    @torch.no_grad()
    def denoise(x: np.ndarray, t: np.ndarray, classes: np.ndarray) -> np.ndarray:
        return network(torch.from_numpy(x), torch.from_numpy(t), torch.from_numpy(classes)).numpy()
    return denoise


def sample_locally(denoise, loop: DenoisingLoop, request: dict[str, np.ndarray], on_event: Events | None = None,
                   ) -> np.ndarray:
    """A sampling loop's request (its served inputs, one row per picture) run in-process: final pictures."""
    settings = loop.to_json()
    pictures = [denoising.Denoising(settings, *(request[name][i, 0] for name in ("style", "seed", "steps", "guidance")),
                                    denoising.SAMPLERS[int(request["sampler"][i, 0])], request["previews"][i, 0])
                for i in range(len(request["seed"]))]
    report = (lambda index, event: on_event(index, *event)) if on_event else (lambda index, event: None)
    return denoising.sample(denoise, pictures, report)
