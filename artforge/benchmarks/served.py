"""`artforge bench --url A --model N` without a checkpoint: a model already served, whoever exported it.

The request is drawn from what the server reports (tensors, artforge's limits when the model has them;
--sizes for dynamic axes); artforge's load generator sweeps the concurrency and batch points, and with
--perf-analyzer NVIDIA's perf_analyzer measures each batch-1 point right after it with the same bytes.
With --onnx (the served model's file, when it is on this machine) ONNX Runtime runs it in-process in
turns with one Triton client on the same batch-1 request, and the two answers are compared.
"""
from __future__ import annotations

import json
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from artforge.benchmarks.load import measure_point
from artforge.benchmarks.measure import latency_summary, machine_facts, time_interleaved
from artforge.benchmarks.perf_analyzer import PerfAnalyzer, write_input_data
from artforge.benchmarks.report import find_point, machine_line, perf_analyzer_lines, triton_lines
from artforge.contract import TensorSpec
from artforge.errors import ArtforgeError
from artforge.export.parity import onnx_session
from artforge.export.imported import sample_tensor
from artforge.files import atomic_write_text
from artforge.serving.client import Client, ModelInfo

DEFAULT_SIDE = 64  # a dynamic axis with no --sizes: this, within the model's limits


def axis_sizes(info: ModelInfo, t: TensorSpec, side: int) -> list[int]:
    """Per-item sizes of one input: static ones as they are, dynamic ones at `side` within the limits."""
    ranges = info.limits.get(t.name, {}).get("dims")
    sizes = []
    for axis, size in enumerate(t.shape):
        if isinstance(size, int):
            sizes.append(size)
            continue
        low, high = ranges[axis] if ranges else (1, side)
        sizes.append(min(max(side, low), high))
    return sizes


def contract_request(info: ModelInfo, batch: int, seed: int, side: int) -> dict[str, np.ndarray]:
    """A valid request from the served contract: values inside its limits, pictures as random pixels."""
    rng = np.random.default_rng(seed)
    request = {}
    for t in info.inputs:
        limit = info.limits.get(t.name, {})
        bounded = replace(t, min_value=limit.get("min"), max_value=limit.get("max"))
        request[t.name] = sample_tensor(bounded, (batch, *axis_sizes(info, t, side)), rng)
    return request


def run_served_benchmark(opts, out: Path, analyzer: PerfAnalyzer | None) -> dict[str, Any]:
    """Sweep a served model (opts: BenchOptions with url and model); write bench.json and bench.md."""
    url = opts.url.split(",")[0]
    with Client(url) as client:
        info = client.model(opts.model)
    if info.decoupled:
        raise ArtforgeError(f"model '{opts.model}' streams its answer: bench it from its checkpoint "
                            "(artforge bench RUN)")
    if opts.onnx and not Path(opts.onnx).is_file():  # before any work
        raise ArtforgeError(f"--onnx {opts.onnx} is not a file; give the served model's REPO/NAME/VERSION/model.onnx")
    side = opts.sizes[0] if opts.sizes else DEFAULT_SIDE
    batches = [b for b in opts.batch_sizes if b <= max(info.max_batch, 1)]
    request = contract_request(info, 1, 0, side)  # the batch-1 request perf_analyzer and --onnx send
    points, perf = sweep(url, opts, info, side, batches, analyzer, request)
    document = {"model": {"family": opts.model, "served": {"url": url, "max_batch": info.max_batch,
                                                            "artforge_family": info.family},
                          "unit": "item", "request": {name: list(v.shape[1:]) for name, v in request.items()}},
                "machine": machine_facts(), "options": opts.__dict__,
                "triton": [p.to_json("item") for p in points],
                "perf_analyzer": {"version": analyzer.version(), "points": perf} if analyzer else None,
                "one_client_b1": inprocess_beside(opts, url, info, request) if opts.onnx else None}
    document["ratios"] = served_ratios(document)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "bench.json", json.dumps(document, indent=2, default=str) + "\n")
    atomic_write_text(out / "bench.md", served_markdown(document))
    return document


