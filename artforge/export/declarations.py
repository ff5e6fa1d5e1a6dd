"""What a user declares about a model artforge did not train: its inputs and the tensors that are pictures.

    --input image:float32:batch,3,height=64..512,width=64..512:-1..1
            NAME : DTYPE : SHAPE (batch axis first) : value range (optional)
    --picture image:-1..1:nchw:rgb        NAME : RANGE [: nchw | nhwc] [: rgb | bgr]

In a shape an integer is a static axis; a name, `-1` or `MIN..MAX` is a dynamic one (axes of one name
share one size), and `NAME=MIN..MAX` gives a dynamic axis its range. The first axis is the batch: dynamic
(served in batches up to --max-batch) or 1 (the network takes one item at a time).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from artforge.errors import ArtforgeError

DTYPES = ("float32", "float16", "uint8", "int32", "int64", "bool")
LAYOUTS = ("nchw", "nhwc")
CHANNEL_ORDERS = ("rgb", "bgr")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # torchvision's, RGB
AXIS_NAME = re.compile(r"^[A-Za-z_][\w]*$")
RANGE = re.compile(r"^(-?\d+(?:\.\d*)?(?:e-?\d+)?)\.\.(-?\d+(?:\.\d*)?(?:e-?\d+)?)$")


@dataclass(frozen=True)
class Axis:
    """One axis of a declared shape: a static size, or a dynamic axis (with a name and range when given)."""

    size: int | None = None
    name: str = ""
    min: int | None = None
    max: int | None = None

    @property
    def dynamic(self) -> bool:
        return self.size is None


@dataclass(frozen=True)
class InputDeclaration:
    name: str
    dtype: str
    axes: tuple[Axis, ...]  # batch first
    min_value: float | None = None
    max_value: float | None = None


@dataclass(frozen=True)
class Picture:
    """A tensor the network sees as a float picture; on the wire it is uint8 (batch, height, width, channels)."""

    name: str
    low: float  # the network's value for pixel 0 ...
    high: float  # ... and for pixel 255
    layout: str = "nchw"
    order: str = "rgb"
    # then, per channel in the network's order: (value - mean) / std, as torchvision's Normalize
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()


def parse_range(text: str, what: str) -> tuple[float, float]:
    match = RANGE.fullmatch(text.strip())
    if not match or float(match[1]) >= float(match[2]):
        raise ArtforgeError(f"{what}: '{text}' is not a range; write MIN..MAX with MIN < MAX, e.g. -1..1")
    return float(match[1]), float(match[2])


def parse_axis(text: str, where: str) -> Axis:
    """'3' static; 'height', '-1' or '64..512' dynamic; 'height=64..512' named with its range."""
    text = text.strip()
    if re.fullmatch(r"\d+", text):
        if int(text) == 0:
            raise ArtforgeError(f"{where}: an axis of size 0 holds nothing; write a size, a name or -1")
        return Axis(size=int(text))
    name, _, bounds = text.rpartition("=") if "=" in text else ("", "", text)
    if not bounds or bounds == "-1" or AXIS_NAME.fullmatch(bounds):
        name = name or ("" if bounds == "-1" else bounds)
        bounds = ""
    if name and not AXIS_NAME.fullmatch(name):
        raise ArtforgeError(f"{where}: axis '{text}' has a name that is not a word ('{name}')")
    if not bounds:
        return Axis(name=name)
    low, high = parse_range(bounds, f"{where}, axis '{text}'")
    if low != int(low) or high != int(high) or low < 1:
        raise ArtforgeError(f"{where}: axis '{text}' needs whole sizes from 1 up, e.g. height=64..512")
    return Axis(name=name, min=int(low), max=int(high))


def parse_input(text: str) -> InputDeclaration:
    """NAME:DTYPE:SHAPE[:MIN..MAX]; a name may itself hold ':' (TensorFlow's 'input:0')."""
    parts = text.split(":")
    at = next((i for i in range(len(parts) - 1, 0, -1) if parts[i] in DTYPES), None)
    where = f"--input {text}"
    if at is None or at + 1 >= len(parts):
        raise ArtforgeError(f"{where}: write NAME:DTYPE:SHAPE[:MIN..MAX] with DTYPE one of {', '.join(DTYPES)}, "
                            "e.g. image:float32:batch,3,256,256:-1..1")
    name, dtype, rest = ":".join(parts[:at]), parts[at], parts[at + 1:]
    value_range = None
    if len(rest) == 2:
        *rest, bounds = rest
        value_range = parse_range(bounds, where)
    if len(rest) != 1 or not rest[0].strip():
        raise ArtforgeError(f"{where}: the shape is one comma-separated field, e.g. batch,3,height,width")
    axes = tuple(parse_axis(a, where) for a in rest[0].split(","))
    low, high = value_range or (None, None)
    return InputDeclaration(name, dtype, axes, low, high)


def parse_picture(text: str) -> Picture:
    """NAME:RANGE[:LAYOUT][:ORDER][:mean=M,M,M:std=S,S,S], e.g. image:-1..1, stylized:0..255:nhwc:bgr,
    photo:imagenet (0..1, then ImageNet's mean and std, as torchvision's classifiers take them)."""
    parts = text.split(":")
    options: dict[str, str] = {}
    while len(parts) > 2 and (option := picture_option(parts[-1])):
        options[option[0]] = option[1]
        parts.pop()
    if len(parts) < 2 or not parts[-1]:
        raise ArtforgeError(f"--picture {text}: write NAME:RANGE[:nchw|nhwc][:rgb|bgr][:mean=..:std=..], e.g. "
                            "image:-1..1:nchw:rgb or photo:imagenet")
    where = f"--picture {text}"
    if parts[-1].lower() == "imagenet":
        low, high, mean, std = 0.0, 1.0, IMAGENET_MEAN, IMAGENET_STD
    else:
        (low, high), mean, std = parse_range(parts[-1], where), numbers(options.get("mean"), where), \
            numbers(options.get("std"), where)
    if len(mean) != len(std) or any(s <= 0 for s in std):
        raise ArtforgeError(f"{where}: give mean= and std= together, one value a channel, std above 0")
    return Picture(":".join(parts[:-1]), low, high, options.get("layout", "nchw"), options.get("order", "rgb"),
                   mean, std)


def picture_option(word: str) -> tuple[str, str] | None:
    """('layout', 'nchw'), ('order', 'bgr'), ('mean', '0.5,0.5,0.5') or ('std', ...); None for other words."""
    lower = word.lower()
    if lower in LAYOUTS:
        return "layout", lower
    if lower in CHANNEL_ORDERS:
        return "order", lower
    key, sep, value = word.partition("=")
    return (key, value) if sep and key in ("mean", "std") else None


def numbers(text: str | None, where: str) -> tuple[float, ...]:
    if text is None:
        return ()
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise ArtforgeError(f"{where}: '{text}' is not a comma-separated list of numbers") from None


def by_name(declarations: list, what: str) -> dict:
    """Declarations keyed by tensor name; a name declared twice is an error."""
    out = {}
    for d in declarations:
        if d.name in out:
            raise ArtforgeError(f"{what} '{d.name}' is declared twice")
        out[d.name] = d
    return out
