"""NVIDIA's perf_analyzer beside artforge's load generator: the input it sends, the figures it reports, and a
real run against a live Triton server."""
import base64
import json

import numpy as np
import pytest

from artforge.benchmarks import perf_analyzer as pa
from artforge.benchmarks.load import server_totals
from artforge.benchmarks.report import compute_ratios, perf_analyzer_lines
from artforge.errors import ArtforgeError
from artforge.serving.client import Client
from tests.perf_analyzer_here import perf_analyzer_or_skip


def test_input_data_carries_the_request_bytes_without_the_batch_dimension(tmp_path):
    request = {"z": np.random.default_rng(0).standard_normal((1, 16)).astype(np.float32),
               "style": np.array([[3]], np.int64), "image": np.arange(2 * 3 * 3, dtype=np.uint8).reshape(1, 2, 3, 3)}
    entry = json.loads(pa.write_input_data(request, tmp_path / "in.json").read_text())["data"][0]
    for name, array in request.items():
        sent = np.frombuffer(base64.b64decode(entry[name]["b64"]), array.dtype).reshape(entry[name]["shape"])
        assert entry[name]["shape"] == list(array.shape[1:]) and np.array_equal(sent, array[0])
    whole = json.loads(pa.write_input_data(request, tmp_path / "b.json", batched=False).read_text())["data"][0]
    assert whole["image"]["shape"] == [1, 2, 3, 3]  # a model without batching gets the tensor as it is


def test_the_csv_report_becomes_a_point_in_milliseconds_and_microseconds(tmp_path):
    (tmp_path / "r.csv").write_text(
        "Concurrency,Inferences/Second,Client Send,Network+Server Send/Recv,Server Queue,Server Compute Input,"
        "Server Compute Infer,Server Compute Output,Client Recv,p50 latency,p90 latency,p95 latency,p99 latency\n"
        "4,1275.31,5,1525,563,30,784,168,4,1922,6249,7741,21437\n")
    point = pa.read_point(tmp_path / "r.csv")
    assert point["concurrency"] == 4 and point["throughput"] == 1275.31
    assert point["p50_ms"] == pytest.approx(1.922) and point["p99_ms"] == pytest.approx(21.437)
    assert point["server_queue_us"] == 563 and point["server_compute_infer_us"] == 784


def test_a_missing_binary_or_library_is_one_line_naming_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(pa.shutil, "which", lambda *a, **k: None)
    with pytest.raises(ArtforgeError, match="perf_analyzer not found.*tritonclient==2.51.0"):
        pa.find_perf_analyzer()
    monkeypatch.setattr(pa.shutil, "which", lambda *a, **k: str(tmp_path / "perf_analyzer"))
    monkeypatch.setattr(pa, "missing_libraries", lambda binary, env: ["libb64.so.0d"])
    with pytest.raises(ArtforgeError, match="cannot load libb64.so.0d: install Debian libb64-0d"):
        pa.find_perf_analyzer()


def test_agreement_ratios_compare_the_same_points():
    point = lambda c, p50, rps: {"model": "dcgan", "concurrency": c, "batch": 1, "requests": 100,  # noqa: E731
                                 "requests_per_s": rps, "latency_ms": {"p50": p50, "p99": 2 * p50},
                                 "seconds": 100 / rps, "client_cpu_s": 0.02}
    document = {"model": {"family": "dcgan", "unit": "image", "gflop_per_item": 0.001},
                "machine": {"matmul_fp32_gflops": 100.0, "cores": 2}, "options": {},
                "inprocess": {"onnxruntime_b1": {"batch": 1, "latency_ms": {"p50": 0.2, "p99": 0.3},
                                                 "images_per_s": 5000},
                              "pytorch_b1": {"batch": 1, "latency_ms": {"p50": 1.0, "p99": 1.1}, "images_per_s": 1000}},
                "triton": [point(1, 1.2, 800), point(8, 4.0, 2000)],
                "perf_analyzer": {"version": "Perf Analyzer Version 2.51.0", "points": [
                    {"concurrency": 1, "p50_ms": 0.6, "p99_ms": 1.0, "throughput": 1500.0, "client_cpu_cores": 0.3,
                     "server_queue_us": 20,
                     "server_compute_input_us": 10, "server_compute_infer_us": 300, "server_compute_output_us": 80,
                     "stability": "rule"},
                    {"concurrency": 8, "p50_ms": 2.0, "p99_ms": 5.0, "throughput": 4000.0, "server_queue_us": 20,
                     "server_compute_input_us": 10, "server_compute_infer_us": 300, "server_compute_output_us": 80,
                     "stability": "rule"}]}}
    ratios = compute_ratios(document)
    assert ratios["artforge_p50_over_perf_analyzer_c1"] == pytest.approx(2.0)
    assert ratios["artforge_throughput_over_perf_analyzer_c8"] == pytest.approx(0.5)
    assert ratios["client_overhead_b1_ms"] == pytest.approx(0.6)
    lines = perf_analyzer_lines(document)
    assert "| 1 | 1.20 | 0.60 | 2.40 | 1.00 | 800 | 1500 | 20 + 10 + 300 + 80 | rule |" in lines
    # the disagreement is explained by what each client spent: 0.02 s / 100 requests, 0.02 s in 0.125 s
    assert ("- 1 client: artforge's p50 2.00×, throughput 0.53× perf_analyzer's. Client CPU per request and cores "
            "kept busy: artforge (Python) 200 µs and 0.16 cores, perf_analyzer (C++) 200 µs and 0.30 cores, on the "
            "2 cores the server shares.") in lines
    assert any(line.startswith("- 8 clients:") and "perf_analyzer (C++) not measured" in line for line in lines)
    document["triton"] = [point(1, 0.62, 1450), point(8, 2.1, 3900)]
    assert "agree within 15%" in perf_analyzer_lines(document)[-1]


