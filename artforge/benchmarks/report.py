"""Benchmark ratios, the Markdown table, the latency/throughput plot and the baseline check."""
from __future__ import annotations

import json
import re
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from artforge.benchmarks.load import per_s
from artforge.errors import ArtforgeError
from artforge.files import atomic_write_text

# name -> (what it means, better when "lower"/"higher", target or None); the targets are issue #15's.
# "_cN" stands for the client concurrency a ratio was measured at (the sweep's highest): _c16, _c4...
RATIOS = {
    "ort_vs_pytorch_b1_latency": ("ONNX Runtime / PyTorch eager p50 latency, batch 1", "lower", 0.8),
    "triton_overhead_b1_ms": ("Triton gRPC p50 minus in-process p50 of the runtime Triton serves with, batch 1 (ms)",
                              "lower", 1.0),
    "serving_path_b1_ms": ("Triton gRPC p50 of the same request to the model's copy that answers from memory, "
                           "batch 1 (ms): the serving path alone, the least the overhead can be", "lower", None),
    "served_vs_inprocess_throughput_cN": ("Triton throughput at N clients (dynamic batching, batch 1) "
                                          "/ in-process batch-1 throughput of the served runtime", "higher", 0.5),
    "serving_path_throughput_cN": ("the same for the copy answering from memory at N clients: the most the serving "
                                   "path can carry", "higher", None),
    "batching_speedup_cN": ("throughput with dynamic batching / without, N clients, batch 1", "higher", 2.0),
    "inprocess_batching_gain": ("the served runtime's best batch / batch 1 in-process, items/s: what any batcher "
                                "can gain at most", "higher", None),
    "ort_gflops_fraction": ("ONNX Runtime largest-batch GFLOP/s / fp32 matmul peak", "higher", None),
    "artforge_p50_over_perf_analyzer_cN": ("artforge's load generator p50 / perf_analyzer's p50, N clients, batch 1, "
                                           "the same request measured back to back", "lower", None),
    "client_overhead_b1_ms": ("artforge's load generator p50 minus perf_analyzer's p50, 1 client, batch 1, the same "
                              "request measured back to back in 3 turns, the median (ms): what artforge's Python "
                              "client adds", "lower", 0.2),
    "backend_overhead_b1_ms": ("Triton's server time per request (queue + input + infer + output, by perf_analyzer, "
                               "1 client) of artforge's model.py answering from memory minus a trivial Python-backend "
                               "model of the same tensors (ms): what artforge's model.py adds", "lower", 0.3),
    "server_vs_inprocess_b1_ms": ("Triton's server time per request of the model (by perf_analyzer, 1 client) minus "
                                  "the in-process p50 of the runtime it serves with (ms)", "lower", None),
    "open_loop_knee_rps": ("open loop (Poisson arrivals, batch 1): the highest offered rate whose p99 stays within 2x "
                           "the unloaded p99 (one client in a loop), requests/s", "higher", None),
    "perf_analyzer_open_loop_knee_rps": ("the same knee by perf_analyzer (its own open loop against its own one-client "
                                         "p99), requests/s", "higher", None),
    "artforge_throughput_over_perf_analyzer_cN": ("artforge's load generator req/s / perf_analyzer's infer/s, "
                                                  "N clients, batch 1", "higher", None),
}


def find_point(document: dict[str, Any], model_suffix: str, concurrency: int, batch: int) -> dict[str, Any] | None:
    for p in document["triton"]:
        if p["model"].endswith(model_suffix) and p["concurrency"] == concurrency and p["batch"] == batch:
            return p
    return None


def throughput_key(document: dict[str, Any]) -> str:
    """images_per_s, frames_per_s, ...: the family's unit, as the document names it."""
    return per_s(document["model"].get("unit", "image"))


def compute_ratios(document: dict[str, Any]) -> dict[str, float]:
    inproc = document["inprocess"]
    family = document["model"]["family"]
    top = max(p["concurrency"] for p in document["triton"])
    ratios: dict[str, float] = {}
    ort1, torch1 = inproc["onnxruntime_b1"]["latency_ms"]["p50"], inproc["pytorch_b1"]["latency_ms"]["p50"]
    ratios["ort_vs_pytorch_b1_latency"] = ort1 / torch1
    one = document.get("one_client_b1") or {}
    single = find_point(document, family, 1, 1)
    served = served_runtime(document)
    if "p50_ms" in one.get("triton", {}):  # timed in turn with the same runtime in-process: the fair comparison
        ratios["triton_overhead_b1_ms"] = one["triton"]["p50_ms"] - one[served]["p50_ms"]
    elif single and single["requests"]:
        ratios["triton_overhead_b1_ms"] = single["latency_ms"]["p50"] - ort1
    if "p50_ms" in one.get("triton_nocompute", {}):
        ratios["serving_path_b1_ms"] = one["triton_nocompute"]["p50_ms"]
    batched, plain = find_point(document, family, top, 1), find_point(document, "-nobatch", top, 1)
    path_only = find_point(document, "-nocompute", top, 1)
    inproc1 = inproc.get(f"{served}_b1", inproc["onnxruntime_b1"])[throughput_key(document)]
    if batched and batched["requests"]:
        ratios[f"served_vs_inprocess_throughput_c{top}"] = batched["requests_per_s"] / inproc1
    if path_only and path_only["requests"]:
        ratios[f"serving_path_throughput_c{top}"] = path_only["requests_per_s"] / inproc1
    if batched and plain and plain["requests_per_s"]:
        ratios[f"batching_speedup_c{top}"] = batched["requests_per_s"] / plain["requests_per_s"]
    if inproc.get("batch_curve"):
        ratios["inprocess_batching_gain"] = max(p["vs_batch_1"] for p in inproc["batch_curve"])
    big = max((v for k, v in inproc.items() if k.startswith("onnxruntime_b")), key=lambda v: v["batch"])
    ratios["ort_gflops_fraction"] = (big[throughput_key(document)] * document["model"]["gflop_per_item"]
                                     / document["machine"]["matmul_fp32_gflops"])
    ratios.update(size_ratios(document, served))
    ratios.update(perf_analyzer_ratios(document, family, top))
    ratios.update(knee_ratios(document, family))
    return ratios


