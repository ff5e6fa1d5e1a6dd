"""Image-folder data sets: one subfolder per class (art style), any image format PIL reads.

Images are decoded once, resized and centre-cropped to the model size and kept in memory as
uint8 (64x64 RGB is 12 KiB an image: 100k images fit in 1.2 GiB), so training never touches
the disk and a corrupt file is found before the first step, not mid-epoch.
"""
from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from artforge.errors import DataError, ImageError, ImageTooLarge
from artforge.imaging import IMAGE_SUFFIXES, MAX_PIXELS, WHITE, fit_square, read_image

log = logging.getLogger(__name__)


@dataclass
class ImageFolder:
    """Decoded images (N, 3, S, S) uint8, their class labels (N,) int64 and the class names."""

    root: Path
    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    skipped: "Skipped" = field(default_factory=lambda: Skipped())
    fit: str = "crop"

    def __len__(self) -> int:
        return len(self.labels)

    def class_counts(self) -> list[int]:
        return torch.bincount(self.labels, minlength=len(self.classes)).tolist()

    def draw(self, count: int, generator: torch.Generator, balanced: bool = False) -> torch.Tensor:
        """`count` image indices, with replacement, from `generator`: uniform over the images (so each class
        as often as it has pictures), or with `balanced` every class equally often (uniform within it)."""
        if not balanced:
            return torch.randint(len(self), (count,), generator=generator)
        per_class = torch.tensor(self.class_counts(), dtype=torch.float64)
        return torch.multinomial(1.0 / per_class[self.labels], count, replacement=True, generator=generator)

    def describe(self) -> dict:
        counts = self.class_counts()
        return {"root": str(self.root), "classes": self.classes, "images": len(self),
                "per_class": dict(zip(self.classes, counts)), "size": int(self.images.shape[-1]), "fit": self.fit,
                "skipped_unreadable": len(self.skipped.unreadable), "skipped_too_large": len(self.skipped.too_large)}


@dataclass
class Skipped:
    """What a folder load passed over, reported in one line rather than once per file."""

    unreadable: list[Path] = field(default_factory=list)
    too_large: list[Path] = field(default_factory=list)
    library_warnings: int = 0  # e.g. Pillow's, for odd but readable files

    @property
    def total(self) -> int:
        return len(self.unreadable) + len(self.too_large)

    def summary(self, root: Path, max_pixels: int) -> str:
        parts = []
        if self.unreadable:
            parts.append(f"{len(self.unreadable)} unreadable (first: {self.unreadable[0]})")
        if self.too_large:
            parts.append(f"{len(self.too_large)} over {max_pixels / 1e6:.0f} megapixels (first: {self.too_large[0]})")
        line = (f"skipped {' and '.join(parts)} image file(s) under {root}" if parts
                else f"read every image under {root}")
        if self.library_warnings:
            line += f"; the image library warned {self.library_warnings} time(s) about the others"
        return line


def list_image_files(root: Path) -> tuple[list[str], list[tuple[Path, int]]]:
    """Class names and (file, label) pairs; a folder of images without subfolders is one class."""
    root = Path(root)
    if not root.exists():
        raise DataError(f"data folder {root} does not exist")
    if not root.is_dir():
        raise DataError(f"data path {root} is a file; give a folder with one subfolder of images per style")
    subfolders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not subfolders:
        subfolders = [root]
    classes, files = [], []
    for folder in subfolders:
        images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if images:
            files += [(p, len(classes)) for p in images]
            classes.append(folder.name)
    if not files:
        raise DataError(f"data folder {root} has no images ({', '.join(sorted(IMAGE_SUFFIXES))}) "
                        "in it or in its subfolders")
    return classes, files


