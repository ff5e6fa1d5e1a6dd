"""`artforge write`: a poem from a served poem model, printed character by character as Triton streams
it; or, with --run, written in-process from a checkpoint (no server)."""
from __future__ import annotations

import sys
from dataclasses import dataclass

from artforge.checkpoint import config_from_dict
from artforge.errors import ArtforgeError
from artforge.families.poem import PoemConfig
from artforge.families.poem.train import write_poems
from artforge.options import Command, Sampling, ServerAddress, option, with_defaults
from artforge.registry import load_network
from artforge.serving.client import Client


@dataclass(kw_only=True)
@with_defaults(temperature=0.8, top_p=0.9)
class WriteOptions(ServerAddress, Sampling):
    model: str | None = option(None, help="poem model name on the server (served: streamed over gRPC)", one_of="where")
    run: str | None = option(None, help="a run or checkpoint folder: write in-process with PyTorch instead",
                             one_of="where")
    prompt: str = option("", help="how the poem begins (default: from nothing)")
    max_tokens: int = option(200, help="most characters to write; the poem may end sooner")
    count: int = option(1, help="poems to write (seeds SEED, SEED+1, ...)")


def run(args: WriteOptions) -> None:
    if args.count < 1 or args.max_tokens < 1:
        raise ArtforgeError("--count and --max-tokens must be at least 1")
    for i in range(args.count):
        if i:
            print()
        print(args.prompt, end="", flush=True)
        for piece in pieces(args, args.seed + i):
            print(piece, end="", flush=True)
        print()
    sys.stdout.flush()


def pieces(args: WriteOptions, seed: int):
    """The poem's text after the prompt, a character at a time."""
    if args.model:
        with Client(args.url, timeout_s=args.timeout) as client:
            yield from client.stream_text(args.model, args.prompt, args.max_tokens, args.temperature, args.top_k,
                                          seed, args.top_p)
        return

    lm, checkpoint = load_network(args.run, expect_family="poem")
    poem = write_poems(lm, checkpoint_config(checkpoint), 1, seed, args.prompt, args.max_tokens, args.temperature,
                       args.top_p, args.top_k)[0]
    yield from poem[len(args.prompt):]


def checkpoint_config(checkpoint):
    return config_from_dict(PoemConfig, checkpoint.meta["config"], str(checkpoint.path))


VERB = Command(
    "write", help="write a poem with a poem model, streamed from Triton as it is written",
    description="Continue a prompt (or start from nothing) with a poem model served on Triton, printing each\n"
                "character the moment the server makes it; the poem ends when the model ends it or at\n"
                "--max-tokens. The same --seed gives the same poem. --run writes in-process from a checkpoint.",
    examples="  artforge write --model poem --prompt 春 --max-tokens 64\n"
             "  artforge write --model poem --prompt 床前 --temperature 0.7 --seed 3 --count 4\n"
             "  artforge write --run runs/poem --prompt 'Shall I' --top-p 0.95",
    options=WriteOptions, run=run)
