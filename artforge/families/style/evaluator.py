"""`artforge evaluate` on a style-transfer model: every style on photos it never trained on.

Content kept (SSIM, feature distance to the photo) and style match (colour distance, Gram error to
the style image) with the measures of artforge.evaluation.transfer, per style, next to the photo
left unchanged (the anchor: all content, no style). The style images come from --data (a folder or
comma-separated files, in the model's style order) or, for a checkpoint, from its run's options.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from artforge.errors import ArtforgeError
from artforge.evaluation.transfer import transfer_judge, transfer_quality
from artforge.families.style.peer import get_peer
from artforge.image_folders import load_image
from artforge.imaging import input_images
from artforge.photos import photo_crops
from artforge.registry import Evaluator, load_network, spec_for
from artforge.serving.client import Client

PHOTO_SIZE = 256  # the style contract's optimal size
PHOTOS = 8  # crops of the held-out photos


def evaluate_model(opts) -> dict[str, Any]:
    """The document `artforge evaluate` writes for a style model (opts: EvaluateOptions)."""

    stylise, styles, source, style_paths = style_model(opts)
    style_images = load_styles(style_paths, len(styles))
    photos = photo_crops(PHOTOS, PHOTO_SIZE, PHOTO_SIZE, opts.seed, held_out=True)
    results = np.stack([stylise(photos, k) for k in range(len(styles))], axis=1)  # (P, S, H, W, 3)
    judge = transfer_judge()
    rows = {name: transfer_quality(results[:, [k]], photos, style_images[[k]], judge) for k, name in enumerate(styles)}
    anchor = transfer_quality(np.repeat(photos[:, None], len(styles), 1), photos, style_images, judge)
    document = {"source": source, "kind": "style transfer", "photos": f"{PHOTOS} crops of the held-out photos "
                f"({PHOTO_SIZE} px)", "style_images": [str(p) for p in style_paths], "options": vars(opts).copy(),
                "per_style": rows, "unchanged_photo": anchor}
    if opts.peer:
        document["peer"] = score_peer(opts.peer, styles, photos, style_images, judge)
    return document


def score_peer(given: str, styles: list[str], photos: np.ndarray, style_images: np.ndarray, judge) -> dict[str, Any]:
    """--peer NAME:I,J: the peer's style I stands for the model's first style, J for its second..., scored
    on the same photos against the same style images as the model."""

    name, _, picks = given.partition(":")
    try:
        chosen = [int(k) for k in picks.split(",")]
    except ValueError:
        chosen = []
    if len(chosen) != len(styles):
        raise ArtforgeError(f"--peer {given}: name one peer style per model style ({len(styles)}), e.g. "
                            f"{name or 'magenta'}:{','.join(str(k) for k in range(len(styles)))}")
    peer = get_peer(name)
    session = peer.session()
    rows = {}
    for k, (style, pick) in enumerate(zip(styles, chosen)):
        results = peer.stylise(session, photos, pick)[:, None]
        rows[style] = {"peer_style": pick, **transfer_quality(results, photos, style_images[[k]], judge)}
    return {"name": peer.name, "description": peer.description, "per_style": rows}



def style_model(opts) -> tuple[Callable[[np.ndarray, int], np.ndarray], list[str], dict, list[Path]]:
    """(stylise(photos, k) -> images, style names, source, style image paths) from a checkpoint or Triton."""
    if opts.url:
        client = Client(opts.url)
        info = client.model(opts.source)
        styles = [str(s) for s in info.metadata.get("styles", [])]

        def stylise(photos: np.ndarray, k: int) -> np.ndarray:
            weights = np.eye(len(styles), dtype=np.float32)[[k] * len(photos)]
            return client.infer(opts.source, {"content": photos, "style_weights": weights}, ["image"])["image"]

        if not opts.data:
            raise ArtforgeError("evaluating a served style model needs --data: its style images (a folder or "
                                "comma-separated files, in the model's style order)")
        return stylise, styles, {"model": opts.source, "url": opts.url, "family": info.family}, data_paths(opts.data)
    import torch

    network, checkpoint = load_network(opts.source)
    serving = spec_for(checkpoint).serving_network(network)
    styles = [str(s) for s in checkpoint.meta.get("styles", [])]

    @torch.no_grad()
    def stylise(photos: np.ndarray, k: int) -> np.ndarray:
        weights = torch.eye(len(styles))[[k] * len(photos)]
        return serving(torch.from_numpy(photos), weights).numpy()

    trained_on = checkpoint.meta.get("training", {}).get("styles", [])
    paths = data_paths(opts.data) if opts.data else [Path(p) for p in trained_on]
    source = {"checkpoint": str(checkpoint.path), "step": checkpoint.step, "family": checkpoint.family}
    return stylise, styles, source, paths


def data_paths(data: str) -> list[Path]:
    if "," in data:
        return [Path(p.strip()) for p in data.split(",") if p.strip()]
    return input_images(Path(data))


def load_styles(paths: list[Path], count: int) -> np.ndarray:
    """(S, PHOTO_SIZE, PHOTO_SIZE, 3) uint8 style images, one per style of the model."""

    if len(paths) != count:
        raise ArtforgeError(f"the model has {count} style(s) but {len(paths)} style image(s) were found; pass "
                            "--data with one image per style, in the model's order")
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise ArtforgeError(f"style image {missing[0]} does not exist; pass --data with the style images")
    return np.stack([load_image(p, PHOTO_SIZE) for p in paths])


def markdown_lines(document: dict[str, Any]) -> list[str]:
    lines = [f"{document['photos']}, every style; the unchanged photo is the anchor (all content, no style).", "",
             "| style | content SSIM ↑ | content feature distance ↓ | colour distance, levels ↓ | Gram error ↓ |",
             "|---|---|---|---|---|"]
    rows = {**document["per_style"], "(unchanged photo)": document["unchanged_photo"]}
    if document.get("peer"):
        peer = document["peer"]
        rows.update({f"{name}: {peer['name']} style {r['peer_style']} (peer)": r
                     for name, r in peer["per_style"].items()})
    for name, r in rows.items():
        lines.append(f"| {name} | {r['content_ssim']:.3f} | {r['content_feature_distance']:.3f} | "
                     f"{r['style_colour_levels']:.1f} | {r['style_gram_error']:.3f} |")
    if document.get("peer"):
        lines += ["", f"The peer: {document['peer']['description']}, on the same photos, against the same "
                      "style images."]
    return lines + [""]


EVALUATOR = Evaluator(evaluate_model, markdown_lines)