def load_image(path: Path, size: int, fit: str = "crop", background: tuple[int, int, int] = WHITE,
               max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """(size, size, 3) uint8: read with artforge.imaging.read_image, then cropped or padded square."""
    return fit_square(read_image(path, background, max_pixels, size_hint=size), size, fit, background)


def load_image_folder(root: Path, size: int, progress: bool = True, fit: str = "crop",
                      background: tuple[int, int, int] = WHITE, max_pixels: int = MAX_PIXELS) -> ImageFolder:
    """Decode every readable image under `root`; the others are skipped and counted in one warning."""
    classes, files = list_image_files(Path(root))
    images, labels, skipped = [], [], Skipped()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for path, label in tqdm(files, desc="loading images", unit="img", disable=not progress):
            try:
                images.append(load_image(path, size, fit, background, max_pixels))
                labels.append(label)
            except ImageTooLarge:
                skipped.too_large.append(path)
            except ImageError:
                skipped.unreadable.append(path)
    skipped.library_warnings = len(caught)
    if skipped.total or skipped.library_warnings:
        log.warning(skipped.summary(Path(root), max_pixels))
    if not images:
        raise DataError(f"data folder {root} has {len(files)} image file(s) but none could be read: "
                        + skipped.summary(Path(root), max_pixels))
    batch = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()  # (N, 3, S, S)
    return ImageFolder(Path(root), batch, torch.tensor(labels, dtype=torch.int64), classes, skipped, fit)


def split_image_folder(root: Path, size: int, share: float, seed: int, max_held_out: int, progress: bool = True,
                       fit: str = "crop",
                       background: tuple[int, int, int] = WHITE) -> tuple[torch.Tensor, np.ndarray, dict]:
    """A folder's images split for training and measurement: (training (N, 3, S, S) uint8, held out
    (M, S, S, 3) uint8, a description). `share` of the images (at most `max_held_out`, at least one) are
    held out, the same ones for a seed; labels are ignored."""
    folder = load_image_folder(Path(root), size, progress=progress, fit=fit, background=background)
    order = torch.randperm(len(folder), generator=torch.Generator().manual_seed(seed + 7))
    count = min(max_held_out, max(1, round(share * len(folder))))
    if len(folder) - count < 1:
        raise DataError(f"{root} has {len(folder)} image(s); training and a held-out set need at least 2")
    held, train_part = order[:count].sort().values, order[count:].sort().values
    return (folder.images[train_part].contiguous(), folder.images[held].permute(0, 2, 3, 1).numpy(),
            folder.describe() | {"held_out_images": count})


# ---- paired data: (input, target) images of the same scene, optionally with a mask ----
@dataclass
class PairedImages:
    """Images matched by file name across role folders: {role: (N, C, S, S) uint8}; masks are 0/1, C=1."""

    root: Path
    tensors: dict[str, torch.Tensor]
    names: list[str]
    skipped: dict[str, list[str]] = field(default_factory=dict)  # why -> file stems

    def __len__(self) -> int:
        return len(self.names)

    def describe(self) -> dict:
        return {"root": str(self.root), "pairs": len(self), "roles": sorted(self.tensors),
                "size": int(next(iter(self.tensors.values())).shape[-1]),
                **{f"skipped_{why}": len(stems) for why, stems in self.skipped.items()}}


def role_files(root: Path, role: str) -> dict[str, Path]:
    folder = root / role
    if not folder.is_dir():
        return {}
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()}


def load_paired_folder(root: Path, size: int, roles: tuple[str, ...] = ("input", "target"),
                       optional: tuple[str, ...] = ("mask",), masks: tuple[str, ...] = ("mask",),
                       fit: str = "crop", max_pixels: int = MAX_PIXELS) -> PairedImages:
    """ROOT/<role>/<name>.<any image suffix> for every role, matched by name (pix2pix-style data).

    A name missing from a required role, or from an optional role whose folder exists, is skipped, as
    are unreadable files and pairs whose pictures differ in size (they would not crop alike): all
    counted in one warning line. Roles in `masks` are read as 0/1 single-channel masks (> 127 is 1).
    """
    files = paired_files(Path(root), roles, optional)
    loaded: dict[str, list[np.ndarray]] = {role: [] for role in files}
    kept, skipped = [], {"unmatched": [], "unreadable": [], "size_mismatch": []}
    for name in sorted(set.union(*(set(found) for found in files.values()))):
        pair, why = read_pair({role: found.get(name) for role, found in files.items()}, size, masks, fit, max_pixels)
        if why:
            skipped[why].append(name)
            continue
        for role, picture in pair.items():
            loaded[role].append(picture)
        kept.append(name)
    skipped = {why: stems for why, stems in skipped.items() if stems}
    if skipped:
        log.warning("paired data %s: skipped %s", root, "; ".join(f"{len(s)} {why.replace('_', ' ')} (first: {s[0]})"
                                                                   for why, s in skipped.items()))
    if not kept:
        raise DataError(f"paired data folder {root} has no complete, readable pair of the same size")
    tensors = {role: torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
               for role, arrays in loaded.items()}
    return PairedImages(Path(root), tensors, kept, skipped)


def paired_files(root: Path, roles: tuple[str, ...], optional: tuple[str, ...]) -> dict[str, dict[str, Path]]:
    """{role: {name: file}} for the required roles and the optional ones that have files."""
    if not root.is_dir():
        raise DataError(f"paired data folder {root} does not exist (it needs subfolders {', '.join(roles)})")
    files = {role: role_files(root, role) for role in (*roles, *optional)}
    empty = [role for role in roles if not files[role]]
    if empty:
        raise DataError(f"paired data folder {root} has no images in {', '.join(f'{r}/' for r in empty)}; "
                        f"it needs {', '.join(f'{r}/' for r in roles)} with files of the same names")
    return {role: found for role, found in files.items() if found or role in roles}


def read_pair(paths: dict[str, Path | None], size: int, masks: tuple[str, ...], fit: str,
              max_pixels: int) -> tuple[dict[str, np.ndarray], str]:
    """({role: square picture}, "") for one name, or ({}, why it is skipped)."""
    if any(path is None for path in paths.values()):
        return {}, "unmatched"
    black = (0, 0, 0)  # masks: outside the picture nothing is damaged
    try:
        pictures = {role: read_image(path, black if role in masks else WHITE, max_pixels)
                    for role, path in paths.items()}
    except ImageError:
        return {}, "unreadable"
    if len({p.shape[:2] for p in pictures.values()}) > 1:
        return {}, "size_mismatch"
    squares = {role: fit_square(p, size, fit, black if role in masks else WHITE) for role, p in pictures.items()}
    return {role: (sq[..., :1] > 127).astype(np.uint8) if role in masks else sq for role, sq in squares.items()}, ""
