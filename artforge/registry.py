"""The family registry: every stage finds a family by its name here, and names none itself.

A family module declares a Family and registers it at import; the first look-up imports the
package of built-in families (artforge.families) by name, so the stages below the families never
import them. Anything that loads a checkpoint rebuilds its network through the registry, from the
config stored with the weights (no flags to repeat).
"""
from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, NamedTuple

import torch
from torch import nn

from artforge.checkpoint import Checkpoint, config_from_dict, load_checkpoint, weights_mismatch
from artforge.errors import CheckpointError
from artforge.options import Command
from artforge.spec import ModelSpec


HOOK_FORM = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


class Evaluator(NamedTuple):
    """`artforge evaluate` for a family measured otherwise than as a generator."""

    measure: Callable[[Any], dict[str, Any]]  # (EvaluateOptions) -> the document written as evaluate.json
    markdown_lines: Callable[[dict[str, Any]], list[str]]  # the document -> evaluate.md's lines


@dataclass(frozen=True)
class Family:
    """What the generic stages need from a model family. Hooks are "module:attribute" names, imported
    only by the command that uses them (tests/test_registry.py imports and checks every one)."""

    name: str  # the checkpoint's 'family', the default model name on Triton
    description: str  # one line for `artforge families`
    config_cls: type  # the network config dataclass stored in every checkpoint
    build_network: Callable[[Any], nn.Module]  # config -> the inference network
    make_spec: Callable[..., ModelSpec]  # (config, checkpoint meta, float_output) -> serving contract
    trainer: str = ""  # a training.loop.TrainCommand: `artforge train NAME`
    client: str = ""  # an options.Command: the family's client command
    # an Evaluator: `artforge evaluate` for this family; without one, evaluate measures the model as a
    # generator (noise and labels in, images out)
    evaluator: str = ""
    # get_peer(name): a public model of the same task that `artforge bench --peer NAME` times and
    # `artforge evaluate --peer` scores next to this family's (none: the family has no peer)
    peers: str = ""

    def __post_init__(self):
        for hook in HOOKS:
            value = getattr(self, hook)
            if value and not HOOK_FORM.match(value):
                raise ValueError(f"family '{self.name}': {hook} '{value}' is not a 'module:attribute' name")

    def hook(self, name: str) -> Any:
        """The object a hook names, imported now."""
        module, _, attribute = getattr(self, name).partition(":")
        try:
            return getattr(importlib.import_module(module), attribute)
        except (ImportError, AttributeError) as e:
            raise CheckpointError(f"family '{self.name}': its {name} hook '{getattr(self, name)}' cannot be "
                                  f"loaded: {e}") from None


HOOKS = ("trainer", "client", "evaluator", "peers")
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


# ---- `artforge families` ----
@dataclass
class NoOptions:
    pass


def list_families(_: NoOptions) -> None:
    for family in families():
        print(f"{family.name:<10} {family.description}")


COMMAND = Command(
    "families", help="list the model families, one line each",
    description="List the model families this artforge knows: the names checkpoints, 'artforge train FAMILY' "
                "and served models use.", examples="  artforge families", options=NoOptions, run=list_families)
