import numpy as np
import pytest
import torch

from artforge.evaluation.features import FEATURE_SPACE, ArtFeatures
from artforge.evaluation.metrics import (diversity, diversity_by_class, frechet_distance, kernel_distance,
                                         measure_quality, precision_recall)


def gaussian(n, mean, scale, d=4, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).normal(mean, scale, (n, d))).double()


def test_frechet_distance_matches_the_closed_form_for_two_gaussians():
    # N(0, I) vs N(m, 4I) in 4-d: FD = |m|^2 + tr(I + 4I - 2 sqrt(4) I) = 4 m^2 + 4 (5 - 4)
    real, fake = gaussian(40_000, 0.0, 1.0, seed=1), gaussian(40_000, 0.5, 2.0, seed=2)
    assert frechet_distance(real, fake) == pytest.approx(4 * 0.25 + 4 * 1.0, rel=0.03)
    assert frechet_distance(real, gaussian(40_000, 0.0, 1.0, seed=3)) < 0.01


def test_kernel_distance_is_unbiased_near_zero_for_one_distribution_and_positive_for_two():
    real = gaussian(600, 0.0, 1.0, seed=4)
    same, std = kernel_distance(real, gaussian(600, 0.0, 1.0, seed=5))
    assert abs(same) < 3 * std + 1e-3
    shifted, _ = kernel_distance(real, gaussian(600, 1.0, 1.0, seed=6))
    assert shifted > 10 * max(abs(same), 1e-4)
    state = torch.get_rng_state()
    assert kernel_distance(real, gaussian(600, 1.0, 1.0, seed=6)) == (shifted, _)  # seeded subsets: repeatable
    assert torch.equal(torch.get_rng_state(), state)  # and the caller's generator untouched


def test_precision_and_recall_tell_a_collapsed_generator_from_a_wrong_one():
    real = gaussian(500, 0.0, 1.0, seed=7)
    # mode collapse: 500 images that are 5 real ones over and over (tiny noise): precise, no recall
    collapsed = real[:5].repeat(100, 1) + gaussian(500, 0.0, 1e-3, seed=9)
    p, r = precision_recall(real, collapsed)
    assert p > 0.95 and r < 0.3
    far = gaussian(500, 50.0, 1.0, seed=8)
    assert precision_recall(real, far) == (0.0, 0.0)
    assert diversity(real[:1].repeat(50, 1) + gaussian(50, 0.0, 1e-3, seed=10)) < 0.01 * diversity(real)
    with pytest.raises(ValueError, match="need more than 3"):
        precision_recall(real, real[:3])


def test_diversity_by_class_finds_the_class_drawn_as_one_picture_that_the_overall_figure_hides():
    real_a, real_b = gaussian(200, 0.0, 1.0, seed=11), gaussian(200, 20.0, 1.0, seed=12)
    fake_a = gaussian(200, 0.0, 1.0, seed=13)
    fake_b = real_b[:1].repeat(200, 1) + gaussian(200, 0.0, 1e-3, seed=14)  # class b: one picture, whatever z
    real, fake = torch.cat([real_a, real_b]), torch.cat([fake_a, fake_b])
    names = np.array(["a"] * 200 + ["b"] * 200)
    assert diversity(fake) / diversity(real) > 0.45  # the classes lie apart: overall, fakes still look varied
    by_class = diversity_by_class(real, names, fake, names)
    assert list(by_class) == ["a", "b"]
    assert by_class["a"] == pytest.approx(1.0, abs=0.1) and by_class["b"] < 0.01
    # a class asked for but absent from the real folder (or drawn once) has no figure
    assert diversity_by_class(real, names, fake[:201], np.array(["a"] * 200 + ["c"]))["c"] is None


@pytest.fixture(scope="module")
def art_halves(art32):
    from artforge.image_folders import load_image_folder

    images = load_image_folder(art32, size=32, progress=False).images  # (30, 3, 32, 32), 5 styles x 6
    return images[0::2], images[1::2]


@pytest.mark.slow
def test_real_against_real_scores_far_better_than_an_untrained_generator(art_halves):
    from artforge.imaging import unit_to_uint8
    from artforge.families.dcgan.network import DCGANConfig, Generator

    first, second = art_halves
    torch.manual_seed(0)
    generator = Generator(DCGANConfig(z_dim=16, num_classes=5, g_width=8)).eval()
    with torch.no_grad():
        untrained = unit_to_uint8(generator(torch.randn(15, 16), torch.arange(15) % 5)).permute(0, 3, 1, 2)
    features = ArtFeatures()
    real = measure_quality(first, second, features)
    bad = measure_quality(first, untrained, features)
    assert real.feature_space == FEATURE_SPACE and "EfficientNet-Lite0" in FEATURE_SPACE
    assert bad.fd > 3 * real.fd and bad.kid > real.kid + 3 * real.kid_std
    assert real.recall > bad.recall


def test_features_refuse_what_is_not_a_uint8_image_batch():
    with pytest.raises(ValueError, match="uint8 images"):
        ArtFeatures()(torch.rand(2, 3, 8, 8))


@pytest.mark.slow
def test_a_trained_dcgan_scores_between_the_floor_and_the_untrained_start(art32, art_halves, tmp_path):
    """--eval-every measures the untrained start and the end of a short run on the same real images."""
    import json

    from artforge.families.dcgan.train import train_dcgan
    from tests.conftest import TINY_DCGAN

    run = tmp_path / "run"
    # wider and longer than the other tiny runs: at width 8 and 150 steps FD had not yet fallen (18 s here)
    train_dcgan(data=str(art32), out=str(run), steps=600, seed=0, eval_every=300, eval_count=30,
                **{**TINY_DCGAN, "batch_size": 32, "g_width": 16, "d_width": 16})
    measured = [r for r in map(json.loads, (run / "log.jsonl").read_text().splitlines()) if "fd" in r]
    start, end = measured[0], measured[-1]
    floor = measure_quality(*art_halves)
    assert [r["step"] for r in measured] == [0, 300, 600]
    assert floor.fd < end["fd"] < 0.7 * start["fd"]  # between real-vs-real and the untrained generator
