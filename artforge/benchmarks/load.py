"""Load generation against a live Triton server: N concurrent clients on one connection (closed loop: each
sends its next request when answered), or requests arriving at random at a set rate (open loop)."""
from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from artforge.benchmarks.measure import latency_summary
from artforge.errors import ServerUnavailable
from artforge.serving.client import AsyncClient, Client
from artforge.serving.fuzz import process_group_cpu_s

STAT_PHASES = ("queue", "compute_input", "compute_infer", "compute_output")
# A point ends early once the server is clearly gone: the client gave up on an UNAVAILABLE server,
# or this many requests failed in a row. Without it a dead server is sent every remaining request
# (200,000 refusals took over a minute to count).
MAX_FAILURES_IN_A_ROW = 20


@dataclass
class LoadPoint:
    """One point of the sweep: a model, a client concurrency and a request batch size."""

    model: str
    concurrency: int
    batch: int
    requests: int = 0
    errors: int = 0
    first_error: str = ""
    seconds: float = 0.0
    latency_ms: dict[str, float] = field(default_factory=dict)
    server_ms: dict[str, float] = field(default_factory=dict)  # mean per request, from Triton's statistics
    executed_batch: float = 0.0  # mean batch Triton actually ran: > request batch when the batcher merges
    stopped: str = ""  # why the point ended before all its requests were sent ("" when it did not)
    # CPU seconds while the timed requests ran: this load generator's (all its threads), the server's
    # (Triton and its backend stubs); on a small machine both share the same cores
    client_cpu_s: float = 0.0
    server_cpu_s: float = 0.0

    def record_failure(self, error: Exception) -> None:
        self.errors += 1
        self.first_error = self.first_error or str(error)[:300]

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def items_per_s(self) -> float:
        return self.requests_per_s * self.batch

    def to_json(self, unit: str = "image") -> dict[str, Any]:
        """The point in the family's own unit: images_per_s, frames_per_s, tokens_per_s..."""
        return {**self.__dict__, "requests_per_s": self.requests_per_s, per_s(unit): self.items_per_s}


def per_s(unit: str) -> str:
    """The JSON key of a throughput in `unit`s per second (the training log uses the same names)."""
    return f"{unit}s_per_s"


def server_totals(stats: dict[str, Any]) -> dict[str, float]:
    """Cumulative counters of Triton's statistics extension for one model."""
    inference = stats.get("inference_stats", {})
    totals = {phase: float(inference.get(phase, {}).get("ns", 0)) for phase in STAT_PHASES}
    totals["success"] = float(inference.get("success", {}).get("count", 0))
    totals["executions"] = float(stats.get("execution_count", 0))
    totals["inferences"] = float(stats.get("inference_count", 0))
    return totals


def server_breakdown(before: dict[str, float], after: dict[str, float]) -> tuple[dict[str, float], float]:
    requests = max(after["success"] - before["success"], 1.0)
    per_request = {phase: (after[phase] - before[phase]) / requests / 1e6 for phase in STAT_PHASES}
    executions = after["executions"] - before["executions"]
    executed_batch = (after["inferences"] - before["inferences"]) / executions if executions else 0.0
    return per_request, executed_batch


def drive(client, model: str, make_inputs: Callable[[int, int], dict[str, np.ndarray]], point: LoadPoint,
          total: int, warmup: int, server_cpu: Callable[[], float] = lambda: 0.0) -> list[float]:
    """Send `warmup` then `total` requests from `point.concurrency` threads, each sending its next request when
    its answer came (closed loop); returns the latencies, each from send to answer.

    Threads on the blocking client, not asyncio: a blocking gRPC call waits with the GIL released, while
    grpc.aio completes each call on a poller thread that then wakes the event loop, which cost one client
    0.03-0.1 ms a request here. A request is prepared (checked and serialised) once for as long as
    `make_inputs` returns the same dict, as perf_analyzer prepares its --input-data, so that the load
    measures serving, not the client's numpy.

    Every failure is counted in `point`; once the server is gone (see MAX_FAILURES_IN_A_ROW) no
    further request is sent and `point.stopped` says why.
    """
    run = ClosedLoop(client, model, make_inputs, point)
    run.go(warmup, None)
    if not point.stopped:
        point.errors, point.first_error = 0, ""  # warm-up failures that did not stop the point don't count
    latencies: list[float] = []
    started, client_cpu, server_cpu_before = time.perf_counter(), time.process_time(), server_cpu()
    run.go(total, latencies)
    point.seconds = time.perf_counter() - started
    point.client_cpu_s = time.process_time() - client_cpu
    point.server_cpu_s = server_cpu() - server_cpu_before
    return latencies


class ClosedLoop:
    """The workers of `drive`: a shared count of requests issued and of failures in a row."""

    def __init__(self, client, model: str, make_inputs: Callable[[int, int], dict[str, np.ndarray]],
                 point: LoadPoint):
        self.client, self.model, self.make_inputs, self.point = client, model, make_inputs, point
        self.lock = threading.Lock()
        self.issued = 0
        self.failures_in_a_row = 0

    def go(self, budget: int, latencies: list[float] | None) -> None:
        """`budget` requests from the point's concurrency of workers; latencies appended when a list is given."""
        self.issued = 0
        with ThreadPoolExecutor(self.point.concurrency) as pool:
            for worker in [pool.submit(self.worker, budget, latencies) for _ in range(self.point.concurrency)]:
                worker.result()  # a bug in a worker surfaces here, not as a silent short point

    def next_index(self, budget: int) -> int | None:
        with self.lock:
            if self.issued >= budget or self.point.stopped:
                return None
            self.issued += 1
            return self.issued

    def worker(self, budget: int, latencies: list[float] | None) -> None:
        inputs, request = None, None
        while (index := self.next_index(budget)) is not None:
            try:
                fresh = self.make_inputs(self.point.batch, index)
                if fresh is not inputs:
                    inputs, request = fresh, self.client.prepare(self.model, fresh)
                sent = time.perf_counter()
                self.client.send(request)
            except Exception as e:  # every failure is counted, the first one is reported
                self.failed(e)
                continue
            answered = time.perf_counter()
            with self.lock:
                self.failures_in_a_row = 0
            if latencies is not None:
                latencies.append(answered - sent)

    def failed(self, error: Exception) -> None:
        with self.lock:
            self.failures_in_a_row += 1
            self.point.record_failure(error)
            if isinstance(error, ServerUnavailable) or self.failures_in_a_row >= MAX_FAILURES_IN_A_ROW:
                self.point.stopped = self.point.stopped or stop_reason(error, self.failures_in_a_row)


