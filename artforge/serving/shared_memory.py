"""Tensors to and from a Triton server on this machine through system shared memory, not the gRPC message.

Serialising an image into a protobuf and through HTTP/2 costs more than copying it into memory the
server maps: `artforge bench --sizes ...` times both ways ("Triton, image in gRPC" beside "Triton";
ratio shared_memory_gain_b1_SIZE), and benchmarks/results/style-fast-openvino-epyc.md holds a run.

One region per request in flight holds its inputs, then its outputs; regions are registered with
the server once and reused. The outputs' sizes are learnt from the first answer for each set of
input shapes (that request goes over gRPC as usual). A server that cannot open the client's regions
(another host or container behind a local port) is found out on the first registration, and the
client then sends everything over gRPC.
"""
from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from multiprocessing import shared_memory

import numpy as np

log = logging.getLogger(__name__)
MIN_BYTES = 64 << 10  # smaller requests gain nothing: the region bookkeeping costs what the copy saves
LOCAL_HOSTS = {"127.0.0.1", "localhost", "[::1]"}
ALIGN = 64
MAX_SHAPES = 256  # input shape sets whose output sizes are remembered
UNREGISTER_WAITS_S = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4)  # 0.8 s in all, then the region is left to the server
_counter = itertools.count()


def is_local(target: str) -> bool:
    """A plain host:port address of this machine (gRPC-scheme targets and lists of replicas are not)."""
    host, _, port = target.rpartition(":")
    return host in LOCAL_HOSTS and port.isdigit()


