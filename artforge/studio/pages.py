"""What each studio page does, without Gradio: the functions behind the buttons, from a served model's contract.

Three kinds of page, told apart by the contract alone (no family is named here), unless the model's family
offers its client command as a page (`Command.page`, found through the registry: music's `compose`, whose
MIDI, piano roll and audio the page shows):
- a generator (fixed-size inputs, a uint8 picture out): a grid from a class, a count, a seed and the
  model's controls, through the same `generate` as `artforge generate` (previews as they form for a
  sampling loop);
- a token stream: the text as it is written, through `Client.stream_text` as `artforge stream`;
- any other model: one request from a form of its inputs (pictures; numbers within their limits; a
  label by name; a mix of labels as one weight each, normalised as `artforge stylize --blend` does),
  its outputs shown by what they hold.
"""
from __future__ import annotations

import dataclasses
import queue
import shutil
import tempfile
import threading
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from artforge.contract import TensorSpec
from artforge.errors import ArtforgeError
from artforge.families.generate import PreviewFrames, generate, mixing_grid, walk
from artforge.generation import noise_inputs
from artforge.imaging import make_grid, save_gif
from artforge.options import Command, default_value, plain_type
from artforge.registry import get_family
from artforge.serving.client import Client, ModelInfo, resolve_label
from artforge.serving.generators import generator_image_output, remote_generator

GRID_COLUMNS = 8
VIEW_SIDE = 128  # small art is enlarged (nearest neighbour) to about this side, as the CLI's PNGs are


def page_kind(info: ModelInfo) -> str:
    """'command', 'generator', 'stream' or 'form': which page a served model gets."""
    if family_command(info):
        return "command"
    if info.stream:
        return "stream"
    try:
        generator_image_output(info.inputs, info.outputs, "")
        return "generator"
    except ArtforgeError:
        return "form"


