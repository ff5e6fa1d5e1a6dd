"""Benchmarks of models served as a loop (token streams): time to the first token, time per output
token and tokens per second through Triton's gRPC stream, next to the same loop (artforge/serving/decoding.py)
run in-process on ONNX Runtime and on PyTorch (the checkpoint's network, same cache).

A request asks for a fixed number of tokens from a random prompt (temperature 1, each its own seed);
the eos token, if the model has one, is never sampled away, so streams may end early: tokens/s
counts the tokens that arrived. Client threads share the machine with the server: the client's CPU
time is reported with the throughput.
"""
from __future__ import annotations

import itertools
import json
import re
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from artforge.benchmarks.measure import latency_summary
from artforge.benchmarks.perf_analyzer import write_input_data
from artforge.contract import TokenStream
from artforge.serving.decoding import batches_streams, decode, stepper
from artforge.benchmarks.measure import machine_facts
from artforge.export.parity import onnx_session
from artforge.export.pipeline import export_checkpoint
from artforge.files import atomic_write_text
from artforge.serving.client import Client
from artforge.serving.server import Server


@dataclass
class StreamPoint:
    """Streams from `concurrency` clients at once (batch: each stream is one sequence)."""

    model: str
    concurrency: int
    requests: int = 0
    tokens: int = 0
    errors: int = 0
    first_error: str = ""
    seconds: float = 0.0
    client_cpu_s: float = 0.0
    first_token_ms: dict[str, float] = field(default_factory=dict)
    token_gap_ms: dict[str, float] = field(default_factory=dict)  # between tokens of one stream
    stream_tokens_per_s: float = 0.0  # median over streams of (tokens after the first) / (their time)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "batch": 1, "tokens_per_s": self.tokens_per_s}


def stream_rate(times: list[float]) -> list[float]:
    """A stream's decoding rate: tokens after the first per second between the first and the last."""
    return [(len(times) - 1) / (times[-1] - times[0])] if len(times) > 1 and times[-1] > times[0] else []


def stream_request(stream: TokenStream, index: int, prompt_length: int, max_tokens: int) -> dict[str, np.ndarray]:
    prompt = np.random.default_rng(index).integers(0, len(stream.vocab), (1, prompt_length), dtype=np.int64)
    return {"prompt": prompt, "max_tokens": np.array([[max_tokens]], np.int32),
            "temperature": np.ones((1, 1), np.float32), "top_k": np.zeros((1, 1), np.int32),
            "top_p": np.ones((1, 1), np.float32), "seed": np.array([[index]], np.int64)}


def measure_stream_point(url: str, model: str, concurrency: int, requests: int, prompt_length: int,
                         max_tokens: int, timeout_s: float = 60.0) -> StreamPoint:
    """`requests` streams spread over `concurrency` client threads, each with its own connection."""

    point, lock, counter = StreamPoint(model, concurrency), threading.Lock(), itertools.count()
    first, gaps, rates = [], [], []  # seconds, seconds, tokens/s

    def worker() -> None:
        with Client(url, timeout_s=timeout_s) as client:
            stream = client.model(model).stream
            while (index := next(counter)) < requests:
                start, times = time.perf_counter(), []
                try:
                    for outputs in client.stream(model, stream_request(stream, index, prompt_length, max_tokens)):
                        times.extend([time.perf_counter()] * outputs["token"].size)  # tokens sent together
                except Exception as e:  # counted, reported, and the sweep goes on
                    with lock:
                        point.errors += 1
                        point.first_error = point.first_error or str(e)[:300]
                    continue
                with lock:
                    point.requests += 1
                    point.tokens += len(times)
                    first.extend([times[0] - start] if times else [])
                    gaps.extend(np.diff(times))
                    rates.extend(stream_rate(times))

    cpu, wall = time.process_time(), time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout_s * (requests + 1))  # bounded: a wedged stream cannot hang the benchmark
    point.seconds, point.client_cpu_s = time.perf_counter() - wall, time.process_time() - cpu
    point.first_token_ms, point.token_gap_ms = latency_summary(first), latency_summary(gaps)
    point.stream_tokens_per_s = float(np.median(rates)) if rates else 0.0
    return point


def measure_inprocess_stream(run, stream: TokenStream, prompt_length: int, max_tokens: int,
                             requests: int) -> dict[str, Any]:
    """The served loop run here, one stream at a time; run(output names, feed) -> outputs (an ONNX Runtime
    session's run, or the PyTorch network behind the same signature)."""
    steps = stepper(run, stream.to_json())
    first, gaps, rates, tokens, start = [], [], [], 0, time.perf_counter()
    for index in range(requests):
        request = stream_request(stream, index, prompt_length, max_tokens)
        began, times = time.perf_counter(), []
        for _ in decode(steps, request["prompt"][0], max_tokens, 1.0, 0, index, stream.eos):
            times.append(time.perf_counter())
        first.extend([times[0] - began] if times else [])
        gaps.extend(np.diff(times))
        rates.extend(stream_rate(times))
        tokens += len(times)
    seconds = time.perf_counter() - start
    return {"first_token_ms": latency_summary(first), "token_gap_ms": latency_summary(gaps), "tokens": tokens,
            "tokens_per_s": tokens / seconds, "stream_tokens_per_s": float(np.median(rates)) if rates else 0.0}