@pytest.mark.slow
def test_perf_analyzer_measures_the_served_model_with_artforges_request(triton, tmp_path):
    """A real perf_analyzer run against the live server: Triton's own statistics count its requests."""
    analyzer = perf_analyzer_or_skip()
    assert "2.51" in analyzer.version()
    request = {"z": np.zeros((1, 16), np.float32), "style": np.array([[1]], np.int64)}
    with Client(triton.grpc_url) as client:
        before = server_totals(client.statistics("dcgan"))["success"]
        point = analyzer.measure(triton.grpc_url, "dcgan", pa.write_input_data(request, tmp_path / "in.json"), 2, 100)
        after = server_totals(client.statistics("dcgan"))["success"]
    assert "error" not in point, point
    assert point["concurrency"] == 2 and point["throughput"] > 0 and 0 < point["p50_ms"] <= point["p99_ms"]
    assert after - before >= 3 * 100  # at least the three windows the stability rule looks at
    assert point["server_compute_infer_us"] > 0 and "within" in point["stability"]


@pytest.mark.slow
def test_bench_puts_perf_analyzers_figures_beside_its_own_at_every_point_and_size(style_run, tmp_path):
    """perf_analyzer after each of artforge's batch-1 points, against artforge's model.py from memory and the
    trivial model (which answers pictures the size of the one it got), and at each --sizes point through
    system shared memory, as artforge's client sends large pictures; the ratios follow from the figures."""
    from artforge.cli import main

    perf_analyzer_or_skip()
    run, _ = style_run
    out = tmp_path / "bench"
    assert main(["bench", str(run), "--out", str(out), "--sizes", "48", "--concurrency", "1", "--batch-sizes", "1",
                 "--requests", "20", "--warmup", "2", "--baseline-seconds", "0.2", "--max-batch", "2",
                 "--perf-analyzer", "--quiet"]) == 0
    document = json.loads((out / "bench.json").read_text())
    perf, ratios = document["perf_analyzer"], document["ratios"]
    points, backend = perf["points"], perf["backend"]
    assert [p["concurrency"] for p in points] == [1]
    assert all("error" not in p for p in [*points, *backend.values()]), perf
    mine = {p["concurrency"]: p for p in document["triton"] if p["model"] == "style"}
    assert ratios["artforge_p50_over_perf_analyzer_c1"] == pytest.approx(
        mine[1]["latency_ms"]["p50"] / points[0]["p50_ms"])
    turns = perf["c1_turns"]  # the sweep's pair first, then two more turns of both tools
    assert len(turns) == 3 and turns[0] == {"artforge_p50_ms": mine[1]["latency_ms"]["p50"],
                                            "perf_analyzer_p50_ms": points[0]["p50_ms"]}
    assert ratios["client_overhead_b1_ms"] == pytest.approx(
        sorted(t["artforge_p50_ms"] - t["perf_analyzer_p50_ms"] for t in turns)[1])
    assert 0 < points[0]["client_cpu_cores"] < 2.5  # perf_analyzer's own CPU, counted while it ran
    assert ratios["artforge_throughput_over_perf_analyzer_c1"] == pytest.approx(
        mine[1]["requests_per_s"] / points[0]["throughput"])
    split = lambda p: sum(p[f"server_{k}_us"] for k in ("queue", "compute_input", "compute_infer",  # noqa: E731
                                                         "compute_output"))
    assert ratios["backend_overhead_b1_ms"] == pytest.approx((split(backend["nocompute"])
                                                              - split(backend["trivial"])) / 1000)
    at_48 = perf["sizes"]["48"]
    assert at_48["transfer"] == "system shared memory" and at_48["server_compute_infer_us"] > 0
    # artforge's Client timed alone right before perf_analyzer: the same conditions for both
    assert 0 < at_48["artforge_p50_ms"] and ratios["artforge_p50_over_perf_analyzer_b1_48px"] == pytest.approx(
        at_48["artforge_p50_ms"] / at_48["p50_ms"])
    assert ratios["client_overhead_ms_b1_48px"] == pytest.approx(at_48["artforge_p50_ms"] - at_48["p50_ms"])
    differences = sorted(t["artforge_p50_ms"] - t["perf_analyzer_p50_ms"] for t in at_48["turns"])
    assert len(differences) == 3 and ratios["client_overhead_ms_b1_48px"] == pytest.approx(differences[1])
    markdown = (out / "bench.md").read_text()
    assert "## perf_analyzer beside artforge's load generator" in markdown and "| 48x48 |" in markdown



