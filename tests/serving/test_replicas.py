"""Several Triton replicas behind one client: requests spread over them, a replica killed mid-run
costs the caller nothing (its calls go to the other), it comes back after its readiness check, and
`artforge serve --replicas N` starts and stops them all. Real servers throughout."""
from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from typing import Callable

import numpy as np
import pytest

from artforge.errors import ArtforgeError
from artforge.serving.client import Client
from artforge.serving.replicas import split_targets
from artforge.serving.server import Server, replica_servers


def request(seed: int) -> dict[str, np.ndarray]:
    return {"z": np.random.default_rng(seed).standard_normal((1, 16)).astype(np.float32),
            "style": np.array([[seed % 5]], np.int64)}


def served_requests(server: Server) -> int:
    with Client(server.grpc_url, timeout_s=10) as client:
        stats = client.statistics("dcgan")
    return int(stats.get("inference_stats", {}).get("success", {}).get("count", 0))


def served_since(servers: list[Server], before: list[int], total: int) -> list[int]:
    """Requests each server counted since `before`, once they add up to `total`: Triton may count a
    request a moment after its answer reached the client, so wait for the count (bounded for hangs)."""
    deadline = time.monotonic() + 60
    while True:
        served = [served_requests(s) - b for s, b in zip(servers, before)]
        if sum(served) >= total or time.monotonic() > deadline:
            return served
        time.sleep(0.05)


@pytest.fixture()
def two_replicas(dcgan_repo):
    servers = replica_servers(dcgan_repo, 2, grpc_port=0, http_port=0, metrics_port=0)
    try:
        for server in servers:
            server.start()
        yield servers
    finally:
        for server in servers:
            server.stop()


def test_targets_split_on_commas_unless_grpc_balances_them():
    assert split_targets("a:8001, b:8001") == ["a:8001", "b:8001"]
    assert split_targets("dns:///triton-headless.ns.svc.cluster.local:8001") == [
        "dns:///triton-headless.ns.svc.cluster.local:8001"]
    assert split_targets("ipv4:127.0.0.1:1,127.0.0.1:2") == ["ipv4:127.0.0.1:1,127.0.0.1:2"]
    with pytest.raises(ArtforgeError, match="names no server"):
        split_targets(" , ")


def test_replica_ports_follow_the_first_and_logs_get_their_own_files(tmp_path):
    servers = replica_servers(tmp_path, 3, grpc_port=9001, http_port=9000, metrics_port=9002,
                              log_file=tmp_path / "t.log")
    assert [s.ports["gRPC"] for s in servers] == [9001, 9004, 9007]
    assert [s.log_file.name for s in servers] == ["t.log", "t-1.log", "t-2.log"]
    with pytest.raises(ArtforgeError, match="--replicas must be 1..64"):
        replica_servers(tmp_path, 0)


def test_requests_spread_over_the_replicas(two_replicas):
    urls = ",".join(s.grpc_url for s in two_replicas)
    before = [served_requests(s) for s in two_replicas]
    with Client(urls, timeout_s=10) as client:
        images = [client.infer("dcgan", request(i))["image"] for i in range(40)]
    # one call at a time leaves nothing in flight: ties go in turn, so the replicas alternate exactly
    assert served_since(two_replicas, before, 40) == [20, 20]
    with Client(two_replicas[0].grpc_url) as one:  # replicas serve the same model: the same pictures
        assert np.array_equal(one.infer("dcgan", request(7))["image"], images[7])


def test_grpc_balances_a_target_with_several_addresses(two_replicas):
    target = "ipv4:" + ",".join(s.grpc_url for s in two_replicas)
    before = [served_requests(s) for s in two_replicas]
    with Client(target, timeout_s=10) as client:
        for i in range(20):
            client.infer("dcgan", request(i))
    served = served_since(two_replicas, before, 20)
    assert sum(served) == 20 and min(served) >= 1  # round_robin over the channel's addresses (pick_first: 20, 0)


