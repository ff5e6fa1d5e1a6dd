"""The `artforge` command: a dispatcher over commands declared beside the functions they run.

Each command is an options.Command (its flags are the fields of an options dataclass) in the module that
does the work; this file only says where each one is, so that `artforge serve` imports the serving code
and nothing else (no torch: it starts in a fraction of a second). A family's own client command
(`artforge generate`, `artforge stylize`, ...) and `artforge train FAMILY` come from the family registry.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

from artforge import __version__
from artforge.errors import ArtforgeError
from artforge.options import Command, add_options, given_options, options_from

EPILOG = """\
the road from training to serving:
  artforge data synth --out data/art --size 32 --per-style 500
  artforge train dcgan --data data/art --out runs/dcgan --size 32 --steps 3000
  artforge train dcgan --out runs/dcgan --resume --steps 6000
  artforge export runs/dcgan --repository repo/
  artforge serve --repository repo/                      # Triton on 127.0.0.1:8001 (gRPC)
  artforge generate --model dcgan --class circles --count 16 --out grid.png
  artforge bench runs/dcgan --out bench/
style transfer:
  artforge train style --style ink.jpg --style mosaic.png --out runs/style
  artforge stylize --input photo.jpg --style ink --out ink.png

every command has its own --help with examples.
"""

# `artforge NAME` (or `artforge GROUP NAME`) -> the module attribute that declares it, in --help's order
COMMANDS = {
    "data synth": "artforge.training.synth:COMMAND",
    "data clipart": "artforge.training.clipart:COMMAND",
    "data poems": "artforge.families.poem.corpus:COMMAND",
    "data music": "artforge.families.music.corpus:COMMAND",
    "families": "artforge.registry:COMMAND",
    "export": "artforge.export.pipeline:COMMAND",
    "serve": "artforge.serving.supervise:COMMAND",
    "gpu-compose": "artforge.serving.gpu_container:COMMAND",
    "stream": "artforge.serving.client:COMMAND",
    "infer": "artforge.serving.infer:COMMAND",
    "evaluate": "artforge.evaluation.evaluate:COMMAND",
    "bench": "artforge.benchmarks.run:COMMAND",
    "bench-history": "artforge.benchmarks.ci:COMMAND",
    "loss-layers": "artforge.families.style.loss_layers:COMMAND",
    "init-gain": "artforge.families.style.init_gain:COMMAND",
    "reliability": "artforge.benchmarks.reliability:COMMAND",
    "studio": "artforge.studio.command:COMMAND",
}
GROUPS = {"data": "make and inspect training data", "train": "train a model family"}


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keep description and example blocks as written (the options dataclasses write the defaults)."""


def declared(where: str) -> Command:
    module, attribute = where.split(":")
    return getattr(importlib.import_module(module), attribute)


def add_command(commands, command: Command, name: str | None = None) -> None:
    p = commands.add_parser(name or command.name, formatter_class=HelpFormatter, help=command.help,
                            description=command.description, epilog="examples:\n" + command.examples)
    add_options(p, command.options)
    p.set_defaults(handler=lambda args: command.run(options_from(args, command.options)))


def add_trainers(train) -> None:
    """`artforge train FAMILY` for every family that can be trained (imports all their training code)."""
    from artforge.registry import families  # torch and every family: only when `train` is asked for

    sub = train.add_subparsers(dest="train_command", required=True, metavar="FAMILY")
    for family in families():
        if family.trainer:
            trainer = family.hook("trainer")
            p = sub.add_parser(family.name, formatter_class=HelpFormatter, help=trainer.help,
                               description=trainer.description, epilog="examples:\n" + trainer.examples)
            add_options(p, trainer.options)
            p.set_defaults(handler=lambda args, trainer=trainer: print(
                f"newest checkpoint: {trainer.train(**given_options(args, trainer.options))}"))


def add_family_verbs(commands) -> None:
    """Each family's own client command (`artforge generate`, `artforge stylize`), from its VERB."""
    from artforge.registry import families  # torch and every family: only when a verb (or help) is asked for

    added = set()
    for family in families():
        if family.client and family.client not in added:  # generator families share `artforge generate`
            added.add(family.client)
            add_command(commands, family.hook("client"))


def named(name: str, words: list[str]) -> bool:
    """Whether the command line asks for command `name` ("serve", "data synth"); `artforge data --help`
    asks for the whole group."""
    group, _, sub = name.rpartition(" ")
    if not group:
        return words[:1] == [name]
    return words[:1] == [group] and (words[1:2] == [sub] or " ".join(words[:2]) not in COMMANDS)


def build_parser(argv: list[str] | None = None, everything: bool = False) -> argparse.ArgumentParser:
    """The parser for `argv`: only the command it names is built (and its module imported); with no known
    command (help, a family's verb), all of them but the trainers; `everything` builds the trainers too."""
    parser = argparse.ArgumentParser(
        prog="artforge", formatter_class=HelpFormatter,
        description="artforge: train generative-art models, export them to ONNX/TensorRT and serve them "
                    "on NVIDIA Triton.",
        epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"artforge {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    argv = sys.argv[1:] if argv is None else argv
    words = [a for a in argv if not a.startswith("-")][:2]  # global options take no values
    asked = words[0] if words and (words[0] in GROUPS or words[0] in COMMANDS) else None
    groups = {group: commands.add_parser(group, formatter_class=HelpFormatter, help=text)
              for group, text in GROUPS.items()}
    data = groups["data"].add_subparsers(dest="data_command", required=True, metavar="COMMAND")
    for name, where in COMMANDS.items():
        group, _, sub = name.rpartition(" ")
        if everything or asked is None or named(name, words):
            add_command(data if group == "data" else commands, declared(where), sub)
    if everything or asked == "train":
        add_trainers(groups["train"])
    if everything or asked is None:
        add_family_verbs(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser(argv).parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="artforge: %(levelname)s: %(message)s")
    try:
        args.handler(args)
    except ArtforgeError as e:
        print(f"artforge: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # a full disk, a permission problem: say what and where
        where = f": {e.filename}" if e.filename else ""
        print(f"artforge: error: {e.strerror or e}{where}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("artforge: interrupted", file=sys.stderr)
        return 130
    return 0


def run() -> None:
    sys.exit(main())
