"""`artforge evaluate`: a generator's images against real ones, from a checkpoint or a live Triton model.

Requests are drawn from the served contract alone (float inputs standard normal, integer inputs
uniform over their limits), so a checkpoint measured in-process and the same model measured
through Triton see the same inputs for a seed: what is served is what is measured.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from artforge.contract import TensorSpec
from artforge.errors import ArtforgeError
from artforge.files import atomic_write_text
from artforge.options import option


@dataclass
class EvaluateOptions:
    """What `artforge evaluate` measures; each field is also its command-line flag."""

    source: str = option(help="a run or checkpoint folder, or with --url a model name on Triton", positional=True)
    data: str = option(help="folder of real images (one subfolder per class), e.g. the training data",
                       required=True)
    url: str = option("", help="Triton gRPC address: measure the served model SOURCE instead of a checkpoint")
    count: int = option(500, help="images to generate (and at most this many real ones)")
    seed: int = option(0, help="seeds the generated requests and the choice of real images")
    batch: int = option(32, help="images per request")
    out: str = option("evaluation", help="folder for evaluate.json and evaluate.md")


def contract_inputs(inputs: tuple[TensorSpec, ...], limits: dict[str, Any], batch: int,
                    seed: int) -> dict[str, np.ndarray]:
    """A generator's request from its contract: float inputs standard normal, integers uniform in limits."""
    rng, request = np.random.default_rng(seed), {}
    for t in inputs:
        if any(isinstance(d, str) for d in t.shape) or t.dtype == "uint8":
            raise ArtforgeError(f"evaluate measures generators (noise and labels in, an image out); input "
                                f"'{t.name}' ({t.dtype}, {t.shape}) is not one of those")
        shape = (batch, *t.shape)
        if np.dtype(t.dtype).kind == "f":
            request[t.name] = rng.standard_normal(shape).astype(t.dtype)
        else:
            low, high = limits.get(t.name, {}).get("min", 0), limits.get(t.name, {}).get("max", 0)
            request[t.name] = rng.integers(low, high + 1, shape).astype(t.dtype)
    return request


def image_output(outputs: tuple[TensorSpec, ...]) -> str:
    for t in outputs:
        if t.dtype == "uint8" and len(t.shape) == 3 and t.shape[-1] == 3:
            return t.name
    raise ArtforgeError(f"the model has no uint8 (H, W, 3) image output among {[t.name for t in outputs]}")


def generate(inputs: tuple[TensorSpec, ...], limits: dict, run: Callable[[dict], np.ndarray], count: int,
             batch: int, seed: int) -> np.ndarray:
    """(count, H, W, 3) uint8, in batches: request k is seeded seed + k."""
    chunks = [run(contract_inputs(inputs, limits, min(batch, count - start), seed + k))
              for k, start in enumerate(range(0, count, batch))]
    return np.concatenate(chunks)


def generated_images(opts: EvaluateOptions) -> tuple[np.ndarray, dict[str, Any]]:
    """The images and what made them: a checkpoint in-process, or a model through Triton."""
    if opts.url:
        from artforge.serving.client import Client

        with Client(opts.url) as client:
            info = client.model(opts.source)
            name = image_output(info.outputs)
            images = generate(info.inputs, info.limits, lambda r: client.infer(opts.source, r, [name])[name],
                              opts.count, min(opts.batch, info.max_batch or opts.batch), opts.seed)
        return images, {"model": opts.source, "url": opts.url, "family": info.family}
    import torch

    from artforge.families import load_network, spec_for

    network, checkpoint = load_network(opts.source)
    spec = spec_for(checkpoint)
    serving, index = spec.serving_network(network), [t.name for t in spec.outputs].index(image_output(spec.outputs))

    def run(request: dict) -> np.ndarray:
        with torch.no_grad():
            out = serving(*(torch.from_numpy(request[t.name]) for t in spec.inputs))
        return (out if isinstance(out, tuple) else (out,))[index].numpy()

    images = generate(spec.inputs, spec.input_limits(), run, opts.count, opts.batch, opts.seed)
    return images, {"checkpoint": str(checkpoint.path), "step": checkpoint.step, "family": checkpoint.family}


def real_images(data: str, size: int, count: int, seed: int) -> np.ndarray:
    from artforge.training.dataset import load_image_folder

    images = load_image_folder(Path(data), size=size, progress=False).images
    chosen = np.random.default_rng(seed).permutation(len(images))[:count]
    return images[np.sort(chosen)].permute(0, 2, 3, 1).numpy()


def evaluate(**options: Any) -> dict[str, Any]:
    """Measure, write OUT/evaluate.json and evaluate.md, return the document."""
    from artforge.evaluation.metrics import measure_quality

    opts = EvaluateOptions(**options)
    if opts.count < 8:
        raise ArtforgeError(f"--count {opts.count} is too few to measure a distribution; use at least 8")
    generated, source = generated_images(opts)
    if generated.shape[1] != generated.shape[2]:
        raise ArtforgeError(f"evaluate compares square images; the model makes {generated.shape[1:3]}")
    real = real_images(opts.data, generated.shape[1], opts.count, opts.seed)
    quality = measure_quality(real, generated)
    document = {"source": source, "data": opts.data, "options": asdict(opts), "quality": quality.to_json()}
    out = Path(opts.out)
    atomic_write_text(out / "evaluate.json", json.dumps(document, indent=2) + "\n")
    atomic_write_text(out / "evaluate.md", markdown(document))
    return document


def markdown(document: dict[str, Any]) -> str:
    q = document["quality"]
    return "\n".join([
        f"# artforge evaluate: {document['source'].get('family', '?')}", "",
        f"{q['generated']} generated vs {q['real']} real images from {document['data']}.",
        f"Feature space: {q['feature_space']}. These are not Inception FID/KID figures.", "",
        "| FD | KID | KID std | precision | recall | diversity |", "|---|---|---|---|---|---|",
        f"| {q['fd']:.1f} | {q['kid']:.2f} | {q['kid_std']:.2f} | {q['precision']:.3f} | {q['recall']:.3f} | "
        f"{q['diversity']:.3f} |", ""])
