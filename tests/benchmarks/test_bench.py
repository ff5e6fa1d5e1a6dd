import json
import os
import signal
import threading
import time
from xml.etree import ElementTree

import numpy as np
import pytest

from artforge.benchmarks import variants
from artforge.benchmarks.load import MAX_FAILURES_IN_A_ROW, measure_point
from artforge.benchmarks.measure import count_flops, latency_summary, time_interleaved
from artforge.benchmarks.report import check_against_baseline, compute_ratios, errors_seen
from artforge.cli import main
from artforge.export.parity import onnx_session


def quantised_operators(path) -> int:
    import onnx

    return sum(node.op_type == "QuantizeLinear" for node in onnx.load(str(path)).graph.node)


def test_latency_summary_percentiles_in_milliseconds():
    summary = latency_summary([i / 1000 for i in range(1, 101)])  # 1..100 ms
    assert summary["p50"] == pytest.approx(50.5) and summary["p99"] == pytest.approx(99.01)
    assert summary["mean"] == pytest.approx(50.5)


def test_flop_count_of_a_linear_layer():
    import torch

    assert count_flops(torch.nn.Linear(10, 4), (torch.zeros(3, 10),)) == 2 * 3 * 10 * 4


def test_interleaved_timing_takes_turns_and_drops_a_way_that_fails():
    order = []

    def broken():
        order.append("broken")
        if order.count("broken") > 3:  # the warm-up and one turn pass, then it fails
            raise RuntimeError("server gone")

    runners = {"a": lambda: order.append("a"), "b": lambda: order.append("b"), "broken": broken}
    times, failed = time_interleaved(runners, warmup=1, min_calls=6, min_seconds=0, turn_seconds=0)
    # warm-up (one call each), then turns of 2 calls, the first of each uncounted
    assert order[3:9] == ["a", "a", "b", "b", "broken", "broken"]
    assert len(times["a"]) == len(times["b"]) == 6 and len(times["broken"]) == 1
    assert failed == {"broken": "server gone"}


def test_the_single_client_comparison_timed_in_turn_decides_the_overhead():
    d = document(triton_ms=9.0)  # the sweep's c1 point was slow; the interleaved figures were not
    d["one_client_b1"] = {"onnxruntime": {"p50_ms": 1.0, "fps": 1000}, "triton": {"p50_ms": 1.8, "fps": 555}}
    assert compute_ratios(d)["triton_overhead_b1_ms"] == pytest.approx(0.8)


def test_the_overhead_is_against_the_runtime_triton_serves_with():
    d = document(triton_ms=9.0)
    d["options"] = {"cpu_runtime": "openvino", "precision": "bf16"}
    d["one_client_b1"] = {"onnxruntime": {"p50_ms": 1.0, "fps": 1000}, "openvino": {"p50_ms": 0.5, "fps": 2000},
                          "triton": {"p50_ms": 1.8, "fps": 555}}
    assert compute_ratios(d)["triton_overhead_b1_ms"] == pytest.approx(1.3)


def document(ort_ms=1.0, torch_ms=2.0, triton_ms=2.5, batched_rps=400.0, plain_rps=100.0):
    point = lambda model, c, rps, p50: {"model": model, "concurrency": c, "batch": 1, "requests": 50,  # noqa: E731
                                         "requests_per_s": rps, "latency_ms": {"p50": p50}, "errors": 0}
    return {"model": {"family": "dcgan", "gflop_per_item": 0.05},
            "machine": {"matmul_fp32_gflops": 100.0},
            "inprocess": {"onnxruntime_b1": {"batch": 1, "latency_ms": {"p50": ort_ms}, "images_per_s": 1000},
                          "pytorch_b1": {"batch": 1, "latency_ms": {"p50": torch_ms}, "images_per_s": 500},
                          "onnxruntime_b16": {"batch": 16, "latency_ms": {"p50": 8.0}, "images_per_s": 2000}},
            "triton": [point("dcgan", 1, 300, triton_ms), point("dcgan", 16, batched_rps, 20),
                       point("dcgan-nobatch", 16, plain_rps, 80)]}


def test_ratios_are_computed_from_one_run():
    d = document()
    ratios = compute_ratios(d)
    assert ratios["ort_vs_pytorch_b1_latency"] == pytest.approx(0.5)
    assert ratios["triton_overhead_b1_ms"] == pytest.approx(1.5)
    assert ratios["batching_speedup_c16"] == pytest.approx(4.0)
    assert ratios["ort_gflops_fraction"] == pytest.approx(2000 * 0.05 / 100)


