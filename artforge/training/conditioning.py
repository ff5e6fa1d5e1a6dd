"""How a class-conditional GAN's discriminator is told the class, shared by the GAN families' networks
and trainers (their configs' `conditioning`; the option in training/image_gan.py):

- projection: the label's embedding dotted with D's last features is part of the real/fake logit
  (Miyato & Koyama 2018);
- acgan: a second head names the class of what D sees, trained on real pictures, and the generator is
  trained to have its pictures named as asked (AC-GAN, Odena et al. 2017; ArtGAN, Tan et al. 2017);
- both: the two together.

Measured on real drawings and on the procedural set in docs/conditioning.md.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

CONDITIONINGS = ("projection", "acgan", "both")


def uses_projection(conditioning: str) -> bool:
    return conditioning in ("projection", "both")


def uses_classifier(conditioning: str) -> bool:
    return conditioning in ("acgan", "both")


def check_conditioning(conditioning: str, family: str) -> None:
    if conditioning not in CONDITIONINGS:
        raise ValueError(f"{family} conditioning must be one of {', '.join(CONDITIONINGS)}, got {conditioning!r}")


def class_loss(class_logits: torch.Tensor | None, labels: torch.Tensor, weight: float) -> torch.Tensor:
    """The auxiliary classifier's weighted cross-entropy; zero when the discriminator has no classifier."""
    if class_logits is None:
        return torch.zeros((), device=labels.device)
    return weight * F.cross_entropy(class_logits.float(), labels)


def class_accuracy(name: str, class_logits: torch.Tensor | None, labels: torch.Tensor) -> dict[str, float]:
    """{name: the auxiliary classifier's share of the batch named as its label}, for the log ({} without a
    classifier). Generated pictures named as asked far less often than real ones: the class is ignored."""
    if class_logits is None:
        return {}
    return {name: (class_logits.argmax(1) == labels).float().mean().item()}
