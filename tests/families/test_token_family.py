"""A model served as a loop, in one test file: a toy character model trained through the shared loop,
exported as one decoding step, served by Triton as a decoupled model and streamed over gRPC, one
response per token. The proof that the contract carries the poem and music families (docs/adding-a-family.md).

The family: "abc", which learns to continue a repeating alphabet from its last few characters.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from artforge.contract import DynamicDim, TensorSpec, TokenStream
from artforge.registry import Family, register
from artforge.registry import unregister
from artforge.options import option
from artforge.spec import ModelSpec
from artforge.training.distributed import init_distributed, step_generator
from artforge.training.loop import FamilyTrainer, run_training

NAME = "abc"
TEXT = "abcdefgh\n"


# ---- 1. the network and its config ----
@dataclass
class ABCConfig:
    alphabet: str = TEXT
    context: int = 3  # characters the network looks at
    width: int = 16


class ABCNet(nn.Module):
    """Tokens so far (B, L) -> logits of the next token (B, V), from the last `context` tokens."""

    def __init__(self, config: ABCConfig):
        super().__init__()
        self.config = config
        vocab = len(config.alphabet)
        self.embed = nn.Embedding(vocab + 1, config.width)  # id `vocab` pads prompts shorter than the context
        self.head = nn.Sequential(nn.Linear(config.context * config.width, 64), nn.ReLU(), nn.Linear(64, vocab))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        pad = torch.full((tokens.shape[0], self.config.context), len(self.config.alphabet), dtype=tokens.dtype)
        window = torch.cat([pad, tokens], dim=1)[:, -self.config.context:]
        return self.head(self.embed(window).flatten(1))


# ---- 2. the serving contract: the step network's tensors, and the stream clients see ----
class ABCSpec(ModelSpec):
    def __init__(self, config: ABCConfig, meta: dict, float_output: bool = False):
        super().__init__(family=NAME,
                         inputs=(TensorSpec("tokens", "int64", ("length",), "token ids so far"),),
                         outputs=(TensorSpec("logits", "float32", (len(config.alphabet),), "next-token logits"),),
                         dynamic_dims={"length": DynamicDim(1, 8, 64)}, unit="token",
                         stream=TokenStream("tokens", "logits", tuple(config.alphabet), max_context=64,
                                            max_new_tokens=200))
        self.config = config

    def serving_network(self, network: nn.Module) -> nn.Module:
        return network.eval()

    def sample_inputs(self, batch: int, seed: int, sizes: dict[str, int] | None = None) -> dict[str, np.ndarray]:
        length = (sizes or self.optimal_sizes())["length"]
        return {"tokens": np.random.default_rng(seed).integers(0, len(self.config.alphabet), (batch, length))}


FAMILY = Family(name=NAME, description="test family: continues a repeating alphabet, streamed token by token",
                config_cls=ABCConfig, build_network=ABCNet, make_spec=ABCSpec)


# ---- 3. training ----
@dataclass
class ABCOptions:
    out: str = option(help="run folder", required=True)
    steps: int = option(300, help="total steps")
    sample_every: int = option(300, help="samples every N steps")
    checkpoint_every: int = option(300, help="a checkpoint every N steps")
    keep: int = option(1, help="checkpoints to keep")
    resume: bool = option(False, help="continue", each_call=True)
    progress: bool = option(False, cli=False)


class ABCTrainer(FamilyTrainer):
    family = NAME

    def __init__(self, opts: ABCOptions, ctx):
        super().__init__(ABCConfig(), 32)
        self.opts = opts
        torch.manual_seed(0)
        self.net = ABCNet(self.config)
        self.optimizer = torch.optim.Adam(self.net.parameters(), 0.01)
        self.ids = torch.tensor([self.config.alphabet.index(c) for c in TEXT * 4])

    def state(self):
        return {"net": self.net, "optimizer": self.optimizer}

    def train_step(self, step: int) -> dict[str, float]:
        starts = torch.randint(0, len(TEXT), (32,), generator=step_generator(0, step))
        lengths = torch.randint(1, 6, (1,), generator=step_generator(1, step)).item()  # prompts of any length
        windows = torch.stack([self.ids[s:s + lengths + 1] for s in starts.tolist()])
        loss = nn.functional.cross_entropy(self.net(windows[:, :-1]), windows[:, -1])
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return {"loss": loss.item()}

    def write_samples(self, path: Path) -> None:
        path.with_suffix(".txt").write_text(greedy(self.net, "a", 9))

    def inference_weights(self):
        return self.net.state_dict()

    def checkpoint_facts(self):
        return {"training": dataclasses.asdict(self.opts)}


def greedy(net: ABCNet, prompt: str, count: int) -> str:
    alphabet, ids = net.config.alphabet, [net.config.alphabet.index(c) for c in prompt]
    with torch.no_grad():
        for _ in range(count):
            ids.append(int(net(torch.tensor([ids])).argmax()))
    return "".join(alphabet[i] for i in ids[len(prompt):])


# ---- the generic stages, none of which names the family ----
@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """Trained, exported (embedded runtime) and served; yields (run, server)."""
    from artforge.export.pipeline import export_checkpoint
    from artforge.serving.server import Server

    register(FAMILY)
    root = tmp_path_factory.mktemp("abc")
    opts = ABCOptions(out=str(root / "run"))
    run_training(ABCTrainer(opts, init_distributed("cpu")), opts, init_distributed("cpu"))
    result = export_checkpoint(root / "run", root / "repo", max_batch=4)
    assert all(r.ok for r in result.parity)  # the step network: ONNX Runtime vs PyTorch, lengths 1..64
    with Server(root / "repo", grpc_port=0, http_port=0, metrics_port=0) as server:
        yield root / "run", server
    unregister(NAME)


def test_greedy_stream_continues_the_alphabet_one_response_per_token(served):
    from artforge.serving.client import Client

    run, server = served
    with Client(server.grpc_url, timeout_s=30) as client:
        assert client.model(NAME).stream.vocab == tuple(TEXT)
        arrivals, pieces = [], []
        for piece in client.stream_text(NAME, "cde", max_tokens=12, temperature=0):
            arrivals.append(time.monotonic())
            pieces.append(piece)
    assert "".join(pieces) == "fgh\nabcdefgh"
    assert len(pieces) == 12  # one response per token, not one at the end


def test_same_seed_same_tokens_and_sampling_follows_the_settings(served):
    from artforge.serving.client import Client

    run, server = served
    with Client(server.grpc_url, timeout_s=30) as client:
        hot = dict(max_tokens=30, temperature=5.0, top_k=0)
        first = "".join(client.stream_text(NAME, "a", seed=7, **hot))
        again = "".join(client.stream_text(NAME, "a", seed=7, **hot))
        other = "".join(client.stream_text(NAME, "a", seed=8, **hot))
        top1 = "".join(client.stream_text(NAME, "a", seed=9, max_tokens=9, temperature=5.0, top_k=1))
    assert first == again and first != other  # a hot temperature wanders, the same way for one seed
    assert top1 == "bcdefgh\na"  # top_k=1 is greedy whatever the temperature


def test_bad_stream_requests_are_refused_and_infer_is_pointed_to_stream(served):
    from artforge.errors import ArtforgeError
    from artforge.serving.client import Client

    run, server = served
    with Client(server.grpc_url, timeout_s=30) as client:
        with pytest.raises(ArtforgeError, match="characters the model does not know: 'z'"):
            list(client.stream_text(NAME, "abz"))
        with pytest.raises(ArtforgeError, match="max_tokens.*above its maximum 200"):
            list(client.stream_text(NAME, "a", max_tokens=1000))
        with pytest.raises(ArtforgeError, match="use Client.stream"):
            client.infer(NAME, {"prompt": np.zeros((1, 2), np.int64)})
        # the server checks too: a raw request past the client's checks gets INVALID_ARG on the stream
        client.model(NAME).check_limits = lambda inputs: None
        bad = {"prompt": np.full((1, 2), 99, np.int64), "max_tokens": np.array([[2]], np.int32),
               "temperature": np.ones((1, 1), np.float32), "top_k": np.zeros((1, 1), np.int32),
               "top_p": np.ones((1, 1), np.float32), "seed": np.zeros((1, 1), np.int64)}
        with pytest.raises(ArtforgeError, match="prompt.*above its maximum"):
            list(client.stream(NAME, bad))
        assert "".join(client.stream_text(NAME, "a", max_tokens=3, temperature=0)) == "bcd"  # still serving


def test_leaving_a_stream_early_cancels_it_and_the_server_stays_healthy(served):
    from artforge.serving.client import Client

    run, server = served
    with Client(server.grpc_url, timeout_s=30) as client:
        for i, piece in enumerate(client.stream_text(NAME, "a", max_tokens=200, temperature=0)):
            if i == 2:
                break
        assert "".join(client.stream_text(NAME, "a", max_tokens=4, temperature=0)) == "bcde"
    assert server.check_health() == {}  # the health check streams to loop models


def test_benchmark_measures_first_token_and_tokens_per_s_through_the_generic_stage(served, tmp_path):
    from artforge.benchmarks.run import run_benchmark

    run, _ = served
    document = run_benchmark(checkpoint=str(run), out=str(tmp_path / "bench"), concurrency=[1, 2], requests=6,
                             prompt_length=4, max_tokens=10, progress=False)
    assert document["model"]["unit"] == "token"
    assert document["inprocess"]["onnxruntime"]["tokens"] == document["inprocess"]["pytorch"]["tokens"] == 10
    for point in document["triton"]:
        assert point["errors"] == 0 and point["requests"] == 6 and point["tokens"] == 60
        assert point["tokens_per_s"] == pytest.approx(point["tokens"] / point["seconds"])
        # whatever the noise, a stream's first token comes before the last stream ends, and the gaps between
        # one stream's 10 tokens fit in the point's time
        assert 0 < point["first_token_ms"]["p50"] <= point["first_token_ms"]["p99"] < point["seconds"] * 1000
        assert 9 * point["token_gap_ms"]["mean"] * 6 / point["concurrency"] <= point["seconds"] * 1000
    assert "first token p50 ms" in (tmp_path / "bench" / "bench.md").read_text()


def test_artforge_stream_prints_the_continuation(served, capsys):
    from artforge.cli import main

    run, server = served
    assert main(["stream", "--model", NAME, "--prompt", "ab", "--max-tokens", "5", "--temperature", "0",
                 "--url", server.grpc_url]) == 0
    assert capsys.readouterr().out == "abcdefg\n"
    assert main(["stream", "--model", NAME, "--prompt", "a!", "--url", server.grpc_url]) == 1
    assert "characters the model does not know: '!'" in capsys.readouterr().err


def test_a_stream_dropped_before_its_first_token_is_sent_again_once(served):
    from artforge.errors import ServerUnavailable
    from artforge.serving.client import Client

    run, server = served
    with Client(server.grpc_url, timeout_s=30) as client:
        real, calls = client._stream_once, []

        def drops_first(*args):
            calls.append(1)
            if len(calls) == 1:
                raise ServerUnavailable("streaming from abc failed on Triton: Socket closed")
            yield from real(*args)

        client._stream_once = drops_first
        assert "".join(client.stream_text(NAME, "a", max_tokens=3, temperature=0)) == "bcd" and len(calls) == 2

        def drops_after_a_token(*args):
            yield from list(real(*args))[:1]
            raise ServerUnavailable("streaming from abc failed on Triton: Socket closed")

        client._stream_once = drops_after_a_token  # a stream that had begun is not sent again
        with pytest.raises(ServerUnavailable):
            list(client.stream_text(NAME, "a", max_tokens=3, temperature=0))
