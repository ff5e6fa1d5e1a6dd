"""Every command's flags and defaults, frozen: the option-system redesign (issue #30) must keep them.
A deliberate change regenerates the file:

    python -m tests.test_cli_options > tests/cli_options.json
"""
import argparse
import json
from pathlib import Path

from artforge.cli import build_parser
from artforge.command_docs import subcommands

FROZEN = Path(__file__).with_name("cli_options.json")


def default_of(action: argparse.Action) -> str:
    """What leaving the option out means: the options dataclass's default (argparse's own is None there, so
    that a resumed run can tell a given option from an absent one); a flag without a value is just absent."""
    if action.nargs == 0:
        return "absent"
    return repr(getattr(action, "declared_default", action.default))


def options_of(prefix: str, parser: argparse.ArgumentParser, found: dict) -> dict:
    found[prefix] = sorted(
        [" ".join(a.option_strings) or a.dest, default_of(a), a.required, sorted(map(str, a.choices or []))]
        for a in parser._actions if not isinstance(a, argparse._SubParsersAction))
    for name, sub in subcommands(parser).items():
        options_of(f"{prefix} {name}", sub, found)
    return found


def every_command() -> dict:
    return options_of("artforge", build_parser([], everything=True), {})


def test_every_command_keeps_its_flags_and_defaults():
    assert every_command() == json.loads(FROZEN.read_text())


if __name__ == "__main__":
    print(json.dumps(every_command(), indent=1, ensure_ascii=False, sort_keys=True))