def onnx_runner(onnx_path: Path, threads: int):

    return onnx_session(onnx_path, threads=threads).run


def torch_runner(network, spec, threads: int):
    """run(output names, feed) over the family's serving network in PyTorch (eval, no grad)."""
    import torch

    serving = spec.serving_network(network).eval()
    torch.set_num_threads(max(1, threads))
    names = [t.name for t in spec.outputs]

    @torch.no_grad()
    def run(wanted, feed):
        outputs = serving(*(torch.from_numpy(feed[t.name]) for t in spec.inputs))
        outputs = outputs if isinstance(outputs, (tuple, list)) else (outputs,)
        by_name = dict(zip(names, outputs))
        return [by_name[name].numpy() for name in wanted]
    return run


# the two ways the server can run concurrent streams, measured side by side
ONE_PER_INSTANCE, BATCHED = "one stream per instance", "continuous batching"


def serving_variants(opts, stream: TokenStream) -> dict[str, dict[str, int]]:
    """Export options per way of serving: without batching, execute() decodes one stream at a time in
    an instance (one instance per concurrent stream, up to the cores); with it (cached models whose
    step takes each row's cache length), one instance decodes every open stream in one batched step.
    One ONNX Runtime thread each unless --threads: on 2 cores a second thread gained little at 16
    streams and its spinning held single streams' first token up to 120 ms at p99 (10 ms with one)."""
    import os

    cores, threads = os.cpu_count() or 1, opts.threads or 1
    variants = {ONE_PER_INSTANCE: dict(instances=max(1, min(max(opts.concurrency), cores)), max_batch=1,
                                       intra_op_threads=threads)}
    if batches_streams(stream.to_json()):
        variants[BATCHED] = dict(instances=1, max_batch=opts.max_batch, intra_op_threads=threads)
    return variants


def stream_markdown(document: dict[str, Any]) -> str:
    options = document["options"]
    lines = [f"# {document['model']['family']}: token stream benchmark", "",
             f"{options['requests']} streams a point (in-process: a tenth of them, one at a time), prompts of "
             f"{options['prompt_length']} tokens, {options['max_tokens']} tokens asked each (temperature 1: a stream "
             f"may end sooner); machine: {document['machine'].get('cpu', '?')}. Time per output token: the gap "
             "between consecutive tokens of one stream (0 between tokens that arrived in one response).", ""]
    for name, variant in document["variants"].items():
        lines.append(f"- Triton, {name}: {variant['instances']} instance(s), {variant['intra_op_threads']} ONNX "
                     f"Runtime thread(s) each, up to {variant['max_batch']} stream(s) per decoding step")
    lines += ["", "| where | streams at once | first token p50 ms | p99 ms | per output token p50 ms | p99 ms | "
              "tokens/s per stream | tokens/s in all | client CPU s | errors |", "|---" * 10 + "|"]
    for name, label in (("pytorch", "in-process PyTorch"), ("onnxruntime", "in-process ONNX Runtime")):
        if name in document["inprocess"]:
            r = document["inprocess"][name]
            lines.append(f"| {label} | 1 | {cell(r['first_token_ms'], 'p50')} | {cell(r['first_token_ms'], 'p99')} | "
                         f"{cell(r['token_gap_ms'], 'p50')} | {cell(r['token_gap_ms'], 'p99')} | "
                         f"{r['stream_tokens_per_s']:.0f} | {r['tokens_per_s']:.0f} | | 0 |")
    for p in document["triton"]:
        lines.append(f"| Triton gRPC, {p['variant']} | {p['concurrency']} | {cell(p['first_token_ms'], 'p50')} | "
                     f"{cell(p['first_token_ms'], 'p99')} | {cell(p['token_gap_ms'], 'p50')} | "
                     f"{cell(p['token_gap_ms'], 'p99')} | {p['stream_tokens_per_s']:.0f} | {p['tokens_per_s']:.0f} | "
                     f"{p['client_cpu_s']:.2f} | {p['errors']} |")
    lines += perf_analyzer_stream_lines(document)
    for name, value in document["ratios"].items():
        lines.append(f"\n{name}: {value:.2f}")
    return "\n".join(lines) + "\n"


