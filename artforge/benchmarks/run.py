"""`artforge bench`: Triton end-to-end vs in-process PyTorch and ONNX Runtime, in one run.

    run_benchmark(checkpoint="runs/dcgan", out="bench/")

exports the checkpoint into a temporary repository twice (dynamic batching on, and off), starts
a Triton server on free ports, sweeps client concurrency x request batch, measures the
in-process baselines on the same machine, and writes bench.json, bench.md and bench.png.
"""
from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from artforge.benchmarks.ci import add_to_job_summary, append_history, write_junit
from artforge.benchmarks.load import measure_open_loop, measure_point, per_s
from artforge.benchmarks.perf_analyzer import PerfAnalyzer, find_perf_analyzer, write_input_data
from artforge.benchmarks.measure import (
    count_flops,
    latency_summary,
    machine_facts,
    matmul_peak_gflops,
    time_calls,
    time_interleaved,
)
from artforge.benchmarks.replicas import run_replica_benchmark
from artforge.benchmarks.report import (
    BASELINE_TOLERANCE,
    baseline_document,
    baseline_problems,
    check_baseline_fits,
    combine_trials,
    compute_ratios,
    errors_seen,
    ratio_verdicts,
    require_baseline_file,
    write_reports,
)
from artforge.benchmarks.served import run_served_benchmark
from artforge.benchmarks.sampling import run_sampling_benchmark
from artforge.benchmarks.stream import run_stream_benchmark
from artforge.benchmarks.variants import measure_variants
from artforge.checkpoint import CheckpointError, config_from_dict, load_checkpoint
from artforge.errors import ArtforgeError
from artforge.export.parity import onnx_session
from artforge.export.pipeline import export_checkpoint
from artforge.files import atomic_write_text
from artforge.options import Command, int_list, option
from artforge.registry import get_family, load_network, spec_for
from artforge.serving.client import Client
from artforge.serving.openvino_session import OpenVinoSession
from artforge.serving.repository_config import config_text, parse_config
from artforge.serving.server import Server

log = logging.getLogger(__name__)
NO_BATCHING_SUFFIX = "-nobatch"
NO_COMPUTE_SUFFIX = "-nocompute"  # the same model answering from memory: the serving path alone
TRIVIAL_SUFFIX = "-trivial"  # the backend's floor: a model.py that reads the inputs and answers zeros


@dataclass
class BenchOptions:
    """What `artforge bench` measures; each field is also its command-line flag (artforge.options)."""

    checkpoint: str = option("", help="checkpoint folder or run folder; leave it out to measure a model already served "
                                      "(--url and --model), whoever exported it", positional=True)
    out: str = option("bench", help="folder for bench.json, bench.md, bench.png")
    concurrency: list[int] = option(help="client concurrency sweep", parse=int_list,
                                    default_factory=lambda: [1, 2, 4, 8, 16])
    batch_sizes: list[int] = option(help="request batch sizes", parse=int_list, default_factory=lambda: [1, 8])
    requests: int = option(200, help="requests per sweep point, after the warm-up")
    warmup: int = option(20, help="warm-up requests per sweep point")
    baseline_seconds: float = option(2.0, help="seconds per in-process measurement")
    max_batch: int = option(64, help="Triton max batch size")
    threads: int = option(0, help="ONNX Runtime threads, in-process and in Triton alike (0: all cores)")
    cpu_runtime: str = option("onnxruntime", help="what runs the model inside Triton (artforge export --cpu-runtime): "
                                                  "onnxruntime, or openvino, then also timed in-process",
                              choices=["onnxruntime", "openvino"])
    precision: str = option("fp32", help="with --cpu-runtime openvino: its inference precision (fp32, bf16, fp16)")
    sizes: list[int] = option(help="models with dynamic sizes: square sizes for frames/s", parse=int_list,
                              default_factory=list)
    prompt_length: int = option(16, help="token models: prompt tokens per stream")
    max_tokens: int = option(64, help="token models: tokens asked for per stream")
    steps: int = option(16, help="diffusion models: sampler steps per picture (a preview every steps/4)")
    peer: str = option("", help="models with dynamic sizes: also time this public peer in-process at each of --sizes "
                                "(style: magenta, needs the peer extra) and write Triton's frames/s over the peer's")
    variants: bool = option(False, help="also measure an int8 ONNX Runtime variant: latency and quality cost "
                                        "in grey levels")
    replicas: int = option(0, help="start this many Triton replicas and measure 1, 2 .. N of them behind one "
                                   "client, then kill one mid-run (--concurrency's largest, --baseline-seconds "
                                   "a point)")
    url: str = option("", help="with --model and no checkpoint: measure the model served there; with a checkpoint: "
                               "measure replicas already running at these gRPC addresses "
                               "(a,b,...) instead: 1, 2 .. N of them, no kill")
    model: str = option("", help="the model's name on the --url servers (default: the checkpoint's family)")
    onnx: str = option("", help="with --url and --model and no checkpoint: the served model's ONNX file on this "
                                "machine (REPO/NAME/VERSION/model.onnx), timed in-process with ONNX Runtime in "
                                "turns with one Triton client on the same request, and their answers compared")
    request_rate: list[int] = option(help="open loop: offered rates, requests/s arriving at random (Poisson), "
                                          "batch 1, each for --requests requests (at least 2 s of them); the knee "
                                          "is the highest rate whose p99 stays within 2x the unloaded one",
                                     parse=int_list, default_factory=list)
    perf_analyzer: bool = option(False, help="also measure each concurrency point (batch 1) with NVIDIA's "
                                             "perf_analyzer, right after artforge's own load generator: same "
                                             "model, same request bytes; bench.md shows both side by side")
    progress: bool = option(True, help="no progress bar", flag="--quiet", each_call=True)


