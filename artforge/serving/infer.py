"""`artforge infer`: one request to any served model, from files and numbers to files.

Inputs are read by what the served contract says the tensor is: a picture file for a uint8 (height,
width, 1 or 3) input, a .npy array, or a number or text filled into a static shape. Outputs are
written by what they hold: uint8 (height, width, 1 or 3) as PNG, text as JSON, anything else as .npy.
"""
from __future__ import annotations

import io
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from artforge.contract import TensorSpec
from artforge.errors import ArtforgeError
from artforge.files import atomic_write_bytes, atomic_write_text
from artforge.imaging import IMAGE_SUFFIXES, read_image, save_png
from artforge.options import Command, ServerAddress, option
from artforge.serving.client import Client, ModelInfo, resolve_label

GREY = np.array([0.299, 0.587, 0.114])  # ITU-R 601 luma, as Pillow's convert("L")


@dataclass(kw_only=True)
class InferOptions(ServerAddress):
    model: str = option(help="the served model's name ('artforge infer --url A --model x' lists them when wrong)",
                        required=True)
    input: list[str] = option(help="NAME=VALUE for each input (repeat): a picture file for picture inputs, a .npy "
                                   "array (with or without the batch axis), or a number or text filled into the "
                                   "input's shape", repeat=True, default_factory=list, metavar="NAME=VALUE")
    out: str = option("infer-out", help="folder for the outputs: pictures as NAME.png (NAME_0.png, ... for a batch), "
                                        "text as NAME.json, other arrays as NAME.npy")
    as_json: bool = option(False, help="print a JSON summary (shapes, dtypes, value ranges, files, seconds)",
                           flag="--json")


def is_picture(t: TensorSpec) -> bool:
    return t.dtype == "uint8" and len(t.shape) == 3 and t.shape[-1] in (1, 3)


def parse_assignments(texts: list[str]) -> dict[str, str]:
    out = {}
    for text in texts:
        name, sep, value = text.partition("=")
        if not sep or not name:
            raise ArtforgeError(f"--input {text}: write NAME=VALUE, e.g. image=photo.jpg or strength=0.5")
        out[name] = value
    return out


def read_input(t: TensorSpec, value: str) -> np.ndarray:
    """The batch (of one, unless a .npy holds more) that `value` stands for, as the tensor's dtype."""
    path = Path(value)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return read_picture(t, path)
    if path.suffix.lower() == ".npy":
        return read_array(t, path)
    return literal(t, value)


def read_picture(t: TensorSpec, path: Path) -> np.ndarray:
    if not is_picture(t):
        raise ArtforgeError(f"input '{t.name}' is {t.dtype} {shape_text(t)}, not a picture; give a .npy file or a "
                            "number")
    image = read_image(path)
    if t.shape[-1] == 1:
        image = np.round(image @ GREY).astype(np.uint8)[..., None]
    return image[None]


def read_array(t: TensorSpec, path: Path) -> np.ndarray:
    try:
        array = np.load(path, allow_pickle=False)  # never unpickle a user's file
    except (OSError, ValueError) as e:
        raise ArtforgeError(f"input '{t.name}': cannot read {path} as a numpy array: {e}") from None
    want = np.dtype(t.dtype)
    if array.dtype != want and not (array.dtype.kind == want.kind and np.can_cast(array.dtype, want, "same_kind")):
        raise ArtforgeError(f"input '{t.name}' is {t.dtype}; {path} holds {array.dtype}")
    array = array.astype(want)
    return array[None] if array.ndim == len(t.shape) else array


def literal(t: TensorSpec, value: str) -> np.ndarray:
    """A number (or text) repeated over the input's static shape."""
    if any(isinstance(d, str) for d in t.shape):
        raise ArtforgeError(f"input '{t.name}' has a dynamic shape {shape_text(t)}: give a .npy file or a picture, "
                            f"not '{value}'")
    kind = np.dtype(t.dtype).kind
    try:
        item = {"f": float, "i": int, "u": int, "b": lambda v: v.lower() in ("1", "true", "yes"), "O": str}[kind](value)
    except ValueError:
        raise ArtforgeError(f"input '{t.name}' is {t.dtype}: '{value}' is neither a number, a .npy file nor a "
                            "picture") from None
    return np.full((1, *t.shape), item, dtype=object if kind == "O" else t.dtype)


def shape_text(t: TensorSpec) -> str:
    return "(batch, " + ", ".join(map(str, t.shape)) + ")"