def test_the_serving_path_alone_and_the_batch_curve_say_why_a_target_is_out_of_reach():
    from artforge.benchmarks.report import verdict

    d = document(batched_rps=400.0, plain_rps=300.0)
    d["triton"].append({"model": "dcgan-nocompute", "concurrency": 16, "batch": 1, "requests": 50,
                        "requests_per_s": 450.0, "latency_ms": {"p50": 30}, "errors": 0})
    d["one_client_b1"] = {"onnxruntime": {"p50_ms": 0.2, "fps": 5000}, "triton": {"p50_ms": 1.7, "fps": 590},
                          "triton_nocompute": {"p50_ms": 1.2, "fps": 830}}
    d["inprocess"]["batch_curve"] = [{"batch": 1, "items_per_s": 1000, "vs_batch_1": 1.0},
                                     {"batch": 4, "items_per_s": 1300, "vs_batch_1": 1.3}]
    d["ratios"] = ratios = compute_ratios(d)
    assert ratios["serving_path_b1_ms"] == pytest.approx(1.2) and ratios["triton_overhead_b1_ms"] == pytest.approx(1.5)
    assert ratios["served_vs_inprocess_throughput_c16"] == pytest.approx(400 / 1000)  # in-process batch 1: 1000/s
    assert ratios["serving_path_throughput_c16"] == pytest.approx(450 / 1000)
    assert ratios["inprocess_batching_gain"] == pytest.approx(1.3)
    assert verdict("triton_overhead_b1_ms", d) == "no: the serving path alone takes 1.20 ms"
    assert verdict("served_vs_inprocess_throughput_c16", d) == "no: the serving path alone carries 0.45"
    assert verdict("batching_speedup_c16", d) == "no: batching gains 1.30× at most in-process"
    d["one_client_b1"]["triton_nocompute"]["p50_ms"] = 0.5  # the path alone would leave room: no reason given
    d["ratios"] = compute_ratios(d)
    assert verdict("triton_overhead_b1_ms", d) == "no" and verdict("ort_vs_pytorch_b1_latency", d) == "yes"


@pytest.mark.slow
def test_the_bench_repositorys_nocompute_copy_repeats_the_first_answer_of_each_shape(dcgan_run, tmp_path):
    from artforge.benchmarks.run import BenchOptions, build_bench_repository
    from artforge.registry import load_network, spec_for
    from artforge.serving.client import Client
    from artforge.serving.server import Server

    repo = build_bench_repository(BenchOptions(checkpoint=str(dcgan_run), max_batch=8), tmp_path)
    spec = spec_for(load_network(str(dcgan_run))[1])
    a, b, a4 = spec.sample_inputs(1, seed=1), spec.sample_inputs(1, seed=2), spec.sample_inputs(4, seed=1)
    with Server(repo, grpc_port=0, http_port=0, metrics_port=0) as server, Client(server.grpc_url) as client:
        real = {name: client.infer("dcgan", x)["image"] for name, x in (("a", a), ("b", b), ("a4", a4))}
        assert not np.array_equal(real["a"], real["b"])
        # batch 1 was computed once, for Triton's warm-up request: a and b get that answer
        assert np.array_equal(client.infer("dcgan-nocompute", a)["image"], client.infer("dcgan-nocompute", b)["image"])
        assert np.array_equal(client.infer("dcgan-nocompute", a4)["image"], real["a4"])  # a new shape is computed


def test_baseline_check_flags_regressions_in_the_right_direction():
    base = {"ratios": compute_ratios(document())}
    same = document()
    same["ratios"] = compute_ratios(same)
    assert check_against_baseline(same, base, tolerance=0.2) == []
    better = document(ort_ms=0.5, batched_rps=800)
    better["ratios"] = compute_ratios(better)
    assert check_against_baseline(better, base, tolerance=0.2) == []
    worse = document(ort_ms=1.9, batched_rps=150)
    worse["ratios"] = compute_ratios(worse)
    problems = check_against_baseline(worse, base, tolerance=0.2)
    assert any(p.startswith("ort_vs_pytorch_b1_latency") for p in problems)
    assert any(p.startswith("batching_speedup_c16") for p in problems)
    slow_server = document(triton_ms=6.0)
    slow_server["ratios"] = compute_ratios(slow_server)
    assert [p.split(" ")[0] for p in check_against_baseline(slow_server, base, 0.2)] == ["triton_overhead_b1_ms"]