@dataclass(kw_only=True)
class BenchCommandOptions(BenchOptions):
    """`artforge bench`: the measurement, then a check of its ratios against a baseline."""

    check: str | None = option(None, help="baseline JSON whose ratios this run must not regress from")
    tolerance: float = option(BASELINE_TOLERANCE, help="allowed relative regression of each ratio; ratios in ms "
                                                       "also get 1 ms more (what CI checks with)")
    write_baseline: str | None = option(None, help="write this run's ratios as a baseline JSON")
    junit: str | None = option(None, help="write the check as JUnit XML: a test case per baseline ratio (failed "
                                          "when it regressed) and one for failed requests")
    history: str | None = option(None, help="append this run (date, commit, machine, model, ratios) as one JSON "
                                            "line to this file; artforge bench-history draws it")
    trials: int = option(1, help="repeat the whole measurement this many times (OUT/trial-N/), every way in "
                                 "each; each ratio is then the median over the trials with its bootstrap 95%% "
                                 "interval, and --check fails a ratio only when the whole interval is past its "
                                 "limit")


def run_benchmark(**kwargs: Any) -> dict[str, Any]:
    """Run the whole benchmark and write its reports; returns the JSON document."""
    opts = BenchOptions(**kwargs)
    if not opts.checkpoint:  # a served model: nothing to load here
        if not (opts.url and opts.model):
            raise ArtforgeError("bench what? give a checkpoint or run folder, or --url and --model of a served model")
        return run_served_benchmark(opts, Path(opts.out), find_perf_analyzer() if opts.perf_analyzer else None)
    network, ckpt = load_network(opts.checkpoint)
    spec = spec_for(ckpt)
    out = Path(opts.out)
    peer = load_peer(ckpt.family, opts.peer, opts.sizes) if opts.peer else None  # fails before any work
    analyzer = find_perf_analyzer() if opts.perf_analyzer else None  # likewise
    if opts.replicas > 1 or opts.url:  # scale-out: throughput over replicas, and one killed mid-run
        return run_replica_benchmark(opts, ckpt, spec, out)
    if spec.stream:  # a loop model: first-token latency and tokens/s over gRPC streams
        return run_stream_benchmark(opts, ckpt, network, spec, out, analyzer)
    if spec.sampler:  # a sampling loop: pictures/s, first preview, batched stepping
        return run_sampling_benchmark(opts, ckpt, spec, out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="artforge-bench-") as work:
        repo = build_bench_repository(opts, Path(work))
        model = ckpt.family
        onnx_path = repo / model / "1" / "model.onnx"
        inprocess = measure_inprocess(network, spec, onnx_path, opts)
        gflop_per_item = flops_per_item(network, spec) / 1e9
        served = measure_triton(repo, model, spec, opts, network, onnx_path, peer, analyzer)
        if served["perf_analyzer"]:  # the request file goes with the temporary folder; say what it held
            served["perf_analyzer"].pop("input_data")
        variants = measure_variants(onnx_path, spec, Path(work), opts.baseline_seconds, opts.threads) \
            if opts.variants else []
    document = {"model": {"family": ckpt.family, "checkpoint": str(ckpt.path), "config": ckpt.meta["config"],
                          "gflop_per_item": gflop_per_item, "unit": spec.unit, "spec": spec.to_json()},
                "machine": {**machine_facts(), "matmul_fp32_gflops": matmul_peak_gflops()},
                "options": opts.__dict__, "inprocess": inprocess,
                "triton": [p.to_json(spec.unit) for p in served.pop("sweep")], **served, "variants": variants}
    document["ratios"] = compute_ratios(document)
    write_reports(document, out)
    return document


