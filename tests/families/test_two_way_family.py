"""Two networks in one checkpoint, served behind one model with inputs of mixed kinds (an image and a
direction): the shape of the CycleGAN family (two generators), proved through the generic stages.

The family: "twoway", two 1x1 convolutions: A->B makes an image's negative, B->A swaps red and blue.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from artforge.contract import DynamicDim, TensorSpec
from artforge.registry import Family, register
from artforge.registry import unregister
from artforge.imaging import uint8_to_unit, unit_to_uint8
from artforge.options import option
from artforge.spec import ModelSpec
from artforge.training.distributed import init_distributed, step_generator
from artforge.training.loop import FamilyTrainer, run_training

NAME = "twoway"
SWAP = [2, 1, 0]


@dataclass
class TwoWayConfig:
    channels: int = 3


class TwoWayNet(nn.Module):
    """Both generators; the checkpoint holds a_to_b.* and b_to_a.*."""

    def __init__(self, config: TwoWayConfig):
        super().__init__()
        self.config = config
        self.a_to_b = nn.Conv2d(config.channels, config.channels, 1)
        self.b_to_a = nn.Conv2d(config.channels, config.channels, 1)


class TwoWayServing(nn.Module):
    def __init__(self, network: TwoWayNet):
        super().__init__()
        self.network = network

    def forward(self, image: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
        x = uint8_to_unit(image.permute(0, 3, 1, 2))
        # both directions run and the request's is kept: no data-dependent control flow in the graph
        out = torch.where(direction.view(-1, 1, 1, 1) == 0, self.network.a_to_b(x), self.network.b_to_a(x))
        return unit_to_uint8(out)


class TwoWaySpec(ModelSpec):
    def __init__(self, config: TwoWayConfig, meta: dict, float_output: bool = False):
        super().__init__(family=NAME,
                         inputs=(TensorSpec("image", "uint8", ("height", "width", 3), "picture, RGB, NHWC"),
                                 TensorSpec("direction", "int64", (1,), "0: A->B, 1: B->A", min_value=0,
                                            max_value=1)),
                         outputs=(TensorSpec("converted", "uint8", ("height", "width", 3), "the other domain"),),
                         dynamic_dims={"height": DynamicDim(4, 16, 64), "width": DynamicDim(4, 16, 64)},
                         metadata={"directions": ["A->B", "B->A"]})

    def serving_network(self, network: nn.Module) -> nn.Module:
        return TwoWayServing(network).eval()

    def sample_inputs(self, batch: int, seed: int, sizes: dict[str, int] | None = None) -> dict[str, np.ndarray]:
        sizes, rng = sizes or self.optimal_sizes(), np.random.default_rng(seed)
        return {"image": rng.integers(0, 256, (batch, sizes["height"], sizes["width"], 3), dtype=np.uint8),
                "direction": rng.integers(0, 2, (batch, 1))}


FAMILY = Family(name=NAME, description="test family: two generators in one checkpoint", config_cls=TwoWayConfig,
                build_network=TwoWayNet, make_spec=TwoWaySpec)


@dataclass
class TwoWayOptions:
    out: str = option(help="run folder", required=True)
    steps: int = option(200, help="total steps")
    sample_every: int = option(200, help="samples every N steps")
    checkpoint_every: int = option(200, help="a checkpoint every N steps")
    keep: int = option(1, help="checkpoints to keep")
    resume: bool = option(False, help="continue", each_call=True)
    progress: bool = option(False, cli=False)


class TwoWayTrainer(FamilyTrainer):
    family = NAME

    def __init__(self, opts: TwoWayOptions, ctx):
        super().__init__(TwoWayConfig(), 8)
        torch.manual_seed(0)
        self.net = TwoWayNet(self.config)
        self.optimizer = torch.optim.Adam(self.net.parameters(), 0.05)  # one optimiser over both networks

    def state(self):
        return {"net": self.net, "optimizer": self.optimizer}

    def train_step(self, step: int) -> dict[str, float]:
        images = torch.rand(8, 3, 8, 8, generator=step_generator(0, step)) * 2 - 1
        loss = (nn.functional.mse_loss(self.net.a_to_b(images), -images)
                + nn.functional.mse_loss(self.net.b_to_a(images), images[:, SWAP]))
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return {"loss": loss.item()}

    def write_samples(self, path: Path) -> None:
        pass  # nothing to look at

    def inference_weights(self):
        return self.net.state_dict()


@pytest.fixture(scope="module")
def twoway_run(tmp_path_factory):
    register(FAMILY)
    run = tmp_path_factory.mktemp("twoway") / "run"
    opts = TwoWayOptions(out=str(run))
    run_training(TwoWayTrainer(opts, init_distributed("cpu")), opts, init_distributed("cpu"))
    yield run
    unregister(NAME)


def test_one_checkpoint_holds_and_rebuilds_both_networks(twoway_run):
    from artforge.registry import load_network

    net, checkpoint = load_network(twoway_run, expect_family=NAME)
    assert sorted(checkpoint.weights) == ["a_to_b.bias", "a_to_b.weight", "b_to_a.bias", "b_to_a.weight"]
    assert torch.allclose(net.a_to_b.weight.reshape(3, 3), -torch.eye(3), atol=0.1)
    assert torch.allclose(net.b_to_a.weight.reshape(3, 3), torch.eye(3)[SWAP], atol=0.1)


def test_both_directions_are_exported_and_served_as_one_model_with_mixed_inputs(twoway_run, tmp_path):
    from artforge.errors import ArtforgeError
    from artforge.export.pipeline import export_checkpoint
    from artforge.serving.client import Client
    from artforge.serving.server import Server

    result = export_checkpoint(twoway_run, tmp_path / "repo", max_batch=4)
    assert all(r.ok for r in result.parity)
    picture = np.random.default_rng(4).integers(0, 256, (2, 9, 11, 3), dtype=np.uint8)
    with Server(tmp_path / "repo", grpc_port=0, http_port=0, metrics_port=0) as server, \
            Client(server.grpc_url) as client:
        assert client.model(NAME).metadata["directions"] == ["A->B", "B->A"]
        out = client.infer(NAME, {"image": picture, "direction": np.array([[0], [1]])})["converted"].astype(int)
        assert np.abs(out[0] - (255 - picture[0].astype(int))).mean() < 8  # A->B: the negative
        assert np.abs(out[1] - picture[1][..., SWAP].astype(int)).mean() < 8  # B->A: red and blue swapped
        with pytest.raises(ArtforgeError, match="direction.*above its maximum 1"):
            client.infer(NAME, {"image": picture[:1], "direction": np.array([[2]])})
