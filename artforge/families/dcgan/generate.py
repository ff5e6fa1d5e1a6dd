"""`artforge generate`: DCGAN images over gRPC from Triton, or in-process from a checkpoint.

Both paths feed the same inputs for a seed (artforge.families.dcgan.generation_inputs) through the same
serving wrapper, so a server and the checkpoint give the same pixels (within one grey level).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from artforge.errors import ArtforgeError
from artforge.options import ClientVerb
from artforge.serving.client import resolve_label
from artforge.imaging import make_grid, save_png
from artforge.families.dcgan import NAME as FAMILY
from artforge.families.dcgan import generation_inputs


MAX_COUNT = 4096  # images held in memory at once: 4096 x 64x64x3 is 50 MB


def style_indices(count: int, num_styles: int, style: int | None) -> np.ndarray:
    """One style for all, or all styles in turn (a grid with one column per style)."""
    if not 1 <= count <= MAX_COUNT:
        raise ArtforgeError(f"--count must be 1 to {MAX_COUNT}, got {count}; run the command again for more")
    return np.full(count, style) if style is not None else np.arange(count) % num_styles


def generate_remote(client, model: str, count: int, seed: int, style: str | int | None = None) -> np.ndarray:
    """(count, H, W, 3) uint8 images from a DCGAN on Triton, in batches the model accepts."""
    info = client.model(model)
    if info.family != FAMILY:
        raise ArtforgeError(f"model '{model}' is a '{info.family or 'non-artforge'}' model; "
                            f"'artforge generate' needs a '{FAMILY}' model")
    styles = info.metadata.get("styles", [])
    z_dim = info.inputs[0].shape[0]
    chosen = resolve_label(style, styles, kind="style")
    inputs = generation_inputs(z_dim, style_indices(count, len(styles), chosen), seed)
    step = info.max_batch or count
    chunks = [client.infer(model, {k: v[i:i + step] for k, v in inputs.items()}, ["image"])["image"]
              for i in range(0, count, step)]
    return np.concatenate(chunks)


@torch.no_grad()
def generate_local(checkpoint: str | Path, count: int, seed: int, style: str | int | None = None) -> np.ndarray:
    """The same images computed in-process with PyTorch from the checkpoint."""
    from artforge.families import load_network, spec_for

    network, ckpt = load_network(checkpoint, expect_family=FAMILY)
    spec = spec_for(ckpt)
    styles = spec.metadata["styles"]
    chosen = resolve_label(style, styles, kind="style")
    inputs = generation_inputs(spec.config.z_dim, style_indices(count, len(styles), chosen), seed)
    serving = spec.serving_network(network)
    return serving(torch.from_numpy(inputs["z"]), torch.from_numpy(inputs["style"])).numpy()


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


# ---- `artforge generate`: the DCGAN family's client command (Family(client=...) names this module) ----
def add_arguments(p) -> None:
    p.add_argument("--model", default="dcgan", help="model name on the server")
    p.add_argument("--count", type=int, default=16, help="images to generate")
    p.add_argument("--seed", type=int, default=0, help="noise seed")
    p.add_argument("--style", help="style index or name (default: all styles in turn)")
    p.add_argument("--url", default="127.0.0.1:8001", help="Triton gRPC address")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for one request")
    p.add_argument("--checkpoint", help="generate in-process from this checkpoint or run instead of a server")
    p.add_argument("--columns", type=int, help="grid columns")
    p.add_argument("--out", required=True, help="grid.png, or a folder ending in / for single PNGs")


def run(args) -> None:
    if args.checkpoint:
        images = generate_local(args.checkpoint, args.count, args.seed, args.style)
    else:
        from artforge.serving.client import Client

        with Client(args.url, timeout_s=args.timeout) as client:
            images = generate_remote(client, args.model, args.count, args.seed, args.style)
    columns = args.columns or (len(images) if args.style is not None else min(len(images), 8))
    paths = save_images(images, args.out, columns)
    print(f"wrote {len(images)} image(s) to {paths[0] if len(paths) == 1 else args.out}")


VERB = ClientVerb(
    "generate", help="generate DCGAN images over Triton gRPC (or in-process from a checkpoint)",
    description="Generate images with a DCGAN served by Triton; the same --seed gives the same images as "
                "--checkpoint (in-process PyTorch), within one grey level.",
    examples="  artforge generate --model dcgan --count 16 --seed 7 --out grid.png\n"
             "  artforge generate --model dcgan --count 8 --style waves --out samples/\n"
             "  artforge generate --checkpoint runs/dcgan --count 16 --seed 7 --out local.png",
    add_arguments=add_arguments, run=run)
