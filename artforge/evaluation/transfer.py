"""How well an image-to-image model keeps the photo and takes on the style, on photos it never saw.

One implementation of the measures, used by `artforge evaluate` on style models and by
`artforge loss-layers` (none of them is a training loss, so no candidate is judged by its own loss):
- content kept: SSIM of the grey result against the grey photo (1 = structure intact), and the
  feature distance to the photo (relative error at the judge's content tap; 0 = the same content);
- style colours: sliced Wasserstein distance between the RGB pixel distributions of result and
  style image, in grey levels (0 = the same palette, in the same amounts);
- style texture: relative Gram error averaged over all six EfficientNet-Lite0 taps.
"""
from __future__ import annotations

import numpy as np
import torch

from artforge.imaging import uint8_to_unit
from artforge.feature_network import EFFICIENTNET_TAPS, FeatureTaps, efficientnet_lite0, gram, relative_error

JUDGE_CONTENT_TAP = "block4"


def transfer_judge() -> FeatureTaps:
    """EfficientNet-Lite0 tapped at every stage: Gram errors on all, content distance at block4."""
    return efficientnet_lite0(tuple(EFFICIENTNET_TAPS), JUDGE_CONTENT_TAP)


def to_unit(images: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) in [-1, 1]."""
    return uint8_to_unit(torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2))


def grey(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float64) @ np.array([0.299, 0.587, 0.114])


def sliced_wasserstein(a: np.ndarray, b: np.ndarray, directions: int = 64, seed: int = 0) -> float:
    """Mean 1-D Wasserstein distance of two (N, 3) pixel sets along random directions, in grey levels."""
    rng = np.random.default_rng(seed)
    axes = rng.normal(size=(directions, 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    q = np.linspace(0, 1, 257)
    pa = np.quantile(a.astype(np.float64) @ axes.T, q, axis=0)
    pb = np.quantile(b.astype(np.float64) @ axes.T, q, axis=0)
    return float(np.abs(pa - pb).mean())


@torch.no_grad()
def transfer_quality(results: np.ndarray, photos: np.ndarray, styles: np.ndarray,
                     judge: FeatureTaps | None = None) -> dict[str, float]:
    """results (photos, styles, H, W, 3) uint8 against the photos (P, H, W, 3) and style images (S, h, w, 3)."""
    from skimage.metrics import structural_similarity

    judge = judge or transfer_judge()
    ssim, content, colour, texture = [], [], [], []
    style_grams = {k: gram(v) for k, v in judge(to_unit(styles)).items()}
    for p, photo in enumerate(photos):
        photo_features = judge(to_unit(photo[None]))[judge.info.content_layer]
        for s, style in enumerate(styles):
            result = results[p, s]
            ssim.append(structural_similarity(grey(result), grey(photo), data_range=255.0))
            colour.append(sliced_wasserstein(result.reshape(-1, 3), style.reshape(-1, 3)))
            features = judge(to_unit(result[None]))
            content.append(float(relative_error(features[judge.info.content_layer], photo_features)))
            texture.append(np.mean([float(relative_error(gram(features[k]), style_grams[k][s:s + 1]))
                                    for k in judge.info.style_layers]))
    return {"content_ssim": float(np.mean(ssim)), "content_feature_distance": float(np.mean(content)),
            "style_colour_levels": float(np.mean(colour)), "style_gram_error": float(np.mean(texture))}
