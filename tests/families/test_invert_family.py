"""A whole model family in one test file, trained, exported, served and benchmarked through the
generic stages: the proof that a new family touches no generic file (docs/adding-a-family.md).

The family: "invert", a 1x1 convolution that learns to turn an image into its negative.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from artforge.contract import DynamicDim, TensorSpec
from artforge.registry import Family, register
from artforge.registry import unregister
from artforge.imaging import make_grid, save_png, uint8_to_unit, unit_to_uint8
from artforge.spec import ModelSpec
from artforge.options import Command, option
from artforge.training.distributed import init_distributed, step_generator
from artforge.training.run_options import resolve_options
from artforge.training.loop import FamilyTrainer, TrainCommand, run_training, train

NAME = "invert"


# ---- 1. the network and its config (the config travels with the checkpoint) ----
@dataclass
class InvertConfig:
    channels: int = 3


class InvertNet(nn.Module):
    def __init__(self, config: InvertConfig):
        super().__init__()
        self.config = config
        self.mix = nn.Conv2d(config.channels, config.channels, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) in [-1, 1] -> same
        return self.mix(images)


# ---- 2. the serving contract ----
class InvertServing(nn.Module):
    def __init__(self, network: nn.Module):
        super().__init__()
        self.network = network

    def forward(self, image: torch.Tensor) -> torch.Tensor:  # (B, H, W, 3) uint8 -> (B, H, W, 3) uint8
        return unit_to_uint8(self.network(uint8_to_unit(image.permute(0, 3, 1, 2))))


class InvertSpec(ModelSpec):
    def __init__(self, config: InvertConfig, meta: dict, float_output: bool = False):
        super().__init__(family=NAME,
                         inputs=(TensorSpec("image", "uint8", ("height", "width", 3), "picture, RGB, NHWC"),),
                         outputs=(TensorSpec("inverted", "uint8", ("height", "width", 3), "its negative"),),
                         dynamic_dims={"height": DynamicDim(4, 16, 64), "width": DynamicDim(4, 16, 64)})

    def serving_network(self, network: nn.Module) -> nn.Module:
        return InvertServing(network).eval()

    def sample_inputs(self, batch: int, seed: int, sizes: dict[str, int] | None = None) -> dict[str, np.ndarray]:
        sizes = sizes or self.optimal_sizes()
        shape = (batch, sizes["height"], sizes["width"], 3)
        return {"image": np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)}


FAMILY = Family(name=NAME, description="test family: an image's negative", config_cls=InvertConfig,
                build_network=InvertNet, make_spec=InvertSpec,
                trainer=f"{__name__}:COMMAND", client=f"{__name__}:VERB")  # below


# ---- 3. training: options, state, batches, step, samples ----
@dataclass
class InvertOptions:
    out: str = option(help="run folder", required=True)
    steps: int = option(150, help="total steps")
    batch_size: int = option(8, help="images a step")
    lr: float = option(0.05, help="Adam learning rate")
    seed: int = option(0, help="seeds initialisation and batches")
    sample_every: int = option(50, help="samples every N steps")
    checkpoint_every: int = option(50, help="a checkpoint every N steps")
    keep: int = option(2, help="checkpoints to keep")
    resume: bool = option(False, help="continue the run in --out", each_call=True)
    progress: bool = option(False, cli=False)


def train_invert(**options) -> Path:
    return train(InvertTrainer, resolve_options(options, InvertOptions, resumable={"steps", "resume", "out"}))


COMMAND = TrainCommand(InvertOptions, train_invert, help="train the invert test family",
                       description="Learn an image's negative.", examples="  artforge train invert --out runs/inv")


class InvertTrainer(FamilyTrainer):
    family = NAME

    def __init__(self, opts: InvertOptions, ctx):
        super().__init__(InvertConfig(), opts.batch_size)
        self.opts, self.ctx = opts, ctx
        torch.manual_seed(opts.seed)
        self.net = InvertNet(self.config)
        self.optimizer = torch.optim.Adam(self.net.parameters(), opts.lr)

    def state(self):
        return {"net": self.net, "optimizer": self.optimizer}

    def train_step(self, step: int) -> dict[str, float]:
        images = torch.rand(self.opts.batch_size, 3, 8, 8, generator=step_generator(self.opts.seed, step)) * 2 - 1
        loss = nn.functional.mse_loss(self.net(images), -images)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return {"loss": loss.item()}

    def write_samples(self, path: Path) -> None:
        with torch.no_grad():
            images = torch.linspace(-1, 1, 3 * 8 * 8).reshape(1, 3, 8, 8)
            pairs = unit_to_uint8(torch.cat([images, self.net(images)])).numpy()
            save_png(make_grid(pairs, 2), path.with_suffix(".png"))

    def inference_weights(self):
        return self.net.state_dict()

    def checkpoint_facts(self):
        return {"training": dataclasses.asdict(self.opts)}


# ---- 4. the family's own client command: `artforge invert-image` (in-process here, to stay short) ----
@dataclass(kw_only=True)
class InvertImageOptions:
    checkpoint: str = option(help="run or checkpoint folder", required=True)
    input: str = option(help="a picture", required=True)
    out: str = option(help="where its negative goes (.png)", required=True)


def run_verb(args: InvertImageOptions) -> None:
    from artforge.registry import load_network, spec_for
    from artforge.imaging import read_image

    network, checkpoint = load_network(args.checkpoint, expect_family=NAME)
    serving = spec_for(checkpoint).serving_network(network)
    with torch.no_grad():
        inverted = serving(torch.from_numpy(read_image(Path(args.input)).copy())[None])[0].numpy()
    save_png(inverted, Path(args.out))


VERB = Command("invert-image", help="an image's negative", description="Invert a picture with an invert model.",
               examples="  artforge invert-image --checkpoint runs/inv --input a.png --out b.png",
               options=InvertImageOptions, run=run_verb)


# ---- the generic stages, none of which names the family ----
@pytest.fixture(scope="module")
def invert_run(tmp_path_factory):
    register(FAMILY)
    run = tmp_path_factory.mktemp("invert") / "run"
    opts = InvertOptions(out=str(run))
    run_training(InvertTrainer(opts, init_distributed("cpu")), opts, init_distributed("cpu"))
    yield run
    unregister(NAME)


def test_the_family_is_listed_and_trains_through_the_shared_loop(invert_run):
    from artforge.cli import main
    from artforge.registry import families, load_network

    assert NAME in [f.name for f in families()]
    net, checkpoint = load_network(invert_run, expect_family=NAME)
    assert checkpoint.step == 150 and (invert_run / "samples" / "step_00000150.png").exists()
    weight = net.mix.weight.detach().reshape(3, 3)
    assert torch.allclose(weight, -torch.eye(3), atol=0.1)  # it learnt the negative
    assert main(["families"]) == 0


def test_artforge_train_invert_exists_and_resumes_exactly(invert_run, tmp_path, capsys):
    """The command line is generated too: `artforge train invert`, with --resume, from this file alone."""
    from artforge.checkpoint import load_checkpoint
    from artforge.cli import main

    split = tmp_path / "split"
    assert main(["train", "invert", "--out", str(split), "--steps", "100"]) == 0
    assert main(["train", "invert", "--out", str(split), "--steps", "150", "--resume"]) == 0
    a, b = load_checkpoint(invert_run), load_checkpoint(split)
    assert b.step == 150 and all(torch.equal(a.weights[k], b.weights[k]) for k in a.weights)
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "invert" in capsys.readouterr().out


def test_export_serve_and_infer_through_the_generic_stages(invert_run, tmp_path):
    from artforge.export.pipeline import export_checkpoint
    from artforge.serving.client import Client
    from artforge.serving.server import Server

    result = export_checkpoint(invert_run, tmp_path / "repo", max_batch=4)
    assert result.name == NAME and all(r.ok for r in result.parity)
    picture = np.random.default_rng(3).integers(0, 256, (1, 13, 21, 3), dtype=np.uint8)
    with (Server(tmp_path / "repo", grpc_port=0, http_port=0, metrics_port=0) as server,
          Client(server.grpc_url) as client):
        assert client.model(NAME).family == NAME
        inverted = client.infer(NAME, {"image": picture})["inverted"]
        assert inverted.shape == picture.shape
        assert np.abs(inverted.astype(int) - (255 - picture.astype(int))).mean() < 8


def test_benchmark_through_the_generic_stages(invert_run, tmp_path):
    from artforge.benchmarks.run import run_benchmark

    document = run_benchmark(checkpoint=str(invert_run), out=str(tmp_path / "bench"), concurrency=[1, 2],
                             batch_sizes=[1], requests=20, warmup=2, baseline_seconds=0.1, max_batch=4, progress=False)
    assert document["model"]["family"] == NAME
    assert all(p["errors"] == 0 and p["requests"] == 20 for p in document["triton"])
    assert (tmp_path / "bench" / "bench.md").exists()


def test_the_familys_own_client_command_is_on_the_command_line(invert_run, tmp_path):
    from artforge.cli import main

    picture = np.random.default_rng(5).integers(0, 256, (12, 10, 3), dtype=np.uint8)
    save_png(picture, tmp_path / "in.png")
    assert main(["invert-image", "--checkpoint", str(invert_run), "--input", str(tmp_path / "in.png"),
                 "--out", str(tmp_path / "out.png")]) == 0
    from artforge.imaging import read_image

    inverted = read_image(tmp_path / "out.png").astype(int)
    assert np.abs(inverted - (255 - picture.astype(int))).mean() < 8
