"""docs/commands.md: every command's --help, generated from the parsers (tests/test_docs.py fails when
the file is stale).

    python -m artforge.command_docs > docs/commands.md      # or: make docs
"""
from __future__ import annotations

import argparse
import os

from artforge.cli import build_parser

WIDTH = "100"  # argparse wraps help to the terminal's width: fixed, so the file does not depend on it


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(actions[0].choices) if actions else {}


def sections(prefix: str, parser: argparse.ArgumentParser) -> list[tuple[str, str]]:
    """(command line, help text) for a parser and every subcommand under it, depth first."""
    found = [(prefix, parser.format_help())]
    for name, sub in subcommands(parser).items():
        found += sections(f"{prefix} {name}", sub)
    return found


def commands_markdown() -> str:
    previous, os.environ["COLUMNS"] = os.environ.get("COLUMNS"), WIDTH
    try:
        found = dict(sections("artforge", build_parser([], everything=True)))
    finally:
        if previous is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = previous
    lines = ["# artforge commands", "",
             "Generated from the parsers by `make docs` (`python -m artforge.command_docs`); the usage guide",
             "with examples is [usage.md](usage.md).", ""]
    lines += [f"- [`{name}`](#{anchor(name)})" for name in sorted(found)]
    for name in sorted(found):
        lines += ["", f"## {name}", "", "```text", found[name].rstrip(), "```"]
    return "\n".join(lines) + "\n"


def anchor(title: str) -> str:
    """GitHub's heading anchor: lower case, spaces to dashes, punctuation dropped."""
    return "".join(c for c in title.lower().replace(" ", "-") if c.isalnum() or c in "-_")


if __name__ == "__main__":
    print(commands_markdown(), end="")
