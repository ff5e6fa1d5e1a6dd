"""Malformed requests against a live server, sent as raw gRPC so no client-side check stops them.

    report = fuzz_server(server, rounds=3)   # every case for every model, 3 times over

Each case must come back as an error and leave the server up. A case after which a model fails
its health check counts as a crash; the model is reloaded (as `artforge serve` would) and the
run goes on, so one crash does not hide the cases after it.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from artforge.serving.repository_config import parse_config
from artforge.serving.server import Server, warmup_request


@dataclass
class RawTensor:
    name: str
    datatype: str
    shape: list[int]
    data: bytes


@dataclass
class FuzzCase:
    label: str
    model: str
    tensors: list[RawTensor]


@dataclass
class FuzzReport:
    requests: int = 0
    refused: int = 0  # answered with an error, as they should be
    answered_ok: list[str] = field(default_factory=list)  # malformed, yet answered as if fine
    crashes: list[str] = field(default_factory=list)  # a model failed its health check after the case
    statuses: dict[str, int] = field(default_factory=dict)  # gRPC status name -> how many cases got it
    rss_mb_start: float = 0.0
    rss_mb_end: float = 0.0


def valid_tensors(model_dir: Path) -> list[RawTensor]:
    """The model's warm-up request, the valid request every case starts from."""
    return [RawTensor(*entry) for entry in warmup_request(model_dir)]


def model_limits(model_dir: Path) -> tuple[dict, int]:
    config = parse_config((model_dir / "config.pbtxt").read_text())
    return json.loads(config.parameters["artforge.limits"].string_value or "{}"), config.max_batch_size


def changed(tensors: list[RawTensor], index: int, **fields) -> list[RawTensor]:
    out = [RawTensor(t.name, t.datatype, list(t.shape), t.data) for t in tensors]
    for key, value in fields.items():
        setattr(out[index], key, value)
    return out


def fuzz_cases(model: str, model_dir: Path) -> list[FuzzCase]:
    """Every kind of malformed request the server must refuse, for one model."""
    base = valid_tensors(model_dir)
    limits, max_batch = model_limits(model_dir)
    cases = [FuzzCase("unknown model", model + "-missing", base),
             FuzzCase("missing input", model, base[1:]),
             FuzzCase("unknown input", model, base + [RawTensor("extra", "FP32", [1, 1], b"\0" * 4)])]
    for i, t in enumerate(base):
        cases += tensor_cases(model, base, i, t, limits.get(t.name, {}), max_batch)
    return cases


def tensor_cases(model: str, base: list[RawTensor], i: int, t: RawTensor, limit: dict,
                 max_batch: int) -> list[FuzzCase]:
    from tritonclient.utils import triton_to_np_dtype

    dtype = triton_to_np_dtype(t.datatype)
    item = np.frombuffer(t.data, dtype).reshape(t.shape)
    other_type = "INT32" if t.datatype != "INT32" else "FP32"
    big_batch = np.repeat(item, max_batch + 1, axis=0)
    cases = [(f"{t.name}: wrong dtype", dict(datatype=other_type)),
             (f"{t.name}: wrong rank", dict(shape=t.shape + [1])),
             (f"{t.name}: zero-size dimension", dict(shape=[1, *([0] * (len(t.shape) - 1))], data=b"")),
             (f"{t.name}: batch above max", dict(shape=[max_batch + 1, *t.shape[1:]], data=big_batch.tobytes())),
             (f"{t.name}: fewer bytes than declared", dict(data=t.data[: len(t.data) // 2])),
             (f"{t.name}: declared shape overflows 64 bits", overflowing(t, np.dtype(dtype).itemsize))]
    dims = limit.get("dims", [])
    if any(low != high for low, high in dims):
        huge = [1, *[high + 1 if low != high else high for low, high in dims]]
        cases.append((f"{t.name}: above the size limit (no data sent)", dict(shape=huge, data=b"")))
    if limit.get("finite"):
        for bad in (np.nan, np.inf):
            cases.append((f"{t.name}: {bad}", dict(data=np.full_like(item, bad).tobytes())))
    if "min" in limit:
        cases.append((f"{t.name}: below minimum", dict(data=np.full_like(item, limit["min"] - 1).tobytes())))
    if "max" in limit:
        cases.append((f"{t.name}: above maximum", dict(data=np.full_like(item, limit["max"] + 1).tobytes())))
    if limit.get("positive_sum"):
        cases.append((f"{t.name}: all zero", dict(data=np.zeros_like(item).tobytes())))
    return [FuzzCase(label, model, changed(base, i, **fields)) for label, fields in cases]


def overflowing(t: RawTensor, itemsize: int) -> dict:
    """A shape whose byte count wraps past 2**64 to exactly the bytes sent: 4 x (2**62 + 1) elements
    is 2**64 + 4, which 64-bit arithmetic takes for 4 (times the trailing dims kept as they are)."""
    trailing = t.shape[3:]
    shape = [1, 4, 2**62 + 1, *trailing] if len(t.shape) >= 3 else [1, 2**62 + 1]
    elements = 4 * int(np.prod(trailing)) if len(t.shape) >= 3 else 1
    return dict(shape=shape, data=t.data[:elements * itemsize])


def send_raw(stub, case: FuzzCase, timeout_s: float = 30.0) -> str:
    """'OK', or the gRPC status name the server answered with."""
    import grpc
    from tritonclient.grpc import service_pb2

    request = service_pb2.ModelInferRequest(model_name=case.model)
    for t in case.tensors:
        request.inputs.add(name=t.name, datatype=t.datatype, shape=t.shape)
        request.raw_input_contents.append(t.data)
    try:
        stub.ModelInfer(request, timeout=timeout_s)
        return "OK"
    except grpc.RpcError as e:
        return e.code().name


def process_group(pid: int):
    """(stat fields after the name, /proc folder) of each process in group `pid`: a server and its stubs."""
    for status in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = status.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pid:  # field 5 of stat, the process group
                yield fields, status.parent
        except (OSError, IndexError, ValueError):
            continue


def process_group_rss_mb(pid: int) -> float:
    """Resident memory of the server and its backend stubs (its process group), in MB."""
    total = 0
    for _, folder in process_group(pid):
        try:
            total += int((folder / "statm").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return total * os.sysconf("SC_PAGE_SIZE") / 1e6


def process_group_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) the server and its backend stubs have used so far."""
    ticks = sum(int(fields[11]) + int(fields[12]) for fields, _ in process_group(pid))  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def fuzz_server(server: Server, rounds: int = 1, progress: bool = False) -> FuzzReport:
    """Send every case of every model `rounds` times; count refusals, wrong answers and crashes."""
    import tritonclient.grpc as grpcclient

    report = FuzzReport(rss_mb_start=process_group_rss_mb(server.process.pid))
    cases = [c for model in server.models for c in fuzz_cases(model, server.repository / model)]
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        stub = client._client_stub  # raw requests: tritonclient's own InferInput checks shapes against data
        for case in tqdm(cases * rounds, desc="fuzz", unit="request", disable=not progress):
            status = send_raw(stub, case)
            report.requests += 1
            report.statuses[status] = report.statuses.get(status, 0) + 1
            if status == "OK":
                report.answered_ok.append(case.label)
            else:
                report.refused += 1
            for model in server.check_health():
                report.crashes.append(f"{model} after '{case.label}'")
                server.reload(model)
    report.rss_mb_end = process_group_rss_mb(server.process.pid)
    return report
