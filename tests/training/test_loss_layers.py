import json

import numpy as np

from artforge.training.loss_layers import score, sliced_wasserstein
from artforge.cli import main
from artforge.training.loss_network import efficientnet_lite0


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
    kept = score(photo[:, None], photo, style, judge)
    styled = score(style[:, None], photo, style, judge)
    assert kept["content_ssim"] > 0.99 and styled["content_ssim"] < 0.5
    assert styled["style_colour_levels"] < 1e-9 < kept["style_colour_levels"]
    assert styled["style_gram_error"] < 1e-6 < kept["style_gram_error"]


def test_compare_loss_layers_trains_every_candidate_and_writes_reports(tmp_path):
    out = tmp_path / "ll"
    assert main(["loss-layers", "--out", str(out), "--steps", "2", "--size", "32", "--quiet"]) == 0
    document = json.loads((out / "loss_layers.json").read_text())
    assert len(document["results"]) == 5 and {r["content_layer"] for r in document["results"]} == {
        "block2", "block4", "block7"}
    for row in document["results"]:
        assert 0 < row["style_colour_levels"] < 255 and -1 <= row["content_ssim"] <= 1
    assert (out / "loss_layers.png").stat().st_size > 0 and "| candidate" in (out / "loss_layers.md").read_text()


def test_a_missing_vgg_file_fails_before_any_training(tmp_path, capsys):
    out = tmp_path / "ll"
    assert main(["loss-layers", "--out", str(out), "--vgg", str(tmp_path / "missing.pth"), "--quiet"]) == 1
    assert "missing.pth do not exist" in capsys.readouterr().err and not out.exists()