def aligned(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


class Region:
    """A block of system shared memory that the server knows by name."""

    def __init__(self, client, size: int):
        self.name = f"artforge-{os.getpid()}-{next(_counter)}"
        self.memory = shared_memory.SharedMemory(name=self.name, create=True, size=size)  # mode 0600
        self.size = size
        try:
            client.register_system_shared_memory(self.name, self.key(), size)
        except Exception:
            self.release_memory()
            raise

    def key(self) -> str:
        """What the server opens: the POSIX name of the memory."""
        return "/" + self.name

    def write(self, offset: int, value: np.ndarray) -> None:
        np.ndarray(value.shape, value.dtype, buffer=self.memory.buf, offset=offset)[...] = value

    def read(self, offset: int, dtype: np.dtype, shape: list[int]) -> np.ndarray:
        return np.ndarray(shape, dtype, buffer=self.memory.buf, offset=offset).copy()  # the region is reused

    def close(self, client) -> None:
        unregister(client, self.name)
        self.release_memory()

    def release_memory(self) -> None:
        self.memory.close()
        self.memory.unlink()


def unregister(client, name: str = "") -> bool:
    """Unregister region NAME (every region: "") with the server; whether it is done.

    Triton refuses while a region is "in use": until it has released the last response written into
    it, which can be just after the client has read that answer. So a refusal is retried a few times
    (UNREGISTER_WAITS_S); a server that is gone (UNAVAILABLE) no longer holds the name anyway.
    """
    from tritonclient.utils import InferenceServerException

    for wait in UNREGISTER_WAITS_S + (None,):
        try:
            client.unregister_system_shared_memory(name)
            return True
        except Exception as e:  # a refusal is retried; a closed channel or a gone server is not
            refused = isinstance(e, InferenceServerException) and "UNAVAILABLE" not in str(e.status() or "")
            if wait is None or not refused:
                log.info("could not unregister shared memory %s: %s", name or "(all)",
                         (str(e) or type(e).__name__).splitlines()[0])
                return False
            time.sleep(wait)


class SharedMemoryTransfer:
    """Sends requests to one local server (a tritonclient gRPC client) through pooled regions."""

    def __init__(self, client, grpc_module, dtypes: dict[str, np.dtype]):
        self.client, self.grpc, self.dtypes = client, grpc_module, dtypes
        self.enabled = True
        self.free: list[Region] = []
        self.lock = threading.Lock()
        self.outputs: dict[tuple, list[tuple[str, int]]] = {}  # input shapes -> (output name, bytes) in order

    def worth(self, inputs: dict[str, np.ndarray]) -> bool:
        """Whether requests with these inputs go this way (once their output sizes are known)."""
        return self.enabled and sum(v.nbytes for v in inputs.values()) >= MIN_BYTES

    @staticmethod
    def request_key(model: str, outputs, inputs: dict[str, np.ndarray]) -> tuple:
        return model, tuple(outputs), tuple((n, v.shape, v.dtype.str) for n, v in sorted(inputs.items()))

    def knows(self, model: str, inputs: dict[str, np.ndarray], wanted: list[str]) -> tuple | None:
        """The key of a request worth sending this way whose output sizes are known, else None."""
        key = self.request_key(model, wanted, inputs) if self.worth(inputs) else None
        return key if key in self.outputs else None

    def learn(self, model: str, inputs: dict[str, np.ndarray], outputs: dict[str, np.ndarray]) -> None:
        """Remember what a plain request of these shapes answered, so the next one can go this way."""
        if not self.worth(inputs):
            return
        if len(self.outputs) >= MAX_SHAPES:
            self.outputs.clear()
        self.outputs[self.request_key(model, outputs, inputs)] = [(name, v.nbytes) for name, v in outputs.items()]

    def infer(self, key: tuple, model: str, tensors: list[tuple[str, str, np.ndarray]], timeout_s: float):
        """The outputs by name; None when shared memory failed (the caller then sends it over gRPC)."""
        from tritonclient.utils import InferenceServerException

        outputs = self.outputs[key]
        sizes = [aligned(v.nbytes) for _, _, v in tensors] + [aligned(n) for _, n in outputs]
        try:
            region = self.acquire(sum(sizes))
        except (InferenceServerException, OSError) as e:  # the server cannot map our memory: gRPC from now on
            self.enabled = False
            log.info("sending tensors over gRPC: the server cannot use this client's shared memory (%s)",
                     str(e).splitlines()[0])
            return None
        keep = True
        try:
            offset, requested_inputs = 0, []
            for (name, wire, value), size in zip(tensors, sizes):
                region.write(offset, value)
                tensor = self.grpc.InferInput(name, list(value.shape), wire)
                tensor.set_shared_memory(region.name, value.nbytes, offset)
                requested_inputs.append(tensor)
                offset += size
            requested, places = [], []
            for (name, nbytes), size in zip(outputs, sizes[len(tensors):]):
                output = self.grpc.InferRequestedOutput(name)
                output.set_shared_memory(region.name, nbytes, offset)
                requested.append(output)
                places.append(offset)
                offset += size
            try:
                result = self.client.infer(model, requested_inputs, outputs=requested, client_timeout=timeout_s)
            except InferenceServerException as e:
                if "shared memory" in str(e).lower() or "UNAVAILABLE" in str(e.status() or ""):
                    keep = False  # a restarted server forgot the region, or it is down: let gRPC retry
                    return None
                raise
            answer = {}
            for (name, _), place in zip(outputs, places):
                meta = result.get_output(name)
                answer[name] = region.read(place, self.dtypes[meta.datatype], list(meta.shape))
            return answer
        finally:
            self.give_back(region, keep)

    def acquire(self, size: int) -> Region:
        with self.lock:
            fitting = next((r for r in self.free if r.size >= size), None)
            if fitting is not None:
                self.free.remove(fitting)
                return fitting
            small = self.free.pop() if self.free else None
        if small is not None:  # a larger request than before: swap the region for one that holds it
            small.close(self.client)
        return Region(self.client, max(size, 1 << 20))

    def give_back(self, region: Region, keep: bool) -> None:
        if keep:
            with self.lock:
                self.free.append(region)
        else:
            region.close(self.client)

    def close(self) -> None:
        with self.lock:
            regions, self.free = self.free, []
        for region in regions:
            region.close(self.client)
