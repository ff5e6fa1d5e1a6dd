"""`artforge evaluate` on a restoration model: its fixed held-out damaged images, restored by the model
and by classical inpainting (OpenCV Telea and Navier-Stokes, scikit-image biharmonic), scored with
artforge.evaluation.restoration over the whole image and the masked region; the damaged input is
the anchor. Classical methods fill masked pixels only, so global damage (fading, noise) stays.
OUT/restore_panel.png shows the first held-out images: rows clean, damaged, this model, then each
classical method.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from artforge.errors import ArtforgeError
from artforge.registry import Evaluator
from artforge.checkpoint import load_checkpoint
from artforge.evaluation.restoration import classical_baselines, restoration_scores
from artforge.evaluation.transfer import transfer_judge
from artforge.families.restore.train import RestoreTrainOptions, clean_images, held_out_set
from artforge.imaging import make_grid, save_png
from artforge.registry import build_from_checkpoint, spec_for
from artforge.serving.client import Client


def evaluate_model(opts) -> dict[str, Any]:
    """The document `artforge evaluate` writes for a restoration model (opts: EvaluateOptions)."""

    restore, held, source = restoration_model(opts)
    clean, damaged, masks = held
    judge = transfer_judge()
    results = {"damaged input (anchor)": damaged, "this model": restore(damaged, masks),
               **classical_baselines(damaged, masks)}
    rows = {name: restoration_scores(images, clean, masks, judge) for name, images in results.items()}
    write_panel(Path(opts.out) / "restore_panel.png", clean, results)
    classical = {k: v for k, v in rows.items() if k not in ("damaged input (anchor)", "this model")}
    best = max(classical, key=lambda k: classical[k]["psnr_masked"])
    return {"source": source, "kind": "restoration", "images": len(clean), "size": int(clean.shape[1]),
            "masked_share": float(masks.mean()), "scores": rows, "best_classical": best,
            "psnr_masked_margin_db": rows["this model"]["psnr_masked"] - rows[best]["psnr_masked"],
            "options": vars(opts).copy()}


def write_panel(path: Path, clean: np.ndarray, results: dict[str, np.ndarray], columns: int = 8) -> None:
    """Rows: clean, damaged, this model, each classical method; the first `columns` held-out images."""

    rows = [clean[:columns], *(images[:columns] for images in results.values())]
    save_png(make_grid(np.concatenate(rows), columns), path, upscale=max(1, 128 // clean.shape[1]))


def restoration_model(opts) -> tuple[Callable, tuple[np.ndarray, np.ndarray, np.ndarray], dict]:
    """(restore(damaged, masks) -> images, (clean, damaged, masks) held out, source) from a checkpoint or
    Triton; the held-out set is rebuilt from the run's options (--data overrides the clean images)."""

    if opts.url and not opts.run:
        raise ArtforgeError("evaluating a served restoration model needs --run: the training run (or checkpoint) "
                            "whose held-out set to score it on")
    checkpoint = load_checkpoint(opts.run if opts.url else opts.source)
    training = dict(checkpoint.meta.get("training", {}))
    if opts.data:
        training["data"] = opts.data
    if opts.size:  # only the held-out images are wanted: a one-crop training pool
        training.update(size=opts.size, pool=1)
    known = RestoreTrainOptions.__dataclass_fields__
    options = RestoreTrainOptions(**{k: v for k, v in training.items() if k in known})
    _, clean, _ = clean_images(options, progress=False)
    clean = clean[:opts.count]
    damaged, masks = held_out_set(clean, options.seed)
    if opts.url:
        return served_restorer(opts), (clean, damaged, masks), {"model": opts.source, "url": opts.url,
                                                                "family": checkpoint.family}
    return local_restorer(checkpoint), (clean, damaged, masks), {
        "checkpoint": str(checkpoint.path), "step": checkpoint.step, "family": checkpoint.family}


def local_restorer(checkpoint) -> Callable:
    import torch


    serving = spec_for(checkpoint).serving_network(build_from_checkpoint(checkpoint))

    @torch.no_grad()
    def restore(damaged: np.ndarray, masks: np.ndarray) -> np.ndarray:
        return np.concatenate([serving(torch.from_numpy(damaged[i:i + 16]),
                                       torch.from_numpy(masks[i:i + 16, ..., None]))
                               .numpy() for i in range(0, len(damaged), 16)])

    return restore


def served_restorer(opts) -> Callable:

    def restore(damaged: np.ndarray, masks: np.ndarray) -> np.ndarray:
        with Client(opts.url) as client:
            batch = max(1, min(16, client.model(opts.source).max_batch or 16))
            return np.concatenate([client.infer(opts.source, {"image": damaged[i:i + batch],
                                                              "mask": masks[i:i + batch, ..., None]},
                                                ["restored"])["restored"] for i in range(0, len(damaged), batch)])

    return restore


def markdown_lines(document: dict[str, Any]) -> list[str]:
    lines = [f"{document['images']} held-out damaged images of {document['size']} px ({document['masked_share']:.1%} "
             "of pixels masked). Classical methods fill the masked pixels only.", "",
             "| method | PSNR dB ↑ | PSNR masked ↑ | SSIM ↑ | SSIM masked ↑ | feature distance ↓ |",
             "|---|---|---|---|---|---|"]
    for name, r in document["scores"].items():
        lines.append(f"| {name} | {r['psnr']:.2f} | {r['psnr_masked']:.2f} | {r['ssim']:.3f} | "
                     f"{r['ssim_masked']:.3f} | "
                     f"{r['feature_distance']:.3f} |")
    margin = document["psnr_masked_margin_db"]
    lines += ["", f"Masked-region PSNR against the best classical method ({document['best_classical']}): "
                  f"{margin:+.2f} dB ({'better' if margin > 0 else 'worse'}).", ""]
    return lines


EVALUATOR = Evaluator(evaluate_model, markdown_lines)
