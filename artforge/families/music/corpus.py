"""Music to train on: a folder of MIDI files, or the Bach chorales inside the music21 wheel.

`artforge data music --source bach --out data/bach` writes the chorales as MIDI files once (music21
parses MusicXML slowly: about a second a chorale); `artforge train music --data bach` does the same
into a cache folder on first use. music21 is the optional `music` extra (`pip install
'artforge[music]'`); MIDI itself is read and written with mido.
"""
from __future__ import annotations

import logging
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from artforge.errors import ArtforgeError
from artforge.options import Command, Progress, option

log = logging.getLogger(__name__)
MIDI_SUFFIXES = (".mid", ".midi")


def midi_files(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in MIDI_SUFFIXES and p.is_file())
    if not files:
        raise ArtforgeError(f"no MIDI files (.mid, .midi) in {folder}")
    return files


def heldout(path: Path, share: float) -> bool:
    """Whether a piece is held out of training: decided by its file name, so the split never changes
    when files are added or the folder moves."""
    return zlib.crc32(path.name.encode("utf-8")) % 10_000 < share * 10_000


def bach_cache() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "artforge" / "bach-chorales"


def write_bach_chorales(out: str | Path, limit: int = 0, progress: bool = True) -> list[Path]:
    """The Bach chorales of music21's corpus as MIDI files in `out` (kept if already there); their paths."""
    try:
        from music21 import corpus
    except ImportError:
        raise ArtforgeError("the Bach chorales come inside music21: pip install 'artforge[music]' "
                            "(or music21 itself)") from None
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    by_piece: dict[str, Path] = {}
    for found in sorted(map(Path, corpus.getComposer("bach")), key=lambda p: p.suffix != ".mxl"):
        if found.name.startswith("bwv"):  # one file a chorale (some come as MusicXML and Humdrum): MusicXML first
            by_piece.setdefault(found.name.rsplit(".", 1)[0], found)
    sources = [by_piece[name] for name in sorted(by_piece)]
    if limit:
        sources = sources[:limit]
    written, failed = [], []
    for source in tqdm(sources, desc="chorales", unit="piece", disable=not progress):
        target = out / (source.name.rsplit(".", 1)[0] + ".mid")
        if not target.exists():
            tmp = target.with_suffix(".mid.tmp")
            try:
                corpus.parse(str(source)).write("midi", fp=str(tmp))
            except Exception as e:  # music21 raises many kinds; one bad score must not stop the rest
                tmp.unlink(missing_ok=True)
                failed.append(f"{source.name}: {type(e).__name__}: {str(e)[:80]}")
                continue
            tmp.replace(target)
        written.append(target)
    if failed:
        log.warning("skipped %d of %d chorales music21 could not convert (%s)", len(failed), len(sources),
                    "; ".join(failed[:3]))
    return written


def resolve_data(data: str, progress: bool = True) -> Path:
    """--data: a folder of MIDI files, or 'bach' (the chorales, converted into the cache once)."""
    if data == "bach":
        folder = bach_cache()
        if not (folder / "complete").exists():
            write_bach_chorales(folder, progress=progress)
            (folder / "complete").write_text("music21 Bach chorales as MIDI\n")
        return folder
    folder = Path(data)
    if not folder.is_dir():
        raise ArtforgeError(f"--data {data} is not a folder of MIDI files (or 'bach')")
    return folder


# ---- `artforge data music` ----
@dataclass(kw_only=True)
class MusicDataOptions(Progress):
    source: str = option(help="which corpus", required=True, choices=["bach"])
    out: str = option(help="folder to write the .mid files into", required=True)
    limit: int = option(0, help="convert the first N chorales (0: all)")


def music_command(opts: MusicDataOptions) -> None:
    files = write_bach_chorales(opts.out, opts.limit, progress=opts.progress)
    print(f"wrote {len(files)} chorales as MIDI files to {opts.out}")


COMMAND = Command(
    "music", help="write the Bach chorales inside music21 as MIDI files (any MIDI folder trains as it is)",
    description="Convert the Bach chorales that ship inside the music21 wheel (MusicXML, about 400) into "
                "MIDI files, the music family's training format. Needs music21: pip install "
                "'artforge[music]'. Files already there are kept.",
    examples="  artforge data music --source bach --out data/bach\n"
             "  artforge train music --data data/bach --out runs/music",
    options=MusicDataOptions, run=music_command)