def enlarged(picture: np.ndarray, side: int) -> np.ndarray:
    """(H, W, 3) uint8 enlarged by whole pixels, as `save_png(upscale=...)` writes the CLI's grids."""
    factor = max(1, VIEW_SIDE // side)
    return picture.repeat(factor, axis=0).repeat(factor, axis=1) if factor > 1 else picture


# ---- generators ----
@dataclass
class GeneratorControl:
    """A control input of a generator as a slider: its range from the limits, its default from the metadata."""

    name: str
    minimum: float
    maximum: float
    default: float
    integer: bool
    choices: list[str] | None = None  # a sampler: named choices instead of numbers


def generator_controls(info: ModelInfo) -> list[GeneratorControl]:
    controls, defaults = [], info.metadata.get("controls", {})
    for spec in (t for t in info.inputs if t.name in defaults):  # in the contract's order (metadata is sorted)
        name, default = spec.name, defaults[spec.name]
        limit = info.limits.get(name, {})
        integer = np.dtype(spec.dtype).kind in "iu"
        choices = info.metadata.get("samplers") if name == "sampler" else None
        controls.append(GeneratorControl(name, float(limit.get("min", 0)), float(limit.get("max", max(1, default))),
                                         float(default), integer, choices))
    return controls


def class_choices(info: ModelInfo) -> list[str]:
    """'all in turn', then the model's class names (empty: the model takes no class)."""
    names = [str(n) for n in info.metadata.get("styles", [])] if info.metadata.get("class_input") else []
    return ["all in turn", *names] if names else []


def control_values(info: ModelInfo, values: dict[str, Any]) -> dict[str, float]:
    """Slider and dropdown values as the request's controls (a sampler's name as its index)."""
    out = {}
    for control in generator_controls(info):
        value = values.get(control.name, control.default)
        if control.choices:
            value = control.choices.index(value) if value in control.choices else int(value)
        out[control.name] = float(value)
    return out


@dataclass
class Grids:
    """What a generator page shows as a request goes on: the grid now, and the grids of the preview steps so far
    (at the end, every preview step's: the frames `artforge generate --previews-gif` writes, enlarged alike)."""

    grid: np.ndarray
    forming: list[np.ndarray]


def generator_grids(client: Client, name: str, label: str | None, count: int, seed: int,
                    controls: dict[str, float]) -> Iterator[Grids]:
    """The grid `artforge generate --count --seed --class` writes (enlarged alike); for a sampling loop first
    the grid of every preview step as the pictures form."""
    info = client.model(name)
    label = None if label in (None, "", "all in turn") else label
    columns = count if label is not None else min(count, GRID_COLUMNS)
    model = remote_generator(client, name)
    if not info.sampler or not controls.get("previews"):
        images = generate(model, int(count), int(seed), label, controls)
        yield Grids(enlarged(make_grid(images, columns), images.shape[1]), [])
        return
    frames = PreviewFrames(int(count), columns)
    yield from with_previews(lambda on_event: generate(model, int(count), int(seed), label, controls, on_event),
                             frames, columns)


def can_walk(info: ModelInfo) -> bool:
    """Whether a generator draws from noise inputs a latent walk can move through (a diffusion model does not)."""
    return bool(noise_inputs(info.inputs, info.metadata))


def walk_gif(client: Client, name: str, label: str | None, frames: int, points: int, seed: int,
             controls: dict[str, float], out: Path) -> Path:
    """The looping latent walk `artforge generate --interpolate FRAMES --walk-points POINTS` writes, as a GIF."""
    label = None if label in (None, "", "all in turn") else label
    pictures = walk(remote_generator(client, name), int(frames), int(points), int(seed), label, controls)
    save_gif(pictures, out, upscale=max(1, VIEW_SIDE // pictures.shape[1]))
    return out


def can_mix(info: ModelInfo) -> bool:
    """Whether a generator declares style mixing (metadata 'mixing': StyleGAN2)."""
    return bool(info.metadata.get("mixing"))


def mixing_layers(info: ModelInfo) -> list[str]:
    """The mixing grid's layer choices, 'k: what slot k drives' where the metadata says (k: no mixing is left out)."""
    slots = int(info.limits.get(info.metadata["mixing"]["layer"], {}).get("max", 0))
    names = info.metadata.get("style_slots", [])
    return [f"{k}: {names[k]}" if k < len(names) else str(k) for k in range(slots)]


def mixing_picture(client: Client, name: str, rows: int, columns: int, layer: str, label: str | None, seed: int,
                   controls: dict[str, float]) -> np.ndarray:
    """The grid `artforge generate --mixing-grid ROWSxCOLUMNS --mix-from LAYER` writes (enlarged alike)."""
    label = None if label in (None, "", "all in turn") else label
    pictures = mixing_grid(remote_generator(client, name), int(rows), int(columns), int(seed),
                           int(str(layer).split(":")[0]), label, controls)
    return enlarged(make_grid(pictures, int(columns) + 1), pictures.shape[1])


def with_previews(run, frames: PreviewFrames, columns: int) -> Iterator[Grids]:
    """Run `run(on_event)` on a thread; yield the grid of each preview step every picture has reached, then the
    final grid beside every preview step's (what `--previews-gif` writes: steps a busy page skipped included).
    Only this thread touches `frames`: the sampling thread hands each event over a queue."""
    events: queue.Queue = queue.Queue()
    result: dict[str, Any] = {}

    def work() -> None:
        try:
            result["images"] = run(lambda item, step, picture: events.put((item, step, picture)))
        except Exception as e:  # handed to the page's thread, which shows it
            result["error"] = e
        events.put(None)
    threading.Thread(target=work, name="artforge-studio-sampling", daemon=True).start()
    shown, forming = 0, []
    while (event := events.get()) is not None:
        frames.on_event(*event)
        step = event[1]
        if len(frames.steps[step]) == frames.count and step > shown:  # every picture has reached it
            shown = step
            grid = frames.frames()[sorted(frames.steps).index(step)]  # that step's pictures, not later ones
            forming.append(enlarged(grid, event[2].shape[0]))
            yield Grids(forming[-1], list(forming))
    if "error" in result:
        raise result["error"]
    images = result["images"]
    yield Grids(enlarged(make_grid(images, columns), images.shape[1]),
                [enlarged(frame, images.shape[1]) for frame in frames.frames()])


# ---- token streams ----
def streamed_text(client: Client, name: str, prompt: str, max_tokens: int, temperature: float, top_k: int,
                  top_p: float, seed: int) -> Iterator[str]:
    """The prompt and the text after it, growing as `artforge stream` prints it."""
    text = prompt
    for piece in client.stream_text(name, prompt, int(max_tokens), float(temperature), int(top_k), int(seed),
                                    float(top_p)):
        text += piece
        yield text


# ---- any other model: a form of its inputs ----
@dataclass
class FormField:
    """How one input is asked for on a form page."""

    tensor: TensorSpec
    # picture, mask (drawn over the picture input `over`), labels (a dropdown), mix (a weight per label),
    # number, unsupported
    kind: str
    labels: list[str]
    minimum: float | None = None
    maximum: float | None = None
    over: str = ""


def is_picture(t: TensorSpec) -> bool:
    return t.dtype == "uint8" and len(t.shape) == 3 and t.shape[-1] in (1, 3)


def drawn_over(t: TensorSpec, inputs: tuple[TensorSpec, ...], limit: dict[str, Any]) -> str:
    """The colour picture input a 0/1 one-channel input is a mask of (the same named sides), or ""."""
    if not (is_picture(t) and t.shape[-1] == 1 and limit.get("max") == 1):
        return ""
    return next((o.name for o in inputs if is_picture(o) and o.shape == (*t.shape[:2], 3)), "")


def form_fields(info: ModelInfo) -> list[FormField]:
    labels = [str(n) for n in info.metadata.get("labels", info.metadata.get("styles", []))]
    named = info.metadata.get("choices", {})  # an integer input's values by name (a translation's directions)
    fields = []
    for t in info.inputs:
        limit = info.limits.get(t.name, {})
        over = drawn_over(t, info.inputs, limit)
        if over:
            kind = "mask"
        elif names_every_value(t, named.get(t.name, []), limit):
            fields.append(FormField(t, "labels", [str(n) for n in named[t.name]], limit.get("min"), limit.get("max")))
            continue
        elif is_picture(t):
            kind = "picture"
        elif t.shape == (len(labels),) and np.dtype(t.dtype).kind == "f" and labels:
            kind = "mix"
        elif t.shape == (1,) and np.dtype(t.dtype).kind in "iu" and labels and limit.get("max") == len(labels) - 1:
            kind = "labels"
        elif t.shape == (1,) and np.dtype(t.dtype).kind in "fiu":
            kind = "number"
        else:
            kind = "unsupported"
        fields.append(FormField(t, kind, labels, limit.get("min"), limit.get("max"), over))
    return fields


def names_every_value(t: TensorSpec, names: list, limit: dict[str, Any]) -> bool:
    """Whether `names` names each value 0..max of a one-number integer input (a dropdown then sets it)."""
    return t.shape == (1,) and np.dtype(t.dtype).kind in "iu" and bool(names) and limit.get("max") == len(names) - 1


def has_mask(fields: list[FormField], picture: str) -> bool:
    """Whether a mask is drawn over this picture input (its widget is then an editor with a brush)."""
    return any(f.kind == "mask" and f.over == picture for f in fields)


def form_request(fields: list[FormField], values: list[Any]) -> dict[str, np.ndarray]:
    """The one-item request of a form's values, in the fields' order."""
    request = {}
    for field, value in zip(fields, values):
        request[field.tensor.name] = field_value(field, value)
    return request


def field_value(field: FormField, value: Any) -> np.ndarray:
    t = field.tensor
    if field.kind == "mask":
        return drawn_mask(value, t.name)[None]
    if field.kind == "picture":
        if isinstance(value, dict):  # an editor's value: the picture is its background, strokes are a mask's
            value = value.get("background")
        if value is None:
            raise ArtforgeError(f"'{t.name}' needs a picture: upload one")
        picture = np.asarray(value, np.uint8)
        if picture.ndim == 2:
            picture = picture[..., None]
        picture = picture[..., :t.shape[-1]] if picture.shape[-1] >= t.shape[-1] else np.repeat(picture, 3, axis=-1)
        return picture[None]
    if field.kind == "labels":
        return np.array([[resolve_label(value, field.labels)]], t.dtype)
    if field.kind == "mix":
        weights = np.asarray(value, np.float64)
        if weights.sum() > 0:  # a mix of labels: normalised as `--blend` does (all zero: the limits refuse it)
            weights = weights / weights.sum()
        return weights[None].astype(t.dtype)
    if field.kind == "number":
        return np.array([[value]], t.dtype)
    raise ArtforgeError(f"'{t.name}' ({t.dtype} {t.shape}) cannot be set from this page: use artforge infer")


def drawn_mask(editor: dict | None, name: str) -> np.ndarray:
    """(H, W, 1) uint8: 1 wherever a brush stroke on the editor's layers covers the picture, else 0."""
    background = None if editor is None else editor.get("background")
    if background is None:
        raise ArtforgeError(f"'{name}' is drawn on a picture: upload one first")
    mask = np.zeros(np.asarray(background).shape[:2], bool)
    for layer in editor.get("layers") or []:
        layer = np.asarray(layer)
        if layer.ndim == 3 and layer.shape[2] == 4 and layer.shape[:2] == mask.shape:
            mask |= layer[..., 3] >= 128  # the stroke's alpha; soft edges count from half, as --mask files do
    return mask[..., None].astype(np.uint8)


def form_answer(client: Client, name: str, request: dict[str, np.ndarray]) -> dict[str, Any]:
    """The served answer of one form request: {output name: (H, W, 3) picture or a JSON-able summary}."""
    info = client.model(name)
    answer = client.infer(name, request)
    shown = {}
    for t in info.outputs:
        value = answer[t.name][0]
        if t.dtype == "uint8" and value.ndim == 3 and value.shape[-1] in (1, 3):
            shown[t.name] = value if value.shape[-1] == 3 else np.repeat(value, 3, axis=-1)
        else:
            shown[t.name] = summarise(value, info.metadata)
    return shown


def per_label(info: ModelInfo, tensor: TensorSpec) -> bool:
    """Whether an output holds one number per label (shown as a bar chart; summarised as {label: value})."""
    labels = info.metadata.get("labels", info.metadata.get("styles", []))
    return bool(labels) and tensor.dtype != "uint8" and tensor.shape == (len(labels),)


def summarise(value: np.ndarray, metadata: dict[str, Any]) -> Any:
    """An output for people: small arrays as numbers (by label when one per label), larger ones described."""
    labels = [str(n) for n in metadata.get("labels", metadata.get("styles", []))]
    flat = value.reshape(-1)
    if value.dtype == object:
        return [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in flat]
    if labels and flat.size == len(labels):
        return {label: float(v) for label, v in zip(labels, flat)}
    if flat.size <= 16:
        return [float(v) for v in flat]
    return {"shape": list(value.shape), "dtype": str(value.dtype), "min": float(flat.min()), "max": float(flat.max()),
            "mean": float(flat.mean())}


class RequestFolders:
    """A folder per request for what a page writes (a walk's GIF, a command's files) under `root`, the oldest
    removed once there are more than `keep`: Gradio serves its own copies of the files a request returns, so
    a studio left running for days does not fill the disk."""

    def __init__(self, root: Path | None = None, keep: int = 32):
        self.temporary = root is None  # then the root itself goes at close()
        self.root = Path(tempfile.mkdtemp(prefix="artforge-studio-")) if root is None else root
        self.keep, self.made, self.lock = keep, [], threading.Lock()

    def new(self, prefix: str) -> Path:
        folder = Path(tempfile.mkdtemp(prefix=prefix, dir=self.root))
        with self.lock:
            self.made.append(folder)
            old, self.made = self.made[:-self.keep], self.made[-self.keep:]
        for gone in old:
            shutil.rmtree(gone, ignore_errors=True)
        return folder

    def close(self) -> None:
        for folder in [self.root] if self.temporary else self.made:
            shutil.rmtree(folder, ignore_errors=True)


# ---- a family's own client command ----
def family_client(info: ModelInfo) -> Command | None:
    """The served model's family's client command (`artforge write` for a poem model), if artforge knows one."""
    try:
        family = get_family(info.family) if info.family else None
    except ArtforgeError:  # a family this artforge does not know (exported by a newer one): the contract's page
        return None
    return family.hook("client") if family and family.client else None


def family_command(info: ModelInfo) -> Command | None:
    """The client command the served model's family offers as a page (`Command.page`), if it offers one."""
    command = family_client(info)
    return command if command is not None and command.page else None


STREAM_SETTINGS = {"max_tokens": 100, "temperature": 1.0, "top_k": 0, "top_p": 1.0}


def stream_defaults(info: ModelInfo) -> dict[str, float]:
    """Where a token stream's sliders start: the family's client command's defaults (so the page with its
    sliders untouched writes what `artforge write` does with no flags), else plain sampling."""
    command = family_client(info)
    fields = {f.name: f for f in dataclasses.fields(command.options)} if command else {}
    return {name: default_value(fields[name]) if name in fields else value for name, value in STREAM_SETTINGS.items()}


@dataclass
class CommandField:
    """One option of a page's command as a widget: its name, help, default and value type (int, float, str)."""

    name: str
    help: str
    default: Any
    kind: type


def command_fields(command: Command) -> list[CommandField]:
    hints = typing.get_type_hints(command.options)
    fields = {f.name: f for f in dataclasses.fields(command.options)}
    return [CommandField(name, fields[name].metadata.get("help", ""), default_value(fields[name]),
                         plain_type(hints[name])) for name in command.page.shown]


def run_command(command: Command, url: str, model: str, values: list[Any], folder: Path) -> tuple[list[Path], str]:
    """Run the command as `artforge NAME --MODEL model --url url` with these values (in `command_fields`
    order) and its files in `folder`; return the files it wrote there and its one-line error ("" if none):
    what it wrote before failing (a MIDI file without its audio) is still worth showing."""
    page = command.page
    given = {field.name: field.kind(field.default if value is None else value)
             for field, value in zip(command_fields(command), values)}
    given |= {page.model: model, "url": url} | {option: str(folder / name) for option, name in page.files.items()}
    error = ""
    try:
        command.run(command.options(**given))
    except ArtforgeError as e:
        error = str(e)
    return sorted(p for p in folder.iterdir() if p.is_file()), error