def perf_analyzer_ratios(document: dict[str, Any], model: str, top: int) -> dict[str, float]:
    """artforge's load generator against perf_analyzer on the same points: 1 client's p50, the most clients'
    throughput."""
    points = {p["concurrency"]: p for p in (document.get("perf_analyzer") or {}).get("points", []) if "p50_ms" in p}
    found = {}
    mine = find_point(document, model, 1, 1)
    if 1 in points and mine and mine["requests"]:
        found["artforge_p50_over_perf_analyzer_c1"] = mine["latency_ms"]["p50"] / points[1]["p50_ms"]
        turns = (document.get("perf_analyzer") or {}).get("c1_turns") or [
            {"artforge_p50_ms": mine["latency_ms"]["p50"], "perf_analyzer_p50_ms": points[1]["p50_ms"]}]
        found["client_overhead_b1_ms"] = float(np.median([t["artforge_p50_ms"] - t["perf_analyzer_p50_ms"]
                                                          for t in turns]))
    backend = (document.get("perf_analyzer") or {}).get("backend", {})
    if all("p50_ms" in backend.get(way, {}) for way in ("nocompute", "trivial")):
        found["backend_overhead_b1_ms"] = (server_us(backend["nocompute"]) - server_us(backend["trivial"])) / 1000
    served = document["inprocess"].get(f"{served_runtime(document)}_b1")
    if 1 in points and served:
        found["server_vs_inprocess_b1_ms"] = server_us(points[1]) / 1000 - served["latency_ms"]["p50"]
    for size, point in (document.get("perf_analyzer") or {}).get("sizes", {}).items():
        if "p50_ms" in point and "artforge_p50_ms" in point:
            found[f"artforge_p50_over_perf_analyzer_b1_{size}px"] = point["artforge_p50_ms"] / point["p50_ms"]
            found[f"client_overhead_ms_b1_{size}px"] = point["artforge_p50_ms"] - point["p50_ms"]
    mine = find_point(document, model, top, 1)
    if top in points and mine and mine["requests"] and points[top]["throughput"]:
        found[f"artforge_throughput_over_perf_analyzer_c{top}"] = mine["requests_per_s"] / points[top]["throughput"]
    return found


def knee(points: list[dict[str, Any]], unloaded_p99_ms: float, rate_key: str) -> float:
    """The highest offered rate kept up with (at least 95% of the rate its random arrivals drew achieved,
    nothing failed or dropped) whose p99 stays within 2x the unloaded p99 (0: none did)."""
    achieved = "achieved_rate" if rate_key == "rate" else "throughput"
    within = [p[rate_key] for p in points if p.get("p99_ms") is not None and not p.get("failed")
              and not p.get("dropped") and p[achieved] >= 0.95 * p.get("offered_rate", p[rate_key])
              and p["p99_ms"] <= 2 * unloaded_p99_ms]
    return float(max(within, default=0.0))


def knee_ratios(document: dict[str, Any], model: str) -> dict[str, float]:
    found = {}
    alone = find_point(document, model, 1, 1)
    if document.get("open_loop") and alone and alone["requests"]:
        found["open_loop_knee_rps"] = knee(document["open_loop"], alone["latency_ms"]["p99"], "rate")
    perf = document.get("perf_analyzer") or {}
    perf_alone = next((p for p in perf.get("points", []) if p.get("concurrency") == 1 and "p99_ms" in p), None)
    if perf.get("open_loop") and perf_alone:
        found["perf_analyzer_open_loop_knee_rps"] = knee(perf["open_loop"], perf_alone["p99_ms"], "request_rate")
    return found


def server_us(point: dict[str, Any]) -> float:
    """Triton's time for one request as perf_analyzer reports it: queue, compute input, infer, output (µs)."""
    return sum(point[f"server_{part}_us"] for part in ("queue", "compute_input", "compute_infer", "compute_output"))


