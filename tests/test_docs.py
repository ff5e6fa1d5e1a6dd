"""The README stays short, its links and the docs' links resolve, and docs/commands.md is what the
parsers say today."""
import re
from pathlib import Path

from artforge.command_docs import commands_markdown

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *(ROOT / "docs").rglob("*.md"), ROOT / "benchmarks" / "results" / "README.md"]


def test_the_readme_reads_in_minutes():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 300
    assert text.index("make test") < len("\n".join(text.splitlines()[:60]))  # set-up within the first 60 lines


def test_every_relative_link_resolves():
    broken = []
    for page in PAGES:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            if not re.match(r"^(https?:|#|mailto:)", target) and not (page.parent / target.split("#")[0]).exists():
                broken.append(f"{page.relative_to(ROOT)}: {target}")
    assert broken == []


def test_the_command_reference_is_what_the_parsers_say():
    assert (ROOT / "docs" / "commands.md").read_text() == commands_markdown(), "stale: run make docs"


def documented_commands(page: Path) -> list[str]:
    """The `artforge ...` lines of a page's fenced shell blocks, continuation lines joined, comments cut."""
    commands = []
    for block in re.findall(r"```(?:bash|sh)?\n(.*?)```", page.read_text(), re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip()
            if line.startswith("artforge "):
                commands.append(line)
    return commands


def test_the_commands_the_readme_and_guides_show_parse():
    import shlex

    from artforge.cli import build_parser

    wrong = []
    for page in (ROOT / "README.md", ROOT / "docs" / "bring-your-own-model.md"):
        for command in documented_commands(page):
            argv = shlex.split(command)[1:]
            try:
                build_parser(argv).parse_args(argv)
            except SystemExit:
                wrong.append(f"{page.name}: {command}")
    assert wrong == []
