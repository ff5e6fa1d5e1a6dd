"""`artforge generate`: images from any generator family (DCGAN, StyleGAN2) over gRPC, or in-process.

The request comes from the model's contract (artforge.generation), so the served model and its
checkpoint get the same inputs for a seed and give the same pixels (within one grey level).
Controls a model declares (a StyleGAN's truncation and style-mixing layer) are flags here; a latent
walk (--interpolate N) moves the noise through way points along great circles and writes a GIF.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from artforge.contract import TensorSpec
from artforge.errors import ArtforgeError
from artforge.generation import generation_request, latent_walk, noise_inputs
from artforge.imaging import make_grid, save_gif, save_png
from artforge.options import Command, ServerAddress, option
from artforge.registry import load_network, spec_for
from artforge.serving.client import Client, resolve_label

MAX_COUNT = 4096  # images held in memory at once: 4096 x 64x64x3 is 50 MB


@dataclass
class Generator:
    """A generator model as the client sees it: its contract and a way to run a request."""

    inputs: tuple[TensorSpec, ...]
    metadata: dict[str, Any]
    limits: dict[str, Any]
    max_batch: int
    run: Callable[[dict[str, np.ndarray]], np.ndarray]  # request -> (B, H, W, 3) uint8

    def images(self, request: dict[str, np.ndarray]) -> np.ndarray:
        count = len(next(iter(request.values())))
        step = self.max_batch or count
        return np.concatenate([self.run({k: v[i:i + step] for k, v in request.items()}) for i in range(0, count, step)])


def class_indices(count: int, num_classes: int, label: int | None) -> np.ndarray:
    """One class for all, or all classes in turn (a grid with one column per class)."""
    if not 1 <= count <= MAX_COUNT:
        raise ArtforgeError(f"--count must be 1 to {MAX_COUNT}, got {count}; run the command again for more")
    return np.full(count, label) if label is not None else np.arange(count) % max(1, num_classes)


def request_for(model: Generator, count: int, seed: int, label: str | int | None = None,
                controls: dict[str, float] | None = None) -> dict[str, np.ndarray]:
    names = model.metadata.get("styles", [])  # the class names (the wire keeps the first name it had)
    chosen = resolve_label(label, names, kind="class") if names else None
    if label is not None and not names:
        raise ArtforgeError("this model has no classes (it was trained on one folder); leave out --class")
    classes = class_indices(count, len(names), chosen) if model.metadata.get("class_input") else None
    if classes is None:
        class_indices(count, 1, None)  # the count check
    return generation_request(model.inputs, model.metadata, model.limits, count, seed, classes, controls)


def generate(model: Generator, count: int, seed: int, label: str | int | None = None,
             controls: dict[str, float] | None = None) -> np.ndarray:
    """(count, H, W, 3) uint8 images for a seed."""
    return model.images(request_for(model, count, seed, label, controls))


def walk(model: Generator, frames: int, points: int, seed: int, label: str | int | None = None,
         controls: dict[str, float] | None = None) -> np.ndarray:
    """(frames, H, W, 3) uint8: a looping latent walk through `points` seeded way points of one class."""
    if not 2 <= points <= frames <= MAX_COUNT:
        raise ArtforgeError(f"--interpolate {frames} needs 2 <= --walk-points ({points}) <= frames <= {MAX_COUNT}")
    request = request_for(model, points, seed, label if label is not None else
                          (0 if model.metadata.get("styles") else None), controls)
    return model.images(latent_walk(request, noise_inputs(model.inputs, model.metadata), frames))


def remote_generator(client, name: str) -> Generator:
    info = client.model(name)
    image = generator_image_output(info.inputs, info.outputs, f"model '{name}' ('{info.family or 'non-artforge'}')")
    return Generator(info.inputs, info.metadata, info.limits, info.max_batch,
                     lambda request: client.infer(name, request, [image])[image])


def generator_image_output(inputs: tuple[TensorSpec, ...], outputs: tuple[TensorSpec, ...], what: str) -> str:
    """The image output's name, if the contract is a generator's: fixed-size inputs (noise, a class,
    controls), none of them a picture, and a uint8 image out."""
    image = next((t.name for t in outputs if t.dtype == "uint8" and len(t.shape) == 3), None)
    if image is None or any(t.dtype == "uint8" or any(isinstance(d, str) for d in t.shape) for t in inputs):
        raise ArtforgeError(f"{what} is not a generator (noise and a class in, an image out); "
                            "`artforge generate` makes images with DCGAN and StyleGAN2 models")
    return image


def local_generator(checkpoint: str | Path) -> Generator:
    """The checkpoint's serving network in-process (PyTorch), behind the same interface."""
    network, ckpt = load_network(checkpoint)
    spec = spec_for(ckpt)
    image = generator_image_output(spec.inputs, spec.outputs, f"{checkpoint} (a '{ckpt.family}' model)")
    index = [t.name for t in spec.outputs].index(image)
    serving = spec.serving_network(network)

    @torch.no_grad()
    def run(request: dict[str, np.ndarray]) -> np.ndarray:
        out = serving(*(torch.from_numpy(request[t.name]) for t in spec.inputs))
        return (out if isinstance(out, tuple) else (out,))[index].numpy()

    return Generator(spec.inputs, spec.metadata, spec.input_limits(), 0, run)