def size_ratios(document: dict[str, Any], served: str) -> dict[str, float]:
    """Per picture size (models with dynamic sizes): Triton against the in-process runtimes and the peer, and
    what shared memory and the serving path account for."""
    found: dict[str, float] = {}
    for size, row in document.get("sizes", {}).items():
        if "p50_ms" in row["triton_b1"]:
            found[f"triton_vs_ort_b1_{size}px"] = row["triton_b1"]["p50_ms"] / row["onnxruntime_b1"]["p50_ms"]
        if "p50_ms" in row["triton_b1"] and "p50_ms" in row.get("triton_grpc_payload_b1", {}):
            found[f"shared_memory_gain_b1_{size}px"] = (row["triton_grpc_payload_b1"]["p50_ms"]
                                                         / row["triton_b1"]["p50_ms"])
        if "p50_ms" in row["triton_b1"] and "p50_ms" in row.get("openvino_b1", {}):
            found[f"triton_vs_openvino_b1_{size}px"] = row["triton_b1"]["p50_ms"] / row["openvino_b1"]["p50_ms"]
        if "p50_ms" in row.get("triton_nocompute_b1", {}) and "p50_ms" in row.get(f"{served}_b1", {}):
            found[f"serving_path_share_b1_{size}px"] = (row["triton_nocompute_b1"]["p50_ms"]
                                                         / row[f"{served}_b1"]["p50_ms"])
        if "p50_ms" in row["triton_b1"] and "p50_ms" in row.get("peer_b1", {}):
            found[f"triton_vs_peer_fps_{size}px"] = row["triton_b1"]["fps"] / row["peer_b1"]["fps"]
    return found


def served_runtime(document: dict[str, Any]) -> str:
    """What Triton ran the model with: onnxruntime, or openvino (bench --cpu-runtime)."""
    return document.get("options", {}).get("cpu_runtime") or "onnxruntime"


def ratio_info(name: str) -> tuple[str, str, float | None]:
    """(meaning, better, target) of a ratio, including the per-size ones of image-to-image families."""
    if name.startswith("triton_vs_ort_b1_"):
        size = name.rsplit("_", 1)[1]
        return (f"Triton gRPC p50 / in-process ONNX Runtime p50, batch 1, {size}", "lower", 1.1)
    if name.startswith("shared_memory_gain_b1_"):
        size = name.rsplit("_", 1)[1]
        return (f"Triton p50 with the image in the gRPC message / through shared memory, batch 1, {size}", "higher",
                None)
    if name.startswith("triton_vs_openvino_b1_"):
        size = name.rsplit("_", 1)[1]
        return (f"Triton gRPC p50 (serving with OpenVINO) / in-process OpenVINO p50, batch 1, {size}", "lower", 1.1)
    if name.startswith("artforge_p50_over_perf_analyzer_b1_"):
        size = name.rsplit("_", 1)[1]
        return (f"artforge's client p50 (one client, timed alone right before perf_analyzer) / perf_analyzer's "
                f"p50, batch 1, {size}, both through system shared memory", "lower", None)
    if name.startswith("client_overhead_ms_b1_"):
        size = name.rsplit("_", 1)[1]
        return (f"artforge's client p50 (one client, timed alone right before perf_analyzer) minus perf_analyzer's "
                f"p50 (ms), batch 1, {size}, both through system shared memory: what artforge's client adds",
                "lower", 0.2)
    if name.startswith("serving_path_share_b1_"):
        size = name.rsplit("_", 1)[1]
        return (f"the serving path alone (the copy answering from memory) / in-process p50 of the served runtime, "
                f"batch 1, {size}: Triton / in-process cannot be below 1 + this", "lower", None)
    if name.startswith("triton_vs_peer_fps_"):
        size = name.rsplit("_", 1)[1]
        return (f"Triton frames/s (one client) / the peer's in-process frames/s, batch 1, {size}", "higher", 1.5)
    clients = re.search(r"_c(\d+)$", name)
    if clients:
        meaning, better, target = RATIOS[name[:clients.start()] + "_cN"]
        n = clients.group(1)
        return meaning.replace("N clients", f"{n} client" + ("s" if n != "1" else "")), better, target
    return RATIOS[name]


def at_clients(name: str) -> tuple[str, str]:
    """'batching_speedup_c16' -> ('batching_speedup', '_c16'); ('name', '') without a concurrency."""
    clients = re.search(r"_c\d+$", name)
    return (name[:clients.start()], clients.group()) if clients else (name, "")


def markdown(document: dict[str, Any]) -> str:
    variants = variant_lines(document["variants"]) if document.get("variants") else []
    lines = (header_lines(document) + inprocess_lines(document) + triton_lines(document)
             + perf_analyzer_lines(document) + open_loop_lines(document)
             + sizes_lines(document) + variants + ratio_lines(document))
    return "\n".join(lines) + "\n"


def header_lines(document: dict[str, Any]) -> list[str]:
    """The title (family and outputs) and the machine, runtimes and model cost the figures belong to."""
    m = document["machine"]
    unit = document["model"].get("unit", "image")  # the family's unit: image, frame, token...
    specs = document["model"].get("spec", {}).get("outputs", [])
    outputs = ", ".join(f"{t['name']} {tuple(t['shape'])}" for t in specs)
    return [f"# artforge bench: {document['model']['family']}" + (f" ({outputs})" if outputs else ""), "",
            f"{m['cpu']}, {m['cores']} cores" + (f" ({', '.join(m['cpu_flags'])})" if m.get("cpu_flags") else "")
            + f"; torch {m['torch']}, onnxruntime {m['onnxruntime']}"
            + (f", openvino {m['openvino']}" if m.get("openvino") else "") + "; "
            f"Triton serves with {served_runtime(document)}"
            + (f" ({document['options'].get('precision', 'fp32')})" if served_runtime(document) == "openvino" else "")
            + "; "
            f"fp32 matmul peak {m['matmul_fp32_gflops']:.0f} GFLOP/s; "
            f"model {document['model']['gflop_per_item'] * 1e3:.1f} MFLOP per {unit}"]


