"""`artforge generate`: images from any generator family (DCGAN, StyleGAN2, diffusion) over gRPC, or in-process.

The request comes from the model's contract (artforge.generation), so the served model and its
checkpoint get the same inputs for a seed and give the same pixels (within one grey level).
Controls a model declares (a StyleGAN's truncation and style-mixing layer; a diffusion model's steps,
guidance, sampler and previews) are flags here; a latent walk (--interpolate N) moves the noise through
way points along great circles and writes a GIF; a diffusion model's previews can be a GIF too.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from artforge.errors import ArtforgeError
from artforge.generation import generation_request, latent_walk, noise_inputs
from artforge.imaging import make_grid, save_gif, save_png
from artforge.options import Command, ServerAddress, option
from artforge.serving.client import Client, resolve_label
from artforge.serving.generators import Events, Generator, local_generator, remote_generator

MAX_COUNT = 4096  # images held in memory at once: 4096 x 64x64x3 is 50 MB


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
             controls: dict[str, float] | None = None, on_event: Events | None = None) -> np.ndarray:
    """(count, H, W, 3) uint8 images for a seed (on_event sees a sampling loop's previews as they come)."""
    return model.images(request_for(model, count, seed, label, controls), on_event)


class PreviewFrames:
    """A sampling loop's pictures as they form: one frame per step at which pictures were sent, each the
    grid of every picture at that step (on_event collects them)."""

    def __init__(self, count: int, columns: int):
        self.count, self.columns, self.steps = count, columns, {}

    def on_event(self, item: int, step: int, picture: np.ndarray) -> None:
        self.steps.setdefault(step, {})[item] = picture

    def frames(self) -> np.ndarray:
        latest, frames = {}, []
        for step in sorted(self.steps):
            latest.update(self.steps[step])
            pictures = [latest.get(i, np.full_like(picture_shape_of(latest), 128)) for i in range(self.count)]
            frames.append(make_grid(np.stack(pictures), self.columns))
        return np.stack(frames)


def picture_shape_of(pictures: dict[int, np.ndarray]) -> np.ndarray:
    return next(iter(pictures.values()))


def walk(model: Generator, frames: int, points: int, seed: int, label: str | int | None = None,
         controls: dict[str, float] | None = None) -> np.ndarray:
    """(frames, H, W, 3) uint8: a looping latent walk through `points` seeded way points of one class."""
    if not 2 <= points <= frames <= MAX_COUNT:
        raise ArtforgeError(f"--interpolate {frames} needs 2 <= --walk-points ({points}) <= frames <= {MAX_COUNT}")
    walked = noise_inputs(model.inputs, model.metadata)
    if not walked:
        raise ArtforgeError("--interpolate walks a model's noise inputs, and this model has none (a diffusion model "
                            "draws its noise from a seed): use --previews-gif to watch its pictures form")
    request = request_for(model, points, seed, label if label is not None else
                          (0 if model.metadata.get("styles") else None), controls)
    return model.images(latent_walk(request, walked, frames))


MAX_MIXING_SIDE = 16  # sources per side of a mixing grid


def mixing_grid(model: Generator, rows: int, columns: int, seed: int, layer: int | None = None,
                label: str | int | None = None, controls: dict[str, float] | None = None) -> np.ndarray:
    """(rows + 1) * (columns + 1) pictures for a grid of columns + 1 columns, as the StyleGAN papers draw style
    mixing: the top row is the column sources and the first column the row sources (a blank corner), and each
    other cell the row's source whose layers from `layer` on take their style from the column's latent. The
    model says which inputs mix in its metadata's 'mixing' ({"latent", "second", "layer"})."""
    mixing = model.metadata.get("mixing")
    if not mixing:
        raise ArtforgeError("--mixing-grid needs a model that mixes styles (StyleGAN2): this one declares no "
                            "'mixing' in its metadata")
    slots = mixing_slots(model)
    layer = slots // 2 if layer is None else layer
    if not (1 <= rows <= MAX_MIXING_SIDE and 1 <= columns <= MAX_MIXING_SIDE and 0 <= layer < slots):
        raise ArtforgeError(f"a mixing grid needs 1 to {MAX_MIXING_SIDE} rows and columns (got {rows}x{columns}) and "
                            f"a layer 0 to {slots - 1} (got {layer})")
    unmixed = {k: v for k, v in (controls or {}).items() if k != mixing["layer"]}
    sources = request_for(model, rows + columns, seed, label, unmixed)
    mixed = {name: np.repeat(values[:rows], columns, axis=0) for name, values in sources.items()}
    mixed[mixing["second"]] = np.tile(sources[mixing["latent"]][rows:], (rows, 1))
    mixed[mixing["layer"]] = np.full_like(mixed[mixing["layer"]], layer)
    pictures, cells = model.images(sources), model.images(mixed)
    grid = [np.full_like(pictures[0], 255), *pictures[rows:]]
    for row in range(rows):
        grid += [pictures[row], *cells[row * columns:(row + 1) * columns]]
    return np.stack(grid)


def mixing_slots(model: Generator) -> int:
    """How many layers take a style (the mixing layer's top value, which means no mixing)."""
    return int(model.limits.get(model.metadata["mixing"]["layer"], {}).get("max", 0))


def mixing_shape(text: str) -> tuple[int, int]:
    """'3x4' -> (3, 4)."""
    try:
        rows, columns = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise ArtforgeError(f"--mixing-grid {text}: give ROWSxCOLUMNS, e.g. 3x4") from None
    return rows, columns


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
    steps: int | None = option(None, help="diffusion: denoising steps (default: the model's, 20)")
    guidance: float | None = option(None, help="diffusion: classifier-free guidance, 0 ignores the class, 1 follows it "
                                               "as learnt, more follows it harder (default: the model's, 2)")
    sampler: str | None = option(None, help="diffusion: ddim or dpmpp_2m (default: dpmpp_2m, DPM-Solver++ 2M)")
    previews: int | None = option(None, metavar="K", help="diffusion: the server sends the picture as it forms every K "
                                                          "steps (shown with --previews-gif)")
    previews_gif: str | None = option(None, metavar="GIF", help="diffusion: write the pictures forming, one frame "
                                                                "per preview, as an animated GIF")
    mixing_grid: str | None = option(None, metavar="ROWSxCOLUMNS", help="StyleGAN: a style-mixing grid: column "
                                                                        "sources on top, row sources on the left, "
                                                                        "each cell the row's picture with the "
                                                                        "column's styles from --mix-from on "
                                                                        "(default: half the layers)")
    interpolate: int | None = option(None, metavar="FRAMES", help="write a latent walk of FRAMES images as an "
                                                                  "animated GIF (--out walk.gif)")
    walk_points: int = option(4, help="with --interpolate: way points of the loop")
    fps: float = option(12.0, help="with --interpolate: frames per second")
    checkpoint: str | None = option(None, help="generate in-process from this checkpoint or run instead of a server")
    columns: int | None = option(None, help="grid columns")
    out: str = option(help="grid.png, a folder ending in / for single PNGs, or walk.gif", required=True)


def controls_given(opts: GenerateOptions, metadata: dict[str, Any]) -> dict[str, float]:
    given = {"truncation": opts.truncation, "mix_from": opts.mix_from, "steps": opts.steps,
             "guidance": opts.guidance, "sampler": sampler_index(opts.sampler, metadata), "previews": opts.previews}
    return {name: value for name, value in given.items() if value is not None}


def sampler_index(name: str | None, metadata: dict[str, Any]) -> int | None:
    if name is None:
        return None
    samplers = metadata.get("samplers", [])
    if name not in samplers:
        raise ArtforgeError(f"--sampler {name}: this model's samplers are {samplers or 'none (not a diffusion model)'}")
    return samplers.index(name)


def run(opts: GenerateOptions) -> None:
    if opts.interpolate and Path(opts.out).suffix.lower() != ".gif":
        raise ArtforgeError(f"--interpolate writes an animated GIF: --out {opts.out} must end in .gif")
    if opts.previews_gif and Path(opts.previews_gif).suffix.lower() != ".gif":
        raise ArtforgeError(f"--previews-gif {opts.previews_gif} must end in .gif")
    if opts.checkpoint:
        write_output(local_generator(opts.checkpoint), opts)
        return
    with Client(opts.url, timeout_s=opts.timeout) as client:
        write_output(remote_generator(client, opts.model), opts)


def write_output(model: Generator, opts: GenerateOptions) -> None:
    controls = controls_given(opts, model.metadata)
    if opts.interpolate:
        frames = walk(model, opts.interpolate, opts.walk_points, opts.seed, opts.label, controls)
        save_gif(frames, Path(opts.out), opts.fps, upscale=max(1, 128 // frames.shape[1]))
        print(f"wrote a {len(frames)}-frame latent walk to {opts.out}")
        return
    if opts.mixing_grid:
        rows, columns = mixing_shape(opts.mixing_grid)
        pictures = mixing_grid(model, rows, columns, opts.seed, opts.mix_from, opts.label, controls)
        save_images(pictures, opts.out, columns + 1)
        layer = mixing_slots(model) // 2 if opts.mix_from is None else opts.mix_from
        print(f"wrote a {rows}x{columns} style-mixing grid (the columns' styles from layer {layer} on) to {opts.out}")
        return
    columns = opts.columns or (opts.count if opts.label is not None else min(opts.count, 8))
    previews = PreviewFrames(opts.count, columns) if opts.previews_gif else None
    images = generate(model, opts.count, opts.seed, opts.label, controls, previews and previews.on_event)
    paths = save_images(images, opts.out, columns)
    print(f"wrote {len(images)} image(s) to {paths[0] if len(paths) == 1 else opts.out}")
    if previews:
        frames = previews.frames()
        save_gif(frames, Path(opts.previews_gif), opts.fps, upscale=max(1, 128 // images.shape[1]))
        print(f"wrote the pictures forming ({len(frames)} frames) to {opts.previews_gif}")


VERB = Command(
    "generate", help="generate images with a DCGAN, StyleGAN2 or diffusion model over Triton gRPC (or in-process "
                     "from a checkpoint)",
    description="Generate images with a generator served by Triton; the same --seed gives the same images as "
                "--checkpoint (in-process PyTorch), within one grey level.",
    examples="  artforge generate --model dcgan --count 16 --seed 7 --out grid.png\n"
             "  artforge generate --model dcgan --count 8 --class waves --out samples/\n"
             "  artforge generate --model stylegan --truncation 0.7 --class 2 --out grid.png\n"
             "  artforge generate --model stylegan --interpolate 48 --out walk.gif\n"
             "  artforge generate --model stylegan --mixing-grid 3x4 --mix-from 4 --out mixing.png\n"
             "  artforge generate --model diffusion --steps 20 --guidance 2 --previews 5 --out art.png "
             "--previews-gif forming.gif\n"
             "  artforge generate --checkpoint runs/dcgan --count 16 --seed 7 --out local.png",
    options=GenerateOptions, run=run)
