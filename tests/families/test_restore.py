"""The restoration family: damage on known cases, the scores and the classical baselines, then a tiny
model trained, resumed, evaluated, exported, served and called with `artforge restore`."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from artforge.evaluation.restoration import classical_baselines, image_psnr, psnr, restoration_scores
from artforge.families.restore.damage import DamageMix, damage, damage_batch
from tests.served import assert_served_matches

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


@pytest.mark.slow
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
    larger = evaluate(source=str(restore_run), out=str(tmp_path / "eval-64"), size=64, count=4)
    assert larger["size"] == 64 and larger["images"] == 4  # a model trained at 32 px scored on 64 px pictures


def test_export_serve_and_restore_over_grpc(restore_run, tmp_path, capsys):
    from artforge.cli import main
    from artforge.evaluation.evaluate import evaluate
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
        assert main(["restore", "--input", str(tmp_path / "damaged.png"), "--out", str(tmp_path / "nomask.png"),
                     *url]) == 0
        damaged = (mask.max(axis=2) >= 128).astype(np.uint8)
        for out, holes in (("fixed.png", damaged), ("nomask.png", np.zeros_like(damaged))):  # as PyTorch restores
            assert_served_matches(restore_run, {"image": picture[None], "mask": holes[None, ..., None]},
                                  {"restored": read_image(tmp_path / out)[None]})
        capsys.readouterr()
        assert main(["restore", "--input", str(tmp_path / "damaged.png"), "--mask", str(tmp_path / "small-mask.png"),
                     "--out", str(tmp_path / "x.png"), *url]) != 0
        assert "is 50x20 but the image is 50x37" in capsys.readouterr().err
        document = json.loads(json.dumps(main(["evaluate", "restore", "--url", server.grpc_url, "--run",
                                               str(restore_run), "--out", str(tmp_path / "served")])))
        assert document == 0
        served = json.loads((tmp_path / "served" / "evaluate.json").read_text())
        assert served["source"]["url"] == server.grpc_url and served["images"] == 64
    local = evaluate(source=str(restore_run), out=str(tmp_path / "local"))  # the same pictures, in-process
    for way, score in local["scores"].items():  # pixels within a grey level: the scores nearly agree
        assert served["scores"][way]["psnr_masked"] == pytest.approx(score["psnr_masked"], abs=0.05), way


def test_multiscale_discriminator_feature_matching_and_old_training_states():
    from artforge.families.image_to_image import MultiScaleDiscriminator, PatchDiscriminator, feature_matching_loss

    torch.manual_seed(0)
    two = MultiScaleDiscriminator(7, scales=2)
    x = torch.rand(1, 7, 64, 64)
    outputs = two(x)
    assert len(outputs) == 2 and outputs[0][-1].shape[-1] == 6 and outputs[1][-1].shape[-1] == 2  # 70x70 patches
    assert len(outputs[0]) == 5  # four activations, then the logits
    assert feature_matching_loss(outputs, two(x)) == 0
    assert feature_matching_loss(outputs, two(x.flip(3))) > 0
    single = PatchDiscriminator(7)  # restore runs before the multi-scale form saved this
    one = MultiScaleDiscriminator(7, scales=1)
    one.load_state_dict(single.state_dict())
    assert torch.equal(one(x)[0][-1], single(x))


def test_hd_generator_starts_as_the_fill_and_takes_any_size():
    from artforge.families.restore.network import RestoreConfig, RestoreNet

    net = RestoreNet(RestoreConfig(width=8, depth=3, arch="hd", blocks=2)).eval()
    image = torch.rand(2, 3, 37, 50) * 2 - 1
    mask = torch.zeros(2, 1, 37, 50)
    mask[:, :, 10:20, 5:30] = 1
    with torch.no_grad():
        out = net(image, mask)
    assert out.shape == image.shape
    assert torch.equal(out * (1 - mask), image * (1 - mask))  # the correction starts at zero: untouched pixels stay
    assert out[:, :, 12:18, 8:28].std() < image[:, :, 12:18, 8:28].std()  # the hole holds the smooth pull-push fill
    with pytest.raises(ValueError, match="arch"):
        RestoreConfig(arch="vae")


def test_hd_spec_refuses_pictures_its_coarsest_norm_cannot_take():
    from artforge.families.restore import RestoreSpec
    from artforge.families.restore.network import RestoreConfig, RestoreNet

    hd = RestoreConfig(width=8, depth=4, arch="hd", blocks=1)
    assert RestoreSpec(hd, {}).dynamic_dims["height"].min == 32  # 32 px: 2x2 after four halvings
    assert RestoreSpec(RestoreConfig(width=8), {}).dynamic_dims["width"].min == 16
    net = RestoreNet(hd).eval()
    with torch.no_grad():
        assert net(torch.zeros(1, 3, 32, 32), torch.zeros(1, 1, 32, 32)).shape == (1, 3, 32, 32)
        with pytest.raises(ValueError, match="more than 1 spatial element"):
            net(torch.zeros(1, 3, 16, 16), torch.zeros(1, 1, 16, 16))  # what the limit keeps from the server


def test_hd_size_must_leave_the_coarsest_discriminator_32_px(tmp_path):
    from artforge.errors import ArtforgeError
    from artforge.families.restore.train import train_restore

    with pytest.raises(ArtforgeError, match="at least 64"):
        train_restore(out=str(tmp_path / "run"), steps=1, arch="hd", **{**TINY_RESTORE, "size": 32})


def test_hd_run_trains_with_feature_matching_and_restores_a_large_picture_over_grpc(tmp_path, capsys):
    """Pix2PixHD's recipe end to end: multi-scale discriminators, feature matching and the perceptual
    loss logged; exported with parity; a 600x520 picture restored through Triton as PyTorch does."""
    from artforge.checkpoint import load_checkpoint
    from artforge.cli import main
    from artforge.export.pipeline import export_checkpoint
    from artforge.registry import build_from_checkpoint
    from artforge.families.restore.train import train_restore
    from artforge.imaging import read_image, save_png, uint8_to_unit, unit_to_uint8
    from artforge.serving.server import Server

    run = tmp_path / "hd"
    train_restore(out=str(run), steps=2, arch="hd", perceptual=1.0, blocks=2,
                  **{**TINY_RESTORE, "size": 64})
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert {"loss_fm", "loss_perceptual", "loss_gan", "loss_l1"} <= set(records[-1])
    checkpoint = load_checkpoint(run)
    assert checkpoint.meta["config"]["arch"] == "hd"
    assert json.loads((run / "train_options.json").read_text())["scales"] == 2  # the arch's defaults saved
    result = export_checkpoint(run, tmp_path / "repo", max_batch=2)
    assert all(r.ok for r in result.parity)
    picture = np.random.default_rng(1).integers(0, 256, (520, 600, 3), np.uint8)
    mask = np.zeros((520, 600), np.uint8)
    mask[100:300, 200:260] = 1
    save_png(picture, tmp_path / "big.png")
    save_png(np.repeat(mask[..., None] * 255, 3, 2), tmp_path / "big-mask.png")
    network = build_from_checkpoint(checkpoint).eval()
    with torch.no_grad():
        expected = unit_to_uint8(network(uint8_to_unit(torch.from_numpy(picture).permute(2, 0, 1)[None]),
                                         torch.from_numpy(mask)[None, None].float()))[0].numpy()
    with Server(tmp_path / "repo", grpc_port=0, http_port=0, metrics_port=0) as server:
        assert main(["restore", "--input", str(tmp_path / "big.png"), "--mask", str(tmp_path / "big-mask.png"),
                     "--out", str(tmp_path / "fixed.png"), "--url", server.grpc_url]) == 0
    fixed = read_image(tmp_path / "fixed.png")
    assert fixed.shape == picture.shape
    assert np.abs(fixed.astype(int) - expected).max() <= 1
