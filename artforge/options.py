"""Options declared once: a dataclass field with its help text becomes a command-line flag.

    @dataclass
    class TrainOptions:
        out: str = option(help="run folder", required=True)
        steps: int = option(2000, help="train until this many steps in total")
        progress: bool = option(True, help="no progress bar", flag="--quiet")   # a flag that turns it off

    add_options(parser, TrainOptions)              # --out, --steps, --quiet, with "(default 2000)"
    train(**given_options(args, TrainOptions))     # only what the user set: a resume fills in the rest

Defaults live in the dataclass only; argparse's own default stays None, so a function can tell an
option the user gave from one they left alone (a resumed run keeps the options it started with).
"""
from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any, Callable


def option(default: Any = dataclasses.MISSING, help: str = "", *, flag: str | None = None,
           choices: list | None = None, required: bool = False, repeat: bool = False, cli: bool = True,
           each_call: bool = False, positional: bool = False, parse: Any = None,
           default_factory: Any = dataclasses.MISSING, aliases: tuple[str, ...] = (), many: bool = False,
           one_of: str = "", metavar: str | None = None) -> Any:
    """A dataclass field that also describes its command-line flag.

    `flag` renames it (default --field-name); a bool whose default is True and has a flag turns it
    off (--quiet for progress); `repeat` collects a list from a flag given several times; `cli=False`
    keeps it off the command line; `each_call` options (--resume, --quiet) belong to one command, not to
    the run: when the flag is absent their default applies, never the value a resumed run started with.
    `positional` makes it an argument without a flag (optional when it has a default); `parse` turns the text
    into the value (int_list);
    `aliases` are older spellings of the flag that are still accepted; `many` takes several values after one
    flag (--styles a b); fields with the same `one_of` name are alternatives, exactly one of them given;
    `metavar` names the value in --help (default: the flag's name in capitals).
    """
    metadata = {"help": help, "flag": flag, "choices": choices, "required": required, "repeat": repeat, "cli": cli,
                "each_call": each_call, "positional": positional, "parse": parse, "aliases": aliases,
                "many": many, "one_of": one_of, "metavar": metavar}
    return dataclasses.field(default=default, default_factory=default_factory, metadata=metadata)


def with_defaults(**defaults: Any) -> Callable[[type], type]:
    """Inherited fields with this command's own defaults, help and flag unchanged (place it under @dataclass):

        @dataclass(kw_only=True)
        @with_defaults(timeout=120.0)
        class StylizeOptions(ServerAddress, ImageInput): ...
    """
    def apply(cls: type) -> type:
        inherited = {f.name: f for base in cls.__mro__[1:] if dataclasses.is_dataclass(base)
                     for f in dataclasses.fields(base)}
        own = cls.__dict__.get("__annotations__")
        if own is None:
            own = {}
            cls.__annotations__ = own
        for name, value in defaults.items():
            field = inherited[name]
            setattr(cls, name, dataclasses.field(default=value, metadata=field.metadata, kw_only=True))
            own[name] = field.type
        return cls
    return apply


# ---- option groups that many commands share, declared once ----
@dataclasses.dataclass(kw_only=True)
class ServerAddress:
    """Where the Triton server is (a client command's)."""

    url: str = option("127.0.0.1:8001", help="Triton gRPC address; several, comma-separated (replicas of one "
                                             "model), share the requests and stand in for one another")
    timeout: float = option(60.0, help="seconds to wait for one answer (streamed: for each token)")


@dataclasses.dataclass(kw_only=True)
class Sampling:
    """How a token model picks each next token."""

    temperature: float = option(1.0, help="0: always the likeliest token; higher: bolder")
    top_k: int = option(0, help="sample among the k likeliest tokens (0: all)")
    top_p: float = option(1.0, help="sample among the likeliest tokens whose probability reaches p (1: all)")
    seed: int = option(0, help="sampling seed: the same seed gives the same output")


@dataclasses.dataclass(kw_only=True)
class Progress:
    progress: bool = option(True, help="no progress bar", flag="--quiet", each_call=True)


@dataclasses.dataclass(kw_only=True)
class ImageInput:
    """Pictures a client command sends."""

    input: str = option(help="an image, or a folder of images (any size, 16 px and up)", required=True)
    background: str = option("white", help="colour for transparent areas: a name, #rrggbb or r,g,b")


@dataclasses.dataclass(kw_only=True)
class Cadence:
    """How long a training run goes and how often it shows and saves its work; a family gives its own
    defaults with @with_defaults(steps=3000, ...)."""

    steps: int = option(2000, help="train until this many steps in total")
    seed: int = option(0, help="seeds everything random in the run (initialisation, batches, noise, augmentation, "
                               "the held-out split): the same seed trains the same model")
    sample_every: int = option(500, help="write samples (the family's own: grids, panels, held-out pairs, a "
                                         "confusion matrix) every N steps")
    checkpoint_every: int = option(500, help="write a checkpoint every N steps")


@dataclasses.dataclass(kw_only=True)
class RunControl(Cadence, Progress):
    """Options every training run has, whatever its family (a family's options dataclass inherits them)."""

    keep: int = option(3, help="checkpoints to keep")
    device: str = option("auto", help="auto, cpu or cuda")
    deterministic: bool = option(True, help="faster GPU kernels whose results vary slightly from run to run (a "
                                            "resumed run then no longer matches an uninterrupted one exactly)",
                                 flag="--fast-kernels")
    resume: bool = option(False, help="continue from the newest checkpoint in --out", each_call=True)


