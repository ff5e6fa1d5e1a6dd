"""How close restored images are to the clean originals: PSNR and SSIM over the whole image and over
the damaged (masked) region, and the feature distance of artforge.evaluation.transfer; plus the
classical inpainting baselines a restoration model must beat (OpenCV's Telea and Navier-Stokes,
scikit-image's biharmonic), run on the same damaged images and masks.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from artforge.errors import ArtforgeError
from artforge.evaluation.transfer import to_unit, transfer_judge
from artforge.feature_network import relative_error

PEAK_DB = 100.0  # PSNR of an exact copy, instead of infinity


def image_psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float | None:
    """One image's PSNR in dB, over the pixels where mask (H, W) is true; None for an empty mask."""
    diff = (a.astype(np.float64) - b.astype(np.float64)) ** 2
    if mask is not None:
        if not mask.any():
            return None
        diff = diff[mask]
    mse = diff.mean()
    return PEAK_DB if mse == 0 else float(min(PEAK_DB, 10 * np.log10(255.0 ** 2 / mse)))


def psnr(images: np.ndarray, clean: np.ndarray, masks: np.ndarray | None = None) -> float:
    """Mean per-image PSNR of (N, H, W, 3) uint8 images against the clean ones (masked: images with damage)."""
    values = [image_psnr(a, b, None if masks is None else m) for a, b, m in
              zip(images, clean, masks if masks is not None else [None] * len(images))]
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else float("nan")


def ssim(images: np.ndarray, clean: np.ndarray, masks: np.ndarray | None = None) -> float:
    """Mean SSIM (colour, per channel averaged); masked: the SSIM map averaged over the masked pixels."""
    from skimage.metrics import structural_similarity

    values = []
    for a, b, m in zip(images, clean, masks if masks is not None else [None] * len(images)):
        if m is not None and not m.any():
            continue
        score, full = structural_similarity(a, b, channel_axis=-1, data_range=255, full=True, win_size=7)
        values.append(float(score) if m is None else float(full.mean(axis=-1)[m].mean()))
    return float(np.mean(values)) if values else float("nan")


def feature_distance(images: np.ndarray, clean: np.ndarray, judge=None) -> float:
    """Relative error of EfficientNet-Lite0 block4 features against the clean image's (0 = same content)."""
    import torch


    judge = judge or transfer_judge()
    tap = judge.info.content_layer
    with torch.no_grad():
        return float(np.mean([float(relative_error(judge(to_unit(a[None]))[tap], judge(to_unit(b[None]))[tap]))
                              for a, b in zip(images, clean)]))


def restoration_scores(images: np.ndarray, clean: np.ndarray, masks: np.ndarray, judge=None) -> dict[str, float]:
    masks = masks.astype(bool)
    return {"psnr": psnr(images, clean), "psnr_masked": psnr(images, clean, masks),
            "ssim": ssim(images, clean), "ssim_masked": ssim(images, clean, masks),
            "feature_distance": feature_distance(images, clean, judge)}


def opencv_inpaint(method: str) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    try:
        import cv2
    except ImportError:
        raise ArtforgeError("the OpenCV baselines need opencv-python-headless (pip install 'artforge[dev]' or "
                            "'opencv-python-headless<4.12')") from None
    flag = {"telea": cv2.INPAINT_TELEA, "navier-stokes": cv2.INPAINT_NS}[method]
    return lambda image, mask: cv2.inpaint(image, mask.astype(np.uint8), 3, flag)


def biharmonic_inpaint(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    from skimage.restoration import inpaint_biharmonic

    if not mask.any():
        return image.copy()
    filled = inpaint_biharmonic(image, mask.astype(bool), channel_axis=-1)
    return np.clip(np.round(filled * 255), 0, 255).astype(np.uint8)


CLASSICAL = {"OpenCV Telea": lambda: opencv_inpaint("telea"),
             "OpenCV Navier-Stokes": lambda: opencv_inpaint("navier-stokes"),
             "scikit-image biharmonic": lambda: biharmonic_inpaint}


def classical_baselines(damaged: np.ndarray, masks: np.ndarray) -> dict[str, np.ndarray]:
    """Every classical method's inpainting of the damaged images (they fill the masked pixels only)."""
    results = {}
    for name, make in CLASSICAL.items():
        method = make()
        results[name] = np.stack([method(image, mask) for image, mask in zip(damaged, masks)])
    return results
