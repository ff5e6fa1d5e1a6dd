"""Throughput over 1, 2 ... N Triton replicas behind one client, and what the caller sees when one
is killed mid-run: `artforge bench RUN --replicas N` (it starts the replicas) or `--url a,b,...`
(servers already running: the sweep only, since it cannot kill them).

Load: `concurrency` client threads, each with its own Client over the replicas in use (least in
flight, failover: artforge/serving/replicas.py), sending the model's sample request for `seconds`. The
clients share the machine with the servers: their CPU time and each replica's are reported.
"""
from __future__ import annotations

import json
import signal
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from artforge.benchmarks.measure import latency_summary, machine_facts
from artforge.files import atomic_write_text
from artforge.serving.fuzz import process_group_cpu_s
from artforge.serving.replicas import split_targets
from artforge.export.pipeline import export_checkpoint
from artforge.serving.client import Client
from artforge.serving.server import replica_servers


@dataclass
class Completion:
    """When each request of a run ended (seconds from its start), and how."""

    done: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def drive(urls: list[str], model: str, inputs: dict[str, np.ndarray], concurrency: int, seconds: float,
          events: dict[float, Any] | None = None) -> tuple[Completion, float, float]:
    """Send requests from `concurrency` threads for `seconds`; events {at second: action} run meanwhile.
    Returns (completions, client CPU seconds, wall seconds)."""

    record, lock, stop = Completion(), threading.Lock(), threading.Event()
    start = time.perf_counter()

    def worker() -> None:
        with Client(",".join(urls), timeout_s=30) as client:
            while not stop.is_set():
                began = time.perf_counter()
                try:
                    client.infer(model, inputs)
                except Exception as e:  # counted: a failed user request is what this measures
                    with lock:
                        record.failures.append(str(e)[:200])
                    continue
                ended = time.perf_counter()
                with lock:
                    record.done.append(ended - start)
                    record.latencies.append(ended - began)

    cpu = time.process_time()
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for at, action in sorted((events or {}).items()):
        time.sleep(max(0.0, at - (time.perf_counter() - start)))
        action()
    time.sleep(max(0.0, seconds - (time.perf_counter() - start)))
    stop.set()
    for thread in threads:
        thread.join(timeout=60)  # bounded: a wedged call cannot hang the benchmark
    return record, time.process_time() - cpu, time.perf_counter() - start


def rate(done: list[float], since: float, until: float) -> float:
    return sum(since <= t < until for t in done) / (until - since) if until > since else 0.0


def sweep_point(urls, servers, model, inputs, concurrency, seconds) -> dict[str, Any]:
    cpu_before = [process_group_cpu_s(s.process.pid) for s in servers] if servers else []
    record, client_cpu, wall = drive(urls, model, inputs, concurrency, seconds)
    replica_cpu = [process_group_cpu_s(s.process.pid) - b for s, b in zip(servers, cpu_before)]
    return {"replicas": len(urls), "concurrency": concurrency, "requests": len(record.done),
            "failed": len(record.failures), "requests_per_s": len(record.done) / wall,
            "latency_ms": latency_summary(record.latencies), "client_cpu_s": client_cpu, "seconds": wall,
            "replica_cpu_s": replica_cpu}


def kill_run(servers, model, inputs, concurrency, seconds) -> dict[str, Any]:
    """Kill the last replica a quarter of the way in (SIGKILL: no goodbye), start it again halfway."""
    victim, urls = servers[-1], [s.grpc_url for s in servers]
    times: dict[str, float] = {}
    origin = time.perf_counter()

    def kill() -> None:
        times["killed"] = time.perf_counter() - origin
        victim.process.send_signal(signal.SIGKILL)
        victim.process.wait(timeout=30)

    def revive() -> None:
        times["restarting"] = time.perf_counter() - origin
        victim.stop()
        victim.start()
        times["restarted"] = time.perf_counter() - origin

    record, client_cpu, wall = drive(urls, model, inputs, concurrency, seconds,
                                     {seconds / 4: kill, seconds / 2: revive})
    done = sorted(record.done)
    after_kill = [t for t in done if t >= times["killed"]]
    gaps = np.diff([times["killed"]] + after_kill)
    return {"replicas": len(servers), "concurrency": concurrency, "seconds": wall, **times,
            "requests": len(done), "failed": len(record.failures), "first_failure": (record.failures or [""])[0],
            "requests_per_s_before": rate(done, 0.5, times["killed"]),
            "requests_per_s_while_down": rate(done, times["killed"] + 0.5, times["restarting"]),
            "requests_per_s_after": rate(done, times["restarted"] + 1.0, wall),
            "longest_gap_ms_after_kill": float(gaps.max()) * 1000 if len(gaps) else 0.0,
            "longest_gap_ends_at_s": after_kill[int(gaps.argmax())] if len(gaps) else 0.0,
            "client_cpu_s": client_cpu}