def build_bench_repository(opts: BenchOptions, work: Path) -> Path:
    """The checkpoint as MODEL (dynamic batching), MODEL-nobatch (every request runs alone) and
    MODEL-nocompute (batching as MODEL, but each input shape is computed once and its answer repeated:
    what Triton, gRPC and the Python backend cost by themselves)."""

    repo = work / "repo"
    result = export_checkpoint(opts.checkpoint, repo, max_batch=opts.max_batch, intra_op_threads=opts.threads,
                               cpu_runtime=opts.cpu_runtime, precision=opts.precision)
    plain = copy_model(repo, result.name, NO_BATCHING_SUFFIX)
    plain.ClearField("dynamic_batching")
    write_config(repo, plain)
    path_only = copy_model(repo, result.name, NO_COMPUTE_SUFFIX)
    path_only.parameters["artforge.answer_from_memory"].string_value = "true"
    write_config(repo, path_only)
    if opts.perf_analyzer:
        add_trivial_model(repo, result.name)
    return repo


def add_trivial_model(repo: Path, name: str) -> None:
    """MODEL-trivial: the same config, a model.py that only reads the inputs and answers zeros (what the
    Python backend costs at the least, for perf_analyzer's split of artforge's own model.py)."""
    trivial = copy_model(repo, name, TRIVIAL_SUFFIX)
    write_config(repo, trivial)
    source = Path(__file__).with_name("trivial_python_model.py").read_text()
    for version in (repo / trivial.name).iterdir():
        if (version / "model.py").exists():
            (version / "model.py").write_text(source)


def copy_model(repo: Path, name: str, suffix: str):
    """A copy of model NAME in the repository as NAME+SUFFIX; returns its config to change and write."""

    shutil.copytree(repo / name, repo / (name + suffix))
    config = parse_config((repo / name / "config.pbtxt").read_text())
    config.name = name + suffix
    return config


def write_config(repo: Path, config) -> None:
    (repo / config.name / "config.pbtxt").write_text(config_text(config))


