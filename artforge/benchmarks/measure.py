"""Measuring primitives: percentiles, timed loops, FLOP counts, this machine's matmul peak."""
from __future__ import annotations

import platform
import time
from typing import Callable

import numpy as np
import torch


def latency_summary(seconds: list[float]) -> dict[str, float]:
    """Latency percentiles and mean in milliseconds."""
    if not seconds:
        return {k: float("nan") for k in ("p50", "p90", "p95", "p99", "mean")}
    ms = np.asarray(seconds) * 1e3
    p50, p90, p95, p99 = np.percentile(ms, [50, 90, 95, 99])
    return {"p50": float(p50), "p90": float(p90), "p95": float(p95), "p99": float(p99), "mean": float(ms.mean())}


def time_calls(fn: Callable[[], object], warmup: int, min_calls: int, min_seconds: float) -> list[float]:
    """Per-call wall times after a warm-up, for at least `min_calls` calls and `min_seconds`."""
    for _ in range(warmup):
        fn()
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < min_calls or time.perf_counter() - started < min_seconds:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def time_interleaved(runners: dict[str, Callable[[], object]], warmup: int, min_calls: int,
                     min_seconds: float, turn_seconds: float = 0.2) -> tuple[dict[str, list[float]], dict[str, str]]:
    """Per-call wall times of several ways to do the same work, taking turns of about `turn_seconds`.

    A shared machine runs slow for seconds at a time (seen here: the same ONNX Runtime call took 11 ms
    for a few seconds, then 18 ms); timing one way after another puts such a stretch on one side of a
    ratio, turns put it on both. The first call of each turn is not counted: the previous way's thread
    pools still spin for a while after its last call and would slow it. A runner that raises is dropped:
    (times, {name: its error})."""
    times: dict[str, list[float]] = {name: [] for name in runners}
    failed: dict[str, str] = {}
    per_turn: dict[str, int] = {}
    for name, fn in runners.items():
        try:
            t0 = time.perf_counter()
            for _ in range(max(warmup, 1)):
                fn()
            per_turn[name] = 1 + max(1, int(turn_seconds / ((time.perf_counter() - t0) / max(warmup, 1))))
        except Exception as e:  # e.g. a server that refuses the request: the other ways are still timed
            failed[name] = str(e)[:300]
    started = time.perf_counter()

    def more() -> bool:
        live = [n for n in per_turn if n not in failed]
        return bool(live) and (min(len(times[n]) for n in live) < min_calls
                               or time.perf_counter() - started < min_seconds)

    while more():
        for name, calls in per_turn.items():
            if name in failed:
                continue
            try:
                for call in range(calls):
                    t0 = time.perf_counter()
                    runners[name]()
                    if call:
                        times[name].append(time.perf_counter() - t0)
            except Exception as e:
                failed[name] = str(e)[:300]
    return times, failed


def count_flops(network: torch.nn.Module, args: tuple) -> int:
    """Floating-point operations of one forward pass (multiply-add = 2), by PyTorch's counter.

    Gradients are kept off by freezing the parameters for the count, not by torch.no_grad: the
    counter's module tracker fails under no_grad on some graphs (StyleGAN2's synthesis layers).
    """
    from torch.utils.flop_counter import FlopCounterMode

    trainable = [p for p in network.parameters() if p.requires_grad]
    counter = FlopCounterMode(display=False)
    try:
        for p in trainable:
            p.requires_grad_(False)
        with counter:
            network(*args)
    finally:
        for p in trainable:
            p.requires_grad_(True)
    return int(counter.get_total_flops())


def matmul_peak_gflops(size: int = 1024, seconds: float = 1.0) -> float:
    """fp32 matrix-multiply GFLOP/s this machine reaches with all its threads: the roofline."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    times = time_calls(lambda: a @ b, warmup=3, min_calls=5, min_seconds=seconds)
    return 2 * size**3 / float(np.median(times)) / 1e9


# the instruction sets that decide how fast a CPU runs these models (bf16 ones: OpenVINO's bf16 precision)
TELLING_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


def machine_facts() -> dict[str, object]:
    import os

    import onnxruntime

    facts = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
             "python": platform.python_version(), "torch": torch.__version__,
             "onnxruntime": onnxruntime.__version__, "torch_threads": torch.get_num_threads()}
    try:
        import openvino

        facts["openvino"] = openvino.__version__.split("-")[0]  # 2026.4.1, not its build tag
    except ImportError:
        pass
    try:
        with open("/proc/cpuinfo") as f:
            info = f.read().splitlines()
        facts["cpu"] = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
        flags = set(next(line.split(":", 1)[1].split() for line in info if line.startswith("flags")))
        facts["cpu_flags"] = [f for f in TELLING_FLAGS if f in flags]
    except (OSError, StopIteration):
        pass
    return facts