def save_images(images: np.ndarray, out: str | Path, columns: int) -> list[Path]:
    """A PNG grid, or one PNG per image when `out` is a folder (ends with '/' or exists as one)."""
    out_text = str(out)
    out = Path(out)
    if out_text.endswith("/") or out.is_dir():
        out.mkdir(parents=True, exist_ok=True)
        paths = [out / f"{i:04d}.png" for i in range(len(images))]
        for image, path in zip(images, paths):
            save_png(image, path)
        return paths
    if out.suffix.lower() != ".png":
        raise ArtforgeError(f"--out {out} must end in .png (a grid) or '/' (a folder of PNGs)")
    save_png(make_grid(images, columns), out, upscale=max(1, 128 // images.shape[1]))
    return [out]


# ---- the command (generator families name it as their client: Family(client="...generate:VERB")) ----
@dataclass(kw_only=True)
class GenerateOptions(ServerAddress):
    model: str = option("dcgan", help="model name on the server")
    count: int = option(16, help="images to generate")
    seed: int = option(0, help="noise seed")
    label: str | None = option(None, help="class index or name, e.g. an art style of the training data's subfolders "
                                          "(default: all classes in turn)", flag="--class", aliases=("--style",))
    truncation: float | None = option(
        None, metavar="PSI", help="StyleGAN: pull each image towards its class's average, 1 = none, 0 = the "
                                  "average (0.7 is the usual trade of variety for quality)")
    mix_from: int | None = option(
        None, metavar="LAYER", help="StyleGAN: layers from LAYER on take their style from a second latent (style "
                                    "mixing; low LAYER: the second latent sets the layout, high: only colour and "
                                    "texture)")
    interpolate: int | None = option(None, metavar="FRAMES", help="write a latent walk of FRAMES images as an "
                                                                  "animated GIF (--out walk.gif)")
    walk_points: int = option(4, help="with --interpolate: way points of the loop")
    fps: float = option(12.0, help="with --interpolate: frames per second")
    checkpoint: str | None = option(None, help="generate in-process from this checkpoint or run instead of a server")
    columns: int | None = option(None, help="grid columns")
    out: str = option(help="grid.png, a folder ending in / for single PNGs, or walk.gif", required=True)


def controls_given(opts: GenerateOptions) -> dict[str, float]:
    given = {"truncation": opts.truncation, "mix_from": opts.mix_from}
    return {name: value for name, value in given.items() if value is not None}


def run(opts: GenerateOptions) -> None:
    if opts.interpolate and Path(opts.out).suffix.lower() != ".gif":
        raise ArtforgeError(f"--interpolate writes an animated GIF: --out {opts.out} must end in .gif")
    if opts.checkpoint:
        write_output(local_generator(opts.checkpoint), opts)
        return
    with Client(opts.url, timeout_s=opts.timeout) as client:
        write_output(remote_generator(client, opts.model), opts)


def write_output(model: Generator, opts: GenerateOptions) -> None:
    controls = controls_given(opts)
    if opts.interpolate:
        frames = walk(model, opts.interpolate, opts.walk_points, opts.seed, opts.label, controls)
        save_gif(frames, Path(opts.out), opts.fps, upscale=max(1, 128 // frames.shape[1]))
        print(f"wrote a {len(frames)}-frame latent walk to {opts.out}")
        return
    images = generate(model, opts.count, opts.seed, opts.label, controls)
    columns = opts.columns or (len(images) if opts.label is not None else min(len(images), 8))
    paths = save_images(images, opts.out, columns)
    print(f"wrote {len(images)} image(s) to {paths[0] if len(paths) == 1 else opts.out}")


VERB = Command(
    "generate", help="generate images with a DCGAN or StyleGAN2 over Triton gRPC (or in-process from a checkpoint)",
    description="Generate images with a generator served by Triton; the same --seed gives the same images as "
                "--checkpoint (in-process PyTorch), within one grey level.",
    examples="  artforge generate --model dcgan --count 16 --seed 7 --out grid.png\n"
             "  artforge generate --model dcgan --count 8 --class waves --out samples/\n"
             "  artforge generate --model stylegan --truncation 0.7 --class 2 --out grid.png\n"
             "  artforge generate --model stylegan --interpolate 48 --out walk.gif\n"
             "  artforge generate --checkpoint runs/dcgan --count 16 --seed 7 --out local.png",
    options=GenerateOptions, run=run)