def perf_analyzer_stream_lines(document: dict[str, Any]) -> list[str]:
    perf = document.get("perf_analyzer")
    if not perf:
        return []
    lines = ["", f"perf_analyzer --streaming ({perf['version']}; one request, the first response timed), right "
             "after each point above:", "", "| Triton, variant | streams at once | first response p50 ms | p99 ms | "
             "streams/s | responses/s |", "|---" * 6 + "|"]
    for p in perf["points"]:
        if "p50_ms" in p:
            lines.append(f"| {p['variant']} | {p['concurrency']} | {p['p50_ms']:.2f} | {p['p99_ms']:.2f} | "
                         f"{p['throughput']:.0f} | {p.get('responses_per_s', 0):.0f} |")
        else:
            lines.append(f"| {p['variant']} | {p['concurrency']} | | | | {p.get('error', '')} |")
    return lines


def cell(summary: dict[str, float], key: str) -> str:
    value = summary.get(key, float("nan"))
    return "—" if value != value else f"{value:.2f}"


def batching_ratios(points: list[dict[str, Any]]) -> dict[str, float]:
    """Tokens/s in all with continuous batching over one stream per instance, at the most streams."""
    by = {(p["variant"], p["concurrency"]): p["tokens_per_s"] for p in points}
    most = max(p["concurrency"] for p in points)
    plain, batched = by.get((ONE_PER_INSTANCE, most), 0.0), by.get((BATCHED, most), 0.0)
    return {f"continuous_batching_speedup_at_{most}_streams": batched / plain} if plain and batched else {}


def first_token_ratios(points: list[dict[str, Any]], perf: dict[str, Any] | None) -> dict[str, float]:
    """artforge's first-token p50 over perf_analyzer's first-response p50, one stream at a time, per variant."""
    found = {}
    for theirs in (perf or {}).get("points", []):
        mine = next((p for p in points if p["variant"] == theirs["variant"] and p["concurrency"] == 1), None)
        if theirs.get("concurrency") == 1 and "p50_ms" in theirs and mine and mine["first_token_ms"]:
            variant = re.sub(r"\W+", "_", theirs["variant"])  # 'continuous batching' -> continuous_batching
            found[f"artforge_first_token_over_perf_analyzer_{variant}"] = (mine["first_token_ms"]["p50"]
                                                                           / theirs["p50_ms"])
    return found


def run_stream_benchmark(opts, ckpt, network, spec, out: Path, analyzer=None) -> dict[str, Any]:
    """Export the checkpoint once per way of serving, serve both, and measure streams at each
    concurrency next to the same loop in-process (and, given perf_analyzer, its --streaming figure of each
    point right after artforge's: it times a stream's first response)."""
    import tempfile

    stream, variants = spec.stream, serving_variants(opts, spec.stream)
    with tempfile.TemporaryDirectory(prefix="artforge-bench-") as work:
        repo = Path(work) / "repo"
        exports = {variant: export_checkpoint(opts.checkpoint, repo, name=f"{ckpt.family}-{i}", **options)
                 for i, (variant, options) in enumerate(variants.items())}
        requests, threads = max(1, opts.requests // 10), opts.threads or 1
        onnx_path = next(iter(exports.values())).version_dir / "model.onnx"
        inprocess = {
            "pytorch": measure_inprocess_stream(torch_runner(network, spec, threads), stream, opts.prompt_length,
                                                opts.max_tokens, requests),
            "onnxruntime": measure_inprocess_stream(onnx_runner(onnx_path, threads), stream, opts.prompt_length,
                                                    opts.max_tokens, requests)}
        points, perf = [], None
        if analyzer is not None:
            data = write_input_data(stream_request(stream, 0, opts.prompt_length, opts.max_tokens),
                                    Path(work) / "perf_analyzer_input.json", opts.max_batch > 0)
            perf = {"version": analyzer.version(), "binary": str(analyzer.binary), "points": []}
        with Server(repo, grpc_port=0, http_port=0, metrics_port=0) as server:
            for variant, result in exports.items():
                for concurrency in opts.concurrency:
                    point = measure_stream_point(server.grpc_url, result.name, concurrency, opts.requests,
                                                 opts.prompt_length, opts.max_tokens)
                    points.append({**point.to_json(), "variant": variant})
                    if perf is not None:
                        perf["points"].append({**analyzer.measure(server.grpc_url, result.name, data, concurrency,
                                                                  max(opts.requests, 50), streaming=True),
                                               "variant": variant})
    document = {"model": {"family": ckpt.family, "checkpoint": str(ckpt.path), "config": ckpt.meta["config"],
                          "unit": "token", "key_value_cache": bool(stream.cache_input)},
                "machine": machine_facts(), "options": dict(opts.__dict__), "variants": variants,
                "inprocess": inprocess, "triton": points, "perf_analyzer": perf,
                "ratios": {**batching_ratios(points), **first_token_ratios(points, perf)}}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "bench.json", json.dumps(document, indent=2, default=float) + "\n")
    atomic_write_text(out / "bench.md", stream_markdown(document))
    return document
