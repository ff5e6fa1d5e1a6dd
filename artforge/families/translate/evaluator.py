"""`artforge evaluate` on a translation model: the run's held-out images of each domain translated
to the other, measured against the target domain's held-out images (FD, KID, precision, recall in
EfficientNet-Lite0 features), next to the untranslated images (the anchor: how far apart the domains
are), and the cycle error: A -> B -> A (and B -> A -> B) against the original, as L1 in grey levels
and PSNR.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from artforge.errors import ArtforgeError
from artforge.registry import Evaluator
from artforge.checkpoint import load_checkpoint
from artforge.evaluation.features import ArtFeatures
from artforge.evaluation.metrics import image_features, measure_features
from artforge.evaluation.restoration import psnr
from artforge.families.translate.train import TranslateTrainOptions, domain_images
from artforge.registry import build_from_checkpoint, spec_for
from artforge.serving.client import Client


def evaluate_model(opts) -> dict[str, Any]:
    """The document `artforge evaluate` writes for a translation model (opts: EvaluateOptions)."""

    translate, (held_a, held_b), source, domains = translation_model(opts)
    if min(len(held_a), len(held_b)) < 8:
        raise ArtforgeError(f"the run holds out {len(held_a)} and {len(held_b)} images of its domains; measuring a "
                            "distribution needs at least 8 of each (train with a larger --held-out or more images)")
    a_to_b, b_to_a = translate(held_a, 0), translate(held_b, 1)
    back_a, back_b = translate(a_to_b, 1), translate(b_to_a, 0)
    extractor = ArtFeatures()  # each set's features once: every set is scored against two others
    feats = {id(x): image_features(x, extractor) for x in (held_a, held_b, a_to_b, b_to_a)}
    rows = {}
    for name, target, translated, original, back in ((f"{domains[0]} -> {domains[1]}", held_b, a_to_b, held_a, back_a),
                                                     (f"{domains[1]} -> {domains[0]}", held_a, b_to_a, held_b, back_b)):
        rows[name] = {"translated": measure_features(feats[id(target)], feats[id(translated)]).to_json(),
                      "untranslated": measure_features(feats[id(target)], feats[id(original)]).to_json(),
                      "cycle_l1_levels": float(np.abs(back.astype(float) - original.astype(float)).mean()),
                      "cycle_psnr": psnr(back, original)}
    return {"source": source, "kind": "translation", "domains": domains, "images": [len(held_a), len(held_b)],
            "directions": rows, "options": vars(opts).copy()}


def translation_model(opts) -> tuple[Callable[[np.ndarray, int], np.ndarray], tuple, dict, list[str]]:
    """(translate(images, direction), (held-out A, held-out B), source, domain names)."""

    if opts.url and not opts.run:
        raise ArtforgeError("evaluating a served translation model needs --run: the training run (or checkpoint) "
                            "whose held-out images to translate")
    checkpoint = load_checkpoint(opts.run if opts.url else opts.source)
    fields = TranslateTrainOptions.__dataclass_fields__
    options = TranslateTrainOptions(**{k: v for k, v in checkpoint.meta.get("training", {}).items() if k in fields})
    held = (domain_images(options.domain_a, options, 0, False)[1],
            domain_images(options.domain_b, options, 1000, False)[1])
    domains = [str(d) for d in checkpoint.meta.get("domains", ["A", "B"])]
    if opts.url:
        source = {"model": opts.source, "url": opts.url, "family": checkpoint.family}
        return served_translator(opts), held, source, domains
    return local_translator(checkpoint), held, {"checkpoint": str(checkpoint.path), "step": checkpoint.step,
                                                "family": checkpoint.family}, domains


def local_translator(checkpoint) -> Callable[[np.ndarray, int], np.ndarray]:
    import torch


    serving = spec_for(checkpoint).serving_network(build_from_checkpoint(checkpoint))

    @torch.no_grad()
    def translate(images: np.ndarray, direction: int) -> np.ndarray:
        return np.concatenate([serving(torch.from_numpy(images[i:i + 16]),
                                       torch.full((len(images[i:i + 16]), 1), direction)).numpy()
                               for i in range(0, len(images), 16)])

    return translate


def served_translator(opts) -> Callable[[np.ndarray, int], np.ndarray]:

    def translate(images: np.ndarray, direction: int) -> np.ndarray:
        with Client(opts.url) as client:
            batch = max(1, min(16, client.model(opts.source).max_batch or 16))
            return np.concatenate([client.infer(opts.source, {"image": images[i:i + batch], "direction": np.full(
                (len(images[i:i + batch]), 1), direction, np.int64)}, ["translated"])["translated"]
                for i in range(0, len(images), batch)])

    return translate


def markdown_lines(document: dict[str, Any]) -> list[str]:
    lines = [f"Held-out images: {document['images'][0]} of {document['domains'][0]}, {document['images'][1]} of "
             f"{document['domains'][1]}. FD/KID/precision/recall against the target domain's held-out images "
             "(EfficientNet-Lite0 features, not Inception); 'untranslated' compares the source images themselves.", "",
             "| direction | FD translated ↓ | FD untranslated | KID translated ↓ | KID untranslated | precision "
             "| recall | cycle L1 (levels) ↓ | cycle PSNR dB ↑ |", "|---|---|---|---|---|---|---|---|---|"]
    for name, r in document["directions"].items():
        t, u = r["translated"], r["untranslated"]
        lines.append(f"| {name} | {t['fd']:.0f} | {u['fd']:.0f} | {t['kid']:.1f} | {u['kid']:.1f} | "
                     f"{t['precision']:.2f} | {t['recall']:.2f} | {r['cycle_l1_levels']:.1f} | {r['cycle_psnr']:.2f} |")
    return lines + [""]


EVALUATOR = Evaluator(evaluate_model, markdown_lines)