def stop_reason(error: Exception, failures_in_a_row: int) -> str:
    if isinstance(error, ServerUnavailable):
        return "the server is unavailable"
    return f"{failures_in_a_row} requests failed in a row"


def measure_point(url: str, model: str, make_inputs, concurrency: int, batch: int, requests: int,
                  warmup: int, timeout_s: float = 10.0, server_pid: int | None = None) -> LoadPoint:
    """Run one sweep point and fill in client latencies, the server-side breakdown and (given the server's
    process) the CPU both sides used."""

    point = LoadPoint(model, concurrency, batch)
    with Client(url, timeout_s=timeout_s, retries=0) as stats_client:
        try:
            before = server_totals(stats_client.statistics(model))
        except Exception as e:  # a dead server: report, do not hang
            point.errors, point.first_error = requests, str(e)[:300]
            return point

        try:
            with Client(url, timeout_s=timeout_s, retries=0, shared_memory=False) as client:
                latencies = drive(client, model, make_inputs, point, requests, warmup,
                                  (lambda: process_group_cpu_s(server_pid)) if server_pid else (lambda: 0.0))
        except Exception as e:
            point.errors, point.first_error = requests, str(e)[:300]
            return point
        point.requests = len(latencies)
        point.latency_ms = latency_summary(latencies)
        try:
            after = server_totals(stats_client.statistics(model))
            point.server_ms, point.executed_batch = server_breakdown(before, after)
        except Exception as e:
            point.first_error = point.first_error or f"statistics: {e}"[:300]
    return point


# ---- open loop: requests arrive on their own schedule, whether or not earlier ones were answered ----
MAX_IN_FLIGHT = 1024  # arrivals past this many unanswered requests are dropped (counted), not queued here


def poisson_arrivals(rate: float, count: int, seed: int) -> np.ndarray:
    """Send times (s from the start) of `count` requests arriving at random at `rate` per second on average."""
    gaps = np.random.default_rng(seed).exponential(1.0 / rate, count)
    return np.cumsum(gaps) - gaps[0]


async def drive_open_loop(client, model: str, inputs: dict[str, np.ndarray], arrivals: np.ndarray) -> dict[str, Any]:
    """Send one request at each arrival time without waiting for earlier answers. A latency counts from when
    the request left; how late it left (the event loop wakes on whole milliseconds, and a client that falls
    behind sends later still) is kept apart as its lag, so neither hides in the other."""
    latencies: list[float] = []
    lags: list[float] = []
    failed = dropped = 0
    in_flight: set[asyncio.Task] = set()
    first_error = ""
    request = client.prepare(model, inputs)  # checked and serialised once, as in the closed loop

    async def one(scheduled: float) -> None:
        nonlocal failed, first_error
        sent = time.perf_counter()
        try:
            await client.send(request)
            latencies.append(time.perf_counter() - sent)
            lags.append(sent - scheduled)
        except Exception as e:  # counted; the schedule goes on
            failed += 1
            first_error = first_error or str(e)[:300]

    start = time.perf_counter()
    for offset in arrivals:
        delay = start + offset - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        in_flight = {t for t in in_flight if not t.done()}
        if len(in_flight) >= MAX_IN_FLIGHT:
            dropped += 1
            continue
        in_flight.add(asyncio.ensure_future(one(start + offset)))
    await asyncio.gather(*in_flight)
    elapsed = time.perf_counter() - start
    return {"latencies": latencies, "lags": lags, "failed": failed, "dropped": dropped, "first_error": first_error,
            "seconds": elapsed}


def measure_open_loop(url: str, model: str, inputs: dict[str, np.ndarray], rate: float, requests: int,
                      seed: int = 0, timeout_s: float = 30.0) -> dict[str, Any]:
    """One offered rate (Poisson arrivals): what was achieved, latency percentiles, requests dropped or failed."""
    async def run() -> dict[str, Any]:
        async with AsyncClient(url, timeout_s=timeout_s, retries=0) as client:
            await client.infer(model, inputs)  # the connection and the model's metadata, before the clock
            return await drive_open_loop(client, model, inputs, arrivals)

    arrivals = poisson_arrivals(rate, requests, seed)
    done = asyncio.run(run())
    summary = latency_summary(done["latencies"]) if done["latencies"] else None
    lag = latency_summary(done["lags"]) if done["lags"] else None
    return {"rate": rate, "offered_rate": (len(arrivals) - 1) / arrivals[-1],  # this draw's rate, ±1/sqrt(N)
            "achieved_rate": len(done["latencies"]) / done["seconds"],
            "p50_ms": summary["p50"] if summary else None, "p99_ms": summary["p99"] if summary else None,
            "send_lag_p99_ms": lag["p99"] if lag else None,
            "requests": len(done["latencies"]), "failed": done["failed"], "dropped": done["dropped"],
            **({"first_error": done["first_error"]} if done["first_error"] else {})}
