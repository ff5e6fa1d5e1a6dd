"""Real photos every machine has: the ones that ship inside scikit-image (nothing is downloaded).

Style training learns from the training photos; the held-out ones are never trained on, so sample
panels, loss-layer evaluations and the quality cost of int8 variants are judged on unseen photos.
int8 calibration reads the training photos, because calibrating on uniform noise sets activation
ranges that real photos never reach.
"""
from __future__ import annotations

import functools

import numpy as np
from PIL import Image

TRAINING_PHOTOS = ("astronaut", "rocket", "hubble_deep_field", "immunohistochemistry", "retina", "camera",
                   "motorcycle")
HELD_OUT_PHOTOS = ("chelsea", "coffee")


@functools.lru_cache(maxsize=None)
def builtin_photo(name: str) -> np.ndarray:
    """One scikit-image photo as (H, W, 3) uint8 (grey ones repeated to three channels)."""
    import skimage.data as data

    image = data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(data, name)()
    image = np.stack([image] * 3, -1) if image.ndim == 2 else image[..., :3]
    image.setflags(write=False)  # cached: callers must not change it
    return image


def builtin_photos(held_out: bool = False) -> list[np.ndarray]:
    return [builtin_photo(name) for name in (HELD_OUT_PHOTOS if held_out else TRAINING_PHOTOS)]


def resize_to_cover(photo: np.ndarray, height: int, width: int) -> np.ndarray:
    """Scale so the photo covers height x width (aspect ratio kept); crop nothing yet."""
    picture = Image.fromarray(photo)
    scale = max(height / picture.height, width / picture.width)
    size = (max(width, round(picture.width * scale)), max(height, round(picture.height * scale)))
    return np.asarray(picture.resize(size, Image.BICUBIC if scale > 1 else Image.LANCZOS, reducing_gap=3.0))


def centre_crop(photo: np.ndarray, size: int) -> np.ndarray:
    """(size, size, 3): the shorter side scaled to `size`, the middle kept."""
    covered = resize_to_cover(photo, size, size)
    top, left = (covered.shape[0] - size) // 2, (covered.shape[1] - size) // 2
    return covered[top:top + size, left:left + size]


def photo_crops(batch: int, height: int, width: int, seed: int, held_out: bool = False) -> np.ndarray:
    """(batch, height, width, 3) uint8 random crops of the built-in photos, at a random zoom (1x to 2x)."""
    rng = np.random.default_rng(seed)
    photos = builtin_photos(held_out)
    crops = []
    for _ in range(batch):
        photo = photos[rng.integers(len(photos))]
        zoom = rng.uniform(1.0, 2.0)
        covered = resize_to_cover(photo, round(height * zoom), round(width * zoom))
        y = rng.integers(covered.shape[0] - height + 1)
        x = rng.integers(covered.shape[1] - width + 1)
        crops.append(covered[y:y + height, x:x + width])
    return np.stack(crops)
