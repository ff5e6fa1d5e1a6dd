"""The critic family: its pieces on known cases, then a tiny critic trained, resumed, exported,
served on a real Triton server and asked over gRPC with `artforge critique`."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from artforge.families.critic.network import CriticConfig, CriticNet, fit_ood_statistics
from artforge.families.critic.train import (auroc, augment, balanced_draw, classification_report, held_out_split,
                                            index_by_label)
from tests.served import assert_served_matches, in_process

# 32 px procedural art, a 64 px network input, a few steps: seconds on 2 cores
TINY_CRITIC = dict(per_style=8, size=32, input_size=64, head_steps=2, batch_size=8, sample_every=1000,
                   checkpoint_every=1000, progress=False)


def test_ood_statistics_score_a_far_point_above_the_training_classes():
    critic = CriticNet(CriticConfig(num_classes=2, input_size=32))
    g = torch.Generator().manual_seed(0)
    centres = torch.zeros(2, 1280)
    centres[0, :10], centres[1, 10:20] = 5.0, 5.0
    labels = torch.arange(2).repeat_interleave(300)
    embeddings = centres[labels] + torch.randn(600, 1280, generator=g) * 0.5
    fit_ood_statistics(critic, embeddings, labels)
    assert torch.allclose(critic.class_means, centres, atol=0.1)
    near = critic.ood_score(centres + torch.randn(2, 1280, generator=g) * 0.5)
    far = critic.ood_score(torch.full((1, 1280), 3.0))
    assert far.item() > 3 * near.max().item()


def test_any_picture_size_gives_the_same_outputs_shape():
    critic = CriticNet(CriticConfig(num_classes=3, input_size=48)).eval()
    for height, width in ((16, 16), (90, 31)):
        logits, embedding = critic(torch.rand(2, 3, height, width))
        assert logits.shape == (2, 3) and embedding.shape == (2, 1280)


def test_the_held_out_split_is_stratified_disjoint_and_fixed():
    labels = torch.tensor([0] * 10 + [1] * 5 + [2] * 1)
    train, held = held_out_split(labels, 0.2, seed=3)
    assert set(train.tolist()).isdisjoint(held.tolist()) and len(train) + len(held) == 16
    assert torch.bincount(labels[held], minlength=3).tolist() == [2, 1, 0]  # a one-image label stays in training
    again, _ = held_out_split(labels, 0.2, seed=3)
    assert torch.equal(train, again)


def test_batches_are_class_balanced_on_skewed_data():
    labels = torch.tensor([0] * 95 + [1] * 5)
    by_label = index_by_label(labels, torch.arange(100), 2)
    drawn, index = balanced_draw(by_label, 4000, torch.Generator().manual_seed(1))
    assert torch.equal(labels[index], drawn)
    assert 0.45 < drawn.float().mean().item() < 0.55  # 5% of the data, half of the batches


def test_augmentation_is_seeded_and_keeps_images_in_range():
    images = torch.rand(6, 3, 32, 32)
    a = augment(images, torch.Generator().manual_seed(2))
    b = augment(images, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and a.shape == images.shape and 0 <= a.min() and a.max() <= 1
    assert not torch.allclose(a, images, atol=0.05)


def test_report_and_auroc_on_known_answers():
    report = classification_report(torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1, 1, 1]), ["a", "b"])
    assert report["confusion_matrix"] == [[1, 1], [0, 2]] and report["accuracy"] == 0.75
    assert report["per_label_accuracy"] == {"a": 0.5, "b": 1.0}
    assert auroc(torch.tensor([1.0, 2.0]), torch.tensor([3.0, 4.0])) == 1.0
    assert auroc(torch.tensor([1.0, 2.0]), torch.tensor([2.0, 0.0])) == 0.375  # 1 pair above, 1 tie of 4


@pytest.fixture(scope="module")
def critic_run(tmp_path_factory):
    from artforge.families.critic.train import train_critic

    run = tmp_path_factory.mktemp("critic") / "run"
    train_critic(out=str(run), steps=4, **TINY_CRITIC)
    return run


def test_training_writes_the_held_out_measurements(critic_run):
    from artforge.checkpoint import load_checkpoint

    report = json.loads((critic_run / "held_out.json").read_text())
    assert report["labels"] == ["circles", "grid", "splatter", "stripes", "waves"]
    assert np.array(report["confusion_matrix"]).sum() == report["images"]["held_out"] == 10  # 2 of each 8
    assert report["images"]["trained_on"] == 30 and report["ood_threshold"] > 0
    assert (critic_run / "confusion.png").stat().st_size > 1000
    checkpoint = load_checkpoint(critic_run)
    assert checkpoint.meta["classes"] == report["labels"] and checkpoint.meta["ood_threshold"] > 0
    assert checkpoint.weights["precision"].shape == (1280, 1280)  # the OOD statistics travel with the weights
    assert not torch.equal(checkpoint.weights["class_means"], torch.zeros(5, 1280))


def test_a_resumed_run_matches_an_uninterrupted_one(critic_run, tmp_path):
    from artforge.checkpoint import load_checkpoint
    from artforge.families.critic.train import train_critic

    split = tmp_path / "split"
    data = str(critic_run / "data")
    train_critic(out=str(split), data=data, steps=3, **TINY_CRITIC)  # stops inside the fine-tuning phase
    train_critic(out=str(split), steps=4, resume=True)
    a, b = load_checkpoint(critic_run), load_checkpoint(split)
    assert b.step == 4 and all(torch.equal(a.weights[k], b.weights[k]) for k in a.weights)


def test_export_serve_and_critique_over_grpc(critic_run, tmp_path, capsys):
    from artforge.cli import main
    from artforge.export.pipeline import export_checkpoint
    from artforge.imaging import save_png
    from artforge.serving.server import Server

    result = export_checkpoint(critic_run, tmp_path / "repo", max_batch=4)
    assert result.name == "critic" and all(r.ok for r in result.parity)
    pictures = tmp_path / "pictures"
    pictures.mkdir()
    for name in ("grid", "waves"):
        save_png(np.asarray(__import__("PIL.Image").Image.open(next((critic_run / "data" / name).iterdir()))),
                 pictures / f"{name}.png")
    save_png(np.random.default_rng(0).integers(0, 256, (300, 41, 3), np.uint8), pictures / "noise.png")
    with Server(tmp_path / "repo", grpc_port=0, http_port=0, metrics_port=0) as server:
        url = ["--url", server.grpc_url]
        capsys.readouterr()
        assert main(["critique", "--input", str(pictures), "--top", "2", "--json",
                     "--embeddings", str(tmp_path / "e.npz"), *url]) == 0
        verdicts = json.loads(capsys.readouterr().out)
        assert [v["path"].split("/")[-1] for v in verdicts] == ["grid.png", "noise.png", "waves.png"]
        saved = np.load(tmp_path / "e.npz")
        assert len(saved["paths"]) == 3
        labels = ["circles", "grid", "splatter", "stripes", "waves"]
        for v, embedding in zip(verdicts, saved["embeddings"]):  # what the checkpoint says of the same picture
            picture = np.asarray(__import__("PIL.Image").Image.open(v["path"]).convert("RGB"))[None]
            want = in_process(critic_run, {"image": picture})
            ranked = np.argsort(-want["probabilities"][0], kind="stable")[:2]
            assert [t["label"] for t in v["top"]] == [labels[i] for i in ranked]
            assert [t["probability"] for t in v["top"]] == pytest.approx(want["probabilities"][0][ranked], abs=1e-3)
            assert v["ood_score"] == pytest.approx(float(want["ood_score"][0, 0]), rel=1e-3, abs=1e-5)
            assert_served_matches(critic_run, {"image": picture}, {"embedding": embedding[None]})
        assert main(["critique", "--input", str(pictures / "grid.png"), *url]) == 0
        line = capsys.readouterr().out
        assert line.startswith(f"{pictures / 'grid.png'}: ") and "| ood " in line and "%" in line
        save_png(np.zeros((8, 8, 3), np.uint8), tmp_path / "tiny.png")
        assert main(["critique", "--input", str(tmp_path / "tiny.png"), *url]) != 0
        assert "tiny.png is 8x8; the model takes 16-2048" in capsys.readouterr().err
        assert main(["critique", "--model", "nope", "--input", str(pictures), *url]) != 0


def test_the_critic_judges_generated_classes_like_real_ones(critic_run, dcgan_run, art32, tmp_path):
    """Real images passed off as generated ones must score exactly what the real ones score."""
    from artforge.evaluation.evaluate import Generated, evaluate, real_images
    from artforge.evaluation.judge import class_accuracy

    real, labels, names = real_images(str(art32), 32, 30, seed=0)
    as_generated = Generated(real, labels, names, {"family": "test"})
    judged = class_accuracy(str(critic_run), "", as_generated, real, labels, names)
    assert judged["generated_accuracy"] == judged["real_accuracy"]
    assert all(row["generated"] == row["real"] and row["generated_count"] == 6 for row in judged["per_class"].values())
    document = evaluate(source=str(dcgan_run), data=str(art32), count=16, critic=str(critic_run),
                        out=str(tmp_path / "eval"))
    assert list(document["critic"]["per_class"]) == names and document["critic"]["unknown_classes"] == []
    assert sum(row["generated_count"] for row in document["critic"]["per_class"].values()) == 16
    assert "| **all** |" in (tmp_path / "eval" / "evaluate.md").read_text()