def request_from(info: ModelInfo, assignments: dict[str, str]) -> dict[str, np.ndarray]:
    """Every input of the served model, read from its NAME=VALUE; a missing or unknown one is an error."""
    missing = [f"{t.name} ({t.dtype} {shape_text(t)})" for t in info.inputs if t.name not in assignments]
    unknown = sorted(set(assignments) - {t.name for t in info.inputs})
    if missing or unknown:
        raise ArtforgeError(f"model '{info.name}' takes {[t.name for t in info.inputs]}; "
                            + (f"give --input for {', '.join(missing)}" if missing else f"it has no {unknown}"))
    labels = class_labels(info)
    return {t.name: read_input(t, str(resolve_label(assignments[t.name], labels[t.name], "class"))
                               if t.name in labels else assignments[t.name]) for t in info.inputs}


def class_labels(info: ModelInfo) -> dict[str, list]:
    """{class input: its class names} for models that name their classes (artforge's generators), so that
    `--input style=waves` means the class 'waves'."""
    name, names = info.metadata.get("class_input"), info.metadata.get("styles")
    return {name: list(names)} if name and names else {}


def write_output(name: str, value: np.ndarray, out: Path) -> list[str]:
    """Write one output; the files it became."""
    if value.dtype == np.uint8 and value.ndim == 4 and value.shape[-1] in (1, 3):
        files = [out / (f"{name}.png" if len(value) == 1 else f"{name}_{i}.png") for i in range(len(value))]
        for path, picture in zip(files, value):
            save_png(picture[..., 0] if picture.shape[-1] == 1 else picture, path)
    elif value.dtype == object:
        files = [out / f"{name}.json"]
        texts = [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in value.ravel()]
        atomic_write_text(files[0], json.dumps(np.array(texts, dtype=object).reshape(value.shape).tolist()) + "\n")
    else:
        files = [out / f"{name}.npy"]
        buffer = io.BytesIO()
        np.save(buffer, value, allow_pickle=False)
        atomic_write_bytes(files[0], buffer.getvalue())
    return [str(f) for f in files]


def describe(value: np.ndarray) -> dict[str, Any]:
    entry: dict[str, Any] = {"shape": list(value.shape), "dtype": str(value.dtype)}
    if value.dtype.kind in "fiub" and value.size:
        entry.update(min=float(value.min()), max=float(value.max()), mean=float(value.astype(np.float64).mean()))
    return entry


def infer_files(client: Client, model: str, assignments: dict[str, str], out: Path) -> dict[str, Any]:
    """Send one request built from files and numbers; write every output under `out`; return a summary."""
    info = client.model(model)
    if info.decoupled:
        raise ArtforgeError(f"model '{model}' streams its answer (tokens, or picture previews): use 'artforge "
                            "stream', 'artforge generate' or its family's command")
    request = request_from(info, assignments)
    start = time.perf_counter()
    answer = client.infer(model, request)
    seconds = time.perf_counter() - start
    out.mkdir(parents=True, exist_ok=True)
    outputs = {name: {**describe(value), "files": write_output(name, value, out)} for name, value in answer.items()}
    return {"model": model, "url": client.url, "seconds": seconds,
            "inputs": {name: describe(value) for name, value in request.items()}, "outputs": outputs}


def summary_lines(summary: dict[str, Any]) -> list[str]:
    lines = [f"{summary['model']} answered in {summary['seconds'] * 1000:.1f} ms"]
    for name, entry in summary["outputs"].items():
        span = f", {entry['min']:.4g}..{entry['max']:.4g}" if "min" in entry else ""
        lines.append(f"  {name}: {entry['dtype']} {tuple(entry['shape'])}{span} -> {', '.join(entry['files'])}")
    return lines


def infer_command(opts: InferOptions) -> None:
    with Client(opts.url, timeout_s=opts.timeout) as client:
        summary = infer_files(client, opts.model, parse_assignments(opts.input), Path(opts.out))
    print(json.dumps(summary, indent=2) if opts.as_json else "\n".join(summary_lines(summary)))


COMMAND = Command(
    "infer", help="send one request to any served model, from files to files",
    description="Call any model on Triton (one artforge exported, or any other the server has): each input is "
                "read from a file or a number as the served contract says the tensor is, checked against the "
                "model's limits, sent, and every output is written to --out.",
    examples="  artforge infer --model tint --input image=photo.jpg --input strength=0.5 --out out/\n"
             "  artforge infer --model critic --input image=painting.png --json      # a summary as JSON\n"
             "  artforge infer --model dcgan --input z=z.npy --input style=waves --out dcgan-out/   # a class by name",
    options=InferOptions, run=infer_command)
