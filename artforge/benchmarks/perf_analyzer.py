"""NVIDIA's perf_analyzer beside artforge's own load generator: the figures a Triton user's own tool gives.

The binary ships inside the tritonclient 2.51 wheel (the release of the Triton 2.51 that nvidia-pytriton
0.7.0 brings; later wheels need glibc 2.38 or ship none), which `make env` installs. It needs two shared
libraries even on a CPU: libcudart.so.12 (PyPI nvidia-cuda-runtime-cu12, whose lib folder this module
puts on LD_LIBRARY_PATH) and libb64.so.0d (Debian libb64-0d).

    analyzer = find_perf_analyzer()
    point = analyzer.measure("127.0.0.1:8001", "dcgan", write_input_data(request, work / "in.json"), 4, 500)

Each point sends the same request bytes artforge's load generator sends (--input-data from the same
sample inputs), in count windows; it is stable when the last 3 windows' throughput and latency are within
±STABLE_PERCENT of their mean (perf_analyzer's own rule). Two cores drift, so a point that does not settle
is measured again with windows twice as long and a looser bound, and the point records the rule it met.
"""
from __future__ import annotations

import base64
import csv
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from artforge.errors import ArtforgeError

# what provides each library perf_analyzer loads that a machine may lack
LIBRARY_SOURCES = {"libcudart.so.12": "PyPI nvidia-cuda-runtime-cu12 (pip install nvidia-cuda-runtime-cu12)",
                   "libb64.so.0d": "Debian libb64-0d (apt-get install libb64-0d)"}
INSTALL = "pip install --no-deps tritonclient==2.51.0 nvidia-cuda-runtime-cu12 (make env does)"
STABLE_PERCENT = 30  # the first rule tried; then (2x windows, 50%); see measure()
TRIALS = 6  # windows perf_analyzer may take to settle, per attempt (each lasts at least ~1 s)
CSV_FIELDS = {  # perf_analyzer's CSV column -> the point's key (values in microseconds but throughput)
    "Inferences/Second": "throughput", "Response Throughput": "responses_per_s", "Client Send": "client_send_us",
    "Network+Server Send/Recv": "network_server_us", "Server Queue": "server_queue_us",
    "Server Compute Input": "server_compute_input_us", "Server Compute Infer": "server_compute_infer_us",
    "Server Compute Output": "server_compute_output_us", "Client Recv": "client_recv_us",
    "p50 latency": "p50_us", "p90 latency": "p90_us", "p95 latency": "p95_us", "p99 latency": "p99_us"}


@dataclass
class PerfAnalyzer:
    """The perf_analyzer binary and the environment it loads in."""

    binary: Path
    env: dict[str, str]

    def version(self) -> str:
        done = subprocess.run([str(self.binary), "--version"], capture_output=True, text=True, env=self.env,
                              timeout=30)
        return (done.stdout.strip() or done.stderr.strip()).splitlines()[0] if done.returncode == 0 else "unknown"

    def measure(self, url: str, model: str, input_data: Path, concurrency: int, window_requests: int,
                streaming: bool = False, output_bytes: int = 0, request_rate: float = 0,
                timeout_s: float = 600.0) -> dict[str, Any]:
        """One concurrency point: perf_analyzer's throughput, latency percentiles (ms) and Triton's server-side
        split (µs), with the stability rule it met. `output_bytes` > 0 sends inputs and outputs through
        system shared memory (regions that large for the outputs), as artforge's client does with large
        tensors to a local server; otherwise they travel in the gRPC messages. `request_rate` > 0 sends
        requests arriving at random (Poisson) at that rate instead of `concurrency` clients in a loop."""
        attempts = [(window_requests, STABLE_PERCENT), (2 * window_requests, 50)]
        problem = ""
        for requests, percent in attempts:
            csv_path = input_data.with_name(f"perf_analyzer_{model}_c{concurrency}.csv")
            csv_path.unlink(missing_ok=True)
            command = self.command(url, model, input_data, concurrency, requests, percent, csv_path, streaming)
            if request_rate:
                at = command.index("--concurrency-range")
                command[at:at + 2] = ["--request-rate-range", f"{request_rate:g}",
                                      "--request-distribution", "poisson"]
            if output_bytes:
                command += ["--shared-memory", "system", "--output-shared-memory-size", str(output_bytes)]
            done, cores = run_counting_cpu(command, self.env, timeout_s)
            if done.returncode == 0 and csv_path.exists():
                point = read_point(csv_path)
                point["client_cpu_cores"] = cores
                point["stability"] = (f"last 3 windows of {requests} requests within ±{percent}% "
                                      f"(throughput and latency)")
                point["transfer"] = "system shared memory" if output_bytes else "gRPC messages"
                return point
            problem = last_line(done.stdout + done.stderr)
        where = {"request_rate": request_rate} if request_rate else {"concurrency": concurrency}
        return {**where, "error": problem}

    def command(self, url: str, model: str, input_data: Path, concurrency: int, requests: int, percent: int,
                csv_path: Path, streaming: bool) -> list[str]:
        return [str(self.binary), "-m", model, "-i", "grpc", "-u", url, "-b", "1", "--input-data", str(input_data),
                "--concurrency-range", str(concurrency), "--measurement-mode", "count_windows",
                "--measurement-request-count", str(requests), "-s", str(percent), "--max-trials", str(TRIALS),
                "-f", str(csv_path), *(["--streaming"] if streaming else [])]