def inprocess_lines(document: dict[str, Any]) -> list[str]:
    """In-process runtimes, the batch curve, and one client at batch 1 every way in turn."""
    inproc, unit = document["inprocess"], document["model"].get("unit", "image")
    lines = ["", "## In-process", "", f"| runtime | batch | p50 ms | p99 ms | {unit}s/s |", "|---|---|---|---|---|"]
    for name, r in inproc.items():
        if name == "batch_curve":
            continue
        lines.append(f"| {name.rsplit('_b', 1)[0]} | {r['batch']} | {r['latency_ms']['p50']:.2f} | "
                     f"{r['latency_ms']['p99']:.2f} | {r[throughput_key(document)]:.0f} |")
    if inproc.get("batch_curve"):
        runtime = {"onnxruntime": "ONNX Runtime", "openvino": "OpenVINO"}[served_runtime(document)]
        lines += ["", f"{runtime}'s batch curve in-process: what dynamic batching can gain at most on this machine",
                  "", "| batch | " + " | ".join(str(p["batch"]) for p in inproc["batch_curve"]) + " |",
                  "|---|" + "---|" * len(inproc["batch_curve"]),
                  f"| {unit}s/s | " + " | ".join(f"{p['items_per_s']:.0f}" for p in inproc["batch_curve"]) + " |",
                  "| × batch 1 | " + " | ".join(f"{p['vs_batch_1']:.2f}" for p in inproc["batch_curve"]) + " |"]
    one = document.get("one_client_b1") or {}
    if one:
        lines += ["", "One client, batch 1, every way timed in turn (a slow stretch of the machine falls on all):", "",
                  "| way | p50 ms | " + f"{unit}s/s |", "|---|---|---|"]
        lines += [f"| {name} | {r['p50_ms']:.2f} | {r['fps']:.0f} |" for name, r in one.items() if "p50_ms" in r]
    return lines


def triton_lines(document: dict[str, Any]) -> list[str]:
    """Every sweep point over gRPC: latency percentiles, throughput, server-side times, CPU spent."""
    unit = document["model"].get("unit", "image")
    lines = ["", "## Triton over gRPC", "",
             "MODEL-nobatch runs every request alone; MODEL-nocompute (and `triton_nocompute` above) batches as "
             "MODEL but computes each input shape once and repeats the answer: the serving path alone.", "",
             f"| model | conc. | batch | p50 ms | p90 | p95 | p99 | req/s | {unit}s/s | errors | queue ms | "
             "infer ms | executed batch | CPU s: client, server |", "|---" * 14 + "|"]
    for p in document["triton"]:
        lat, srv = p["latency_ms"] or {k: float("nan") for k in ("p50", "p90", "p95", "p99")}, p["server_ms"]
        lines.append(f"| {p['model']} | {p['concurrency']} | {p['batch']} | {lat['p50']:.2f} | {lat['p90']:.2f} | "
                     f"{lat['p95']:.2f} | {lat['p99']:.2f} | {p['requests_per_s']:.0f} | "
                     f"{p[throughput_key(document)]:.0f} | "
                     f"{p['errors']} | {srv.get('queue', float('nan')):.2f} | "
                     f"{srv.get('compute_infer', float('nan')):.2f} | {p['executed_batch']:.1f} | "
                     f"{p.get('client_cpu_s', 0):.1f}, {p.get('server_cpu_s', 0):.1f} in {p.get('seconds', 0):.1f} s |")
    return lines


