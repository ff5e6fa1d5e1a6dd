"""Formats users already have, recognised by their content: a diffusers model folder, and state dicts in the
layouts of pytorch/examples' fast_neural_style and of junyanz's CycleGAN / pix2pix generators.

Each becomes a PyTorch network with the --input/--picture/--output declarations it needs, which the user
may still override; the export then goes the way of any --module (artforge/export/imported_export.py).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from artforge.checkpoint import file_digest, read_state_dict, weights_mismatch
from artforge.errors import ArtforgeError
from artforge.export.known_networks import FastStyleNet, ResnetGenerator, UnetGenerator

DIFFUSERS_WEIGHTS = "diffusion_pytorch_model.safetensors"
STATE_DICT_SUFFIXES = (".safetensors", ".pt", ".pth", ".model", ".ckpt")
# fast_neural_style's saved models (from PyTorch 0.3) keep InstanceNorm running stats its network ignores
IGNORED_STATS = re.compile(r"(^|\.)(running_mean|running_var|num_batches_tracked)$")


@dataclass
class Recognised:
    """A network from a known format and what serving it needs declared."""

    what: str  # one line: what the file or folder was taken for
    network: nn.Module
    inputs: list[str]
    pictures: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    source: dict[str, Any] = field(default_factory=dict)


def is_diffusers_folder(path: Path) -> bool:
    return path.is_dir() and (path / "config.json").is_file() and "_class_name" in read_json(path / "config.json")


def recognise(path: Path) -> Recognised | None:
    """The known format `path` is in, or None (then it is an ONNX file or an artforge checkpoint)."""
    if is_diffusers_folder(path):
        return diffusers_model(path, read_json(path / "config.json"))
    if path.is_file() and path.suffix in STATE_DICT_SUFFIXES:
        return state_dict_layout(path)
    return None


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ArtforgeError(f"{path} is not readable JSON: {e}") from None


# ---- state dicts in public layouts ----
STYLE_INPUT = "image:float32:batch,3,height=64..1024,width=64..1024"
GAN_PICTURES = ["image:-1..1", "output:-1..1"]


@dataclass
class Layout:
    what: str
    build: Callable[[], nn.Module]
    inputs: list[str]
    pictures: list[str]


def layout_candidates(state: dict[str, torch.Tensor]) -> list[Layout]:
    """Every layout these weights could be in, sized from the weights."""
    out = [Layout("pytorch/examples fast_neural_style TransformerNet", FastStyleNet, [STYLE_INPUT],
                  ["image:0..255", "output:0..255"])]
    first = state.get("model.1.weight")
    if first is not None and first.ndim == 4:  # ResnetGenerator: the 7x7 stem convolution after padding
        width, channels_in = first.shape[:2]
        channels_out = next((v.shape[0] for k, v in reversed(state.items()) if k.endswith(".weight")), 3)
        gan_input = f"image:float32:batch,{channels_in},height=64..1024,width=64..1024"
        for norm, blocks, dropout in product(("instance", "batch"), (9, 6), (False, True)):
            out.append(Layout(f"CycleGAN ResnetGenerator ({blocks} blocks, {norm} norm)",
                              lambda n=norm, b=blocks, d=dropout: ResnetGenerator(channels_in, channels_out, width,
                                                                                  n, b, d),
                              [gan_input], GAN_PICTURES))
    down = state.get("model.model.0.weight")
    if down is not None and down.ndim == 4:  # UnetGenerator: the outermost downsampling convolution
        width, channels_in = down.shape[:2]
        channels_out = state["model.model.3.weight"].shape[1] if "model.model.3.weight" in state else 3
        for norm, levels in product(("batch", "instance"), (8, 7)):
            side = 2 ** levels  # the bottleneck is 1x1: the side it was trained at
            out.append(Layout(f"pix2pix UnetGenerator ({levels} levels, {norm} norm)",
                              lambda n=norm, v=levels: UnetGenerator(channels_in, channels_out, v, width, n),
                              [f"image:float32:batch,{channels_in},{side},{side}"], GAN_PICTURES))
    return out


def state_dict_layout(path: Path) -> Recognised:
    """Match a state dict key for key against the public layouts."""
    state = read_state_dict(path)
    for layout in layout_candidates(state):
        with torch.device("meta"):
            skeleton = layout.build()
        own = skeleton.state_dict()
        weights = {k: v for k, v in state.items() if k in own or not IGNORED_STATS.search(k)}
        if weights_mismatch(own, weights) is None:
            network = layout.build()
            network.load_state_dict(weights, strict=True)
            source = {"kind": "state dict", "layout": layout.what, "path": str(path), **file_digest(path)}
            return Recognised(f"took {path} for a {layout.what} state dict", network.eval(), layout.inputs,
                              layout.pictures, ["output"], source)
    raise ArtforgeError(f"{path} is a state dict in no layout artforge knows (fast_neural_style TransformerNet, "
                        "CycleGAN ResnetGenerator, pix2pix UnetGenerator); export its network with --module FACTORY "
                        f"--weights {path.name}")


# ---- diffusers folders ----
class DenoiserOutput(nn.Module):
    """A diffusers UNet2DModel as a tensor network: (noisy sample, timestep (B, 1)[, class (B, 1)]) -> its
    prediction (the noise, v or the clean sample, as it was trained)."""

    def __init__(self, unet: nn.Module, conditional: bool):
        super().__init__()
        self.unet, self.conditional = unet, conditional

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, *label: torch.Tensor) -> torch.Tensor:
        labels = label[0][:, 0] if self.conditional else None
        return self.unet(sample, timestep[:, 0], class_labels=labels, return_dict=False)[0]


class LatentDecoder(nn.Module):
    """A diffusers VAE's decoder: latents as a diffusion model makes them (scaled) -> a picture in -1..1."""

    def __init__(self, vae: nn.Module, scaling_factor: float):
        super().__init__()
        self.vae, self.scaling_factor = vae, scaling_factor

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(latent / self.scaling_factor, return_dict=False)[0]


