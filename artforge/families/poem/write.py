"""`artforge write`: a poem from a served poem model, printed character by character as Triton streams
it; or, with --run, written in-process from a checkpoint (no server)."""
from __future__ import annotations

import argparse
import sys

from artforge.options import ClientVerb


def add_arguments(p: argparse.ArgumentParser) -> None:
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--model", help="poem model name on the server (served: streamed over gRPC)")
    where.add_argument("--run", help="a run or checkpoint folder: write in-process with PyTorch instead")
    p.add_argument("--prompt", default="", help="how the poem begins (default: from nothing)")
    p.add_argument("--max-tokens", type=int, default=200, help="most characters to write; the poem may end sooner")
    p.add_argument("--temperature", type=float, default=0.8, help="0: always the likeliest character; higher: bolder")
    p.add_argument("--top-p", type=float, default=0.9, help="sample among the likeliest characters whose "
                                                             "probability reaches p (1: all)")
    p.add_argument("--top-k", type=int, default=0, help="sample among the k likeliest characters (0: all)")
    p.add_argument("--seed", type=int, default=0, help="same seed, same poem")
    p.add_argument("--count", type=int, default=1, help="poems to write (seeds SEED, SEED+1, ...)")
    p.add_argument("--url", default="127.0.0.1:8001", help="Triton gRPC address")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for any one character")


def run(args: argparse.Namespace) -> None:
    from artforge.errors import ArtforgeError

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


def pieces(args: argparse.Namespace, seed: int):
    """The poem's text after the prompt, a character at a time."""
    if args.model:
        from artforge.serving.client import Client

        with Client(args.url, timeout_s=args.timeout) as client:
            yield from client.stream_text(args.model, args.prompt, args.max_tokens, args.temperature, args.top_k,
                                          seed, args.top_p)
        return
    from artforge.registry import load_network
    from artforge.families.poem.train import write_poems

    lm, checkpoint = load_network(args.run, expect_family="poem")
    poem = write_poems(lm, checkpoint_config(checkpoint), 1, seed, args.prompt, args.max_tokens, args.temperature,
                       args.top_p, args.top_k)[0]
    yield from poem[len(args.prompt):]


def checkpoint_config(checkpoint):
    from artforge.checkpoint import config_from_dict
    from artforge.families.poem import PoemConfig

    return config_from_dict(PoemConfig, checkpoint.meta["config"], str(checkpoint.path))


VERB = ClientVerb(
    "write", help="write a poem with a poem model, streamed from Triton as it is written",
    description="Continue a prompt (or start from nothing) with a poem model served on Triton, printing each\n"
                "character the moment the server makes it; the poem ends when the model ends it or at\n"
                "--max-tokens. The same --seed gives the same poem. --run writes in-process from a checkpoint.",
    examples="  artforge write --model poem --prompt 春 --max-tokens 64\n"
             "  artforge write --model poem --prompt 床前 --temperature 0.7 --seed 3 --count 4\n"
             "  artforge write --run runs/poem --prompt 'Shall I' --top-p 0.95",
    add_arguments=add_arguments, run=run)
