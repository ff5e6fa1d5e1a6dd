"""Judging generated images with a classifier: does a generator's "waves" come out as waves?

The judge is any model whose contract takes a uint8 (H, W, 3) image and returns `probabilities` over
its metadata's `labels` (the critic family's), from a checkpoint in-process or served on Triton. The
generator's class names are matched to the judge's labels by name, and the judge's accuracy on real
images of the same size is reported next to it: the ceiling a generator can reach.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from artforge.errors import ArtforgeError
from artforge.registry import load_network, spec_for
from artforge.serving.client import Client

PROBABILITIES = "probabilities"


def class_accuracy(critic: str, url: str, generated, real: np.ndarray, real_labels: np.ndarray,
                   real_names: list[str]) -> dict[str, Any]:
    """Per-class accuracy of `generated` (an evaluate.Generated) and of the real images, by the critic."""
    if generated.classes is None:
        raise ArtforgeError("--critic: the generator takes no class label, so there is no class to check")
    classify, labels, source = classifier(critic, url)
    generated_names = generated.names()
    judged = np.array(labels)[classify(generated.images)]
    real_judged = np.array(labels)[classify(real)]
    real_true = np.array(real_names)[real_labels]
    per_class = {name: {"generated": share(judged[generated_names == name] == name) if name in labels else None,
                        "generated_count": int((generated_names == name).sum()),
                        "mistaken_for": most_common(judged[(generated_names == name) & (judged != name)],
                                                    int((generated_names == name).sum())),
                        "real": share(real_judged[real_true == name] == name) if name in labels else None}
                 for name in generated.class_names}
    known = np.isin(generated_names, labels)
    return {"critic": source, "labels": labels, "per_class": per_class,
            "generated_accuracy": share(judged[known] == generated_names[known]),
            "real_accuracy": share(real_judged[np.isin(real_true, labels)] == real_true[np.isin(real_true, labels)]),
            "unknown_classes": sorted(set(generated.class_names) - set(labels))}


def most_common(judgements: np.ndarray, total: int) -> list[str | float] | None:
    """[label, share of all `total` images] of the wrong label the critic gave most often."""
    if not len(judgements):
        return None
    names, counts = np.unique(judgements, return_counts=True)
    return [str(names[counts.argmax()]), float(counts.max() / total)]


def share(hits: np.ndarray) -> float | None:
    return float(hits.mean()) if len(hits) else None


def classifier(critic: str, url: str) -> tuple[Callable[[np.ndarray], np.ndarray], list[str], str]:
    """(images (N, H, W, 3) uint8 -> (N,) label index, the labels, where the judge came from)."""
    if Path(critic).exists():
        return local_classifier(Path(critic))
    if not url:
        raise ArtforgeError(f"--critic {critic} is not a run or checkpoint folder here; to use a served critic, "
                            "pass --url too")
    return served_classifier(critic, url)


def local_classifier(path: Path):
    import torch


    network, checkpoint = load_network(path)
    spec = spec_for(checkpoint)
    names = [t.name for t in spec.outputs]
    if PROBABILITIES not in names or spec.inputs[0].dtype != "uint8":
        raise ArtforgeError(f"--critic {path} is a '{checkpoint.family}' model; judging needs a classifier "
                            f"(an image in, '{PROBABILITIES}' out), e.g. one from 'artforge train critic'")
    serving, index = spec.serving_network(network), names.index(PROBABILITIES)

    @torch.no_grad()
    def classify(images: np.ndarray) -> np.ndarray:
        return np.concatenate([serving(torch.from_numpy(images[i:i + 32]))[index].argmax(1).numpy()
                               for i in range(0, len(images), 32)])

    return classify, [str(label) for label in spec.metadata.get("labels", [])], str(checkpoint.path)


def served_classifier(name: str, url: str):

    with Client(url) as client:
        info = client.model(name)
    if PROBABILITIES not in info.output_names():
        raise ArtforgeError(f"--critic {name} on {url} is a '{info.family}' model; judging needs a classifier "
                            f"(an image in, '{PROBABILITIES}' out)")
    image_input, batch = info.inputs[0].name, max(1, min(32, info.max_batch or 32))

    def classify(images: np.ndarray) -> np.ndarray:
        with Client(url) as client:
            return np.concatenate([client.infer(name, {image_input: images[i:i + batch]}, [PROBABILITIES])
                                   [PROBABILITIES].argmax(1) for i in range(0, len(images), batch)])

    return classify, [str(label) for label in info.metadata.get("labels", [])], f"{name} at {url}"