def perf_analyzer_lines(document: dict[str, Any]) -> list[str]:
    """Each batch-1 point as artforge's load generator and NVIDIA's perf_analyzer measured it, back to back,
    with Triton's own split of perf_analyzer's requests."""
    perf = document.get("perf_analyzer")
    if not perf:
        return []
    model = document["model"]["family"]
    lines = ["", "## perf_analyzer beside artforge's load generator", "",
             f"{perf['version']}; each point right after artforge's, the same request bytes (gRPC, batch 1); "
             "server split in µs: queue, compute input, infer, output.", "",
             "| conc. | artforge p50 ms | perf_analyzer p50 ms | artforge p99 | perf_analyzer p99 | artforge req/s | "
             "perf_analyzer infer/s | server split µs | stability |", "|---" * 9 + "|"]
    for p in perf["points"]:
        mine = find_point(document, model, p["concurrency"], 1)
        if "error" in p or not mine or not mine["latency_ms"]:
            lines.append(f"| {p['concurrency']} | | | | | | | | {p.get('error', 'no artforge point')} |")
            continue
        split = " + ".join(f"{p[k]:.0f}" for k in ("server_queue_us", "server_compute_input_us",
                                                   "server_compute_infer_us", "server_compute_output_us"))
        lines.append(f"| {p['concurrency']} | {mine['latency_ms']['p50']:.2f} | {p['p50_ms']:.2f} | "
                     f"{mine['latency_ms']['p99']:.2f} | {p['p99_ms']:.2f} | {mine['requests_per_s']:.0f} | "
                     f"{p['throughput']:.0f} | {split} | {p['stability']} |")
    if perf.get("c1_turns"):
        pairs = ", ".join(f"{t['artforge_p50_ms']:.2f} / {t['perf_analyzer_p50_ms']:.2f}" for t in perf["c1_turns"])
        lines += ["", f"One client in turns, artforge / perf_analyzer p50 ms: {pairs} (client_overhead_b1_ms is the "
                  "median difference)."]
    lines += disagreement_lines(document, perf["points"])
    sizes = {size: p for size, p in perf.get("sizes", {}).items() if "p50_ms" in p}
    if sizes:
        lines += ["", "At each size artforge's `Client` is timed alone right before perf_analyzer, in turns (the turn "
                  "with the median difference; every turn in bench.json); in the by-size table it takes turns "
                  "with the in-process ways instead:", "",
                  "| size, 1 client | artforge p50 ms, alone | in turns | perf_analyzer p50 ms | perf_analyzer p99 | "
                  "server split µs | transfer |", "|---" * 7 + "|"]
        for size, p in sizes.items():
            mine = document.get("sizes", {}).get(size, {}).get("triton_b1", {})
            split = " + ".join(f"{p[k]:.0f}" for k in ("server_queue_us", "server_compute_input_us",
                                                       "server_compute_infer_us", "server_compute_output_us"))
            lines.append(f"| {size}x{size} | {p.get('artforge_p50_ms', float('nan')):.2f} | "
                         f"{mine.get('p50_ms', float('nan')):.2f} | {p['p50_ms']:.2f} | "
                         f"{p['p99_ms']:.2f} | {split} | {p['transfer']} |")
    backend = {way: p for way, p in perf.get("backend", {}).items() if "p50_ms" in p}
    if len(backend) == 2:
        lines += ["", "Triton's time per request at 1 client (perf_analyzer): artforge's model.py answering from "
                  f"memory {server_us(backend['nocompute']):.0f} µs, a trivial Python-backend model of the same "
                  f"tensors (reads them, answers zeros) {server_us(backend['trivial']):.0f} µs."]
    return lines


def disagreement_lines(document: dict[str, Any], points: list[dict[str, Any]]) -> list[str]:
    """Where artforge's load generator and perf_analyzer differ by more than 15% (p50 or throughput), what each
    client spent: CPU per request on the request's path, and cores taken from a server on the same machine."""
    model, cores = document["model"]["family"], document["machine"].get("cores", "?")
    lines = []
    for p in points:
        mine = find_point(document, model, p["concurrency"], 1)
        if "p50_ms" not in p or not mine or not mine["requests"] or not p["throughput"]:
            continue
        latency, throughput = mine["latency_ms"]["p50"] / p["p50_ms"], mine["requests_per_s"] / p["throughput"]
        if abs(latency - 1) <= 0.15 and abs(throughput - 1) <= 0.15:
            continue
        busy = mine.get("client_cpu_s", 0) / mine["seconds"] if mine.get("seconds") else 0.0
        own = f"{1e6 * mine.get('client_cpu_s', 0) / mine['requests']:.0f} µs and {busy:.2f} cores"
        theirs = (f"{1e6 * p['client_cpu_cores'] / p['throughput']:.0f} µs and {p['client_cpu_cores']:.2f} cores"
                  if "client_cpu_cores" in p else "not measured")
        lines.append(f"- {p['concurrency']} client{'s' if p['concurrency'] > 1 else ''}: artforge's p50 "
                     f"{latency:.2f}×, throughput {throughput:.2f}× perf_analyzer's. Client CPU per request and "
                     f"cores kept busy: artforge (Python) {own}, perf_analyzer (C++) {theirs}, on the "
                     f"{cores} cores the server shares.")
    if not lines:
        return ["", "artforge's load generator and perf_analyzer agree within 15% (p50 and throughput) at every "
                "point."]
    return ["", "Where the two differ by more than 15%:", "", *lines]


def open_loop_lines(document: dict[str, Any]) -> list[str]:
    """Each offered rate (Poisson arrivals): what artforge's load generator and perf_analyzer achieved."""
    if not document.get("open_loop"):
        return []
    theirs = {p["request_rate"]: p for p in (document.get("perf_analyzer") or {}).get("open_loop", [])
              if "p50_ms" in p}
    lines = ["", "## Open loop (requests arriving at random, batch 1)", "",
             "Latency counts from when a request left; its lag is how late it left (artforge's event loop wakes on "
             "whole milliseconds; a client that falls behind sends later still).", "",
             "| offered req/s | achieved | p50 ms | p99 ms | send lag p99 ms | failed, dropped | "
             "perf_analyzer achieved | p50 ms | p99 ms |", "|---" * 9 + "|"]
    for p in document["open_loop"]:
        other = theirs.get(float(p["rate"]))
        mine = (f"{p['achieved_rate']:.0f} | {p['p50_ms']:.2f} | {p['p99_ms']:.2f}" if p["p50_ms"] is not None
                else f"{p['achieved_rate']:.0f} | | ")
        lag = "" if p.get("send_lag_p99_ms") is None else f"{p['send_lag_p99_ms']:.2f}"
        lines.append(f"| {p['rate']} | {mine} | {lag} | {p['failed']}, {p['dropped']} | "
                     + (f"{other['throughput']:.0f} | {other['p50_ms']:.2f} | {other['p99_ms']:.2f} |" if other
                        else " | | |"))
    return lines