def sweep(url: str, opts, info: ModelInfo, side: int, batches: list[int], analyzer: PerfAnalyzer | None,
          request: dict[str, np.ndarray]):
    """artforge's points at each concurrency (every batch size), then perf_analyzer at that concurrency with the
    batch-1 request's bytes: (artforge's points, perf_analyzer's)."""
    points, perf = [], []
    with tempfile.TemporaryDirectory(prefix="artforge-served-bench-") as work:
        data = write_input_data(request, Path(work) / "request.json")
        for c in opts.concurrency:
            points += [measure_point(url, opts.model, lambda batch, k: contract_request(info, batch, k, side), c, b,
                                     opts.requests, opts.warmup) for b in batches]
            if analyzer:
                perf.append(analyzer.measure(url, opts.model, data, c, max(50, opts.requests // 4)))
    return points, perf


def inprocess_beside(opts, url: str, info: ModelInfo, request: dict[str, np.ndarray]) -> dict[str, Any]:
    """ONNX Runtime in-process and Triton (one client), batch 1, the same request, timed in turns; and how far
    apart their answers are."""
    session = onnx_session(Path(opts.onnx), opts.threads)
    names = [t.name for t in info.outputs]
    with Client(url) as client:
        served = client.infer(opts.model, request)
        try:
            local = dict(zip(names, session.run(names, request)))
        except Exception as e:  # ONNX Runtime's own error types: a file of another model
            raise ArtforgeError(f"--onnx {opts.onnx} does not take model '{opts.model}''s request: "
                                f"{str(e).strip().splitlines()[0]}") from None
        runners = {"onnxruntime": lambda: session.run(names, request),
                   "triton": lambda: client.infer(opts.model, request)}
        times, failed = time_interleaved(runners, warmup=5, min_calls=20, min_seconds=opts.baseline_seconds)
    ways = {way: {"p50_ms": latency_summary(t)["p50"], "p99_ms": latency_summary(t)["p99"], "calls": len(t)}
            for way, t in times.items() if t}
    differences = {n: float(np.abs(served[n].astype(np.float64) - local[n].astype(np.float64)).max()) for n in names}
    return {**ways, "errors": failed, "max_abs_difference": differences}


def served_ratios(document: dict[str, Any]) -> dict[str, float]:
    """artforge's load generator against perf_analyzer at 1 client (p50) and at the most clients (throughput)."""
    perf = {p["concurrency"]: p for p in (document["perf_analyzer"] or {}).get("points", []) if "p50_ms" in p}
    model, found = document["model"]["family"], {}
    one = find_point(document, model, 1, 1)
    if 1 in perf and one and one["requests"]:
        found["artforge_p50_over_perf_analyzer_c1"] = one["latency_ms"]["p50"] / perf[1]["p50_ms"]
    top = max(perf) if perf else 0
    most = find_point(document, model, top, 1)
    if top and most and most["requests"] and perf[top]["throughput"]:
        found[f"artforge_throughput_over_perf_analyzer_c{top}"] = most["requests_per_s"] / perf[top]["throughput"]
    one = document.get("one_client_b1") or {}
    if "triton" in one and "onnxruntime" in one:
        found["triton_minus_onnxruntime_b1_ms"] = one["triton"]["p50_ms"] - one["onnxruntime"]["p50_ms"]
    return found


def served_markdown(document: dict[str, Any]) -> str:
    served, request = document["model"]["served"], document["model"]["request"]
    lines = [f"# artforge bench: {document['model']['family']} as served at {served['url']}", "",
             machine_line(document["machine"]), "",
             "Request (per item): " + ", ".join(f"{name} {tuple(shape)}" for name, shape in request.items())
             + f"; the model batches up to {served['max_batch']}."]
    lines += inprocess_beside_lines(document.get("one_client_b1"))
    lines += [line for line in triton_lines(document) if not line.startswith("MODEL-nobatch")]
    lines += perf_analyzer_lines(document)
    if document["ratios"]:
        lines += ["", "| ratio | value |", "|---|---|"] + [f"| {k} | {v:.3f} |" for k, v in document["ratios"].items()]
    return "\n".join(lines) + "\n"


def inprocess_beside_lines(one: dict[str, Any] | None) -> list[str]:
    if not one:
        return []
    lines = ["", "## One client, batch 1, in turns with ONNX Runtime in-process (the served file)", "",
             "| way | p50 ms | p99 ms | calls |", "|---|---|---|---|"]
    lines += [f"| {way} | {one[way]['p50_ms']:.2f} | {one[way]['p99_ms']:.2f} | {one[way]['calls']} |"
              for way in ("onnxruntime", "triton") if way in one]
    lines.append("")
    lines.append("Served answer against in-process, largest difference: " + ", ".join(
        f"{name} {value:g}" for name, value in one["max_abs_difference"].items()))
    return lines
