"""Model families: each names its config and its inference network, so any stage can rebuild
the network a checkpoint holds without flags (the config travels with the weights)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from artforge.checkpoint import Checkpoint, config_from_dict, load_checkpoint
from artforge.errors import CheckpointError
from artforge.models.dcgan import DCGANConfig, Discriminator, Generator
from artforge.models.style import StyleNetConfig, StyleTransferNet
from artforge.spec import DCGANSpec, ModelSpec, StyleSpec


@dataclass(frozen=True)
class Family:
    name: str
    config_cls: type
    build_inference_network: Callable[[Any], nn.Module]
    make_spec: Callable[..., ModelSpec]  # (config, checkpoint meta, float_output) -> serving contract
    description: str


FAMILIES: dict[str, Family] = {
    "dcgan": Family("dcgan", DCGANConfig, Generator,
                    lambda config, meta, float_output=False: DCGANSpec(config, meta.get("classes"), float_output),
                    "conditional DCGAN image generator (z, style) -> image"),
    "style": Family("style", StyleNetConfig, StyleTransferNet,
                    lambda config, meta, float_output=False: StyleSpec(config, meta.get("styles"), float_output),
                    "fast neural style transfer, N styles in one network (content, style weights) -> image"),
}


def get_family(name: str) -> Family:
    if name not in FAMILIES:
        raise CheckpointError(f"unknown model family '{name}'; artforge knows {sorted(FAMILIES)}")
    return FAMILIES[name]


def build_from_checkpoint(checkpoint: Checkpoint) -> nn.Module:
    """The checkpoint's inference network with its weights, in eval mode."""
    family = get_family(checkpoint.family)
    config = config_from_dict(family.config_cls, checkpoint.meta["config"], str(checkpoint.path))
    check_weights_fit(family, config, checkpoint)
    network = family.build_inference_network(config)
    network.load_state_dict(checkpoint.weights, strict=True)
    return network.eval()


def check_weights_fit(family: Family, config: Any, checkpoint: Checkpoint) -> None:
    """Compare the config's network with the weights on the meta device: nothing is allocated, so a
    config claiming a huge width is refused at once instead of after building gigabytes of layers."""
    where = str(checkpoint.path)
    try:
        with torch.device("meta"):
            skeleton = family.build_inference_network(config)
    except (RuntimeError, ValueError, TypeError, OverflowError) as e:
        raise CheckpointError(f"checkpoint {where} has a config that builds no network: {e}") from None
    problem = weights_mismatch(skeleton.state_dict(), checkpoint.weights)
    if problem:
        raise CheckpointError(f"checkpoint {where} does not fit its network config: {problem}")


def spec_for(checkpoint: Checkpoint, float_output: bool = False) -> ModelSpec:
    """The serving contract of the checkpoint's network."""
    family = get_family(checkpoint.family)
    config = config_from_dict(family.config_cls, checkpoint.meta["config"], str(checkpoint.path))
    return family.make_spec(config, checkpoint.meta, float_output)


def load_network(path: str | Path, expect_family: str | None = None) -> tuple[nn.Module, Checkpoint]:
    checkpoint = load_checkpoint(path, expect_family)
    return build_from_checkpoint(checkpoint), checkpoint


def load_weights(network: nn.Module, weights: dict, where: str) -> None:
    """load_state_dict(strict=True), with a one-line error that names what does not match."""
    problem = weights_mismatch(network.state_dict(), weights)
    if problem:
        raise CheckpointError(f"checkpoint {where} does not fit its network config: {problem}")
    network.load_state_dict(weights, strict=True)


def weights_mismatch(own: dict, weights: dict) -> str | None:
    """What differs between a network's state dict and stored weights (names, then shapes), or None."""
    missing = sorted(set(own) - set(weights))
    unexpected = sorted(set(weights) - set(own))
    wrong = [k for k in own if k in weights and own[k].shape != weights[k].shape]
    parts = []
    if missing:
        parts.append(f"missing {missing[:3]}")
    if unexpected:
        parts.append(f"unexpected {unexpected[:3]}")
    if wrong:
        k = wrong[0]
        parts.append(f"'{k}' has shape {tuple(weights[k].shape)}, config needs {tuple(own[k].shape)}")
    return "; ".join(parts) or None


__all__ = ["FAMILIES", "Family", "get_family", "build_from_checkpoint", "load_network", "spec_for",
           "DCGANConfig", "Generator", "Discriminator", "StyleNetConfig", "StyleTransferNet"]
