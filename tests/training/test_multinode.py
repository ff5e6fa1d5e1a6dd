"""Training on several nodes: two torchrun agents on this machine joined through the c10d rendezvous,
as two nodes would be; one node's worker is killed mid-run and torchrun's restart resumes the run."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from artforge.checkpoint import find_latest_checkpoint, load_checkpoint
from artforge.errors import ArtforgeError
from artforge.families.dcgan.train import train_dcgan
from artforge.serving.server import free_port
from tests.conftest import TINY_DCGAN

STEPS = 240
TRAIN = ["-m", "artforge", "train", "dcgan", "--steps", str(STEPS), "--batch-size", "8", "--g-width", "8",
         "--d-width", "8", "--z-dim", "16", "--checkpoint-every", "20", "--sample-every", "1000", "--quiet",
         "--device", "cpu"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}
# what the README tells multi-node users: without it a restarted worker may read the previous attempt's
# addresses from the agents' shared store and fail to connect (pytorch/pytorch#135712; seen here)
AGENT_ENV = {**ENV, "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1", "LOGLEVEL": "INFO"}


def start_agent(data: Path, run: Path, port: int, log: Path, restarts: int = 1, cwd: Path | None = None,
                steps: int = STEPS) -> subprocess.Popen:
    """One "node": a torchrun agent with one worker, restarting the run's workers once if one fails."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
           "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", f"artforge-test-{port}",
           "--max-restarts", str(restarts), *TRAIN, "--steps", str(steps), "--data", str(data), "--out", str(run)]
    return subprocess.Popen(cmd, env=AGENT_ENV, stdout=log.open("w"), stderr=subprocess.STDOUT,
                            start_new_session=True, cwd=cwd)


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return found


def logged_steps(run: Path) -> list[int]:
    import json

    path = run / "log.jsonl"
    if not path.exists():
        return []
    return [json.loads(line)["step"] for line in path.read_text().splitlines() if line.endswith("}")]


def wait_for(condition, what: str, seconds: float, agents) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {seconds} s for {what}")
        if any(a.poll() is not None for a in agents):
            raise AssertionError(f"an agent exited (codes {[a.poll() for a in agents]}) before {what}")
        time.sleep(0.01)


def stop(agents) -> None:
    """Kill what is left of the agents and their workers (a worker outlives a killed agent)."""
    for agent in agents:
        for worker in children(agent.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker, signal.SIGKILL)
        if agent.poll() is None:
            os.killpg(agent.pid, signal.SIGKILL)
        agent.wait(10)


def test_a_run_resumes_by_itself_only_under_the_torchrun_job_that_wrote_it(art32, tmp_path, monkeypatch):
    run = tmp_path / "run"
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "job-a")  # one process of a torchrun job (WORLD_SIZE 1)
    train_dcgan(data=str(art32), out=str(run), steps=2, **TINY_DCGAN)
    last = train_dcgan(data=str(art32), out=str(run), steps=4, **TINY_DCGAN)  # the job's restart: no --resume
    assert load_checkpoint(last).step == 4 and logged_steps(run) == [1, 2, 3, 4]
    for other in ("job-b", "none"):  # another job, or torchrun's default id, which names no job
        monkeypatch.setenv("TORCHELASTIC_RUN_ID", other)
        with pytest.raises(ArtforgeError, match="already has checkpoints; pass --resume"):
            train_dcgan(data=str(art32), out=str(run), steps=6, **TINY_DCGAN)
    monkeypatch.delenv("TORCHELASTIC_RUN_ID")
    with pytest.raises(ArtforgeError, match="choose another --out$"):
        train_dcgan(data=str(art32), out=str(run), steps=6, **TINY_DCGAN)


@pytest.mark.slow
def test_two_nodes_survive_a_killed_worker_and_resume_from_the_last_checkpoint(art32, tmp_path):
    run, port = tmp_path / "two-nodes", free_port()
    logs = [tmp_path / "node0.log", tmp_path / "node1.log"]
    agents = [start_agent(art32, run, port, log) for log in logs]
    try:
        wait_for(lambda: len(logged_steps(run)) >= 50 and children(agents[1].pid), "step 50", 180, agents)
        killed_at = len(logged_steps(run))
        for worker in children(agents[1].pid):
            os.kill(worker, signal.SIGKILL)
        codes = [a.wait(120) for a in agents]
    finally:
        stop(agents)
    output = "\n".join(log.read_text() for log in logs)
    assert codes == [0, 0], output[-4000:]
    assert killed_at < STEPS, "the run ended before the kill: make it longer"
    assert all("resuming" in log.read_text() for log in logs)  # the new workers on both nodes resumed
    assert logged_steps(run) == list(range(1, STEPS + 1))  # every step once: the log was rewound too
    assert find_latest_checkpoint(run).name == f"step_{STEPS:08d}"

    # the same run without a kill, on one node with two workers: the restart lost nothing
    reference = tmp_path / "uninterrupted"
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                    *TRAIN, "--data", str(art32), "--out", str(reference)], env=ENV, check=True, timeout=240,
                   capture_output=True)
    resumed, whole = load_checkpoint(run).weights, load_checkpoint(reference).weights
    assert all(torch.equal(resumed[name], whole[name]) for name in whole)


@pytest.mark.slow
def test_nodes_that_see_different_run_folders_stop_with_the_reason(art32, tmp_path, monkeypatch):
    """Rank 0 resumes a run that the other node cannot see (its --out is not on shared storage): the
    processes would train different steps, so both stop and say why."""
    port = free_port()
    node0, node1 = tmp_path / "node0", tmp_path / "node1"
    node0.mkdir(), node1.mkdir()
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", f"artforge-test-{port}")  # as the job's earlier attempt
    train_dcgan(data=str(art32), out=str(node0 / "run"), steps=2, **TINY_DCGAN)
    monkeypatch.delenv("TORCHELASTIC_RUN_ID")
    agents = [start_agent(art32, Path("run"), port, folder / "log", restarts=0, cwd=folder, steps=4)
              for folder in (node0, node1)]
    try:
        codes = [a.wait(120) for a in agents]
    finally:
        stop(agents)
    assert codes == [1, 1]
    assert any("would start at steps" in (folder / "log").read_text() for folder in (node0, node1))
