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
from typing import Any


def option(default: Any = dataclasses.MISSING, help: str = "", *, flag: str | None = None,
           choices: list | None = None, required: bool = False, repeat: bool = False, cli: bool = True,
           each_call: bool = False, positional: bool = False, parse: Any = None,
           default_factory: Any = dataclasses.MISSING, aliases: tuple[str, ...] = ()) -> Any:
    """A dataclass field that also describes its command-line flag.

    `flag` renames it (default --field-name); a bool whose default is True and has a flag turns it
    off (--quiet for progress); `repeat` collects a list from a flag given several times; `cli=False`
    keeps it off the command line; `each_call` options (--resume, --quiet) belong to one command, not to
    the run: when the flag is absent their default applies, never the value a resumed run started with.
    `positional` makes it an argument without a flag; `parse` turns the text into the value (int_list);
    `aliases` are older spellings of the flag that are still accepted.
    """
    metadata = {"help": help, "flag": flag, "choices": choices, "required": required, "repeat": repeat, "cli": cli,
                "each_call": each_call, "positional": positional, "parse": parse, "aliases": aliases}
    return dataclasses.field(default=default, default_factory=default_factory, metadata=metadata)


@dataclasses.dataclass(kw_only=True)
class RunControl:
    """Options every training run has, whatever its family (a family's options dataclass inherits them;
    its own cadence, sample_every and checkpoint_every, it declares itself)."""

    keep: int = option(3, help="checkpoints to keep")
    device: str = option("auto", help="auto, cpu or cuda")
    deterministic: bool = option(True, help="faster GPU kernels whose results vary slightly from run to run (a "
                                            "resumed run then no longer matches an uninterrupted one exactly)",
                                 flag="--fast-kernels")
    resume: bool = option(False, help="continue from the newest checkpoint in --out", each_call=True)
    progress: bool = option(True, help="no progress bar", flag="--quiet", each_call=True)


RUN_CONTROL_FIELDS = frozenset(f.name for f in dataclasses.fields(RunControl))


def add_options(parser: argparse.ArgumentParser, options_cls: type) -> None:
    """One flag per field of `options_cls` that is meant for the command line: its own fields, then those it
    inherits, RunControl's last."""
    hints = typing.get_type_hints(options_cls)
    own = set(vars(options_cls).get("__annotations__", {}))  # the family's own options first, shared ones after

    def order(f) -> int:
        return 2 if f.name in RUN_CONTROL_FIELDS else int(f.name not in own)

    for f in sorted(dataclasses.fields(options_cls), key=order):
        meta = f.metadata
        if not meta.get("cli", True):
            continue
        flag = meta.get("flag") or "--" + f.name.replace("_", "-")
        kind = plain_type(hints[f.name])
        help_text = meta.get("help", "") + default_note(f)
        if meta.get("positional"):
            action = parser.add_argument(f.name, help=help_text)
        elif kind is bool:
            default = default_value(f) if meta.get("each_call") else None
            action = parser.add_argument(flag, dest=f.name, action="store_const", const=not default_value(f),
                                         default=default, help=help_text)
        elif meta.get("repeat"):
            action = parser.add_argument(flag, dest=f.name, action="append", help=help_text)
        else:
            action = parser.add_argument(flag, *meta.get("aliases", ()), dest=f.name,
                                type=meta.get("parse") or typing.get_origin(kind) or kind,
                                choices=meta.get("choices"), metavar=None if meta.get("choices") else
                                flag.lstrip("-").upper().replace("-", "_"),
                                required=meta.get("required", False), default=None, help=help_text)
        action.declared_default = default_value(f)  # what an absent flag means (argparse's own is None)


def given_options(args: argparse.Namespace, options_cls: type) -> dict[str, Any]:
    """The options the user set on the command line, as keyword arguments."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(options_cls)
            if f.metadata.get("cli", True) and getattr(args, f.name, None) is not None}


def plain_type(kind: Any) -> Any:
    """str for `str | None`: the type a flag's text is converted to."""
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        return next(arg for arg in typing.get_args(kind) if arg is not type(None))
    return kind


def int_list(text: str) -> list[int]:
    """'1,4,16' -> [1, 4, 16]: positive integers, for sweeps."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got '{text}'") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got '{text}'")
    return values


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
class ClientVerb:
    """A family's own client command, `artforge NAME` (generate, stylize, ...): declared in the family's
    client module as VERB and named by `Family(client="that.module")`; the command line is built from it."""

    name: str
    help: str
    description: str
    examples: str
    add_arguments: Any  # (argparse parser) -> None
    run: Any  # (parsed arguments) -> None
