"""Benchmarks of diffusion models served as a sampling loop: pictures per second through Triton's gRPC stream
next to the same sampler (artforge/serving/denoising.py) run in-process on ONNX Runtime, the time to the
first preview, and batched stepping (concurrent requests stepping as one batch) against one picture at a
time per instance.

The compared ways run in interleaved turns (each turn times every way once), so drift of the machine's
speed hits them alike; every figure is the median over the turns, with each turn's figure kept. Requests
ask for `--steps` steps with the model's default guidance (two network rows a picture) and DPM-Solver++,
a preview every steps/4, seeds 0, 1, 2, ... and classes in turn.
"""
from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from artforge.benchmarks.measure import machine_facts
from artforge.contract import SAMPLER_NAMES, DenoisingLoop
from artforge.export.parity import onnx_session
from artforge.export.pipeline import export_checkpoint
from artforge.files import atomic_write_text
from artforge.serving import denoising
from artforge.serving.client import Client
from artforge.serving.server import Server

TURNS = 3
SINGLE_SUFFIX = "-single"  # the same model with one picture at a time per instance (no batched stepping)


def sampling_requests(loop: DenoisingLoop, count: int, steps: int, first_seed: int = 0) -> list[dict[str, np.ndarray]]:
    """`count` one-picture requests: classes in turn, seeds from first_seed, a preview every steps/4."""
    def one(i: int) -> dict[str, np.ndarray]:
        return {"style": np.array([[i % loop.num_classes]], np.int64), "seed": np.array([[first_seed + i]], np.int64),
                "steps": np.array([[steps]], np.int32), "guidance": np.array([[loop.default_guidance]], np.float32),
                "sampler": np.array([[SAMPLER_NAMES.index("dpmpp_2m")]], np.int32),
                "previews": np.array([[max(1, steps // 4)]], np.int32)}
    return [one(i) for i in range(count)]


def inprocess_pictures_per_s(denoise: Callable, loop: DenoisingLoop, requests: list[dict], together: bool) -> float:
    """The sampler in-process over the same requests: one picture after another, or all stepping together."""
    settings = loop.to_json()

    def picture(r: dict) -> denoising.Denoising:
        return denoising.Denoising(settings, r["style"][0, 0], r["seed"][0, 0], r["steps"][0, 0], r["guidance"][0, 0],
                                   SAMPLER_NAMES[int(r["sampler"][0, 0])], r["previews"][0, 0])
    start = time.perf_counter()
    if together:
        denoising.sample(denoise, [picture(r) for r in requests])
    else:
        for r in requests:
            denoising.sample(denoise, [picture(r)])
    return len(requests) / (time.perf_counter() - start)


def served_one_at_a_time(client: Client, model: str, requests: list[dict]) -> dict[str, Any]:
    """Requests one after another: pictures/s, and each request's time to its first preview and to its end."""
    first, whole = [], []
    start = time.perf_counter()
    for request in requests:
        sent = time.perf_counter()
        for i, _ in enumerate(client.stream(model, request)):
            if i == 0:
                first.append((time.perf_counter() - sent) * 1e3)
        whole.append((time.perf_counter() - sent) * 1e3)
    return {"pictures_per_s": len(requests) / (time.perf_counter() - start),
            "first_preview_ms": statistics.median(first), "request_ms": statistics.median(whole)}


def served_concurrently(client: Client, model: str, requests: list[dict], concurrency: int) -> float:
    """Pictures/s with `concurrency` requests open at once on one gRPC stream, in rounds."""
    start = time.perf_counter()
    for i in range(0, len(requests), concurrency):
        for _ in client.stream_many(model, requests[i:i + concurrency]):
            pass
    return len(requests) / (time.perf_counter() - start)


def measure_turns(client: Client, names: dict[str, str], denoise: Callable, loop: DenoisingLoop, steps: int,
                  concurrency: int, pictures: int) -> dict[str, list]:
    """Every way once per turn, TURNS turns; each way's figure per turn."""
    alone = sampling_requests(loop, max(2, pictures // concurrency), steps)
    together = sampling_requests(loop, max(concurrency, pictures // concurrency * concurrency), steps, 1000)
    turns: dict[str, list] = {key: [] for key in ("inprocess_one", "served_one", "inprocess_together",
                                                  "served_batched", "served_single")}
    served_one_at_a_time(client, names["batched"], alone[:1])  # warm-up: sessions, threads, the stream
    for _ in range(TURNS):
        turns["inprocess_one"].append(inprocess_pictures_per_s(denoise, loop, alone, together=False))
        turns["served_one"].append(served_one_at_a_time(client, names["batched"], alone))
        turns["inprocess_together"].append(inprocess_pictures_per_s(denoise, loop, together, together=True))
        turns["served_batched"].append(served_concurrently(client, names["batched"], together, concurrency))
        turns["served_single"].append(served_concurrently(client, names["single"], together, concurrency))
    return turns


def sampling_ratios(ways: dict[str, dict[str, Any]], concurrency: int) -> dict[str, float]:
    one = ways["served_one"]
    return {
        "served_over_inprocess_pictures_per_s_c1": one["pictures_per_s"] / ways["inprocess_one"]["pictures_per_s"],
        "first_preview_share_of_request": one["first_preview_ms"] / one["request_ms"],
        f"batched_over_single_pictures_per_s_c{concurrency}": (ways["served_batched"]["pictures_per_s"]
                                                               / ways["served_single"]["pictures_per_s"]),
        f"served_batched_over_inprocess_together_c{concurrency}": (ways["served_batched"]["pictures_per_s"]
                                                                   / ways["inprocess_together"]["pictures_per_s"])}


def summarise(turns: dict[str, list]) -> dict[str, dict[str, Any]]:
    """Per way: the median pictures/s over turns (and each turn's), plus the one-at-a-time latencies."""
    ways = {}
    for way, values in turns.items():
        rates = [v["pictures_per_s"] if isinstance(v, dict) else v for v in values]
        ways[way] = {"pictures_per_s": statistics.median(rates), "per_turn": rates}
        if values and isinstance(values[0], dict):
            for key in ("first_preview_ms", "request_ms"):
                ways[way][key] = statistics.median(v[key] for v in values)
    return ways


def run_sampling_benchmark(opts, ckpt, spec, out: Path) -> dict[str, Any]:
    """Export the checkpoint twice (batched stepping up to the largest --concurrency, and one picture at a
    time), serve both, and time them in turns with the sampler in-process on the same ONNX file."""
    loop, concurrency, threads = spec.sampler, max(opts.concurrency), opts.threads
    with tempfile.TemporaryDirectory(prefix="artforge-bench-") as work:
        repo = Path(work) / "repo"
        names = {"batched": ckpt.family, "single": ckpt.family + SINGLE_SUFFIX}
        export_checkpoint(opts.checkpoint, repo, name=names["batched"], max_batch=concurrency,
                          intra_op_threads=threads)
        export_checkpoint(opts.checkpoint, repo, name=names["single"], max_batch=1, intra_op_threads=threads)
        session = onnx_session(repo / names["batched"] / "1" / "model.onnx", threads)

        def denoise(x, t, classes):
            return session.run([loop.output], {loop.sample_input: x, loop.timestep_input: t,
                                               loop.class_input: classes})[0]
        with Server(repo, grpc_port=0, http_port=0, metrics_port=0) as server, \
                Client(server.grpc_url, timeout_s=600) as client:
            turns = measure_turns(client, names, denoise, loop, opts.steps, concurrency, opts.requests)
    ways = summarise(turns)
    document = {"model": {"family": ckpt.family, "checkpoint": str(ckpt.path), "config": ckpt.meta["config"],
                          "unit": "picture"},
                "machine": machine_facts(), "options": dict(opts.__dict__),
                "sampling": {"steps": opts.steps, "previews_every": max(1, opts.steps // 4), "sampler": "dpmpp_2m",
                             "guidance": loop.default_guidance, "concurrency": concurrency, "turns": TURNS},
                "ways": ways, "ratios": sampling_ratios(ways, concurrency)}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "bench.json", json.dumps(document, indent=2, default=float) + "\n")
    atomic_write_text(out / "bench.md", sampling_markdown(document))
    return document


WAY_NAMES = {"inprocess_one": "in-process (ONNX Runtime), one picture at a time",
             "served_one": "Triton, one request at a time",
             "inprocess_together": "in-process, all pictures stepping together",
             "served_batched": "Triton, {c} requests open, batched stepping",
             "served_single": "Triton, {c} requests open, one picture per step call"}


def sampling_markdown(document: dict[str, Any]) -> str:
    s, machine = document["sampling"], document["machine"]
    lines = [f"# artforge bench: {document['model']['family']} (sampling loop)", "",
             f"{s['steps']} steps of {s['sampler']}, guidance {s['guidance']:g}, a preview every {s['previews_every']} "
             f"steps; {s['turns']} interleaved turns (median, each turn's in brackets); "
             f"{machine.get('cpu', '')} ({machine.get('cores', '?')} cores).", "",
             "| way | pictures/s | per turn |", "|---|---|---|"]
    for way, figures in document["ways"].items():
        turns = ", ".join(f"{v:.2f}" for v in figures["per_turn"])
        lines.append(f"| {WAY_NAMES[way].format(c=s['concurrency'])} | {figures['pictures_per_s']:.2f} | {turns} |")
    one = document["ways"]["served_one"]
    lines += ["", f"One request at a time: first preview after {one['first_preview_ms']:.1f} ms of "
                  f"{one['request_ms']:.1f} ms.", "", "| ratio | value |", "|---|---|"]
    lines += [f"| {name} | {value:.3f} |" for name, value in document["ratios"].items()]
    return "\n".join(lines) + "\n"