def test_a_replica_killed_mid_run_fails_no_request_and_comes_back_when_ready(two_replicas):
    urls = ",".join(s.grpc_url for s in two_replicas)
    victim = two_replicas[1]
    failures, done, stop = [], [0], threading.Event()

    def load(client: Client) -> None:
        i, give_up = 0, time.monotonic() + 600
        while not stop.is_set() and time.monotonic() < give_up:  # bounded whatever happens
            try:
                client.infer("dcgan", request(i))
                done[0] += 1
            except Exception as e:  # counted: the test's claim is that there are none
                failures.append(str(e))
            i += 1

    with Client(urls, timeout_s=10) as a, Client(urls, timeout_s=10) as b:
        workers = [threading.Thread(target=load, args=(c,)) for c in (a, b)]
        for worker in workers:
            worker.start()
        wait_until(lambda: done[0] >= 20)  # both replicas serving the load
        victim.process.send_signal(signal.SIGKILL)  # no goodbye: connections drop mid-request
        victim.process.wait(timeout=30)
        at_kill = done[0]
        wait_until(lambda: done[0] >= at_kill + 50)  # answered with one replica dead
        served_while_down = done[0] - at_kill
        victim.stop()
        victim.start()  # the same ports again
        before = served_requests(victim)
        # the client's waits double from 0.2 s up to 30 s between checks: the revived replica is asked
        # again within 30 s of its start; the bound only catches a hang
        wait_until(lambda: served_requests(victim) > before, seconds=300)
        stop.set()
        for worker in workers:
            worker.join(timeout=60)
        back = served_requests(victim) - before
    assert failures == [] and served_while_down >= 50
    assert back > 0  # the revived replica was asked /v2/health/ready and taken back


def wait_until(condition: Callable[[], bool], seconds: float = 120) -> None:
    """Wait for a condition; the bound only catches a hang."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


@pytest.mark.slow
def test_serve_command_starts_replicas_prints_their_url_and_stops_them_all(dcgan_repo, tmp_path):
    cmd = [sys.executable, "-m", "artforge", "serve", "--repository", str(dcgan_repo), "--replicas", "2",
           "--grpc-port", "0", "--http-port", "0", "--metrics-port", "0", "--log-file", str(tmp_path / "t.log")]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        lines = []
        deadline = time.monotonic() + 180
        for line in proc.stdout:
            lines.append(line)
            if "Ctrl-C stops them all" in line or time.monotonic() > deadline:
                break
        url = next(line.split("--url", 1)[1].strip() for line in lines if "clients: --url" in line)
        assert len(url.split(",")) == 2 and len(set(url.split(","))) == 2
        with Client(url, timeout_s=10) as client:
            assert client.infer("dcgan", request(1))["image"].shape == (1, 32, 32, 3)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and "2 Triton replicas stopped" in out
    assert (tmp_path / "t.log").exists() and (tmp_path / "t-1.log").exists()


def test_replica_benchmark_sweeps_replicas_and_kills_one_without_failing_a_request(dcgan_run, tmp_path):
    from artforge.benchmarks.run import run_benchmark

    document = run_benchmark(checkpoint=str(dcgan_run), out=str(tmp_path / "bench"), replicas=2, concurrency=[2],
                             baseline_seconds=2.0, progress=False)
    assert [p["replicas"] for p in document["sweep"]] == [1, 2]
    assert all(p["failed"] == 0 and p["requests"] > 0 for p in document["sweep"])
    assert len(document["sweep"][1]["replica_cpu_s"]) == 2 and min(document["sweep"][1]["replica_cpu_s"]) > 0
    kill = document["kill"]
    assert kill["failed"] == 0 and kill["killed"] < kill["restarting"] < kill["restarted"]
    assert kill["requests_per_s_before"] > 0 and kill["requests_per_s_while_down"] > 0
    assert "Kill run (2 replicas" in (tmp_path / "bench" / "bench.md").read_text()


def test_replica_benchmark_measures_servers_already_running(two_replicas, dcgan_run, tmp_path):
    from artforge.benchmarks.run import run_benchmark

    urls = ",".join(s.grpc_url for s in two_replicas)
    document = run_benchmark(checkpoint=str(dcgan_run), out=str(tmp_path / "bench"), url=urls, model="dcgan",
                             concurrency=[2], baseline_seconds=1.0, progress=False)
    assert [p["replicas"] for p in document["sweep"]] == [1, 2] and document["kill"] is None
    assert all(p["failed"] == 0 for p in document["sweep"])