def test_poisson_arrivals_keep_their_rate_and_their_seed():
    from artforge.benchmarks.load import poisson_arrivals

    times = poisson_arrivals(500.0, 20000, seed=3)
    assert times[0] == 0 and np.all(np.diff(times) >= 0)
    assert len(times) / times[-1] == pytest.approx(500.0, rel=0.03)
    gaps = np.diff(times)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, rel=0.05)  # exponential gaps: as varied as they are long
    assert np.array_equal(times, poisson_arrivals(500.0, 20000, seed=3))


def test_the_knee_is_the_highest_rate_kept_up_with_within_twice_the_unloaded_p99():
    from artforge.benchmarks.report import knee

    points = [{"rate": 100, "achieved_rate": 100, "p99_ms": 1.5, "failed": 0, "dropped": 0},
              {"rate": 400, "achieved_rate": 398, "p99_ms": 1.9, "failed": 0, "dropped": 0},
              {"rate": 800, "achieved_rate": 700, "p99_ms": 1.9, "failed": 0, "dropped": 0},  # fell behind
              {"rate": 1600, "achieved_rate": 1600, "p99_ms": 2.5, "failed": 0, "dropped": 0}]  # over 2x
    assert knee(points, unloaded_p99_ms=1.0, rate_key="rate") == 400
    assert knee(points, unloaded_p99_ms=0.5, rate_key="rate") == 0


def test_open_loop_rates_are_reported_beside_perf_analyzers_and_drawn(tmp_path):
    from artforge.benchmarks.report import open_loop_lines, plot

    closed = {"model": "dcgan", "concurrency": 1, "batch": 1, "requests": 100, "requests_per_s": 900,
              "images_per_s": 900, "latency_ms": {"p50": 1.0, "p99": 2.0}}
    document = {"model": {"family": "dcgan", "unit": "image"}, "triton": [closed],
                "ratios": {"open_loop_knee_rps": 400},
                "open_loop": [{"rate": 400, "achieved_rate": 399, "p50_ms": 1.2, "p99_ms": 3.1, "send_lag_p99_ms": 1.0,
                               "requests": 800, "failed": 0, "dropped": 0}],
                "perf_analyzer": {"open_loop": [{"request_rate": 400.0, "throughput": 401.0, "p50_ms": 0.7,
                                                 "p99_ms": 1.4}]}}
    assert "| 400 | 399 | 1.20 | 3.10 | 1.00 | 0, 0 | 401 | 0.70 | 1.40 |" in open_loop_lines(document)
    plot(document, tmp_path / "bench.png")  # two panels: the sweep, and p99 against the offered rate
    from PIL import Image

    assert Image.open(tmp_path / "bench.png").size[0] > 1.5 * Image.open(tmp_path / "bench.png").size[1]


@pytest.mark.slow
def test_open_loop_sends_at_the_offered_rate_and_triton_counts_every_request(triton, tmp_path):
    from artforge.benchmarks.load import measure_open_loop

    request = {"z": np.zeros((1, 16), np.float32), "style": np.array([[1]], np.int64)}
    with Client(triton.grpc_url) as client:
        before = server_totals(client.statistics("dcgan"))["success"]
        point = measure_open_loop(triton.grpc_url, "dcgan", request, rate=100, requests=150, seed=1)
        after = server_totals(client.statistics("dcgan"))["success"]
    assert point["requests"] == 150 and point["failed"] == point["dropped"] == 0
    assert point["achieved_rate"] == pytest.approx(100, rel=0.25)
    assert after - before == 151  # the requests and the one that opened the connection
    assert 0 < point["p50_ms"] <= point["p99_ms"]
    analyzer = perf_analyzer_or_skip()
    theirs = analyzer.measure(triton.grpc_url, "dcgan", pa.write_input_data(request, tmp_path / "in.json"), 1, 100,
                              request_rate=100)
    assert theirs["request_rate"] == 100 and theirs["throughput"] == pytest.approx(100, rel=0.25), theirs
