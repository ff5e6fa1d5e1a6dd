"""The artforge checkpoint: safetensors weights + JSON metadata in one folder, never pickle.

    RUN/checkpoints/step_00000200/
        model.safetensors   weights of the inference network (the EMA generator for a GAN)
        state.safetensors   everything needed to resume (raw networks, optimisers, RNG), optional
        checkpoint.json     family, network config, step, data set, seed, versions, file hashes

The folder is written under a temporary name and renamed when complete, so a kill at any
moment leaves the previous checkpoint intact and a half-written one invisible.
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import platform
import re
import shutil
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from artforge import __version__
from artforge.errors import CheckpointError
from artforge.files import atomic_directory

FORMAT_VERSION = 1
MODEL_FILE = "model.safetensors"
STATE_FILE = "state.safetensors"
META_FILE = "checkpoint.json"
STEP_DIR = re.compile(r"^step_(\d+)$")


@dataclass
class Checkpoint:
    """A loaded checkpoint: its folder, metadata and inference weights."""

    path: Path
    meta: dict[str, Any]
    weights: dict[str, torch.Tensor] = field(repr=False)

    @property
    def family(self) -> str:
        return self.meta["family"]

    @property
    def step(self) -> int:
        return int(self.meta["step"])

    def training_state(self) -> Any:
        """The resumable training state saved next to the weights (nested dicts/lists of tensors)."""
        if STATE_FILE not in self.meta.get("files", {}):
            raise CheckpointError(f"checkpoint {self.path} has no training state; it cannot be resumed")
        tensors, tree_json = read_safetensors(self.path, STATE_FILE, self.meta)
        return unflatten_tree(json.loads(tree_json), tensors)


def package_versions() -> dict[str, str]:
    import numpy
    import safetensors

    return {
        "artforge": __version__,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "safetensors": safetensors.__version__,
        "python": platform.python_version(),
    }


def save_checkpoint(
    run_dir: Path,
    *,
    family: str,
    config: Any,
    step: int,
    weights: dict[str, torch.Tensor],
    training_state: Any = None,
    extra: dict[str, Any] | None = None,
    keep: int | None = None,
) -> Path:
    """Write RUN/checkpoints/step_N atomically and return its path; prune to the newest `keep`."""
    final = Path(run_dir) / "checkpoints" / f"step_{step:08d}"
    meta: dict[str, Any] = {
        "format": FORMAT_VERSION,
        "family": family,
        "config": asdict(config),
        "step": step,
        **(extra or {}),
        "versions": package_versions(),
        "files": {},
    }
    with atomic_directory(final, replace=True) as tmp:
        save_file(contiguous(weights), str(tmp / MODEL_FILE))
        meta["files"][MODEL_FILE] = file_digest(tmp / MODEL_FILE)
        if training_state is not None:
            tensors: dict[str, torch.Tensor] = {}
            tree = flatten_tree(training_state, "", tensors)
            save_file(contiguous(tensors), str(tmp / STATE_FILE), metadata={"tree": json.dumps(tree)})
            meta["files"][STATE_FILE] = file_digest(tmp / STATE_FILE)
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    if keep:
        prune_checkpoints(Path(run_dir), keep)
    return final


def load_checkpoint(path: str | Path, expect_family: str | None = None) -> Checkpoint:
    """Load a checkpoint folder, or the newest checkpoint of a run folder, verifying every file."""
    folder = resolve_checkpoint(Path(path))
    meta = read_meta(folder)
    if expect_family and meta["family"] != expect_family:
        raise CheckpointError(
            f"checkpoint {folder} is a '{meta['family']}' model; this command needs a '{expect_family}' model"
        )
    weights, _ = read_safetensors(folder, MODEL_FILE, meta)
    return Checkpoint(folder, meta, weights)


def resolve_checkpoint(path: Path) -> Path:
    """A checkpoint folder as given, or the newest one inside a run folder."""
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if (path / META_FILE).exists() or STEP_DIR.match(path.name):
        return path
    latest = find_latest_checkpoint(path)
    if latest is None:
        raise CheckpointError(f"{path} is neither a checkpoint nor a run folder with checkpoints")
    return latest


def find_latest_checkpoint(run_dir: Path) -> Path | None:
    """The complete checkpoint with the highest step in RUN/checkpoints, or None."""
    candidates = list_checkpoints(Path(run_dir))
    return candidates[-1] if candidates else None


def list_checkpoints(run_dir: Path) -> list[Path]:
    folder = run_dir / "checkpoints"
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if STEP_DIR.match(p.name) and (p / META_FILE).exists()]
    return sorted(found, key=lambda p: int(STEP_DIR.match(p.name).group(1)))


def prune_checkpoints(run_dir: Path, keep: int) -> None:
    """Delete all but the newest `keep`; each is renamed away first, so a kill never leaves half of one."""
    for old in list_checkpoints(run_dir)[:-keep]:
        doomed = old.with_name(f".{old.name}.old-{os.getpid()}")
        os.rename(old, doomed)
        shutil.rmtree(doomed, ignore_errors=True)


def remove_incomplete_checkpoints(run_dir: Path) -> list[Path]:
    """Delete what a killed writer left in RUN/checkpoints: temporary and half-deleted folders, and
    step folders without checkpoint.json. Call it only from the run's one writer, before it writes."""
    folder = Path(run_dir) / "checkpoints"
    if not folder.is_dir():
        return []
    leftovers = [p for p in folder.iterdir() if p.is_dir() and (
        (p.name.startswith(".step_") and (".tmp-" in p.name or ".old-" in p.name))
        or (STEP_DIR.match(p.name) and not (p / META_FILE).exists()))]
    for path in leftovers:
        shutil.rmtree(path, ignore_errors=True)
    return leftovers


