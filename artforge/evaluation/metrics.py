"""How close generated images are to real ones, in one named feature space (evaluation.features).

Fréchet distance (FD) and kernel distance (KID, unbiased, with its standard error over subsets)
come from torchmetrics, fed with features computed once; precision and recall are the k-NN
manifold estimates of Kynkäänniemi et al. (2019): precision, the share of generated images that
fall inside the real images' manifold; recall, the share of real images inside the generated one.
"""
from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from artforge.evaluation.features import FEATURE_SPACE, FEATURE_SPACE_SHORT, ArtFeatures


@dataclass
class Quality:
    """Generated vs real images; lower FD/KID is closer, precision/recall in [0, 1]."""

    feature_space: str
    real: int
    generated: int
    fd: float
    kid: float
    kid_std: float
    precision: float
    recall: float
    # mean pairwise feature distance of the generated images over that of the real ones: low when the
    # output collapses to near-identical images (a few distinct modes still look diverse: recall shows it)
    diversity: float

    def to_json(self) -> dict:
        return asdict(self)


class GivenFeatures(nn.Module):
    """Hands torchmetrics features already computed: the extractor runs once per image."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


def image_features(images: np.ndarray | torch.Tensor, extractor: nn.Module, batch: int = 64) -> torch.Tensor:
    """(N, H, W, 3) uint8 numpy or (N, 3, H, W) uint8 tensor -> (N, D) float64 features."""
    images = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2) if isinstance(images, np.ndarray) \
        else images
    return torch.cat([extractor(images[i:i + batch]) for i in range(0, len(images), batch)]).double()


def frechet_distance(real: torch.Tensor, fake: torch.Tensor) -> float:
    from torchmetrics.image.fid import FrechetInceptionDistance

    metric = FrechetInceptionDistance(feature=GivenFeatures(real.shape[1]))
    metric.update(real, real=True)
    metric.update(fake, real=False)
    return float(metric.compute())


def kernel_distance(real: torch.Tensor, fake: torch.Tensor, subsets: int = 50, seed: int = 0) -> tuple[float, float]:
    """Unbiased KID (polynomial kernel) and its standard deviation over random subsets of half the
    smaller side (up to 1000, as the KID paper's subsets): with all samples in every subset the spread
    would be zero and say nothing. The subsets are seeded: the same images give the same figure."""
    from torchmetrics.image.kid import KernelInceptionDistance

    size = max(2, min(len(real) // 2, len(fake) // 2, 1000))
    with warnings.catch_warnings():  # it warns that it keeps every feature: these are features already
        warnings.filterwarnings("ignore", message=".*will save all extracted features.*")
        metric = KernelInceptionDistance(feature=GivenFeatures(real.shape[1]), subsets=subsets, subset_size=size)
    metric.update(real, real=True)
    metric.update(fake, real=False)
    with torch.random.fork_rng():  # its subsets come from the global generator: seed them, leave it as it was
        torch.manual_seed(seed)
        mean, std = metric.compute()
    return float(mean), float(std)


def knn_radii(features: torch.Tensor, k: int) -> torch.Tensor:
    """Distance from each point to its k-th nearest other point of the same set."""
    distances = torch.cdist(features, features)
    return distances.kthvalue(k + 1, dim=1).values  # the 1st nearest is the point itself


def coverage(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor) -> float:
    """Share of `points` within the radius of at least one centre."""
    inside = (torch.cdist(points, centres) <= radii[None, :]).any(dim=1)
    return float(inside.double().mean())


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = 3) -> tuple[float, float]:
    if min(len(real), len(fake)) <= k:
        raise ValueError(f"precision and recall with k={k} need more than {k} images on each side")
    return coverage(fake, real, knn_radii(real, k)), coverage(real, fake, knn_radii(fake, k))


def diversity(features: torch.Tensor) -> float:
    distances = torch.cdist(features, features)
    n = len(features)
    return float(distances.sum() / (n * (n - 1)))


def diversity_by_class(real: torch.Tensor, real_names: np.ndarray, fake: torch.Tensor,
                       fake_names: np.ndarray) -> dict[str, float | None]:
    """Each generated class's diversity over its real images' (the overall `diversity`, within one class):
    low where a generator draws one picture per class whatever its noise (AC-GAN's known failure), which
    the overall figure hides when the classes differ. None where either side has under 2 images."""
    result: dict[str, float | None] = {}
    for name in dict.fromkeys(fake_names.tolist()):  # in order of first appearance, once each
        mine, theirs = fake[fake_names == name], real[real_names == name]
        result[str(name)] = diversity(mine) / diversity(theirs) if min(len(mine), len(theirs)) >= 2 else None
    return result


def measure_quality(real_images, generated_images, extractor: nn.Module | None = None, k: int = 3) -> Quality:
    """Every measure of generated vs real images, in FEATURE_SPACE (or the given extractor's space)."""
    extractor = extractor or ArtFeatures()
    real, fake = image_features(real_images, extractor), image_features(generated_images, extractor)
    space = FEATURE_SPACE if isinstance(extractor, ArtFeatures) else type(extractor).__name__
    return measure_features(real, fake, k, space)


def measure_features(real: torch.Tensor, fake: torch.Tensor, k: int = 3, space: str = FEATURE_SPACE) -> Quality:
    """Every measure from features already extracted (N, D) float64."""
    kid, kid_std = kernel_distance(real, fake)
    precision, recall = precision_recall(real, fake, k)
    return Quality(space, len(real), len(fake), frechet_distance(real, fake), kid, kid_std, precision, recall,
                   diversity(fake) / diversity(real))


class ImageQualityJudge:
    """--eval-every for generators (the training loop's ImageJudge): FD, KID, precision and recall of the
    generated images against the real ones, whose features are computed once."""

    feature_space = FEATURE_SPACE_SHORT

    def __init__(self):
        self.extractor, self.real = ArtFeatures(), None

    def __call__(self, generated: np.ndarray, real: np.ndarray) -> dict[str, float]:
        if self.real is None:
            self.real = image_features(real, self.extractor)
        quality = measure_features(self.real, image_features(generated, self.extractor))
        return {"fd": quality.fd, "kid": quality.kid, "kid_std": quality.kid_std, "precision": quality.precision,
                "recall": quality.recall}