def sizes_lines(document: dict[str, Any]) -> list[str]:
    """Frames per second by picture size, every way (and the public peer), for models with dynamic sizes."""
    if not document.get("sizes"):
        return []
    peer = next((row["peer_b1"]["peer"] for row in document["sizes"].values() if "peer_b1" in row), None)
    first = next(iter(document["sizes"].values()))
    ways = ("pytorch", "onnxruntime") + (("openvino",) if served_runtime(document) == "openvino" else ()) + \
        ("triton",) + (("triton_grpc_payload",) if "triton_grpc_payload_b1" in first else ()) + \
        (("triton_nocompute",) if "triton_nocompute_b1" in first else ())
    titles = {"pytorch": "PyTorch", "onnxruntime": "ORT", "openvino": "OpenVINO", "triton": "Triton",
              "triton_grpc_payload": "Triton, image in gRPC", "triton_nocompute": "Triton, no compute"}
    lines = ["", "## Frames per second by size (one client)", "",
             "| size | " + " | ".join(f"{titles[r]} b{b}" for b in (1, 4) for r in ways) + " |"
             + (f" {peer} (peer, in-process ORT) b1 |" if peer else ""),
             "|---|" + "---|" * (2 * len(ways)) + ("---|" if peer else "")]
    for size, row in document["sizes"].items():
        cells = [fps_cell(row[f"{r}_b{b}"]) for b in (1, 4) for r in ways]
        cells += [fps_cell(row["peer_b1"])] if peer else []
        lines.append(f"| {size}x{size} | " + " | ".join(cells) + " |")
    return lines


def ratio_lines(document: dict[str, Any]) -> list[str]:
    intervals = document.get("ratio_intervals", {})
    trials = f" (median of {document['trials']} trials, bootstrap 95% interval)" if intervals else ""
    lines = ["", "## Ratios" + trials, "", "| ratio | value | target | met |", "|---|---|---|---|"]
    for name, value in document["ratios"].items():
        meaning, better, target = ratio_info(name)
        bound = "" if target is None else f"{'≤' if better == 'lower' else '≥'} {target:g}"
        shown = f"{value:.3f}" + (f" [{intervals[name][0]:.3f}-{intervals[name][1]:.3f}]" if name in intervals else "")
        lines.append(f"| {meaning} | {shown} | {bound} | {verdict(name, document)} |")
    return lines