def read_meta(folder: Path) -> dict[str, Any]:
    meta_path = folder / META_FILE
    try:
        meta = json.loads(meta_path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {folder} has no {META_FILE}; it is incomplete") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"checkpoint {meta_path} is corrupt: {e}") from None
    check_meta_types(meta, meta_path)
    if meta["format"] > FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {folder} has format {meta['format']}; upgrade artforge to read it")
    return meta


# what every checkpoint.json holds, and of which JSON type: checked before anything trusts it
META_TYPES = {"format": int, "family": str, "config": dict, "step": int, "files": dict}


def check_meta_types(meta: Any, where: Path) -> None:
    if not isinstance(meta, dict):
        raise CheckpointError(f"checkpoint {where} holds a JSON {type(meta).__name__}, not an object; "
                              "it was not written by artforge")
    for key, kind in META_TYPES.items():
        if key not in meta:
            raise CheckpointError(f"checkpoint {where} lacks '{key}'; it was not written by artforge")
        if not isinstance(meta[key], kind) or isinstance(meta[key], bool):
            raise CheckpointError(f"checkpoint {where}: '{key}' is {json.dumps(meta[key])[:60]}, "
                                  f"expected a JSON {JSON_NAMES[kind]}")
    if meta["step"] < 0:
        raise CheckpointError(f"checkpoint {where}: 'step' is {meta['step']}, expected >= 0")
    for name, digest in meta["files"].items():
        if not (isinstance(digest, dict) and isinstance(digest.get("bytes"), int)
                and isinstance(digest.get("sha256"), str)):
            raise CheckpointError(f"checkpoint {where}: files.{name} must hold 'bytes' and 'sha256'")


JSON_NAMES = {int: "integer", str: "string", dict: "object"}


def read_safetensors(folder: Path, name: str, meta: dict[str, Any]) -> tuple[dict[str, torch.Tensor], str]:
    """Read one safetensors file after checking its size and SHA-256 against the metadata."""
    path = folder / name
    expected = meta["files"].get(name)
    if not path.exists():
        raise CheckpointError(f"checkpoint {folder} is missing {name}")
    if expected and file_digest(path) != expected:
        raise CheckpointError(f"checkpoint file {path} is truncated or corrupt "
                              f"(size or SHA-256 differs from {META_FILE})")
    try:
        with safe_open(str(path), "pt") as f:
            tensors = {key: f.get_tensor(key) for key in f.keys()}
            tree = (f.metadata() or {}).get("tree", "null")
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"checkpoint file {path} cannot be read: {e}") from None
    return tensors, tree


def load_weights(network: torch.nn.Module, weights: dict, where: str) -> None:
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


def file_digest(path: Path) -> dict[str, Any]:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return {"bytes": path.stat().st_size, "sha256": h.hexdigest()}


def contiguous(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous().cpu() for k, v in tensors.items()}