@pytest.mark.slow
def test_killing_the_server_mid_benchmark_stops_the_point_within_seconds(dcgan_repo):
    from artforge.serving.server import Server

    server = Server(dcgan_repo, grpc_port=0, http_port=0, metrics_port=0)
    server.start()
    inputs = {"z": np.zeros((1, 16), np.float32), "style": np.zeros((1, 1), np.int64)}
    killed_at = []

    def kill() -> None:
        killed_at.append(time.monotonic())
        os.killpg(server.process.pid, signal.SIGKILL)  # a crash: no graceful shutdown

    killer = threading.Timer(1.0, kill)
    killer.start()
    try:
        point = measure_point(server.grpc_url, "dcgan", lambda b, i: inputs, concurrency=4, batch=1,
                              requests=200_000, warmup=5, timeout_s=5)
        finished_at = time.monotonic()
    finally:
        killer.cancel()
        server.stop()
    assert killed_at, "the point ended before the server was killed"
    # the claim: once the server is gone no further request is sent (the point stops on UNAVAILABLE or
    # after MAX_FAILURES_IN_A_ROW; each worker may have one more in flight); sending the rest took minutes
    assert point.stopped and 0 < point.errors <= MAX_FAILURES_IN_A_ROW + 4 and point.first_error
    assert finished_at - killed_at[0] < 120  # only to catch a hang
    assert "stopped early" in errors_seen({"triton": [point.to_json()]})[0]


def test_a_point_stops_after_failures_in_a_row_without_sending_the_rest():
    """A model that fails every request (the server still up) ends the point after a few tries."""
    from artforge.benchmarks.load import MAX_FAILURES_IN_A_ROW, LoadPoint, drive

    class FailingClient:
        calls = 0

        def prepare(self, model, inputs):
            return (model, inputs)

        def send(self, request):
            FailingClient.calls += 1
            raise RuntimeError("INTERNAL: Stub process is not healthy")

    point = LoadPoint("m", concurrency=4, batch=1)
    drive(FailingClient(), "m", lambda b, i: {}, point, total=10_000, warmup=0)
    assert point.stopped == f"{MAX_FAILURES_IN_A_ROW} requests failed in a row"
    assert FailingClient.calls < MAX_FAILURES_IN_A_ROW + 4  # workers in flight may each finish one
    assert point.errors == FailingClient.calls and "not healthy" in point.first_error


def test_warm_up_failures_that_recover_are_not_counted():
    from artforge.benchmarks.load import LoadPoint, drive

    class FlakyClient:
        calls = 0

        def prepare(self, model, inputs):
            return (model, inputs)

        def send(self, request):
            FlakyClient.calls += 1
            if FlakyClient.calls <= 2:
                raise RuntimeError("UNAVAILABLE: loading")

    point = LoadPoint("m", concurrency=2, batch=1)
    latencies = drive(FlakyClient(), "m", lambda b, i: {}, point, total=30, warmup=6)
    assert not point.stopped and point.errors == 0 and len(latencies) == 30


def test_a_request_is_prepared_once_while_make_inputs_returns_the_same_dict():
    """The load sends what perf_analyzer sends: one prepared request, not one rebuilt per call; a new dict
    is a new request (served.py's requests differ each time)."""
    from artforge.benchmarks.load import LoadPoint, drive

    class CountingClient:
        def __init__(self):
            self.prepared, self.sent = [], []

        def prepare(self, model, inputs):
            self.prepared.append(inputs["k"])
            return inputs["k"]

        def send(self, request):
            self.sent.append(request)

    same = {"k": 7}
    client = CountingClient()
    latencies = drive(client, "m", lambda b, i: same, LoadPoint("m", concurrency=1, batch=1), total=50, warmup=5)
    assert client.prepared == [7, 7] and client.sent == [7] * 55 and len(latencies) == 50  # once per go: warm-up, timed
    client = CountingClient()
    drive(client, "m", lambda b, i: {"k": i}, LoadPoint("m", concurrency=1, batch=1), total=10, warmup=0)
    assert client.prepared == client.sent == list(range(1, 11))


