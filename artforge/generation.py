"""Requests for generator models (noise, a class, controls in; an image out), built from the contract alone.

A generator's contract says everything a request needs: metadata 'class_input' names the class
input, metadata 'controls' maps control inputs (a StyleGAN's truncation) to their defaults, and every
other input is noise: float inputs standard normal from a generator seeded with the seed, integer
ones uniform within their limits from a second one, each in contract order (so asking for a class
does not change the noise a seed gives). The same code builds the request in-process and for
Triton, so a seed gives the same pictures from a checkpoint and from a server.

    generation_request(spec.inputs, spec.metadata, spec.input_limits(), count=8, seed=3)
    generation_request(info.inputs, info.metadata, info.limits, 8, 3, classes=np.full(8, 2),
                       controls={"truncation": 0.7})
"""
from __future__ import annotations

from typing import Any

import numpy as np

from artforge.contract import TensorSpec
from artforge.errors import ArtforgeError


def generation_request(inputs: tuple[TensorSpec, ...], metadata: dict[str, Any], limits: dict[str, Any], count: int,
                       seed: int, classes: np.ndarray | None = None,
                       controls: dict[str, float] | None = None) -> dict[str, np.ndarray]:
    """Inputs for `count` images; `classes` (count,) sets the class input (default: drawn like noise)."""
    defaults, controls = metadata.get("controls", {}), dict(controls or {})
    unknown = sorted(set(controls) - set(defaults))
    if unknown:
        raise ArtforgeError(f"this model has no {', '.join(unknown)} input; its controls: {sorted(defaults) or 'none'}")
    rng, integers, request = np.random.default_rng(seed), np.random.default_rng([seed, 1]), {}
    for t in inputs:
        if any(isinstance(d, str) for d in t.shape) or t.dtype == "uint8":
            raise ArtforgeError(f"not a generator (noise and a class in, an image out): input '{t.name}' is "
                                f"{t.dtype} {t.shape}")
        shape = (count, *t.shape)
        if t.name == metadata.get("class_input") and classes is not None:
            value = np.asarray(classes).reshape(shape)
        elif t.name in defaults:
            value = np.full(shape, controls.get(t.name, defaults[t.name]))
        elif np.dtype(t.dtype).kind == "f":
            value = rng.standard_normal(shape)
        else:
            value = integers.integers(limits.get(t.name, {}).get("min", 0), limits.get(t.name, {}).get("max", 0) + 1,
                                      shape)
        request[t.name] = value.astype(t.dtype)
    return request


def noise_inputs(inputs: tuple[TensorSpec, ...], metadata: dict[str, Any]) -> list[str]:
    """The float inputs drawn from the seed (latents and noise maps): what a latent walk moves through."""
    fixed = {metadata.get("class_input"), *metadata.get("controls", {})}
    return [t.name for t in inputs if t.name not in fixed and np.dtype(t.dtype).kind == "f"]


def slerp(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    """Spherical interpolation per row: stays at the norm Gaussian noise has, where a straight line
    through the middle would pass near the origin (faded, average-looking images)."""
    cos = np.sum(a * b, axis=-1, keepdims=True) / (np.linalg.norm(a, axis=-1, keepdims=True) *
                                                   np.linalg.norm(b, axis=-1, keepdims=True) + 1e-12)
    angle = np.arccos(np.clip(cos, -1.0, 1.0))
    sin = np.sin(angle)
    safe = np.where(sin < 1e-6, 1.0, sin)
    mixed = (np.sin((1 - t) * angle) * a + np.sin(t * angle) * b) / safe
    return np.where(sin < 1e-6, (1 - t) * a + t * b, mixed)


def latent_walk(request: dict[str, np.ndarray], walked: list[str], frames: int) -> dict[str, np.ndarray]:
    """A looping walk of `frames` requests through the request's items as way points: `walked` inputs
    move along great circles from one item to the next (and back to the first); the others stay the
    first item's."""
    points = len(next(iter(request.values())))
    if points < 2 or frames < points:
        raise ArtforgeError(f"a latent walk needs at least 2 way points and as many frames ({frames} frames, "
                            f"{points} points)")
    walk = {name: [] for name in request}
    for frame in range(frames):
        position = frame * points / frames
        k, t = int(position), position - int(position)
        for name, values in request.items():
            if name in walked:
                walk[name].append(slerp(values[k], values[(k + 1) % points], t).astype(values.dtype))
            else:
                walk[name].append(values[0])
    return {name: np.stack(values) for name, values in walk.items()}
