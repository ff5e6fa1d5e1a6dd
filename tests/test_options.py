"""Options declared once in a dataclass become flags with their help and defaults."""
import argparse
from dataclasses import dataclass

import pytest

from artforge.options import add_options, given_options, option


@dataclass
class Example:
    out: str = option(help="run folder", required=True)
    steps: int = option(2000, help="total steps")
    styles: list[str] = option(help="an image; repeat", flag="--style", repeat=True, default_factory=list)
    width: str = option("lite", help="network width", choices=["lite", "full"])
    bf16: bool = option(False, help="bfloat16")
    hidden: float = option(0.5, cli=False)
    resume: bool = option(False, help="continue", each_call=True)
    progress: bool = option(True, help="no progress bar", flag="--quiet", each_call=True)


def parse(*argv):
    parser = argparse.ArgumentParser()
    add_options(parser, Example)
    return parser, parser.parse_args(argv)


def test_only_what_the_user_gave_is_passed_except_per_call_flags():
    _, args = parse("--out", "r", "--style", "a.png", "--style", "b.png", "--bf16")
    assert given_options(args, Example) == {"out": "r", "styles": ["a.png", "b.png"], "bf16": True,
                                            "resume": False, "progress": True}
    _, args = parse("--out", "r", "--steps", "5", "--quiet", "--resume")
    assert given_options(args, Example) == {"out": "r", "steps": 5, "resume": True, "progress": False}


def test_help_states_each_default_once_from_the_dataclass():
    parser, _ = parse("--out", "r")
    text = parser.format_help()
    assert "total steps (default 2000)" in text and "network width (default lite)" in text
    assert "--hidden" not in text and "--quiet" in text and "--progress" not in text


def test_choices_types_and_required_flags_are_enforced():
    with pytest.raises(SystemExit):
        parse("--out", "r", "--width", "huge")
    with pytest.raises(SystemExit):
        parse("--out", "r", "--steps", "many")
    with pytest.raises(SystemExit):
        parse("--steps", "3")


def test_settings_parse_named_numbers_and_refuse_the_rest():
    import argparse

    from artforge.options import settings

    assert settings("steps=8, guidance=2.5") == {"steps": 8.0, "guidance": 2.5}
    assert settings("") == {}
    with pytest.raises(argparse.ArgumentTypeError, match="NAME=NUMBER"):
        settings("steps=many")