@pytest.mark.slow
def test_bench_command_writes_reports_and_checks_the_committed_baseline(dcgan_run, tmp_path):
    """The CI latency benchmark: short, on the tiny model, against benchmarks/baseline-ci.json."""
    from pathlib import Path

    baseline = Path(__file__).resolve().parents[2] / "benchmarks" / "baseline-ci.json"
    out = tmp_path / "bench"
    code = main(["bench", str(dcgan_run), "--out", str(out), "--concurrency", "1,16", "--batch-sizes", "1",
                 "--requests", "400", "--warmup", "30", "--baseline-seconds", "1", "--max-batch", "32",
                 "--trials", "3", "--check", str(baseline), "--quiet"])  # the CLI's default tolerance
    result = json.loads((out / "bench.json").read_text())
    trials = [json.loads((out / f"trial-{i}" / "bench.json").read_text()) for i in (1, 2, 3)]
    for trial in trials:
        assert_ratios_follow_from_the_measurements(trial)
    for name, value in result["ratios"].items():  # the median of the trials, inside its interval
        assert value == pytest.approx(float(np.median([t["ratios"][name] for t in trials])))
        low, high = result["ratio_intervals"][name]
        assert low <= value <= high
    assert "(median of 3 trials, bootstrap 95% interval)" in (out / "bench.md").read_text()
    assert (out / "bench.png").stat().st_size > 5000 and "| ratio |" in (out / "bench.md").read_text()
    assert all(p["errors"] == 0 for p in result["triton"])
    assert all(p["client_cpu_s"] > 0 and p["server_cpu_s"] > 0 for p in result["triton"])  # both sides' CPU
    curve = result["inprocess"]["batch_curve"]
    assert [p["batch"] for p in curve] == [1, 2, 4, 8, 16] and curve[0]["vs_batch_1"] == 1.0
    assert set(result["one_client_b1"]) == {"pytorch", "onnxruntime", "triton", "triton_nocompute"}
    assert {(p["model"], p["concurrency"]) for p in result["triton"] if p["model"].endswith("-nocompute")} == \
        {("dcgan-nocompute", 1), ("dcgan-nocompute", 16)}
    assert code == 0, f"benchmark regressed against {baseline}: {result['ratios']}"


def assert_ratios_follow_from_the_measurements(result: dict) -> None:
    """Noise moves every figure, but each ratio must be what the same run's own measurements give."""
    ratios, one, inproc = result["ratios"], result["one_client_b1"], result["inprocess"]
    point = {(p["model"], p["concurrency"]): p["requests_per_s"] for p in result["triton"]}
    assert ratios["ort_vs_pytorch_b1_latency"] == pytest.approx(
        inproc["onnxruntime_b1"]["latency_ms"]["p50"] / inproc["pytorch_b1"]["latency_ms"]["p50"])
    assert ratios["triton_overhead_b1_ms"] == pytest.approx(one["triton"]["p50_ms"] - one["onnxruntime"]["p50_ms"])
    assert ratios["serving_path_b1_ms"] == pytest.approx(one["triton_nocompute"]["p50_ms"])
    assert ratios["batching_speedup_c16"] == pytest.approx(point["dcgan", 16] / point["dcgan-nobatch", 16])
    in_process_b1 = inproc["onnxruntime_b1"]["images_per_s"]
    assert ratios["served_vs_inprocess_throughput_c16"] == pytest.approx(point["dcgan", 16] / in_process_b1)
    assert ratios["serving_path_throughput_c16"] == pytest.approx(point["dcgan-nocompute", 16] / in_process_b1)
    assert ratios["inprocess_batching_gain"] == max(p["vs_batch_1"] for p in inproc["batch_curve"])


def test_ratios_are_named_by_the_concurrency_they_were_measured_at():
    d = document()
    for p in d["triton"]:
        p["concurrency"] = 4 if p["concurrency"] == 16 else p["concurrency"]
    ratios = compute_ratios(d)
    assert ratios["batching_speedup_c4"] == pytest.approx(4.0) and "batching_speedup_c16" not in ratios
    from artforge.benchmarks.report import ratio_info

    assert ratio_info("batching_speedup_c4") == ("throughput with dynamic batching / without, 4 clients, batch 1",
                                                 "higher", 2.0)
    assert check_against_baseline({"ratios": ratios}, {"ratios": {"batching_speedup_c4": 4.0}}, 0.2) == []
    assert check_against_baseline({"ratios": ratios}, {"ratios": {"batching_speedup_c16": 4.0}}, 0.2) == [
        "batching_speedup_c16: in the baseline but not measured in this run"]


