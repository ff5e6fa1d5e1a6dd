"""`artforge critique`: what a critic on Triton makes of pictures, over gRPC.

    verdict = critique_image(client, "critic", picture, info)   # picture: (H, W, 3) uint8, any size
    verdict.top(3)                     # [("waves", 0.97), ("stripes", 0.02), ("grid", 0.01)]
    verdict.familiar                   # False when it looks like none of the art the critic knows
"""
from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from artforge.errors import ArtforgeError
from artforge.families.critic import NAME as FAMILY
from artforge.files import atomic_write_bytes
from artforge.imaging import WHITE, input_images, parse_colour, read_image_within
from artforge.options import Command, ImageInput, Progress, ServerAddress, option
from artforge.serving.client import Client


@dataclass
class Verdict:
    """The critic's answer for one picture."""

    labels: list[str]
    probabilities: np.ndarray  # (K,)
    embedding: np.ndarray  # (1280,)
    ood_score: float
    ood_threshold: float | None

    def top(self, k: int) -> list[tuple[str, float]]:
        order = np.argsort(-self.probabilities, kind="stable")[:k]
        return [(self.labels[i], float(self.probabilities[i])) for i in order]

    @property
    def familiar(self) -> bool | None:
        """Whether it looks like the art the critic was trained on (None: the model has no threshold)."""
        return None if self.ood_threshold is None else self.ood_score <= self.ood_threshold

    def to_json(self, k: int) -> dict:
        return {"top": [{"label": name, "probability": round(p, 6)} for name, p in self.top(k)],
                "ood_score": round(self.ood_score, 6), "ood_threshold": self.ood_threshold, "familiar": self.familiar}

    def line(self, k: int) -> str:
        ranked = ", ".join(f"{name} {p:.1%}" for name, p in self.top(k))
        looks = {True: "familiar", False: "UNFAMILIAR: like none of the critic's art", None: "no threshold"}
        return f"{ranked} | ood {self.ood_score:.2f} ({looks[self.familiar]})"


def critic_model(client, model: str):
    info = client.model(model)
    if info.family != FAMILY:
        raise ArtforgeError(f"model '{model}' is a '{info.family or 'non-artforge'}' model; "
                            f"'artforge critique' needs a '{FAMILY}' model")
    return info


def critique_image(client, model: str, picture: np.ndarray, info) -> Verdict:
    out = client.infer(model, {"image": picture[None]}, ["probabilities", "embedding", "ood_score"])
    labels = [str(label) for label in info.metadata.get("labels", [])]
    return Verdict(labels, out["probabilities"][0], out["embedding"][0], float(out["ood_score"][0, 0]),
                   info.metadata.get("ood_threshold"))


def critique_paths(client, model: str, source: Path, progress: bool = True,
                   background: tuple[int, int, int] = WHITE) -> list[tuple[Path, Verdict]]:
    """A verdict for one picture or for every picture in a folder (one request each: sizes differ)."""
    info = critic_model(client, model)
    paths = input_images(Path(source))
    limit = info.limits.get("image", {})
    verdicts = []
    for path in tqdm(paths, desc="critiquing", unit="img", disable=not progress or len(paths) == 1):
        picture = read_image_within(path, limit, background)
        try:
            verdicts.append((path, critique_image(client, model, picture, info)))
        except ArtforgeError as e:
            raise ArtforgeError(f"{path}: {e}") from None
    return verdicts


def save_embeddings(verdicts: list[tuple[Path, Verdict]], path: Path) -> None:
    """OUT.npz with 'paths' and 'embeddings' (N, 1280), for similarity search."""

    buffer = io.BytesIO()
    np.savez(buffer, paths=np.array([str(p) for p, _ in verdicts]),
             embeddings=np.stack([v.embedding for _, v in verdicts]).astype(np.float32))
    atomic_write_bytes(Path(path), buffer.getvalue())


# ---- `artforge critique`: the critic family's client command (Family(client=...) names this module) ----
@dataclass(kw_only=True)
class CritiqueOptions(ServerAddress, ImageInput, Progress):
    model: str = option("critic", help="model name on the server")
    top: int = option(3, help="labels to show per picture, most likely first")
    json: bool = option(False, help="print one JSON document instead of lines")
    embeddings: str | None = option(None, help="also save the embeddings to this .npz (paths, embeddings)")


def run(args: CritiqueOptions) -> None:
    if args.top < 1:
        raise ArtforgeError(f"--top {args.top} must be at least 1")
    if args.embeddings and not args.embeddings.endswith(".npz"):
        raise ArtforgeError(f"--embeddings {args.embeddings} must end in .npz")
    with Client(args.url, timeout_s=args.timeout) as client:
        verdicts = critique_paths(client, args.model, Path(args.input), progress=args.progress and not args.json,
                                  background=parse_colour(args.background))
    if args.embeddings:
        save_embeddings(verdicts, Path(args.embeddings))
    if args.json:
        print(json.dumps([{"path": str(path), **v.to_json(args.top)} for path, v in verdicts], indent=2))
        return
    for path, verdict in verdicts:
        print(f"{path}: {verdict.line(args.top)}")


VERB = Command(
    "critique", help="what an art critic on Triton makes of pictures: labels, and whether they look familiar",
    description="Send a picture (any size) or a folder of pictures to a critic served by Triton; print each "
                "picture's most likely labels and its out-of-distribution score (above the model's threshold "
                "it looks like none of the art the critic was trained on).",
    examples="  artforge critique --input painting.jpg                  # model 'critic', top 3 labels\n"
             "  artforge critique --input gallery/ --top 1 --json > verdicts.json\n"
             "  artforge critique --input gallery/ --embeddings gallery.npz   # for similarity search",
    options=CritiqueOptions, run=run)