def add_options(parser: argparse.ArgumentParser, options_cls: type) -> None:
    """One flag per field of `options_cls` that is meant for the command line, in the order --help shows them:
    the command's own fields, those of the classes it builds on, then the shared groups' (server address,
    sampling), the run controls last."""
    hints = typing.get_type_hints(options_cls)
    rank = {f.name: field_rank(options_cls, f.name) for f in dataclasses.fields(options_cls)}

    alternatives: dict[str, Any] = {}
    for f in sorted(dataclasses.fields(options_cls), key=lambda f: rank[f.name]):
        meta = f.metadata
        if not meta.get("cli", True):
            continue
        target = parser
        if meta.get("one_of"):
            if meta["one_of"] not in alternatives:
                alternatives[meta["one_of"]] = parser.add_mutually_exclusive_group(required=True)
            target = alternatives[meta["one_of"]]
        flag = meta.get("flag") or "--" + f.name.replace("_", "-")
        kind = plain_type(hints[f.name])
        help_text = meta.get("help", "") + default_note(f)
        if meta.get("positional"):  # with a default it may be left out
            optional = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
            action = target.add_argument(f.name, help=help_text, nargs="?" if optional else None)
        elif kind is bool:
            default = default_value(f) if meta.get("each_call") else None
            action = target.add_argument(flag, dest=f.name, action="store_const", const=not default_value(f),
                                         default=default, help=help_text)
        elif meta.get("repeat"):
            action = target.add_argument(flag, dest=f.name, action="append", help=help_text,
                                         metavar=meta.get("metavar"))
        else:
            many = meta.get("many")
            action = target.add_argument(
                flag, *meta.get("aliases", ()), dest=f.name, nargs="+" if many else None,
                type=meta.get("parse") or (typing.get_args(kind)[0] if many else typing.get_origin(kind) or kind),
                choices=meta.get("choices"), metavar=None if meta.get("choices") else
                meta.get("metavar") or flag.lstrip("-").upper().replace("-", "_"),
                required=meta.get("required", False), default=None, help=help_text)
        action.declared_default = default_value(f)  # what an absent flag means (argparse's own is None)


def field_rank(options_cls: type, name: str) -> int:
    """Where a field goes in --help, by the class that first declared it (its base-most declaration)."""
    first = next(c for c in reversed(options_cls.__mro__) if name in c.__dict__.get("__annotations__", {}))
    if first in (RunControl, Progress):
        return 3
    if first in (ServerAddress, Sampling, Cadence):
        return 2
    return 0 if first is options_cls else 1


def given_options(args: argparse.Namespace, options_cls: type) -> dict[str, Any]:
    """The options the user set on the command line, as keyword arguments."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(options_cls)
            if f.metadata.get("cli", True) and getattr(args, f.name, None) is not None}


def options_from(args: argparse.Namespace, options_cls: type) -> Any:
    """The options dataclass filled from the command line: what the user gave, the defaults for the rest."""
    return options_cls(**given_options(args, options_cls))


def plain_type(kind: Any) -> Any:
    """str for `str | None`: the type a flag's text is converted to."""
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        return next(arg for arg in typing.get_args(kind) if arg is not type(None))
    return kind


def settings(text: str) -> dict[str, float]:
    """'steps=8,guidance=4' -> {'steps': 8.0, 'guidance': 4.0}: named numbers, for a model's controls."""
    found = {}
    for item in (part.strip() for part in text.split(",") if part.strip()):
        name, _, value = item.partition("=")
        try:
            found[name.strip()] = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected NAME=NUMBER[,NAME=NUMBER...], got '{item}'") from None
    return found


def int_list(text: str) -> list[int]:
    """'1,4,16' -> [1, 4, 16]: positive integers, for sweeps."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got '{text}'") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got '{text}'")
    return values


def control_sweep(text: str) -> dict[str, list[float]]:
    """'steps=4,8,16' -> {'steps': [4.0, 8.0, 16.0]}: one named control and the values to try it at."""
    name, _, values = text.partition("=")
    try:
        numbers = [float(v) for v in values.split(",") if v.strip()]
    except ValueError:
        numbers = []
    if not name.strip() or not numbers:
        raise argparse.ArgumentTypeError(f"expected NAME=V1,V2,... (e.g. steps=4,8,16), got '{text}'")
    return {name.strip(): numbers}


def default_value(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def default_note(f: dataclasses.Field) -> str:
    value = default_value(f)
    if f.metadata.get("required") or f.metadata.get("positional") or isinstance(value, bool) \
            or value in (None, "", []):
        return ""
    return f" (default {','.join(map(str, value)) if isinstance(value, list) else value})"


@dataclasses.dataclass(frozen=True)
class Page:
    """A client command shown as a studio page (`artforge studio`): a widget per option in `shown`, the
    served model's name in the option `model`, the server's address in `url`, and each option in `files`
    set to a file of that name in a fresh folder; the page shows every file the command wrote there
    (pictures, audio, the rest to download). The page thus runs exactly what the command line runs."""

    shown: tuple[str, ...]
    files: dict[str, str]
    button: str = "Run"
    model: str = "model"


@dataclasses.dataclass(frozen=True)
class Command:
    """One `artforge NAME` command, declared beside the function it runs: its flags are the fields of
    `options`, and `run` gets that dataclass filled in. The CLI lists commands by "module:attribute" and
    imports only the one that runs; a family's own client command (generate, stylize, ...) is named by
    `Family(client=...)`."""

    name: str
    help: str  # one line in `artforge --help`
    description: str
    examples: str
    options: type
    run: Callable[[Any], None]
    page: Page | None = None  # how `artforge studio` offers it for a served model of the family, if it does