def test_the_committed_baseline_is_for_the_tests_model_and_current_ratio_names():
    """bench --check refuses a baseline recorded for another model config: the CI baseline must be the
    tests' width-8 DCGAN, with today's ratio names."""
    from pathlib import Path

    from artforge.benchmarks.report import RATIOS, at_clients, require_baseline_file

    baseline = require_baseline_file(Path(__file__).resolve().parents[2] / "benchmarks" / "baseline-ci.json")
    assert baseline["model"] == {"family": "dcgan", "config": {"image_size": 32, "num_classes": 5, "z_dim": 16,
                                                                "g_width": 8, "d_width": 8, "channels": 3}}
    for name in baseline["ratios"]:
        base, clients = at_clients(name)
        assert (base + ("_cN" if clients else "")) in RATIOS, name
    assert clients_of(baseline["ratios"]) == {"_c16"}


def clients_of(ratios: dict) -> set[str]:
    from artforge.benchmarks.report import at_clients

    return {at_clients(name)[1] for name in ratios if at_clients(name)[1]}


@pytest.mark.slow
def test_bench_command_writes_a_baseline_that_its_own_run_passes_and_measures_variants(dcgan_run, tmp_path, capsys,
                                                                                       monkeypatch):
    quick = ["--concurrency", "1,2", "--batch-sizes", "1", "--requests", "40", "--warmup", "5",
             "--baseline-seconds", "0.2", "--max-batch", "8", "--quiet"]
    baseline = tmp_path / "baseline.json"
    monkeypatch.setattr(variants, "QUALITY_IMAGES", 32)  # the report's wiring, not the measure, is checked here
    assert main(["bench", str(dcgan_run), "--out", str(tmp_path / "a"), *quick, "--variants",
                 "--write-baseline", str(baseline)]) == 0
    written, run = json.loads(baseline.read_text()), json.loads((tmp_path / "a" / "bench.json").read_text())
    assert written["ratios"] == run["ratios"] and "batching_speedup_c2" in written["ratios"]
    assert written["model"] == {"family": "dcgan", "config": run["model"]["config"]}
    assert written["machine"] == run["machine"] and written["options"]["concurrency"] == [1, 2]
    assert [v["variant"] for v in run["variants"]] == ["fp32", "int8"]
    assert "## Precision variants" in (tmp_path / "a" / "bench.md").read_text()
    assert f"baseline written to {baseline}" in capsys.readouterr().out
    harsh = {**written, "ratios": {"batching_speedup_c2": 1e6}}  # a regression beyond any noise is reported
    baseline.write_text(json.dumps(harsh))
    summary, junit, history = tmp_path / "summary.md", tmp_path / "bench.xml", tmp_path / "history.jsonl"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    quicker = [*quick[:4], "--requests", "10", "--warmup", "2", "--baseline-seconds", "0.1", *quick[10:]]
    assert main(["bench", str(dcgan_run), "--out", str(tmp_path / "b"), *quicker, "--check", str(baseline),
                 "--junit", str(junit), "--history", str(history)]) == 1
    assert "batching_speedup_c2 = " in capsys.readouterr().err
    suite = ElementTree.parse(junit).getroot()  # what a CI system shows: the ratio that regressed, by name
    failed = [c.get("name") for c in suite.iter("testcase") if c.find("failure") is not None]
    assert failed == ["batching_speedup_c2"] and suite.get("failures") == "1"
    assert "## Ratios" in summary.read_text() and "❌ batching_speedup_c2" in summary.read_text()
    line = json.loads(history.read_text())
    assert line["ratios"] == json.loads((tmp_path / "b" / "bench.json").read_text())["ratios"]