def bootstrap_interval(values: list[float], resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """The 95% percentile-bootstrap interval of the median of `values` (one value per trial)."""
    rng = np.random.default_rng(seed)
    draws = rng.choice(np.asarray(values, float), size=(resamples, len(values)), replace=True)
    medians = np.median(draws, axis=1)
    return float(np.percentile(medians, 2.5)), float(np.percentile(medians, 97.5))


def combine_trials(documents: list[dict[str, Any]]) -> dict[str, Any]:
    """One document for several trials of the same bench: the last trial's figures, each ratio the median
    over the trials it was measured in, with its bootstrap interval and every trial's value."""
    combined = dict(documents[-1])
    names = [name for name in documents[-1]["ratios"] if all(name in d["ratios"] for d in documents)]
    values = {name: [d["ratios"][name] for d in documents] for name in names}
    combined["ratios"] = {name: statistics.median(v) for name, v in values.items()}
    combined["ratio_intervals"] = {name: list(bootstrap_interval(v)) for name, v in values.items()}
    combined["ratio_trials"] = values
    combined["trials"] = len(documents)
    return combined


def verdict(name: str, document: dict[str, Any]) -> str:
    """'yes', 'no', or 'no: ' and the measured reason this run shows that the target is out of reach."""
    _, better, target = ratio_info(name)
    value = document["ratios"][name]
    if target is None:
        return ""
    if value <= target if better == "lower" else value >= target:
        return "yes"
    why = why_out_of_reach(name, target, document)
    return f"no: {why}" if why else "no"


def why_out_of_reach(name: str, target: float, document: dict[str, Any]) -> str:
    """Where the serving path alone, or the model's own batch curve, already misses the target."""
    ratios = document["ratios"]
    base, clients = at_clients(name)
    path_ms, carried = ratios.get("serving_path_b1_ms"), ratios.get(f"serving_path_throughput{clients}")
    gain = ratios.get("inprocess_batching_gain")
    if name == "triton_overhead_b1_ms" and path_ms is not None and path_ms > target:
        return f"the serving path alone takes {path_ms:.2f} ms"
    if base == "served_vs_inprocess_throughput" and carried is not None and carried < target:
        return f"the serving path alone carries {carried:.2f}"
    if base == "batching_speedup" and gain is not None and gain < target:
        return f"batching gains {gain:.2f}× at most in-process"
    size = name.rsplit("_", 1)[1]
    share = ratios.get(f"serving_path_share_b1_{size}")
    served = {"onnxruntime": "triton_vs_ort_b1_", "openvino": "triton_vs_openvino_b1_"}[served_runtime(document)]
    if name.startswith(served) and share is not None and 1 + share > target:
        return f"the serving path alone is {share:.2f}× the compute"
    return ""


def fps_cell(measured: dict[str, Any]) -> str:
    """Frames/s, '—' where not measured (a batch over the server's maximum), 'failed' where requests failed."""
    if measured.get("fps") is None:
        return "—"
    return "failed" if measured.get("errors") else f"{measured['fps']:.1f}"


def variant_lines(variants: list[dict[str, Any]]) -> list[str]:
    """Latency next to quality cost: grey levels for every model, FD/KID against fp32 for generators."""
    lines = ["", "## Precision variants (ONNX Runtime, batch 1, in-process)", "",
             "| variant | p50 ms | mean abs diff vs fp32 (grey levels) | max | FD vs fp32 (floor) "
             "| KID vs fp32 (floor) |",
             "|---|---|---|---|---|---|"]
    for v in variants:
        if "error" in v:
            lines.append(f"| {v['variant']} | failed: {v['error']} | | | | |")
            continue
        d = v.get("distribution") or {}
        fd = f"{d['fd_vs_fp32']:.1f} ({d['fd_floor']:.1f})" if d else ""
        kid = f"{d['kid_vs_fp32']:.2f} ({d['kid_floor']:.2f})" if d else ""
        lines.append(f"| {v['variant']} | {v['latency_ms']['p50']:.2f} | {v['mean_abs_diff_levels']:.2f} | "
                     f"{v['max_abs_diff_levels']:.0f} | {fd} | {kid} |")
    distribution = next((v["distribution"] for v in variants if v.get("distribution")), None)
    if distribution:
        lines += ["", f"FD/KID: {distribution['images']} images of the variant against fp32's for the same requests, "
                      f"in {distribution['feature_space']} (not Inception); the floor is fp32 against fp32 for "
                      "other requests, what sampling alone gives."]
    return lines


def plot(document: dict[str, Any], path: Path) -> None:
    """Latency p50 vs throughput, one line per (model, batch) over the concurrency sweep."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    open_loop = bool(document.get("open_loop"))
    fig, axes = plt.subplots(1, 2 if open_loop else 1, figsize=(12.5 if open_loop else 7, 4.5), dpi=120)
    ax = axes[0] if open_loop else axes
    series: dict[tuple, list] = {}
    for p in document["triton"]:
        if p["requests"]:
            series.setdefault((p["model"], p["batch"]), []).append(p)
    for (model, batch), points in series.items():
        points.sort(key=lambda p: p["concurrency"])
        ax.plot([p[throughput_key(document)] for p in points], [p["latency_ms"]["p50"] for p in points], marker="o",
                label=f"{model}, batch {batch}")
        for p in points:
            ax.annotate(f"c{p['concurrency']}", (p[throughput_key(document)], p["latency_ms"]["p50"]), fontsize=7,
                        textcoords="offset points", xytext=(3, 3))
    ax.set_xlabel(f"throughput ({document['model'].get('unit', 'image')}s/s)")
    ax.set_ylabel("p50 latency (ms)")
    ax.set_yscale("log")
    ax.set_title(f"Triton gRPC, {document['model']['family']}: latency vs throughput")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if open_loop:
        open_loop_panel(axes[1], document)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def open_loop_panel(ax, document: dict[str, Any]) -> None:
    """p99 against the offered rate for both load generators, the 2x-unloaded bound and the knee."""
    mine = [p for p in document["open_loop"] if p["p99_ms"] is not None]
    ax.plot([p["rate"] for p in mine], [p["p99_ms"] for p in mine], marker="o", label="artforge load generator")
    theirs = [p for p in (document.get("perf_analyzer") or {}).get("open_loop", []) if "p99_ms" in p]
    if theirs:
        ax.plot([p["request_rate"] for p in theirs], [p["p99_ms"] for p in theirs], marker="s", label="perf_analyzer")
    alone = find_point(document, document["model"]["family"], 1, 1)
    if alone and alone["requests"]:
        ax.axhline(2 * alone["latency_ms"]["p99"], color="grey", linestyle="--", linewidth=1,
                   label="2x unloaded p99 (artforge, 1 client)")
    knee_rps = document.get("ratios", {}).get("open_loop_knee_rps")
    if knee_rps:
        ax.axvline(knee_rps, color="tab:red", linewidth=1, label=f"knee {knee_rps:g} req/s")
    ax.set_xlabel("offered rate (requests/s, Poisson arrivals)")
    ax.set_ylabel("p99 latency (ms)")
    ax.set_yscale("log")
    ax.set_title("open loop")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def write_reports(document: dict[str, Any], out: Path) -> None:
    atomic_write_text(out / "bench.json", json.dumps(document, indent=2, default=float) + "\n")
    atomic_write_text(out / "bench.md", markdown(document))
    plot(document, out / "bench.png")


# `bench --check`'s allowed relative regression; the CI test checks with this default (a baseline is the
# worst of several runs; ratios in ms get 1 ms more)
BASELINE_TOLERANCE = 0.5


@dataclass
class Verdict:
    """One baseline ratio checked against this run: its value, the baseline's, the limit, and whether it held."""

    name: str
    value: float | None
    base: float
    limit: float | None
    ok: bool
    meaning: str
    interval: tuple[float, float] | None = None  # the bootstrap 95% interval over trials, when there were some

    def problem(self) -> str:
        if self.value is None:
            return f"{self.name}: in the baseline but not measured in this run"
        spread = f" [95% interval {self.interval[0]:.3f}-{self.interval[1]:.3f}]" if self.interval else ""
        return (f"{self.name} = {self.value:.3f}{spread}, baseline {self.base:.3f} (limit {self.limit:.3f}): "
                f"{self.meaning}")


def ratio_verdicts(document: dict[str, Any], baseline: dict[str, Any], tolerance: float) -> list[Verdict]:
    """Every ratio of the baseline against this run, within `tolerance` (relative) in its better direction;
    ratios in ms (absolute overheads) also get 1 ms of noise. With trials (`ratio_intervals`), a ratio fails
    only when its whole bootstrap interval is past the limit."""
    intervals = document.get("ratio_intervals", {})
    verdicts = []
    for name, base in baseline.get("ratios", {}).items():
        meaning, better, _ = ratio_info(name)
        value = document["ratios"].get(name)
        if value is None:
            verdicts.append(Verdict(name, None, base, None, False, meaning))
            continue
        if name.endswith("_ms"):
            limit = base * (1 + tolerance) + 1.0
        else:
            limit = base * (1 + tolerance) if better == "lower" else base * (1 - tolerance)
        interval = tuple(intervals[name]) if name in intervals else None
        best = (interval[0] if better == "lower" or name.endswith("_ms") else interval[1]) if interval else value
        ok = best <= limit if better == "lower" or name.endswith("_ms") else best >= limit
        verdicts.append(Verdict(name, value, base, limit, ok, meaning, interval))
    return verdicts


def check_against_baseline(document: dict[str, Any], baseline: dict[str, Any], tolerance: float) -> list[str]:
    """Regressions of the run's ratios beyond `tolerance` (relative) against a baseline's ratios."""
    return baseline_problems(document, baseline, ratio_verdicts(document, baseline, tolerance))


def baseline_problems(document: dict[str, Any], baseline: dict[str, Any], verdicts: list[Verdict]) -> list[str]:
    """The verdicts that failed, one line each, and where the two were measured when they differ."""
    problems = [v.problem() for v in verdicts if not v.ok]
    here, there = machine_line(document.get("machine", {})), machine_line(baseline.get("machine", {}))
    if problems and here != there:
        problems.append(f"the baseline was measured on {there}, this run on {here}")
    return problems


def machine_line(machine: dict[str, Any]) -> str:
    """'AMD EPYC, 2 cores (avx2, avx512f)': what a ratio measured in ms depends on."""
    flags = f" ({', '.join(machine['cpu_flags'])})" if machine.get("cpu_flags") else ""
    return f"{machine.get('cpu', 'an unnamed CPU')}, {machine.get('cores', '?')} cores{flags}"


def errors_seen(document: dict[str, Any]) -> list[str]:
    problems = [f"{p['model']} c{p['concurrency']} b{p['batch']}: {p['errors']} errors ({p['first_error']})"
                + (f"; stopped early: {p['stopped']}" if p.get("stopped") else "")
                for p in document.get("triton", []) if p["errors"]]
    problems += [f"{p['replicas']} replica(s): {p['failed']} failed requests" for p in document.get("sweep", [])
                 if p["failed"]]
    kill = document.get("kill") or {}
    if kill.get("failed"):
        problems.append(f"{kill['failed']} requests failed when a replica was killed ({kill['first_failure']})")
    return problems


def require_baseline_file(path: Path) -> dict[str, Any]:
    try:
        baseline = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ArtforgeError(f"cannot read baseline {path}: {e}") from None
    if "ratios" not in baseline:
        raise ArtforgeError(f"baseline {path} has no 'ratios'; make one with 'artforge bench ... --write-baseline'")
    if "model" not in baseline:
        raise ArtforgeError(f"baseline {path} does not say which model it was measured on; record it again with "
                            "'artforge bench ... --write-baseline'")
    return baseline


def check_baseline_fits(baseline: dict[str, Any], family: str, config: dict[str, Any], where: Path) -> None:
    """Ratios depend on the model's size: refuse a baseline recorded for another model config."""
    recorded = baseline["model"]
    if recorded.get("family", family) != family or recorded.get("config") != config:
        differs = sorted(k for k in set(config) | set(recorded.get("config") or {})
                         if config.get(k) != (recorded.get("config") or {}).get(k))
        raise ArtforgeError(f"baseline {where} was recorded for a {recorded.get('family', '?')} model with "
                            f"{describe_config(recorded.get('config') or {}, differs)}; this checkpoint is a "
                            f"{family} with {describe_config(config, differs)}: record a baseline for it with "
                            "--write-baseline")


def describe_config(config: dict[str, Any], keys: list[str]) -> str:
    return ", ".join(f"{k} {config.get(k, '(none)')}" for k in keys) or "the same config"


def baseline_document(document: dict[str, Any]) -> dict[str, Any]:
    """What --write-baseline stores: the ratios with their meaning, and the model, machine and bench
    options they were measured with (a check against another model config is refused)."""
    return {"ratios": document["ratios"], "meaning": {k: ratio_info(k)[0] for k in document["ratios"]},
            "model": {"family": document["model"]["family"], "config": document["model"]["config"]},
            "machine": document["machine"], "options": document["options"]}
