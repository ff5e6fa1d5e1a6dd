"""A PyTorch network trained elsewhere: the user's factory function and a weights file, never unpickled.

    --module my_models.style:make_net     (an importable module)  or  --module nets/style.py:make_net
    --weights net.safetensors              (or a .pt/.pth state dict of tensors: torch.load(weights_only=True))
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
from pathlib import Path
from typing import Any, Callable

from torch import nn

from artforge.checkpoint import file_digest, read_state_dict, weights_mismatch
from artforge.errors import ArtforgeError



def load_factory(text: str) -> Callable[[], Any]:
    """The function FACTORY of PKG.MODULE:FACTORY or FILE.py:FACTORY (imported: the user's own code runs)."""
    target, _, attribute = text.rpartition(":")
    if not target or not attribute.isidentifier():
        raise ArtforgeError(f"--module {text}: write PKG.MODULE:FACTORY or FILE.py:FACTORY")
    try:
        module = import_file(Path(target)) if target.endswith(".py") else importlib.import_module(target)
    except ArtforgeError:
        raise
    except Exception as e:  # the user's module may raise anything while it imports
        raise ArtforgeError(f"--module {text}: importing {target} failed: {type(e).__name__}: {e}") from None
    factory = getattr(module, attribute, None)
    if not callable(factory):
        raise ArtforgeError(f"--module {text}: {target} has no function '{attribute}'")
    return factory


def import_file(path: Path):
    if not path.is_file():
        raise ArtforgeError(f"--module: {path} does not exist")
    name = "artforge_user_" + hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build_module(text: str) -> nn.Module:
    """Call the factory; its answer must be an nn.Module (put in eval mode)."""
    factory = load_factory(text)
    try:
        network = factory()
    except Exception as e:  # the user's code may raise anything
        raise ArtforgeError(f"--module {text}: the factory raised {type(e).__name__}: {e}") from None
    if not isinstance(network, nn.Module):
        raise ArtforgeError(f"--module {text}: the factory returned a {type(network).__name__}, not a torch nn.Module")
    return network.eval()


def load_user_network(module: str, weights: str) -> tuple[nn.Module, dict[str, Any]]:
    """The user's network with its weights, and what it came from (for export.json)."""
    network = build_module(module)
    source: dict[str, Any] = {"kind": "pytorch", "module": module}
    if weights:
        state = read_state_dict(weights, what="--weights ")
        problem = weights_mismatch(network.state_dict(), state)
        if problem:
            raise ArtforgeError(f"--weights {weights} do not fit the network that {module} builds: {problem}")
        network.load_state_dict(state, strict=True)
        source["weights"] = {"path": str(weights), **file_digest(Path(weights))}
    return network.eval(), source
