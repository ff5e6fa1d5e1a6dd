"""A PyTorch network trained elsewhere: the user's factory function and a weights file, never unpickled.

    --module my_models.style:make_net     (an importable module)  or  --module nets/style.py:make_net
    --weights net.safetensors              (or a .pt/.pth state dict of tensors: torch.load(weights_only=True))
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import pickle
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from artforge.checkpoint import file_digest, weights_mismatch
from artforge.errors import ArtforgeError

# where checkpoints written by training scripts usually keep the network's state dict
NESTED_KEYS = ("state_dict", "model_state_dict", "model", "net", "generator", "params_ema", "params", "ema")
RESAVE = "re-save its state dict as safetensors: safetensors.torch.save_file(model.state_dict(), 'net.safetensors')"


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


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors by name from a safetensors file or a tensors-only .pt/.pth (nested or DataParallel ones too)."""
    path = Path(path)
    if not path.is_file():
        raise ArtforgeError(f"--weights {path} does not exist")
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as e:
            raise ArtforgeError(f"--weights {path} is not a readable safetensors file: {e}") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise ArtforgeError(f"--weights {path} holds more than tensors, and artforge never unpickles code: "
                            f"{RESAVE}") from None
    except (RuntimeError, OSError, EOFError, ValueError) as e:
        raise ArtforgeError(f"--weights {path} cannot be read by torch.load: {str(e).splitlines()[0]}") from None
    return tensors_only(unwrap(state, path), path)


def unwrap(state: Any, path: Path) -> Any:
    """The state dict inside a training checkpoint ({'state_dict': ...}), without DataParallel's 'module.'."""
    if isinstance(state, dict) and not any(isinstance(v, torch.Tensor) for v in state.values()):
        inner = next((state[k] for k in NESTED_KEYS if isinstance(state.get(k), dict)), None)
        if inner is None:
            raise ArtforgeError(f"--weights {path} holds no tensors at its top level nor under "
                                f"{list(NESTED_KEYS)}; its keys are {sorted(map(str, state))[:8]}")
        state = inner
    if isinstance(state, dict) and state and all(str(k).startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def tensors_only(state: Any, path: Path) -> dict[str, torch.Tensor]:
    if not isinstance(state, dict):
        raise ArtforgeError(f"--weights {path} holds a {type(state).__name__}, not a state dict; {RESAVE}")
    others = sorted(str(k) for k, v in state.items() if not isinstance(v, torch.Tensor))
    if others:
        raise ArtforgeError(f"--weights {path} has entries that are not tensors ({others[:3]}); {RESAVE}")
    return dict(state)


def load_user_network(module: str, weights: str) -> tuple[nn.Module, dict[str, Any]]:
    """The user's network with its weights, and what it came from (for export.json)."""
    network = build_module(module)
    source: dict[str, Any] = {"kind": "pytorch", "module": module}
    if weights:
        state = read_state_dict(weights)
        problem = weights_mismatch(network.state_dict(), state)
        if problem:
            raise ArtforgeError(f"--weights {weights} do not fit the network that {module} builds: {problem}")
        network.load_state_dict(state, strict=True)
        source["weights"] = {"path": str(weights), **file_digest(Path(weights))}
    return network.eval(), source
