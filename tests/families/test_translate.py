"""The translation family (CycleGAN): the history pool, a tiny model trained and resumed exactly (pools
included), evaluated, exported, served with its direction input and called with `artforge translate`."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from artforge.errors import ArtforgeError
from artforge.evaluation.evaluate import evaluate
from artforge.families.translate.train import HistoryPool
from artforge.families.translate.client import direction_index

TINY_TRANSLATE = dict(domain_a="procedural:grid", domain_b="procedural:waves", size=32, pool=12, batch_size=2,
                      width=4, blocks=1, pool_size=3, sample_every=1000, checkpoint_every=1000, progress=False)


def test_the_history_pool_fills_then_swaps_about_half():
    pool, g = HistoryPool(4), torch.Generator().manual_seed(0)
    first = torch.arange(4.0)[:, None]
    assert torch.equal(pool.query(first, g), first) and len(pool.images) == 4  # filling: the new ones pass
    out = torch.cat([pool.query(torch.full((1, 1), 100.0 + i), g) for i in range(400)])
    old = (out < 100).sum().item() + ((out >= 100) & (out < 100 + torch.arange(400.0)[:, None])).sum().item()
    assert 120 < old < 280  # about half the answers are stored images, the rest the new one
    assert len(pool.images) == 4


def test_directions_by_letter_or_by_domain_name():
    assert direction_index("a2b", ["photos", "waves"]) == 0
    assert direction_index("waves2photos", ["photos", "waves"]) == 1
    with pytest.raises(ArtforgeError, match="not one of"):
        direction_index("sideways", ["photos", "waves"])


@pytest.fixture(scope="module")
def translate_run(tmp_path_factory):
    from artforge.families.translate.train import train_translate

    run = tmp_path_factory.mktemp("translate") / "run"
    train_translate(out=str(run), steps=4, **TINY_TRANSLATE)
    return run


def test_a_resumed_run_matches_an_uninterrupted_one_pools_included(translate_run, tmp_path):
    from artforge.checkpoint import load_checkpoint
    from artforge.families.translate.train import train_translate

    split = tmp_path / "split"
    train_translate(out=str(split), steps=2, **TINY_TRANSLATE)  # the pools (3 images) are full by step 2
    train_translate(out=str(split), steps=4, resume=True)
    a, b = load_checkpoint(translate_run), load_checkpoint(split)
    assert a.meta["domains"] == ["grid", "waves"] and set(k.split(".")[0] for k in a.weights) == {"a_to_b", "b_to_a"}
    assert all(torch.equal(a.weights[k], b.weights[k]) for k in a.weights)
    assert (translate_run / "samples" / "step_00000004.png").exists()


@pytest.fixture(scope="module")
def local_evaluation(translate_run, tmp_path_factory):
    """`artforge evaluate` of the run in-process: (its document, its folder)."""
    out = tmp_path_factory.mktemp("translate-eval")
    return evaluate(source=str(translate_run), out=str(out)), out


@pytest.mark.slow
def test_evaluate_measures_both_directions_against_the_target_domain(local_evaluation):
    document, folder = local_evaluation
    assert list(document["directions"]) == ["grid -> waves", "waves -> grid"]
    for row in document["directions"].values():
        assert row["translated"]["fd"] > 0 and row["untranslated"]["fd"] > 0 and row["cycle_l1_levels"] > 0
        assert "EfficientNet-Lite0" in row["translated"]["feature_space"]
    assert "| grid -> waves |" in (folder / "evaluate.md").read_text()


def test_export_serve_and_translate_both_ways_over_grpc(translate_run, local_evaluation, tmp_path, capsys):
    from artforge.cli import main
    from artforge.export.pipeline import export_checkpoint
    from artforge.registry import load_network
    from artforge.imaging import read_image, save_png, uint8_to_unit, unit_to_uint8
    from artforge.serving.server import Server

    result = export_checkpoint(translate_run, tmp_path / "repo", max_batch=4)
    assert result.name == "translate" and all(r.ok for r in result.parity)
    picture = np.random.default_rng(0).integers(0, 256, (21, 34, 3), np.uint8)
    save_png(picture, tmp_path / "in.png")
    net, _ = load_network(translate_run)
    x = uint8_to_unit(torch.from_numpy(picture)[None].permute(0, 3, 1, 2))
    with torch.no_grad():
        want = {"a2b": unit_to_uint8(net.a_to_b(x))[0].numpy(), "waves2grid": unit_to_uint8(net.b_to_a(x))[0].numpy()}
    with Server(tmp_path / "repo", grpc_port=0, http_port=0, metrics_port=0) as server:
        for direction, expected in want.items():
            out = tmp_path / f"{direction}.png"
            assert main(["translate", "--input", str(tmp_path / "in.png"), "--direction", direction, "--out", str(out),
                         "--url", server.grpc_url]) == 0
            assert np.abs(read_image(out).astype(int) - expected.astype(int)).max() <= 1  # the direction asked for
        assert main(["evaluate", "translate", "--url", server.grpc_url, "--run", str(translate_run),
                     "--out", str(tmp_path / "served")]) == 0
        served = json.loads((tmp_path / "served" / "evaluate.json").read_text())
        assert served["source"]["url"] == server.grpc_url
    local = local_evaluation[0]  # the same pictures, in-process
    for direction, row in local["directions"].items():  # pixels within a grey level: the measures nearly agree
        mine = served["directions"][direction]
        assert mine["translated"]["fd"] == pytest.approx(row["translated"]["fd"], rel=0.02)
        assert mine["cycle_l1_levels"] == pytest.approx(row["cycle_l1_levels"], abs=0.2)