def replicas_markdown(document: dict[str, Any]) -> str:
    lines = [f"# {document['model']}: Triton replicas behind one client", "",
             f"machine: {document['machine'].get('cpu', '?')}, {document['machine'].get('cores')} cores; "
             f"{document['options']['concurrency']} client threads, {document['options']['seconds']:g} s a point, "
             "the model's sample request (batch 1).", "",
             "| replicas | requests/s | p50 ms | p99 ms | failed | client CPU s | CPU s per replica |",
             "|---|---|---|---|---|---|---|"]
    for p in document["sweep"]:
        lines.append(f"| {p['replicas']} | {p['requests_per_s']:.0f} | {p['latency_ms'].get('p50', 0):.2f} | "
                     f"{p['latency_ms'].get('p99', 0):.2f} | {p['failed']} | {p['client_cpu_s']:.1f} | "
                     f"{', '.join(f'{c:.1f}' for c in p['replica_cpu_s'])} |")
    k = document.get("kill")
    if k:
        lines += ["", f"Kill run ({k['replicas']} replicas, {k['seconds']:.0f} s): the last replica SIGKILLed at "
                  f"{k['killed']:.1f} s, started again at {k['restarting']:.1f} s (serving at {k['restarted']:.1f} s); "
                  f"the longest wait ended at {k['longest_gap_ends_at_s']:.1f} s.",
                  "", "| failed requests | requests/s before | while one is down | after it is back | "
                  "longest wait for a response after the kill, ms |", "|---|---|---|---|---|",
                  f"| {k['failed']} | {k['requests_per_s_before']:.0f} | {k['requests_per_s_while_down']:.0f} | "
                  f"{k['requests_per_s_after']:.0f} | {k['longest_gap_ms_after_kill']:.0f} |"]
    return "\n".join(lines) + "\n"


def run_replica_benchmark(opts, ckpt, spec, out: Path) -> dict[str, Any]:
    """The sweep over 1..N replicas and (replicas started here) the kill run; bench.json and bench.md."""

    concurrency = max(opts.concurrency)
    seconds = max(1.0, opts.baseline_seconds)
    inputs = spec.sample_inputs(1, seed=1, sizes=spec.optimal_sizes())
    with tempfile.TemporaryDirectory(prefix="artforge-replicas-") as work:
        servers, model = [], ckpt.family
        if opts.url:
            urls = split_targets(opts.url)
            model = opts.model or model
        else:  # one ONNX Runtime thread per replica: N replicas share the cores instead of fighting for them
            result = export_checkpoint(opts.checkpoint, Path(work) / "repo", max_batch=opts.max_batch,
                                       intra_op_threads=opts.threads or 1)
            model = result.name
            servers = replica_servers(Path(work) / "repo", opts.replicas, grpc_port=0, http_port=0, metrics_port=0)
            for server in servers:
                server.start()
            urls = [s.grpc_url for s in servers]
        try:
            sweep = [sweep_point(urls[:k], servers[:k], model, inputs, concurrency, seconds)
                     for k in sorted({1, 2, len(urls)}) if k <= len(urls)]
            kill = kill_run(servers, model, inputs, concurrency, 4 * seconds) if len(servers) > 1 else None
        finally:
            for server in servers:
                server.stop()
    document = {"model": model, "checkpoint": str(ckpt.path), "machine": machine_facts(),
                "options": {**opts.__dict__, "concurrency": concurrency, "seconds": seconds, "urls": urls},
                "sweep": sweep, "kill": kill, "ratios": {}}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "bench.json", json.dumps(document, indent=2, default=float) + "\n")
    atomic_write_text(out / "bench.md", replicas_markdown(document))
    return document
