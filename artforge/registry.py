"""The family registry: every stage finds a family by its name here, and names none itself.

A family module declares a Family and registers it at import; the first look-up imports the
package of built-in families (artforge.families) by name, so the stages below the families never
import them. Anything that loads a checkpoint rebuilds its network through the registry, from the
config stored with the weights (no flags to repeat).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from artforge.checkpoint import Checkpoint, config_from_dict, load_checkpoint, weights_mismatch
from artforge.errors import CheckpointError
from artforge.spec import ModelSpec


@dataclass(frozen=True)
class Family:
    """What the generic stages need from a model family."""

    name: str  # the checkpoint's 'family', the default model name on Triton
    description: str  # one line for `artforge families`
    config_cls: type  # the network config dataclass stored in every checkpoint
    build_network: Callable[[Any], nn.Module]  # config -> the inference network
    make_spec: Callable[..., ModelSpec]  # (config, checkpoint meta, float_output) -> serving contract
    trainer: str = ""  # module whose COMMAND (training.loop.TrainCommand) is `artforge train NAME`
    client: str = ""  # module whose VERB (options.ClientVerb) is the family's client command
    # module whose evaluate_model(opts) and markdown_lines(document) are `artforge evaluate` for this family;
    # without one, evaluate measures the model as a generator (noise and labels in, images out)
    evaluator: str = ""
    # module whose get_peer(name) is a public model of the same task that `artforge bench --peer NAME` times
    # and `artforge evaluate --peer` scores next to this family's (none: the family has no peer)
    peers: str = ""


_REGISTRY: dict[str, Family] = {}
BUILTIN_FAMILIES = "artforge.families"  # importing it registers every built-in family


def load_builtin_families() -> None:
    """Import the built-in families by name (once): a plug-in look-up, not an import edge to a higher layer."""
    importlib.import_module(BUILTIN_FAMILIES)


def register(family: Family) -> Family:
    """Add a family (a second family of the same name is a programming error)."""
    if family.name in _REGISTRY and _REGISTRY[family.name] is not family:
        raise ValueError(f"a model family named '{family.name}' is already registered")
    _REGISTRY[family.name] = family
    return family


def unregister(name: str) -> None:
    """Remove a family (tests that define their own family clean up with it)."""
    _REGISTRY.pop(name, None)


def families() -> list[Family]:
    load_builtin_families()
    return [_REGISTRY[name] for name in sorted(_REGISTRY)]


def get_family(name: str) -> Family:
    load_builtin_families()
    if name not in _REGISTRY:
        raise CheckpointError(f"unknown model family '{name}'; artforge knows {sorted(_REGISTRY)}")
    return _REGISTRY[name]


def build_from_checkpoint(checkpoint: Checkpoint) -> nn.Module:
    """The checkpoint's inference network with its weights, in eval mode."""
    family = get_family(checkpoint.family)
    config = config_from_dict(family.config_cls, checkpoint.meta["config"], str(checkpoint.path))
    check_weights_fit(family, config, checkpoint)
    network = family.build_network(config)
    network.load_state_dict(checkpoint.weights, strict=True)
    return network.eval()


def check_weights_fit(family: Family, config: Any, checkpoint: Checkpoint) -> None:
    """Compare the config's network with the weights on the meta device: nothing is allocated, so a
    config claiming a huge width is refused at once instead of after building gigabytes of layers."""
    where = str(checkpoint.path)
    try:
        with torch.device("meta"):
            skeleton = family.build_network(config)
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