def test_bench_refuses_a_baseline_for_another_model_before_working(dcgan_run, tmp_path, capsys):
    baseline = tmp_path / "baseline.json"
    baseline.write_text(json.dumps({"ratios": {"ort_vs_pytorch_b1_latency": 0.2},
                                    "model": {"family": "dcgan", "config": {"image_size": 32, "num_classes": 5,
                                                                            "z_dim": 100, "g_width": 64,
                                                                            "d_width": 64, "channels": 3}}}))
    assert main(["bench", str(dcgan_run), "--out", str(tmp_path / "b"), "--check", str(baseline), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "was recorded for a dcgan model with d_width 64, g_width 64, z_dim 100" in err
    assert "this checkpoint is a dcgan with d_width 8, g_width 8, z_dim 16" in err
    assert not (tmp_path / "b").exists()
    baseline.write_text(json.dumps({"ratios": {"ort_vs_pytorch_b1_latency": 0.2}}))  # an old baseline: no model
    assert main(["bench", str(dcgan_run), "--check", str(baseline)]) == 1
    assert "does not say which model it was measured on" in capsys.readouterr().err


def test_bench_refuses_an_unreadable_baseline_before_working(tmp_path, capsys):
    bad = tmp_path / "baseline.json"
    bad.write_text("{}")
    assert main(["bench", str(tmp_path), "--check", str(bad)]) == 1
    assert "has no 'ratios'" in capsys.readouterr().err


@pytest.mark.slow
def test_int8_variant_is_measured_with_its_quality_cost(style_run, tmp_path):
    from artforge.benchmarks.variants import measure_variants
    from artforge.export.pipeline import export_checkpoint
    from artforge.registry import load_network, spec_for

    result = export_checkpoint(style_run[0], tmp_path / "repo", max_batch=2)
    spec = spec_for(load_network(style_run[0])[1])
    from artforge.contract import DynamicDim

    spec.dynamic_dims = {name: DynamicDim(16, 32, 64) for name in spec.dynamic_dims}  # 32x32: a fast test
    rows = measure_variants(result.version_dir / "model.onnx", spec, tmp_path, seconds=0.1, threads=0)
    assert [r["variant"] for r in rows] == ["fp32", "int8"]
    assert "error" not in rows[1], rows[1]
    int8 = tmp_path / "model.int8.onnx"
    assert quantised_operators(int8) > 0  # the variant timed is really quantised
    # its cost is its own outputs against fp32's on held-out photos, recomputed here
    fp32, quantised = onnx_session(result.version_dir / "model.onnx"), onnx_session(int8)
    diffs = []
    for i in range(4):
        x = spec.representative_inputs(1, seed=900 + i, sizes=spec.optimal_sizes(), held_out=True)
        diffs.append(np.abs(quantised.run(["image"], x)[0].astype(float) - fp32.run(["image"], x)[0].astype(float)))
    assert rows[1]["mean_abs_diff_levels"] == pytest.approx(np.mean(diffs)) and rows[1]["mean_abs_diff_levels"] > 0
    assert rows[1]["max_abs_diff_levels"] == np.max(diffs) and rows[1]["latency_ms"]["p50"] > 0
    assert rows[1]["distribution"] == {}  # style transfer is not a generator: no FD/KID against fp32


@pytest.mark.slow
def test_a_generators_int8_variant_also_reports_fd_and_kid_against_fp32(dcgan_run, tmp_path):
    from artforge.benchmarks.report import variant_lines
    from artforge.export.pipeline import export_checkpoint
    from artforge.benchmarks.variants import measure_variants
    from artforge.registry import load_network, spec_for

    from artforge.evaluation.metrics import measure_quality
    from artforge.benchmarks.variants import generator_requests

    result = export_checkpoint(dcgan_run, tmp_path / "repo", max_batch=8)
    spec = spec_for(load_network(dcgan_run)[1])
    rows = measure_variants(result.version_dir / "model.onnx", spec, tmp_path, seconds=0.1, threads=0,
                            quality_images=24)
    cost = rows[1]["distribution"]
    # FD of the int8 model's images against fp32's for the same requests, recomputed here
    fp32, int8 = onnx_session(result.version_dir / "model.onnx"), onnx_session(tmp_path / "model.int8.onnx")
    requests = generator_requests(spec, 24, 4000)
    images = [np.concatenate([s.run(["image"], r)[0] for r in requests]) for s in (fp32, int8)]
    assert cost["images"] == 24 and cost["fd_vs_fp32"] == pytest.approx(measure_quality(*images).fd, rel=1e-6)
    assert cost["fd_vs_fp32"] > 0 and cost["fd_floor"] > 0
    assert "EfficientNet-Lite0" in cost["feature_space"]
    text = "\n".join(variant_lines(rows))
    assert f"{cost['fd_vs_fp32']:.1f} ({cost['fd_floor']:.1f})" in text and "not Inception" in text


@pytest.mark.slow
def test_frames_per_second_by_size_leaves_batches_over_the_server_maximum_blank(style_run, tmp_path):
    out = tmp_path / "bench"
    run, _ = style_run
    assert main(["bench", str(run), "--out", str(out), "--sizes", "32,48", "--concurrency", "1",
                 "--batch-sizes", "1", "--requests", "10", "--warmup", "2", "--baseline-seconds", "0.2",
                 "--max-batch", "2", "--peer", "magenta", "--quiet"]) == 0
    document = json.loads((out / "bench.json").read_text())
    sizes = document["sizes"]
    assert set(sizes) == {"32", "48"}
    assert sizes["48"]["triton_b1"]["fps"] > 0 and sizes["48"]["onnxruntime_b4"]["fps"] > 0
    assert sizes["48"]["triton_b4"]["fps"] is None  # batch 4 > --max-batch 2: refused, so not measured
    peer = sizes["48"]["peer_b1"]
    assert peer["peer"] == "magenta" and peer["fps"] > 0
    assert document["ratios"]["triton_vs_peer_fps_48px"] == pytest.approx(sizes["48"]["triton_b1"]["fps"] / peer["fps"])
    lines = (out / "bench.md").read_text().splitlines()
    row = next(line for line in lines if line.startswith("| 48x48 |"))
    cells = [cell.strip() for cell in row.strip(" |").split("|")]
    assert "—" in cells and "0.0" not in cells and cells[-1] == f"{peer['fps']:.1f}"  # blank, not a 0 fps
    assert any("the peer's in-process frames/s, batch 1, 48px" in line and "≥ 1.5" in line for line in lines)


def test_bench_peer_of_a_family_without_one_is_refused_before_working(dcgan_run, tmp_path, capsys):
    assert main(["bench", str(dcgan_run), "--out", str(tmp_path / "b"), "--peer", "magenta", "--quiet"]) == 1
    assert "the dcgan family has no public peer" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


def test_bench_peer_without_sizes_is_refused_before_working(style_run, tmp_path, capsys):
    run, _ = style_run
    assert main(["bench", str(run), "--out", str(tmp_path / "b"), "--peer", "magenta", "--quiet"]) == 1
    assert "--peer magenta is timed at each of --sizes" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


@pytest.mark.slow
def test_bench_with_openvino_serving_times_it_in_process_too(style_run, tmp_path):
    pytest.importorskip("openvino", reason="OpenVINO is not installed (pip install 'artforge[openvino]')")
    out = tmp_path / "bench"
    run, _ = style_run
    assert main(["bench", str(run), "--out", str(out), "--sizes", "160", "--concurrency", "1", "--batch-sizes", "1",
                 "--requests", "10", "--warmup", "2", "--baseline-seconds", "0.2", "--max-batch", "4",
                 "--cpu-runtime", "openvino", "--precision", "bf16", "--quiet"]) == 0
    document = json.loads((out / "bench.json").read_text())
    row = document["sizes"]["160"]  # 77 KB a photo: large enough for shared memory
    assert row["openvino_b1"]["fps"] > 0 and row["openvino_b4"]["fps"] > 0 and row["triton_b4"]["fps"] > 0
    assert document["inprocess"]["openvino_b1"]["latency_ms"]["p50"] > 0
    assert document["ratios"]["triton_vs_openvino_b1_160px"] == pytest.approx(
        row["triton_b1"]["p50_ms"] / row["openvino_b1"]["p50_ms"])
    text = (out / "bench.md").read_text()
    assert "Triton serves with openvino (bf16)" in text and "OpenVINO's batch curve in-process" in text
    header = next(line for line in text.splitlines() if line.startswith("| size |"))
    assert [c.strip() for c in header.strip(" |").split("|")] == [
        "size", "PyTorch b1", "ORT b1", "OpenVINO b1", "Triton b1", "Triton, image in gRPC b1", "Triton, no compute b1",
        "PyTorch b4", "ORT b4", "OpenVINO b4", "Triton b4", "Triton, image in gRPC b4", "Triton, no compute b4"]
    assert document["ratios"]["shared_memory_gain_b1_160px"] == pytest.approx(
        row["triton_grpc_payload_b1"]["p50_ms"] / row["triton_b1"]["p50_ms"])
    assert document["ratios"]["serving_path_share_b1_160px"] == pytest.approx(
        row["triton_nocompute_b1"]["p50_ms"] / row["openvino_b1"]["p50_ms"])  # against the served runtime
