import numpy as np

from artforge.evaluation.transfer import sliced_wasserstein, transfer_quality
from artforge.feature_network import efficientnet_lite0


def test_sliced_wasserstein_is_zero_for_the_same_palette_and_grows_with_a_shift():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 200, (500, 3))
    assert sliced_wasserstein(pixels, rng.permutation(pixels)) < 1e-9  # order does not matter
    near, far = sliced_wasserstein(pixels, pixels + 5), sliced_wasserstein(pixels, pixels + 40)
    assert 0 < near < far and abs(far / near - 8) < 0.01


def test_scores_reward_kept_content_and_matched_style():
    rng = np.random.default_rng(1)
    photo = rng.integers(0, 256, (1, 32, 32, 3), dtype=np.uint8)
    style = rng.integers(0, 256, (1, 32, 32, 3), dtype=np.uint8)
    judge = efficientnet_lite0(("block0", "block2"), "block2")
    kept = transfer_quality(photo[:, None], photo, style, judge)
    styled = transfer_quality(style[:, None], photo, style, judge)
    assert kept["content_ssim"] > 0.99 and styled["content_ssim"] < 0.5
    assert kept["content_feature_distance"] < 1e-9 < styled["content_feature_distance"]
    assert styled["style_colour_levels"] < 1e-9 < kept["style_colour_levels"]
    assert styled["style_gram_error"] < 1e-6 < kept["style_gram_error"]
