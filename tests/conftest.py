"""Shared fixtures: tiny data sets and tiny runs, made fresh by the tests themselves; and the `slow`
mark by what a test does, so that `make test-fast` cannot grow a server by accident."""
from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from artforge.training.synth import synthesize_dataset

# A DCGAN small enough to train a few steps in well under a second.
TINY_DCGAN = dict(size=32, batch_size=8, g_width=8, d_width=8, z_dim=16, sample_every=1000,
                  checkpoint_every=1000, progress=False)


@pytest.fixture(scope="session")
def art32(tmp_path_factory) -> Path:
    """5 styles x 6 procedural images of 32x32."""
    root = tmp_path_factory.mktemp("art32")
    synthesize_dataset(root, size=32, per_style=6, seed=1, progress=False)
    return root


@pytest.fixture(scope="session")
def dcgan_run(art32, tmp_path_factory) -> Path:
    """A tiny trained DCGAN run folder with one checkpoint (step 2)."""
    from artforge.families.dcgan.train import train_dcgan

    run = tmp_path_factory.mktemp("runs") / "dcgan"
    train_dcgan(data=str(art32), out=str(run), steps=2, seed=0, **TINY_DCGAN)
    return run


@pytest.fixture(scope="session")
def dcgan_repo(dcgan_run, tmp_path_factory) -> Path:
    """A Triton repository with the tiny DCGAN exported as 'dcgan' (embedded runtime, max batch 8)."""
    from artforge.export.pipeline import export_checkpoint

    repo = tmp_path_factory.mktemp("repo")
    export_checkpoint(dcgan_run, repo, max_batch=8, max_queue_delay_us=1000)
    return repo


# A diffusion model small enough to train a few steps in a second or two (16 px, two levels).
TINY_DIFFUSION = dict(size=16, width=16, levels=2, norm_groups=8, batch_size=8, sample_every=1000,
                      checkpoint_every=1000, progress=False)


@pytest.fixture(scope="session")
def diffusion_run(art32, tmp_path_factory) -> Path:
    """A tiny diffusion model trained 4 steps, with its diffusers folder."""
    pytest.importorskip("diffusers", reason="the diffusers extra (pip install -e '.[diffusers]')")
    from artforge.families.diffusion.train import train_diffusion

    run = tmp_path_factory.mktemp("runs") / "diffusion"
    train_diffusion(data=str(art32), out=str(run), steps=4, seed=0, diffusers_out=str(run / "diffusers"),
                    **TINY_DIFFUSION)
    return run


@pytest.fixture(scope="session")
def diffusion_server(diffusion_run, tmp_path_factory):
    """The tiny diffusion model served as 'diffusion' (up to 8 pictures stepping together)."""
    from artforge.export.pipeline import export_checkpoint
    from artforge.serving.server import Server

    repo = tmp_path_factory.mktemp("diffusion-repo")
    export_checkpoint(diffusion_run, repo, max_batch=8)
    with Server(repo, grpc_port=0, http_port=0, metrics_port=0) as server:
        yield server


@pytest.fixture(scope="session")
def triton(dcgan_repo):
    """A live Triton server on free ports, stopped at the end of the session whatever happens."""
    from artforge.serving.server import Server

    with Server(dcgan_repo, grpc_port=0, http_port=0, metrics_port=0) as server:
        yield server


@pytest.fixture(scope="session")
def style_run(tmp_path_factory):
    """A 2-style lite style-transfer checkpoint ('ink', 'mosaic') with distinct per-style parameters."""
    from artforge.checkpoint import save_checkpoint
    from artforge.families.style.network import StyleNetConfig, StyleTransferNet
    from tests.test_models_style import distinct_styles

    run = tmp_path_factory.mktemp("style-run")
    net = distinct_styles(StyleTransferNet(StyleNetConfig.preset("lite", 2)))
    save_checkpoint(run, family="style", config=net.config, step=1, weights=net.state_dict(),
                    extra={"styles": ["ink", "mosaic"]})
    return run, net


# What makes a test slow, read from what it uses: it starts Triton (directly, through a fixture or a
# benchmark), launches torchrun, or needs a run that trains many steps (poem_run, music_run). Tests slow
# for other reasons (running `artforge bench`, training, scoring in a feature space) carry
# @pytest.mark.slow themselves.
SLOW_FIXTURES = {"triton", "style_server", "served", "two_replicas", "poem_run", "music_run", "imported_server",
                 "diffusion_server", "studio_triton", "studio"}
SLOW_SOURCE = re.compile(r"\bServer\(|replica_servers\(|run_benchmark\(|torchrun")


def pytest_collection_modifyitems(items) -> None:
    for item in items:
        function = getattr(item, "function", None)
        source = inspect.getsource(function) if function else ""
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())) or SLOW_SOURCE.search(source):
            item.add_marker(pytest.mark.slow)