@torch.no_grad()
def measure_inprocess(network: torch.nn.Module, spec, onnx_path: Path, opts: BenchOptions) -> dict[str, Any]:
    """PyTorch eager and ONNX Runtime (and OpenVINO when Triton serves with it) in this process, timed in
    turn: batch-1 latency, largest-batch throughput; and the served runtime's batch curve, what batching
    can gain at all on this machine."""

    serving = spec.serving_network(network)
    session = onnx_session(onnx_path, threads=opts.threads)
    openvino = openvino_session(onnx_path, opts)
    names = [t.name for t in spec.outputs]
    results: dict[str, Any] = {}
    big = max(opts.batch_sizes + [opts.max_batch // 4])
    for batch in sorted({1, big}):
        inputs = spec.sample_inputs(batch, seed=batch, sizes=spec.optimal_sizes())
        args = tuple(torch.from_numpy(inputs[t.name]) for t in spec.inputs)
        runners = {"pytorch": lambda: serving(*args), "onnxruntime": lambda: session.run(names, inputs)}
        if openvino:
            runners["openvino"] = lambda: openvino.run(names, inputs)
            prime(runners, openvino)
        times, _ = time_interleaved(runners, warmup=5, min_calls=20, min_seconds=opts.baseline_seconds)
        for name, t in times.items():
            results[f"{name}_b{batch}"] = {"batch": batch, "latency_ms": latency_summary(t),
                                           per_s(spec.unit): batch / float(np.median(t))}
    served = openvino_session(onnx_path, opts, static_shapes=8) or session  # a compiled model for every batch
    results["batch_curve"] = batch_curve(served, spec, names, opts)
    return results


def openvino_session(onnx_path: Path, opts: BenchOptions, **settings):
    """The served model's OpenVINO session in this process, as Triton's model.py opens it; None for ONNX Runtime."""
    if opts.cpu_runtime != "openvino":
        return None

    return OpenVinoSession(onnx_path, opts.precision, opts.threads, **settings)


def prime(runners: dict, openvino, seconds: float = 1.0) -> None:
    """Run every way three times, then let OpenVINO (here and in Triton) compile its model for this shape
    in the background, so that no timed call competes with a compile. Triton's Python stub holds the GIL
    between requests, so its compile only advances while requests run: keep sending them for a while."""

    for _ in range(3):
        for run in runners.values():
            run()
    openvino.wait_for_compiles()
    served = [run for name, run in runners.items() if name.startswith("triton")]
    deadline = time.monotonic() + seconds
    while served and time.monotonic() < deadline:
        for run in served:
            run()


def batch_curve(session, spec, names: list[str], opts: BenchOptions) -> list[dict[str, float]]:
    """The served runtime's items/s at batch 1, 2, 4, 8, 16 (up to --max-batch), at the optimal size."""
    curve = []
    for batch in [b for b in (1, 2, 4, 8, 16) if b <= max(opts.max_batch, 1)]:
        inputs = spec.sample_inputs(batch, seed=batch, sizes=spec.optimal_sizes())
        if hasattr(session, "wait_for_compiles"):  # OpenVINO: time the model compiled for this batch
            for _ in range(3):
                session.run(names, inputs)
            session.wait_for_compiles()
        times = time_calls(lambda: session.run(names, inputs), warmup=2, min_calls=5,
                           min_seconds=opts.baseline_seconds / 2)
        curve.append({"batch": batch, "items_per_s": batch / float(np.median(times))})
    for point in curve:
        point["vs_batch_1"] = point["items_per_s"] / curve[0]["items_per_s"]
    return curve


def flops_per_item(network: torch.nn.Module, spec) -> int:
    sample = spec.sample_inputs(1, seed=0, sizes=spec.optimal_sizes())
    return count_flops(spec.serving_network(network), tuple(torch.from_numpy(sample[t.name]) for t in spec.inputs))


def load_peer(family_name: str, name: str, sizes: list[int]):
    """The family's public peer NAME (a one-line error when the family has none or lacks that one, or
    when no --sizes say where to time it), its ONNX Runtime session opened once."""

    family = get_family(family_name)
    if not family.peers:
        raise ArtforgeError(f"--peer {name}: the {family_name} family has no public peer to compare with")
    if not sizes:
        raise ArtforgeError(f"--peer {name} is timed at each of --sizes: give them, e.g. --sizes 256,512")
    return family.hook("peers")(name)


def measure_triton(repo: Path, model: str, spec, opts: BenchOptions, network, onnx_path: Path, peer=None,
                   analyzer: PerfAnalyzer | None = None):
    """The concurrency x batch sweep at the model's optimal size (with perf_analyzer's figure of each batch-1
    point right after artforge's), one client's batch-1 latency against in-process ONNX Runtime
    (interleaved), then (image-to-image) each size."""

    points = [(model, c, b) for b in opts.batch_sizes for c in opts.concurrency]
    points.append((model + NO_BATCHING_SUFFIX, max(opts.concurrency), 1))
    points += [(model + NO_COMPUTE_SUFFIX, c, 1) for c in sorted({1, max(opts.concurrency)})]
    pool = {b: spec.sample_inputs(b, seed=100 + b, sizes=spec.optimal_sizes()) for b in {1, *opts.batch_sizes}}
    pool_b1 = pool[1]  # perf_analyzer's request and the open loop's: the sweep's batch-1 request
    make_inputs = lambda batch, i: pool[batch]  # noqa: E731 - same bytes every request: measures serving, not numpy
    results, by_size = [], {}
    perf = perf_analyzer_setup(analyzer, spec, opts, repo.parent) if analyzer else None
    with Server(repo, grpc_port=0, http_port=0, metrics_port=0) as server:
        for name, concurrency, batch in tqdm(points, desc="triton sweep", unit="point", disable=not opts.progress):
            point = measure_point(server.grpc_url, name, make_inputs, concurrency, batch, opts.requests, opts.warmup,
                                  server_pid=server.process.pid)
            results.append(point)
            if point.stopped:
                log.error("benchmark stopped: %s (%s)", point.stopped, point.first_error)
                return {"sweep": results, "one_client_b1": {}, "sizes": by_size, "perf_analyzer": perf,
                        "open_loop": []}
            if perf is not None and name == model and batch == 1:
                perf["points"].append(analyzer.measure(server.grpc_url, model, Path(perf["input_data"]),
                                                       concurrency, perf["window_requests"]))
        if perf is not None and any(p.concurrency == 1 for p in results if p.model == model and p.batch == 1):
            perf["c1_turns"] = one_client_turns(analyzer, server, model, make_inputs, perf, opts, results)
        if perf is not None:  # artforge's model.py answering from memory against the backend's floor
            perf["backend"] = {way: analyzer.measure(server.grpc_url, model + suffix, Path(perf["input_data"]), 1,
                                                     perf["window_requests"])
                               for way, suffix in (("nocompute", NO_COMPUTE_SUFFIX), ("trivial", TRIVIAL_SUFFIX))}
        ways = OneClient(server.grpc_url, model, spec, spec.serving_network(network),
                         onnx_session(onnx_path, threads=opts.threads), opts, peer,
                         openvino_session(onnx_path, opts, static_shapes=32))  # every shape timed gets its own
        one_client = ways.measure(spec.sample_inputs(1, seed=101, sizes=spec.optimal_sizes()), 1)
        for size in opts.sizes if spec.dynamic_dims else []:
            by_size[str(size)] = measure_size(ways, spec, size)
            if perf is not None:
                perf["sizes"][str(size)] = perf_analyzer_at_size(analyzer, server.grpc_url, ways, perf, size,
                                                                 repo.parent)
        open_loop = measure_open_loops(analyzer, server.grpc_url, model, pool_b1, perf, opts)
    return {"sweep": results, "one_client_b1": one_client, "sizes": by_size, "perf_analyzer": perf,
            "open_loop": open_loop}


def one_client_turns(analyzer: PerfAnalyzer, server: Server, model: str, make_inputs, perf: dict[str, Any],
                     opts: BenchOptions, results: list) -> list[dict[str, float]]:
    """artforge's load generator and perf_analyzer at one client, batch 1, in SIZE_TURNS turns (the sweep's
    pair is the first): one pair back to back can straddle a slow stretch of the machine, which lasts
    seconds; the ratio client_overhead_b1_ms is the median turn's difference."""
    mine = next(p for p in results if p.model == model and p.batch == 1 and p.concurrency == 1)
    theirs = next((p for p in perf["points"] if p.get("concurrency") == 1), {})
    turns = [{"artforge_p50_ms": mine.latency_ms.get("p50"), "perf_analyzer_p50_ms": theirs.get("p50_ms")}]
    for _ in range(SIZE_TURNS - 1):
        mine = measure_point(server.grpc_url, model, make_inputs, 1, 1, opts.requests, opts.warmup)
        theirs = analyzer.measure(server.grpc_url, model, Path(perf["input_data"]), 1, perf["window_requests"])
        turns.append({"artforge_p50_ms": mine.latency_ms.get("p50"), "perf_analyzer_p50_ms": theirs.get("p50_ms")})
    return [t for t in turns if t["artforge_p50_ms"] is not None and t["perf_analyzer_p50_ms"] is not None]


def measure_open_loops(analyzer: PerfAnalyzer | None, url: str, model: str, request: dict[str, np.ndarray],
                       perf: dict[str, Any] | None, opts: BenchOptions) -> list[dict[str, Any]]:
    """Each --request-rate as an open loop (Poisson arrivals, batch 1): artforge's load generator, then
    perf_analyzer at the same rate."""
    points = []
    for rate in opts.request_rate:
        points.append(measure_open_loop(url, model, request, rate, max(opts.requests, 2 * rate), seed=rate))
        if perf is not None:
            perf["open_loop"].append(analyzer.measure(url, model, Path(perf["input_data"]), 1,
                                                      perf["window_requests"], request_rate=rate))
    return points


SIZE_TURNS = 3  # turns of (artforge's Client alone, perf_analyzer) at each --sizes point


def perf_analyzer_at_size(analyzer: PerfAnalyzer, url: str, ways: OneClient, perf: dict[str, Any], size: int,
                          work: Path) -> dict[str, Any]:
    """perf_analyzer at one client on a request of this square size, through system shared memory as
    artforge's client sends large tensors to a local server, in SIZE_TURNS turns with artforge's Client timed
    alone right before it, so that the two compare under the same conditions (in the by-size table the Client
    takes turns with the in-process ways, whose thread pools still spin when its call starts). The point is
    the turn with the median difference (`artforge_p50_ms` beside perf_analyzer's own figures); `turns` has
    every turn's pair."""
    spec = ways.spec
    request = spec.sample_inputs(1, seed=size + 1, sizes={name: size for name in spec.dynamic_dims})
    output_bytes = max(a.nbytes for a in ways.session.run(None, request))
    data = write_input_data(request, work / f"perf_analyzer_input_{size}.json", ways.opts.max_batch > 0)
    turns = []
    with Client(url, timeout_s=120, retries=0) as client:
        client.infer(ways.model, request)  # learns the output sizes: the timed calls use shared memory
        for _ in range(SIZE_TURNS):  # a slow stretch of the machine lasts seconds: it falls on one turn
            times, _ = time_interleaved({"alone": lambda: client.infer(ways.model, request)}, warmup=2,
                                        min_calls=5, min_seconds=ways.opts.baseline_seconds / SIZE_TURNS)
            theirs = analyzer.measure(url, ways.model, data, 1, perf["window_requests"], output_bytes=output_bytes)
            if times["alone"] and "p50_ms" in theirs:
                turns.append({**theirs, "artforge_p50_ms": latency_summary(times["alone"])["p50"]})
    if not turns:
        return theirs
    point = sorted(turns, key=lambda t: t["artforge_p50_ms"] - t["p50_ms"])[len(turns) // 2]  # the median turn
    point["turns"] = [{"artforge_p50_ms": t["artforge_p50_ms"], "perf_analyzer_p50_ms": t["p50_ms"]} for t in turns]
    return point


def perf_analyzer_setup(analyzer: PerfAnalyzer, spec, opts: BenchOptions, work: Path) -> dict[str, Any]:
    """What bench.json records of perf_analyzer before its points: the binary, the request it sends (the
    batch-1 request artforge's load generator sends) and its window."""
    request = spec.sample_inputs(1, seed=101, sizes=spec.optimal_sizes())  # the sweep's batch-1 pool
    return {"version": analyzer.version(), "binary": str(analyzer.binary),
            "request": {name: {"shape": list(a.shape), "dtype": str(a.dtype)} for name, a in request.items()},
            "input_data": str(write_input_data(request, work / "perf_analyzer_input.json", opts.max_batch > 0)),
            "window_requests": max(opts.requests, 100), "points": [], "sizes": {}, "open_loop": []}


class OneClient:
    """One client's latency of the same request in every way it can run: PyTorch and ONNX Runtime (and
    OpenVINO when Triton serves with it) in this process, Triton over gRPC (artforge's Client, what
    `artforge generate` and `stylize` use, which sends large tensors to a local server through shared
    memory; with them inside the gRPC message; and to the copy that answers from memory, the serving
    path alone), the peer; timed in turn (benchmarks.measure.time_interleaved), so a slow stretch of a
    shared machine falls on all of them."""

    def __init__(self, url: str, model: str, spec, serving, session, opts: BenchOptions, peer=None, openvino=None):
        self.url, self.model, self.spec = url, model, spec
        self.serving, self.session, self.opts = serving, session, opts
        self.openvino = openvino
        self.peer = peer
        self.peer_session = peer.session(threads=opts.threads) if peer is not None else None

    @torch.no_grad()
    def measure(self, inputs: dict[str, np.ndarray], batch: int, peer_feed=None) -> dict[str, dict]:
        """The row of every way for these inputs; the peer too when given its feed for the same image."""

        with Client(self.url, timeout_s=120, retries=0) as client, \
                Client(self.url, timeout_s=120, retries=0, shared_memory=False) as payload:
            runners = self.runners(client, payload, inputs, batch, peer_feed)
            times, failed = time_interleaved(runners, warmup=2, min_calls=5, min_seconds=self.opts.baseline_seconds)
        row = {name: {"p50_ms": latency_summary(t)["p50"], "fps": batch / float(np.median(t)), "calls": len(t)}
               for name, t in times.items() if t}
        row.update({name: {"fps": 0.0, "errors": 1, "first_error": error} for name, error in failed.items()})
        if batch > self.opts.max_batch:
            payload_way = ("triton_grpc_payload",) if self.uses_shared_memory(client, inputs) else ()
            for name in ("triton", "triton_nocompute") + payload_way:
                row[name] = {"fps": None, "skipped": f"batch {batch} > --max-batch {self.opts.max_batch}"}
        if "peer" in row:
            row["peer"]["peer"] = self.peer.name
        return row

    @staticmethod
    def uses_shared_memory(client, inputs: dict[str, np.ndarray]) -> bool:
        """Whether artforge's client sends these inputs to the server through shared memory (a local one)."""
        return bool(client.transfer) and client.transfer.worth(inputs)

    def runners(self, client, payload, inputs: dict[str, np.ndarray], batch: int, peer_feed) -> dict:
        args = tuple(torch.from_numpy(inputs[t.name]) for t in self.spec.inputs)
        names = [t.name for t in self.spec.outputs]
        runners = {"pytorch": lambda: self.serving(*args), "onnxruntime": lambda: self.session.run(names, inputs)}
        if batch <= self.opts.max_batch:  # the server refuses larger batches: no figure rather than a 0
            path_only = self.model + NO_COMPUTE_SUFFIX
            runners["triton"] = lambda: client.infer(self.model, inputs)
            runners["triton_nocompute"] = lambda: client.infer(path_only, inputs)
            if self.uses_shared_memory(client, inputs):  # and this way the same tensors go in the gRPC message
                runners["triton_grpc_payload"] = lambda: payload.infer(self.model, inputs)
                for name in (self.model, path_only):  # learns the output sizes: timed calls use shared memory
                    client.infer(name, inputs)
        if peer_feed is not None:
            runners["peer"] = lambda: self.peer_session.run(None, peer_feed)
        if self.openvino:
            runners["openvino"] = lambda: self.openvino.run(names, inputs)
            prime(runners, self.openvino)
        return runners


def measure_size(ways: OneClient, spec, size: int) -> dict:
    """Frames per second at one square size: PyTorch, ONNX Runtime and Triton (one client), batch 1 and 4;
    the peer in-process at batch 1 (it takes one image a call)."""
    sizes = {name: size for name in spec.dynamic_dims}
    row = {}
    for batch in (1, 4):
        inputs = spec.sample_inputs(batch, seed=size + batch, sizes=sizes)
        feed = ways.peer.feed(inputs[spec.inputs[0].name][:1], 0) if ways.peer and batch == 1 else None
        for name, measured in ways.measure(inputs, batch, feed).items():
            row[f"{name}_b{batch}"] = measured
    return row


# ---- `artforge bench` ----
def bench_command(opts: BenchCommandOptions) -> None:
    """Measure; write a baseline if asked; fail on errors or on ratios that regressed from --check's."""
    if not opts.checkpoint and (opts.check or opts.write_baseline or opts.trials > 1):
        raise ArtforgeError("--check, --write-baseline and --trials compare a checkpoint's ratios; a served model "
                            "without its checkpoint is measured once")
    baseline = require_baseline_file(Path(opts.check)) if opts.check else None  # fail before an hour of work
    if baseline is not None:
        checkpoint = load_checkpoint(opts.checkpoint)
        recorded = {**baseline["model"], "config": with_defaults(checkpoint.family, baseline["model"])}
        check_baseline_fits({**baseline, "model": recorded}, checkpoint.family,
                            with_defaults(checkpoint.family, {"config": checkpoint.meta["config"]}), Path(opts.check))
    document = run_trials(opts)
    out = Path(opts.out)
    print((out / "bench.md").read_text())
    print(f"reports: {', '.join(str(p) for p in sorted(out.glob('bench.*')))}")
    if opts.write_baseline:
        atomic_write_text(Path(opts.write_baseline), json.dumps(baseline_document(document), indent=2) + "\n")
        print(f"baseline written to {opts.write_baseline}")
    errors = errors_seen(document)
    verdicts = ratio_verdicts(document, baseline, opts.tolerance) if baseline is not None else []
    problems = errors + (baseline_problems(document, baseline, verdicts) if baseline is not None else [])
    report_to_ci(opts, document, out, verdicts, errors, problems)
    if problems:
        raise ArtforgeError("benchmark failed: " + "; ".join(problems))


def run_trials(opts: BenchCommandOptions) -> dict[str, Any]:
    """The bench once, or --trials times (each in OUT/trial-N/) combined into OUT's reports."""
    measure = {f.name: getattr(opts, f.name) for f in fields(BenchOptions)}
    if opts.trials < 1:
        raise ArtforgeError(f"--trials {opts.trials}: give at least 1")
    if opts.trials == 1:
        return run_benchmark(**measure)
    documents = [run_benchmark(**{**measure, "out": str(Path(opts.out) / f"trial-{i + 1}")})
                 for i in range(opts.trials)]
    document = combine_trials(documents)
    write_reports(document, Path(opts.out))
    return document


def report_to_ci(opts: BenchCommandOptions, document: dict[str, Any], out: Path, verdicts: list,
                 errors: list[str], problems: list[str]) -> None:
    """JUnit XML, GitHub's job summary and the history line, each when asked for (the summary when GitHub
    Actions sets $GITHUB_STEP_SUMMARY)."""
    if opts.junit:
        write_junit(Path(opts.junit), verdicts, errors)
        print(f"JUnit XML written to {opts.junit}")
    verdict_lines = [f"- {'❌' if not v.ok else '✅'} {v.problem()}" for v in verdicts]
    if opts.check and not problems:
        verdict_lines.append(f"Every ratio within {opts.tolerance:g} of {opts.check}.")
    add_to_job_summary((out / "bench.md").read_text(), verdict_lines)
    if opts.history:
        append_history(Path(opts.history), document)
        print(f"ratios appended to {opts.history}")


COMMAND = Command(
    "bench", help="benchmark Triton end-to-end against in-process PyTorch and ONNX Runtime",
    description="Export the checkpoint into a temporary repository (with and without dynamic batching), "
                "serve it on Triton on free ports, sweep client concurrency x request batch, measure "
                "PyTorch eager and ONNX Runtime in-process on the same machine, and write bench.json, "
                "bench.md and bench.png (latency vs throughput). Exits non-zero when requests failed or, "
                "with --check, when a ratio regressed beyond --tolerance.",
    examples="  artforge bench runs/dcgan --out bench/\n"
             "  artforge bench runs/dcgan --out bench/ --check benchmarks/baseline-ci.json\n"
             "  artforge bench runs/dcgan --concurrency 1,4,16 --batch-sizes 1 --requests 100 --out quick/\n"
             "  artforge bench runs/style --sizes 256,512 --concurrency 1,4 --batch-sizes 1,4 --requests 40",
    options=BenchCommandOptions, run=bench_command)


def with_defaults(family: str, model: dict[str, Any]) -> dict[str, Any]:
    """A recorded model config as the family reads it: a field added since the baseline was recorded takes
    its default, as it does for an older checkpoint (a config of another family is left as recorded)."""
    values = model.get("config") or {}
    if model.get("family", family) != family:
        return values
    try:
        return asdict(config_from_dict(get_family(family).config_cls, values, "baseline"))
    except CheckpointError:
        return values
