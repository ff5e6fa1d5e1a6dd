"""Real labelled art from Debian's `openclipart-png`: public-domain drawings sorted into subject folders.

    artforge data clipart --out data/clipart --categories animals food people recreation transportation

writes OUT/<category>/<index>.png (squares on a chosen background, transparency composited onto it)
and OUT/dataset.json saying what was taken and what was skipped and why: files over the pixel limit
(decompression bombs), drawings under the smallest side, files that do not decode. The package is a
folder of PNGs per category (/usr/share/openclipart/png/<category>/...); any folder laid out that way
can stand in for it (--source).
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from artforge.errors import ArtforgeError, ImageError, ImageTooLarge
from artforge.files import atomic_directory
from artforge.imaging import FITS, fit_square, parse_colour, read_image, save_png
from artforge.options import Command, Progress, option

OPENCLIPART = Path("/usr/share/openclipart/png")
INSTALL = "sudo apt-get install openclipart-png (Debian, Ubuntu)"
SUBJECTS = ["animals", "food", "people", "recreation", "transportation"]  # five subjects of 300+ drawings each


@dataclass(kw_only=True)
class ClipartOptions(Progress):
    out: str = option(help="folder to write OUT/<category>/<index>.png into (must not exist yet)", required=True)
    categories: list[str] = option(help="the package's categories to take, one class each", many=True,
                                   default_factory=lambda: list(SUBJECTS))
    per_class: int = option(300, help="drawings per category (fewer when a category has fewer good ones)")
    size: int = option(128, help="side of the square each drawing is fitted into")
    fit: str = option("pad", help="pad: the whole drawing on the background; crop: fill the square",
                      choices=list(FITS))
    background: str = option("white", help="colour behind transparent areas and around padded drawings")
    min_side: int = option(32, help="skip drawings whose shorter side is under this many pixels")
    max_megapixels: float = option(100.0, help="skip files over this many megapixels (decompression bombs)")
    seed: int = option(0, help="which drawings are taken when a category has more than --per-class")
    source: str = option(str(OPENCLIPART), help="the package's PNG folder, or any folder with one subfolder "
                                                "of PNGs per category")


@dataclass
class CategoryReport:
    taken: int = 0
    skipped: Counter = field(default_factory=Counter)  # reason -> files


def category_files(source: Path, categories: list[str]) -> dict[str, list[Path]]:
    """Every PNG under each category folder, sorted; a one-line error for a missing source or category."""
    if not source.is_dir():
        hint = INSTALL if source == OPENCLIPART else "give the package's PNG folder"
        raise ArtforgeError(f"no clip art at {source}: {hint} (or --source FOLDER with one subfolder per category)")
    available = sorted(p.name for p in source.iterdir() if p.is_dir())
    missing = [c for c in categories if c not in available]
    if missing:
        raise ArtforgeError(f"{source} has no categor{'y' if len(missing) == 1 else 'ies'} {missing}; it has "
                            f"{available}")
    return {c: sorted((source / c).rglob("*.png")) for c in categories}


def drawing(path: Path, opts: ClipartOptions, background: tuple[int, int, int]) -> tuple[np.ndarray | None, str]:
    """(the fitted square, "") or (None, why it was skipped)."""
    try:
        image = read_image(path, background, max_pixels=int(opts.max_megapixels * 1e6))
    except ImageTooLarge:
        return None, "over the pixel limit"
    except ImageError:
        return None, "unreadable"
    if min(image.shape[:2]) < opts.min_side:
        return None, "too small"
    return fit_square(image, opts.size, opts.fit, background), ""


def take_category(files: list[Path], folder: Path, opts: ClipartOptions, background, bar) -> CategoryReport:
    """Up to --per-class good drawings in a seeded order, written as folder/<index>.png."""
    report = CategoryReport()
    order = np.random.default_rng(opts.seed).permutation(len(files))
    folder.mkdir(parents=True)
    for i in order:
        if report.taken == opts.per_class:
            break
        picture, why = drawing(files[i], opts, background)
        if picture is None:
            report.skipped[why] += 1
            continue
        save_png(picture, folder / f"{report.taken:05d}.png")
        report.taken += 1
        bar.update()
    return report


def build_clipart(opts: ClipartOptions) -> dict:
    """Write the labelled folder (all at once: a failure leaves nothing) and return its description."""
    if opts.per_class < 1 or opts.size < 8:
        raise ArtforgeError(f"--per-class must be at least 1 and --size at least 8 (got {opts.per_class}, {opts.size})")
    out, background = Path(opts.out), parse_colour(opts.background)
    if out.exists():
        raise ArtforgeError(f"--out {out} exists; give a new folder (nothing is overwritten)")
    files = category_files(Path(opts.source), opts.categories)
    reports = {}
    with atomic_directory(out) as tmp, tqdm(total=opts.per_class * len(files), desc="clip art", unit="img",
                                            disable=not opts.progress) as bar:
        for category, paths in files.items():
            reports[category] = take_category(paths, tmp / category, opts, background, bar)
        description = {"source": str(Path(opts.source)), "size": opts.size, "fit": opts.fit,
                       "background": opts.background, "seed": opts.seed, "classes": list(files),
                       "per_class": {c: r.taken for c, r in reports.items()},
                       "skipped": {c: dict(r.skipped) for c, r in reports.items() if r.skipped}}
        (tmp / "dataset.json").write_text(json.dumps(description, indent=2) + "\n")
    return description


def clipart_command(opts: ClipartOptions) -> None:
    description = build_clipart(opts)
    taken = ", ".join(f"{c} {n}" for c, n in description["per_class"].items())
    skipped = sum(sum(reasons.values()) for reasons in description["skipped"].values())
    print(f"wrote {taken} to {opts.out}; skipped {skipped} file(s): "
          + (json.dumps(description["skipped"]) if skipped else "none"))


COMMAND = Command(
    "clipart", help="a labelled folder of real drawings from Debian's openclipart-png (one subfolder per subject)",
    description="Take public-domain drawings from the openclipart-png package (or any folder with one subfolder "
                "of PNGs per category), composite their transparency onto a background, fit them into squares, and "
                "write one subfolder per category: a real labelled set for conditional generators and the critic. "
                "Files over the pixel limit, drawings too small and files that do not decode are skipped and "
                "counted in OUT/dataset.json.",
    examples="  sudo apt-get install openclipart-png\n"
             "  artforge data clipart --out data/clipart --per-class 300 --size 64\n"
             "  artforge train critic --data data/clipart --size 32 --out runs/clipart-critic",
    options=ClipartOptions, run=clipart_command)