def config_from_dict(config_cls: type, values: dict[str, Any], where: str) -> Any:
    """Rebuild a config dataclass; unknown fields or values of the wrong type are one-line errors."""
    known = {f.name for f in fields(config_cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise CheckpointError(
            f"checkpoint {where} has config fields {unknown} that {config_cls.__name__} does not know; "
            "it was made by another artforge version"
        )
    hints = typing.get_type_hints(config_cls)
    for name, value in values.items():
        if not has_json_type(value, hints[name]):
            raise CheckpointError(f"checkpoint {where} has an invalid {config_cls.__name__}: {name} is "
                                  f"{json.dumps(value)[:60]}, expected {getattr(hints[name], '__name__', hints[name])}")
    try:
        return config_cls(**values)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"checkpoint {where} has an invalid {config_cls.__name__}: {e}") from None


def has_json_type(value: Any, hint: Any) -> bool:
    """Does a JSON value fit a config field's type (int, float, str, bool; others are not checked)?"""
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    return True


# Training state (optimiser state dicts, RNG states) is a tree of dicts, lists and tensors.
# safetensors holds flat tensors only, so the tree's shape travels as JSON in its metadata.
def flatten_tree(node: Any, prefix: str, out: dict[str, torch.Tensor]) -> Any:
    if isinstance(node, torch.Tensor):
        out[prefix] = node
        return {"__tensor__": prefix}
    if isinstance(node, dict):
        items = [[k, flatten_tree(v, f"{prefix}.{k}", out)] for k, v in node.items()]
        if all(isinstance(k, str) for k in node):
            return {"__dict__": items}
        return {"__dict__": items, "__int_keys__": True}
    if isinstance(node, (list, tuple)):
        return {"__list__": [flatten_tree(v, f"{prefix}.{i}", out) for i, v in enumerate(node)]}
    if node is None or isinstance(node, (bool, int, float, str)):
        return node
    raise TypeError(f"cannot store {type(node).__name__} at '{prefix}' in a checkpoint")


def unflatten_tree(node: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(node, dict):
        if "__tensor__" in node:
            return tensors[node["__tensor__"]]
        if "__list__" in node:
            return [unflatten_tree(v, tensors) for v in node["__list__"]]
        int_keys = node.get("__int_keys__", False)
        return {(int(k) if int_keys else k): unflatten_tree(v, tensors) for k, v in node["__dict__"]}
    return node


# ---- weights trained elsewhere ----
# where checkpoints written by training scripts usually keep the network's state dict
NESTED_KEYS = ("state_dict", "model_state_dict", "model", "net", "generator", "params_ema", "params", "ema")
RESAVE = "re-save its state dict as safetensors: safetensors.torch.save_file(model.state_dict(), 'net.safetensors')"


def read_state_dict(path: str | Path, what: str = "") -> dict[str, torch.Tensor]:
    """Tensors by name from a safetensors file or a tensors-only .pt/.pth (nested or DataParallel ones too),
    never unpickling anything else; errors name the file after `what` (a flag, say)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{what}{path} does not exist")
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(f"{what}{path} is not a readable safetensors file: {e}") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(f"{what}{path} holds more than tensors, and artforge never unpickles code: "
                              f"{RESAVE}") from None
    except (RuntimeError, OSError, EOFError, ValueError) as e:
        raise CheckpointError(f"{what}{path} cannot be read by torch.load: {str(e).splitlines()[0]}") from None
    return tensors_only(unwrap(state, path, what), path, what)


def unwrap(state: Any, path: Path, what: str) -> Any:
    """The state dict inside a training checkpoint ({'state_dict': ...}), without DataParallel's 'module.'."""
    if isinstance(state, dict) and not any(isinstance(v, torch.Tensor) for v in state.values()):
        inner = next((state[k] for k in NESTED_KEYS if isinstance(state.get(k), dict)), None)
        if inner is None:
            raise CheckpointError(f"{what}{path} holds no tensors at its top level nor under "
                                  f"{list(NESTED_KEYS)}; its keys are {sorted(map(str, state))[:8]}")
        state = inner
    if isinstance(state, dict) and state and all(str(k).startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def tensors_only(state: Any, path: Path, what: str) -> dict[str, torch.Tensor]:
    if not isinstance(state, dict):
        raise CheckpointError(f"{what}{path} holds a {type(state).__name__}, not a state dict; {RESAVE}")
    others = sorted(str(k) for k, v in state.items() if not isinstance(v, torch.Tensor))
    if others:
        raise CheckpointError(f"{what}{path} has entries that are not tensors ({others[:3]}); {RESAVE}")
    return dict(state)
