"""The StyleGAN2 family: modulation, truncation, mixing and noise on known cases; DiffAugment; a tiny
run trained, resumed, exported with parity, served, and called with `artforge generate`."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from artforge.families.stylegan.network import Generator, ModulatedConv2d, StyleGANConfig

TINY_STYLEGAN = dict(size=32, batch_size=8, channel_base=256, channel_max=32, z_dim=16, w_dim=16, sample_every=1000,
                     checkpoint_every=1000, progress=False)
TINY_CONFIG = StyleGANConfig(32, num_classes=3, z_dim=16, w_dim=16, channel_base=256, channel_max=32)


def inputs(config: StyleGANConfig, batch: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, config.z_dim, generator=g), torch.randint(config.num_classes, (batch,), generator=g),
            torch.randn(batch, config.noise_size, generator=g))


def test_config_counts_style_slots_and_noise():
    assert TINY_CONFIG.resolutions == [4, 8, 16, 32]
    assert TINY_CONFIG.num_ws == 11  # 4x4: conv + rgb; 8, 16, 32: two convs + rgb each
    assert TINY_CONFIG.noise_size == 16 + 2 * (64 + 256 + 1024)
    with pytest.raises(ValueError, match="16, 32, 64 or 128"):
        StyleGANConfig(48)


def test_reflect_padding_changes_only_the_border_and_old_configs_keep_zeros():
    from artforge.checkpoint import config_from_dict
    from artforge.families.stylegan.network import padded_conv2d

    x, weight = torch.randn(1, 2, 6, 6), torch.randn(3, 2, 3, 3)
    zeros, mirrored = padded_conv2d(x, weight, None, "zeros"), padded_conv2d(x, weight, None, "reflect")
    assert zeros.shape == mirrored.shape == (1, 3, 6, 6)
    assert torch.allclose(zeros[..., 1:-1, 1:-1], mirrored[..., 1:-1, 1:-1])
    assert not torch.allclose(zeros[..., 0, :], mirrored[..., 0, :])
    saved = {k: v for k, v in vars(TINY_CONFIG).items() if k != "padding"}  # a checkpoint from before the field
    assert config_from_dict(StyleGANConfig, saved, "old").padding == "zeros"
    with pytest.raises(ValueError, match="padding must be one of zeros, reflect"):
        StyleGANConfig(32, padding="circular")


def test_demodulation_makes_a_layer_blind_to_the_style_scale():
    torch.manual_seed(0)
    demodulated, plain = ModulatedConv2d(8, 4, 6, 3), ModulatedConv2d(8, 3, 6, 1, demodulate=False)
    x, w = torch.randn(2, 8, 5, 5), torch.randn(2, 6)
    before = demodulated(x, w), plain(x, w)
    with torch.no_grad():
        for layer in (demodulated, plain):  # styles x2
            layer.affine.weight.mul_(2)
            layer.affine.bias.mul_(2)
    assert torch.allclose(demodulated(x, w), before[0], atol=1e-5)
    assert torch.allclose(plain(x, w), before[1] * 2, atol=1e-5)


def test_truncation_mixing_and_explicit_noise():
    torch.manual_seed(0)
    G = Generator(TINY_CONFIG).eval()
    with torch.no_grad():
        for layer in G.synthesis.layers:
            layer.noise_strength.fill_(0.5)
        z, labels, noise = inputs(TINY_CONFIG, 4, 1)
        labels = torch.zeros(4, dtype=torch.long)
        G.mapping.w_avg.normal_()
        same_noise = noise[:1].expand(4, -1)
        at_centre = G(z, labels, same_noise, torch.zeros(4))
        assert torch.allclose(at_centre[0], at_centre[1], atol=1e-5)  # psi 0: the style's centre for any z
        untruncated = G(z, labels, same_noise, torch.ones(4))
        assert not torch.allclose(untruncated[0], untruncated[1])
        assert torch.equal(G(z, labels, noise), G(z, labels, noise))  # fixed noise, fixed image
        assert not torch.allclose(G(z, labels, noise), G(z, labels, noise.flip(1)))
        z2 = torch.randn(4, TINY_CONFIG.z_dim)
        none, every = torch.full((4,), TINY_CONFIG.num_ws), torch.zeros(4, dtype=torch.long)
        assert torch.equal(G(z, labels, noise, None, z2, none), G(z, labels, noise))
        assert torch.equal(G(z, labels, noise, None, z2, every), G(z2, labels, noise))
        mixed = G(z, labels, noise, None, z2, torch.full((4,), 5))
        assert not torch.allclose(mixed, G(z, labels, noise)) and not torch.allclose(mixed, G(z2, labels, noise))


@pytest.fixture(scope="module")
def stylegan_run(art32, tmp_path_factory):
    from artforge.families.stylegan.train import train_stylegan

    run = tmp_path_factory.mktemp("stylegan") / "run"
    train_stylegan(data=str(art32), out=str(run), steps=4, **TINY_STYLEGAN)
    return run


def test_training_resumes_exactly_and_sets_the_style_centres(stylegan_run, art32, tmp_path):
    from artforge.checkpoint import load_checkpoint
    from artforge.families.stylegan.train import train_stylegan

    records = [json.loads(line) for line in (stylegan_run / "log.jsonl").read_text().splitlines()]
    assert "r1" in records[0] and all(np.isfinite(r["loss_d"]) for r in records)
    options = json.loads((stylegan_run / "train_options.json").read_text())
    assert options["r1_gamma"] == pytest.approx(0.0002 * 32 ** 2 / 8)  # the heuristic, saved filled in
    checkpoint = load_checkpoint(stylegan_run)
    assert checkpoint.meta["classes"] == ["circles", "grid", "splatter", "stripes", "waves"]
    centres = checkpoint.weights["mapping.w_avg"]
    assert centres.shape == (5, 16) and centres.abs().sum() > 0 and not torch.equal(centres[0], centres[1])
    split = tmp_path / "split"
    train_stylegan(data=str(art32), out=str(split), steps=2, **TINY_STYLEGAN)
    train_stylegan(out=str(split), steps=4, resume=True)
    resumed = load_checkpoint(split)
    assert all(torch.equal(checkpoint.weights[k], resumed.weights[k]) for k in checkpoint.weights)


def test_eval_every_measures_the_average_generator_from_the_untrained_start(art32, tmp_path):
    from artforge.families.stylegan.train import train_stylegan

    run = tmp_path / "run"
    train_stylegan(data=str(art32), out=str(run), steps=2, eval_every=2, eval_count=8, **TINY_STYLEGAN)
    measured = [r for r in map(json.loads, (run / "log.jsonl").read_text().splitlines()) if "fd" in r]
    assert [r["step"] for r in measured] == [0, 2] and all(r["fd"] > 0 for r in measured)


def test_without_augmentation_the_run_differs(art32, stylegan_run, tmp_path):
    from artforge.checkpoint import load_checkpoint
    from artforge.families.stylegan.train import train_stylegan

    plain = load_checkpoint(train_stylegan(data=str(art32), out=str(tmp_path / "plain"), steps=4, augment="none",
                                           **TINY_STYLEGAN))
    augmented = load_checkpoint(stylegan_run)
    assert not torch.equal(plain.weights["synthesis.const"], augmented.weights["synthesis.const"])


def test_the_auxiliary_classifier_is_trained_on_real_pictures_and_steers_the_generator(art32, tmp_path):
    from safetensors.torch import load_file

    from artforge.families.stylegan.train import train_stylegan

    def run(name, **options):
        last = train_stylegan(data=str(art32), out=str(tmp_path / name), steps=2, **{**TINY_STYLEGAN, **options})
        return load_file(str(last / "model.safetensors")), load_file(str(last / "state.safetensors"))

    (heard, state), (deaf, _) = run("acgan", conditioning="acgan"), run("deaf", conditioning="acgan", class_weight=0)
    assert any(".D.classify." in key for key in state) and not any(".D.project." in key for key in state)
    log = [json.loads(line) for line in (tmp_path / "acgan" / "log.jsonl").read_text().splitlines()]
    assert all(0 <= r["d_class_real"] <= 1 and 0 <= r["d_class_fake"] <= 1 for r in log)
    assert not torch.equal(heard["synthesis.const"], deaf["synthesis.const"])  # the class loss changed the generator


def test_export_serve_and_generate_with_truncation_and_a_latent_walk(stylegan_run, art32, tmp_path, capsys):
    from artforge.cli import main
    from artforge.errors import ArtforgeError
    from artforge.export.pipeline import export_checkpoint
    from artforge.families.generate import generate
    from artforge.serving.generators import local_generator, remote_generator
    from artforge.imaging import read_image
    from artforge.serving.client import Client
    from artforge.serving.server import Server

    result = export_checkpoint(stylegan_run, tmp_path / "repo", max_batch=4)
    assert result.name == "stylegan" and all(r.ok for r in result.parity)
    local = local_generator(stylegan_run)
    with Server(tmp_path / "repo", grpc_port=0, http_port=0, metrics_port=0) as server:
        with Client(server.grpc_url) as client:
            remote = remote_generator(client, "stylegan")
            for options in ({}, {"truncation": 0.5}, {"mix_from": 3}):
                served = generate(remote, 6, seed=4, label="waves", controls=options)  # 6 > max batch 4
                mine = generate(local, 6, seed=4, label="waves", controls=options)
                assert served.shape == (6, 32, 32, 3) and np.abs(served.astype(int) - mine.astype(int)).max() <= 1
            assert not np.array_equal(generate(remote, 6, seed=4, label="waves", controls={"truncation": 0.0}),
                                      served)
            with pytest.raises(ArtforgeError, match="truncation"):
                client.infer("stylegan", {**local_request(local), "truncation": np.full((1, 1), 3.0, np.float32)})
        url = ["--url", server.grpc_url, "--model", "stylegan"]
        assert main(["generate", *url, "--truncation", "0.7", "--style", "1", "--count", "4",
                     "--out", str(tmp_path / "grid.png")]) == 0
        assert read_image(tmp_path / "grid.png").shape[1] > 4 * 32
        assert main(["generate", *url, "--interpolate", "8", "--walk-points", "4", "--out",
                     str(tmp_path / "walk.gif")]) == 0
        with Image.open(tmp_path / "walk.gif") as gif:
            assert gif.n_frames == 8 and gif.size == (128, 128)  # 32 px shown 4x
        capsys.readouterr()
        assert main(["generate", *url, "--interpolate", "8", "--out", str(tmp_path / "walk.png")]) != 0
        assert "must end in .gif" in capsys.readouterr().err
        assert main(["evaluate", "stylegan", "--url", server.grpc_url, "--data", str(art32), "--count", "16",
                     "--out", str(tmp_path / "eval")]) == 0  # the controls at their defaults, not drawn as noise
    assert json.loads((tmp_path / "eval" / "evaluate.json").read_text())["quality"]["generated"] == 16


def local_request(generator) -> dict:
    from artforge.generation import generation_request

    return generation_request(generator.inputs, generator.metadata, generator.limits, 1, 0)


@pytest.mark.slow
def test_two_process_torchrun_keeps_the_processes_in_step(art32, tmp_path):
    """Gradients averaged by hand (R1 rules out DDP); before writing, the trainer checks that both
    processes hold the same weights and fails if they drifted apart."""
    run = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1", "GLOO_SOCKET_IFNAME": "lo"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "artforge", "train", "stylegan", "--data", str(art32), "--out", str(run), "--steps", "2",
           "--batch-size", "8", "--channel-base", "256", "--channel-max", "32", "--z-dim", "16", "--w-dim", "16",
           "--quiet", "--device", "cpu"]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    assert len((run / "log.jsonl").read_text().splitlines()) == 2


def test_a_mixing_grid_shows_the_sources_and_mixes_only_the_layers_asked(stylegan_run):
    from artforge.errors import ArtforgeError
    from artforge.families.generate import generate, mixing_grid
    from artforge.serving.generators import local_generator

    model = local_generator(stylegan_run)
    slots = model.limits["mix_from"]["max"]
    sources = generate(model, 5, 3, "waves")  # 2 row sources, then 3 column sources
    late, early = (mixing_grid(model, 2, 3, 3, layer, "waves") for layer in (slots - 1, 0))
    for grid in (late, early):  # 3 rows of 4: a blank corner, the column sources; then a row source, its mixes
        assert grid.shape == (12, 32, 32, 3) and (grid[0] == 255).all()
        np.testing.assert_array_equal(grid[1:4], sources[2:])
        np.testing.assert_array_equal(grid[[4, 8]], sources[:2])
    cells = [(r, c) for r in range(2) for c in range(3)]
    # mixed from the last layer (the last colour pass) a cell stays near its row; from the first, the column's
    late_gap = np.mean([np.abs(late[4 * r + 4 + c + 1].astype(int) - sources[r]).mean() for r, c in cells])
    early_gap = np.mean([np.abs(early[4 * r + 4 + c + 1].astype(int) - sources[r]).mean() for r, c in cells])
    assert late_gap < early_gap
    with pytest.raises(ArtforgeError, match="a layer 0 to"):
        mixing_grid(model, 2, 3, 3, slots, "waves")