def diffusers_model(path: Path, config: dict[str, Any]) -> Recognised:
    """A diffusers folder (config.json + diffusion_pytorch_model.safetensors), loaded by diffusers itself."""
    try:
        import diffusers  # optional: only these folders need it
    except ImportError:
        raise ArtforgeError(f"{path} is a diffusers model folder: pip install diffusers (or 'artforge[diffusers]') "
                            "to export it") from None
    kind = config["_class_name"]
    if kind not in ("UNet2DModel", "AutoencoderKL", "VQModel"):
        raise ArtforgeError(f"{path} holds a diffusers {kind}; artforge exports UNet2DModel and the decoders of "
                            "AutoencoderKL and VQModel")
    if not (path / DIFFUSERS_WEIGHTS).is_file():
        raise ArtforgeError(f"{path} has no {DIFFUSERS_WEIGHTS} (artforge never unpickles .bin weights): re-save it "
                            "with save_pretrained(folder, safe_serialization=True)")
    model = getattr(diffusers, kind).from_pretrained(str(path), use_safetensors=True, local_files_only=True,
                                              low_cpu_mem_usage=False).eval()
    source = {"kind": "diffusers", "class": kind, "path": str(path), **file_digest(path / DIFFUSERS_WEIGHTS)}
    declare = unet_declarations if kind == "UNet2DModel" else decoder_declarations
    return declare(model, config, source, f"took {path} for a diffusers {kind} folder")


def unet_declarations(unet: nn.Module, config: dict, source: dict, what: str) -> Recognised:
    side, channels = config.get("sample_size") or 32, config.get("in_channels", 3)
    side = side[0] if isinstance(side, (list, tuple)) else side
    inputs = [f"sample:float32:batch,{channels},{side},{side}", "timestep:int64:batch,1:0..999"]
    classes = config.get("num_class_embeds")
    if classes:
        inputs.append(f"class_labels:int64:batch,1:0..{classes - 1}")
    return Recognised(f"{what} ({channels}x{side}x{side}{f', {classes} classes' if classes else ''})",
                      DenoiserOutput(unet, bool(classes)), inputs, [], ["prediction"], source)


def decoder_declarations(vae: nn.Module, config: dict, source: dict, what: str) -> Recognised:
    side = config.get("sample_size") or 32
    side = side[0] if isinstance(side, (list, tuple)) else side
    latent_side = side // 2 ** (len(config.get("block_out_channels", [1])) - 1)
    channels = config.get("latent_channels", 4)
    scaling = float(config.get("scaling_factor") or 1.0)
    return Recognised(f"{what}: its decoder, latents {channels}x{latent_side}x{latent_side} (scaled by {scaling:g})",
                      LatentDecoder(vae, scaling), [f"latent:float32:batch,{channels},{latent_side},{latent_side}"],
                      ["image:-1..1"], ["image"], source)