def run_counting_cpu(command: list[str], env: dict[str, str], timeout_s: float):
    """Run perf_analyzer; also the cores it kept busy on average (CPU seconds / wall seconds), to set beside
    artforge's load generator's: on a small machine a client's CPU is taken from the server's."""
    cpu = lambda: sum(resource.getrusage(resource.RUSAGE_CHILDREN)[:2])  # noqa: E731 - user + system, waited-for
    cpu_before, started = cpu(), time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout_s)
    return done, (cpu() - cpu_before) / max(time.perf_counter() - started, 1e-9)


def find_perf_analyzer() -> PerfAnalyzer:
    """The binary (on PATH or beside this Python) with its libraries found; a one-line error naming what is
    missing otherwise."""
    found = shutil.which("perf_analyzer") or shutil.which("perf_analyzer", path=str(Path(sys.executable).parent))
    if not found:
        raise ArtforgeError(f"perf_analyzer not found: it ships in the tritonclient 2.51 wheel: {INSTALL}")
    env = dict(os.environ)
    cuda = cuda_runtime_lib()
    if cuda:
        env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(cuda), env.get("LD_LIBRARY_PATH", "")]))
    for library in missing_libraries(Path(found), env):
        source = LIBRARY_SOURCES.get(library, "the package that provides it")
        raise ArtforgeError(f"perf_analyzer ({found}) cannot load {library}: install {source}")
    return PerfAnalyzer(Path(found), env)


def cuda_runtime_lib() -> Path | None:
    """The lib folder of PyPI's nvidia-cuda-runtime-cu12 (libcudart.so.12), if it is installed."""
    try:
        import nvidia.cuda_runtime as runtime  # a namespace package with no code: only its folder is wanted
    except ImportError:
        return None
    folders = [Path(p) / "lib" for p in runtime.__path__ if (Path(p) / "lib" / "libcudart.so.12").exists()]
    return folders[0] if folders else None


def missing_libraries(binary: Path, env: dict[str, str]) -> list[str]:
    """The shared libraries the dynamic loader cannot find for `binary`, as ldd names them."""
    done = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, env=env, timeout=30)
    return [line.split("=>")[0].strip() for line in done.stdout.splitlines() if "not found" in line]


def write_input_data(request: dict[str, np.ndarray], path: Path, batched: bool = True) -> Path:
    """perf_analyzer's --input-data JSON for one request: each tensor's bytes (base64) and shape, without
    the batch dimension when the model batches (perf_analyzer adds it); the same bytes artforge sends."""
    entry = {}
    for name, array in request.items():
        one = np.ascontiguousarray(array[0] if batched else array)
        entry[name] = {"b64": base64.b64encode(one.tobytes()).decode("ascii"), "shape": list(one.shape)}
    path.write_text(json.dumps({"data": [entry]}))
    return path


def read_point(csv_path: Path) -> dict[str, Any]:
    """The one row of perf_analyzer's CSV report (-f) as a point: ms for the client percentiles, µs for the
    parts of a request, inferences/s."""
    with csv_path.open() as f:
        row = next(csv.DictReader(f))
    point: dict[str, Any] = ({"concurrency": int(row["Concurrency"])} if "Concurrency" in row
                             else {"request_rate": float(row["Request Rate"])})
    for column, key in CSV_FIELDS.items():
        if column in row:
            point[key] = float(row[column])
    for q in ("p50", "p90", "p95", "p99"):
        if f"{q}_us" in point:
            point[f"{q}_ms"] = point.pop(f"{q}_us") / 1000.0
    return point


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else "no output"
