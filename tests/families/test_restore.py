"""The restoration family: damage on known cases, the scores and the classical baselines, then a tiny
model trained, resumed, evaluated, exported, served and called with `artforge restore`."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from artforge.evaluation.restoration import classical_baselines, image_psnr, psnr, restoration_scores
from artforge.families.restore.damage import DamageMix, damage, damage_batch

TINY_RESTORE = dict(size=32, pool=24, batch_size=4, width=8, depth=3, sample_every=1000, checkpoint_every=1000,
                    progress=False)


def flat_picture(value=120, size=32):
    return np.full((size, size, 3), value, np.uint8)


def test_damage_is_seeded_and_masks_exactly_the_local_damage():
    clean = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    a, mask_a = damage(clean, np.random.default_rng(5))
    b, mask_b = damage(clean, np.random.default_rng(5))
    assert np.array_equal(a, b) and np.array_equal(mask_a, mask_b)
    local_only = DamageMix(holes=1.0, scratches=1.0, fading=0, colour_cast=0, noise=0, jpeg=0)
    damaged, mask = damage(clean, np.random.default_rng(1), local_only)
    assert set(np.unique(mask)) <= {0, 1} and mask.any()
    assert np.array_equal(damaged[mask == 0], clean[mask == 0])  # outside the mask nothing changed
    faded, none = damage(clean, np.random.default_rng(1), DamageMix(holes=0, scratches=0, fading=1.0, colour_cast=0,
                                                                     noise=0, jpeg=0))
    assert not none.any() and not np.array_equal(faded, clean)  # global damage is never masked


def test_psnr_on_known_errors():
    clean = flat_picture(100)
    assert image_psnr(clean, clean) == 100.0
    off = clean.copy()
    off[:16] += 10  # half the pixels off by 10 levels: MSE 50
    assert image_psnr(off, clean) == pytest.approx(10 * np.log10(255 ** 2 / 50))
    mask = np.zeros((32, 32), bool)
    mask[:16] = True
    assert image_psnr(off, clean, mask) == pytest.approx(10 * np.log10(255 ** 2 / 100))
    assert image_psnr(off, clean, np.zeros((32, 32), bool)) is None
    assert psnr(np.stack([off, clean]), np.stack([clean, clean]), np.stack([mask, np.zeros_like(mask)])) == \
        pytest.approx(10 * np.log10(255 ** 2 / 100))  # an image without damage has no masked PSNR


def test_classical_inpainting_fills_a_hole_in_a_smooth_picture_better_than_leaving_it():
    gradient = np.repeat(np.linspace(40, 200, 32)[None, :, None], 32, 0).repeat(3, 2).astype(np.uint8)
    clean = np.stack([gradient, gradient[:, ::-1]])
    damaged, masks = damage_batch(clean, [1, 2], DamageMix(holes=1.0, scratches=0, fading=0, colour_cast=0, noise=0,
                                                           jpeg=0))
    results = classical_baselines(damaged, masks)
    left = restoration_scores(damaged, clean, masks)["psnr_masked"]
    for name, images in results.items():
        assert np.array_equal(images[masks == 0], damaged[masks == 0]), name  # only masked pixels are touched
        assert restoration_scores(images, clean, masks)["psnr_masked"] > left + 10, name


@pytest.fixture(scope="module")
def restore_run(tmp_path_factory):
    from artforge.families.restore.train import train_restore

    run = tmp_path_factory.mktemp("restore") / "run"
    train_restore(out=str(run), steps=4, **TINY_RESTORE)
    return run


def test_training_records_held_out_psnr_and_resumes_exactly(restore_run, tmp_path):
    from artforge.checkpoint import load_checkpoint
    from artforge.families.restore.train import train_restore

    checkpoint = load_checkpoint(restore_run)
    held_out = checkpoint.meta["held_out"]
    assert held_out["images"] == 64 and held_out["psnr"] > 0 and held_out["psnr_damaged"] > 0
    assert (restore_run / "samples" / "step_00000004.png").exists()
    split = tmp_path / "split"
    train_restore(out=str(split), steps=2, **TINY_RESTORE)
    train_restore(out=str(split), steps=4, resume=True)
    b = load_checkpoint(split)
    assert all(torch.equal(checkpoint.weights[k], b.weights[k]) for k in checkpoint.weights)


def test_evaluate_scores_the_model_against_the_classical_baselines(restore_run, tmp_path):
    from artforge.evaluation.evaluate import evaluate

    document = evaluate(source=str(restore_run), out=str(tmp_path / "eval"))
    scores = document["scores"]
    assert set(scores) == {"damaged input (anchor)", "this model", "OpenCV Telea", "OpenCV Navier-Stokes",
                           "scikit-image biharmonic"}
    assert scores["OpenCV Telea"]["psnr_masked"] > scores["damaged input (anchor)"]["psnr_masked"]
    best = document["best_classical"]
    assert document["psnr_masked_margin_db"] == pytest.approx(scores["this model"]["psnr_masked"] -
                                                              scores[best]["psnr_masked"])
    assert "| OpenCV Telea |" in (tmp_path / "eval" / "evaluate.md").read_text()
    from artforge.imaging import read_image

    assert read_image(tmp_path / "eval" / "restore_panel.png").shape[0] > 6 * 32 * 4  # 6 rows of 32 px, upscaled


def test_export_serve_and_restore_over_grpc(restore_run, tmp_path, capsys):
    from artforge.cli import main
    from artforge.export.pipeline import export_checkpoint
    from artforge.imaging import read_image, save_png
    from artforge.serving.server import Server

    result = export_checkpoint(restore_run, tmp_path / "repo", max_batch=4)
    assert result.name == "restore" and all(r.ok for r in result.parity)
    picture = np.random.default_rng(0).integers(0, 256, (37, 50, 3), np.uint8)  # odd size: padded and cropped back
    save_png(picture, tmp_path / "damaged.png")
    mask = np.zeros((37, 50, 3), np.uint8)
    mask[10:20, 5:30] = 200  # grey counts as damaged from 128 up
    save_png(mask, tmp_path / "mask.png")
    save_png(mask[:20], tmp_path / "small-mask.png")
    with Server(tmp_path / "repo", grpc_port=0, http_port=0, metrics_port=0) as server:
        url = ["--url", server.grpc_url]
        assert main(["restore", "--input", str(tmp_path / "damaged.png"), "--mask", str(tmp_path / "mask.png"),
                     "--out", str(tmp_path / "fixed.png"), *url]) == 0
        assert read_image(tmp_path / "fixed.png").shape == (37, 50, 3)
        assert main(["restore", "--input", str(tmp_path / "damaged.png"), "--out", str(tmp_path / "nomask.png"),
                     *url]) == 0
        capsys.readouterr()
        assert main(["restore", "--input", str(tmp_path / "damaged.png"), "--mask", str(tmp_path / "small-mask.png"),
                     "--out", str(tmp_path / "x.png"), *url]) != 0
        assert "is 50x20 but the image is 50x37" in capsys.readouterr().err
        document = json.loads(json.dumps(main(["evaluate", "restore", "--url", server.grpc_url, "--run",
                                               str(restore_run), "--out", str(tmp_path / "served")])))
        assert document == 0
        served = json.loads((tmp_path / "served" / "evaluate.json").read_text())
        assert served["source"]["url"] == server.grpc_url and served["images"] == 64
