import numpy as np
import torch

from artforge.families.style.network import StyleNetConfig
from artforge.photos import HELD_OUT_PHOTOS, TRAINING_PHOTOS, builtin_photo, photo_crops
from artforge.families.style import StyleSpec
from artforge.families.style.train import content_images, split_folder


def test_held_out_photos_are_not_training_photos():
    assert not set(HELD_OUT_PHOTOS) & set(TRAINING_PHOTOS)
    for a in HELD_OUT_PHOTOS:
        assert not any(np.array_equal(builtin_photo(a), builtin_photo(b)) for b in TRAINING_PHOTOS)


def test_photo_crops_are_real_deterministic_and_sized():
    a = photo_crops(3, 40, 56, seed=1)
    assert a.shape == (3, 40, 56, 3) and a.dtype == np.uint8
    assert np.array_equal(a, photo_crops(3, 40, 56, seed=1))
    assert not np.array_equal(a, photo_crops(3, 40, 56, seed=2))
    assert not np.array_equal(photo_crops(3, 40, 56, seed=1, held_out=True), a)
    # photos, not noise: neighbouring pixels are close (uniform noise differs by ~85 levels)
    assert np.abs(np.diff(a.astype(int), axis=2)).mean() < 30


def test_style_spec_representative_inputs_are_valid_photo_requests():
    spec = StyleSpec(StyleNetConfig.preset("lite", num_styles=3))
    inputs = spec.representative_inputs(2, seed=0, sizes={"height": 48, "width": 64}, held_out=True)
    spec.check_inputs(inputs)
    assert inputs["content"].shape == (2, 48, 64, 3)
    assert np.allclose(inputs["style_weights"].sum(1), 1) and set(np.unique(inputs["style_weights"])) <= {0, 1}


def test_builtin_panels_show_held_out_photos_and_small_folders_are_not_split():
    content = content_images("builtin", 32)
    assert content.held_out.shape == (len(HELD_OUT_PHOTOS), 3, 32, 32) and content.train.shape[-1] == 36
    images = torch.arange(12).view(12, 1, 1, 1).expand(12, 3, 36, 36).to(torch.uint8)
    split = split_folder(images, 32)
    assert split.train.shape[0] == 10 and split.held_out[:, 0, 0, 0].tolist() == [0, 1]
    small = split_folder(images[:4], 32)
    assert small.train.shape[0] == 4 and small.held_out.shape == (2, 3, 32, 32)
