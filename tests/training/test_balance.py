"""--balance-classes: every class-folder generator draws its real batches from every class equally often
when asked, follows the folder otherwise (the same draws as before the option), and says so when a folder's
classes are unequal."""
import json
import logging
import shutil

import pytest
import torch

from artforge.families.dcgan.train import DCGANTrainOptions, DCGANTrainer, batch_for_step, train_dcgan
from artforge.families.diffusion.train import DiffusionTrainOptions, DiffusionTrainer
from artforge.families.stylegan.train import StyleGANTrainOptions, StyleGANTrainer
from artforge.image_folders import ImageFolder
from artforge.training.distributed import close_distributed, init_distributed, step_generator
from artforge.training.image_gan import unequal_classes
from tests.conftest import TINY_DCGAN, TINY_DIFFUSION
from tests.families.test_stylegan import TINY_STYLEGAN


def folder(counts: list[int]) -> ImageFolder:
    labels = torch.cat([torch.full((n,), c, dtype=torch.int64) for c, n in enumerate(counts)])
    images = torch.zeros(len(labels), 3, 4, 4, dtype=torch.uint8)
    return ImageFolder(root="data", images=images, labels=labels, classes=[f"c{i}" for i in range(len(counts))])


def test_balanced_draws_give_every_class_an_equal_share_and_reach_all_its_pictures():
    data = folder([90, 10])
    drawn = data.draw(4000, torch.Generator().manual_seed(0), balanced=True)
    rare = drawn[data.labels[drawn] == 1]
    assert 0.45 < len(rare) / len(drawn) < 0.55
    assert sorted(set(rare.tolist())) == list(range(90, 100))  # every rare picture, none favoured
    assert torch.bincount(rare - 90).min() > 120  # ~200 each


def test_plain_draws_follow_the_folder_exactly_as_before_the_option():
    data = folder([90, 10])
    drawn = data.draw(4000, torch.Generator().manual_seed(0))
    assert torch.equal(drawn, torch.randint(100, (4000,), generator=torch.Generator().manual_seed(0)))
    assert 0.07 < (data.labels[drawn] == 1).float().mean() < 0.13


def test_the_notice_names_the_rare_class_and_the_option_only_when_classes_are_unequal():
    notice = unequal_classes(folder([30, 300, 100]))
    assert "c0: 30 pictures" in notice and "c1: 300" in notice and "--balance-classes" in notice
    assert unequal_classes(folder([60, 40, 50])) == ""


@pytest.fixture(scope="module")
def lopsided(art32, tmp_path_factory):
    """art32 with one picture left of `circles` (the others keep 6): 1 in 25."""
    root = tmp_path_factory.mktemp("lopsided") / "data"
    shutil.copytree(art32, root)
    for extra in sorted((root / "circles").glob("*.png"))[1:]:
        extra.unlink()
    return root


def dcgan_labels(trainer, opts, ctx, step):
    return batch_for_step(trainer.data, opts, step, ctx)[1]


def stylegan_labels(trainer, opts, ctx, step):
    return trainer.real_batch(step_generator(opts.seed, step))[1]


def diffusion_labels(trainer, opts, ctx, step):
    labels = trainer.batch_for_step(step)[1]
    return labels[labels < len(trainer.data.classes)]  # without those dropped to the null class


FAMILIES = {"dcgan": (DCGANTrainOptions, DCGANTrainer, TINY_DCGAN, dcgan_labels),
            "stylegan": (StyleGANTrainOptions, StyleGANTrainer, TINY_STYLEGAN, stylegan_labels),
            "diffusion": (DiffusionTrainOptions, DiffusionTrainer, TINY_DIFFUSION, diffusion_labels)}


@pytest.mark.parametrize("family", FAMILIES)
def test_each_generator_family_draws_the_rare_class_as_often_as_the_others_when_asked(lopsided, tmp_path, family):
    options_cls, trainer_cls, tiny, labels_of = FAMILIES[family]
    ctx = init_distributed("cpu", False, True)
    try:
        share = {}
        for balance in (False, True):
            opts = options_cls(data=str(lopsided), out=str(tmp_path / str(balance)), balance_classes=balance,
                               **{**tiny, "batch_size": 64})
            trainer = trainer_cls(opts, ctx)
            labels = torch.cat([labels_of(trainer, opts, ctx, step) for step in range(30)])
            share[balance] = (labels == 0).float().mean().item()
    finally:
        close_distributed(ctx)
    assert share[False] < 0.08  # 1 picture in 25
    assert 0.16 < share[True] < 0.24  # 1 class in 5


def test_a_run_on_unequal_classes_says_so_once_and_the_option_is_kept_with_the_run(lopsided, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        train_dcgan(data=str(lopsided), out=str(tmp_path / "plain"), steps=1, **TINY_DCGAN)
    notices = [r.message for r in caplog.records if "--balance-classes" in r.message]
    assert len(notices) == 1 and "circles: 1 pictures" in notices[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        train_dcgan(data=str(lopsided), out=str(tmp_path / "balanced"), steps=1, balance_classes=True, **TINY_DCGAN)
    assert not [r for r in caplog.records if "--balance-classes" in r.message]
    assert json.loads((tmp_path / "balanced" / "train_options.json").read_text())["balance_classes"] is True
