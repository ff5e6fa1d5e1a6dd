"""Large tensors to a local Triton through system shared memory, and what happens when that cannot work."""
import os

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from artforge.serving import shared_memory
from artforge.serving.client import Client

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(style_server):
    return style_server[0]


def photo(size, seed=0):
    return {"content": np.random.default_rng(seed).integers(0, 256, (1, size, size, 3), dtype=np.uint8),
            "style_weights": np.array([[0.25, 0.75]], np.float32)}


def registered(server):
    status = grpcclient.InferenceServerClient(server.grpc_url).get_system_shared_memory_status(as_json=True)
    return sorted(region["name"] for region in status.get("regions", {}).values())


def our_memory():
    return sorted(f for f in os.listdir("/dev/shm") if f.startswith(f"artforge-{os.getpid()}-"))


def test_is_local():
    assert shared_memory.is_local("127.0.0.1:8001") and shared_memory.is_local("localhost:1")
    assert not shared_memory.is_local("10.0.0.5:8001") and not shared_memory.is_local("dns:///triton:8001")
    assert not shared_memory.is_local("127.0.0.1")


class Refusing:
    """A server that refuses to unregister N times: Triton's answer while a region is still in use."""

    def __init__(self, refusals, status="StatusCode.INTERNAL"):
        self.refusals, self.status, self.calls = refusals, status, 0

    def unregister_system_shared_memory(self, name=""):
        from tritonclient.utils import InferenceServerException

        self.calls += 1
        if self.calls <= self.refusals:
            raise InferenceServerException(f"Failed to unregister the following system shared memory regions: {name}",
                                           status=self.status)


class ClosedChannel:
    def unregister_system_shared_memory(self, name=""):
        raise ValueError("Cannot invoke RPC on closed channel!")


def test_unregistering_a_region_still_in_use_is_retried_and_a_gone_server_is_not():
    assert shared_memory.unregister(busy := Refusing(2), "r") and busy.calls == 3
    assert not shared_memory.unregister(gone := Refusing(99, "StatusCode.UNAVAILABLE"), "r") and gone.calls == 1
    assert not shared_memory.unregister(ClosedChannel(), "r")  # not a refusal: no retry, no exception
    assert not shared_memory.unregister(stuck := Refusing(99), "r")
    assert stuck.calls == len(shared_memory.UNREGISTER_WAITS_S) + 1  # bounded: gives up after 0.8 s


def test_the_second_request_of_a_size_goes_through_shared_memory_with_the_same_answer(server):
    x = photo(160, seed=1)  # 77 KB in and out: above the threshold
    with Client(server.grpc_url) as client, Client(server.grpc_url, shared_memory=False) as plain:
        want = plain.infer("stylize", x)["image"]
        first = client.infer("stylize", x)["image"]  # over gRPC: learns the output's size
        assert registered(server) == [] and client.transfer.free == []
        second = client.infer("stylize", x)["image"]
        assert np.array_equal(first, want) and np.array_equal(second, want)
        names = [region.name for region in client.transfer.free]
        assert len(names) == 1 and registered(server) == names and our_memory() == names
        third = client.infer("stylize", photo(160, seed=2))["image"]  # same region reused, new content
        assert not np.array_equal(third, second) and [r.name for r in client.transfer.free] == names
        small = client.infer("stylize", photo(24))["image"]  # below the threshold: plain gRPC
        assert small.shape == (1, 24, 24, 3) and [r.name for r in client.transfer.free] == names
    assert registered(server) == [] and our_memory() == []  # closing the client leaves nothing behind


def test_a_server_that_forgot_the_region_gets_the_request_over_grpc_and_a_new_region_next(server):
    x = photo(160, seed=3)
    with Client(server.grpc_url) as client:
        want = client.infer("stylize", x)["image"]
        client.infer("stylize", x)
        assert shared_memory.unregister(grpcclient.InferenceServerClient(server.grpc_url))  # as a restart does
        assert np.array_equal(client.infer("stylize", x)["image"], want)
        assert client.transfer.free == [] and our_memory() == []  # the forgotten region was dropped
        assert np.array_equal(client.infer("stylize", x)["image"], want)
        assert len(registered(server)) == 1 and client.transfer.enabled


def test_a_server_that_cannot_open_the_memory_turns_it_off_for_the_client(server, monkeypatch):
    """What a server in another container behind a local port does: its /dev/shm is not ours."""
    monkeypatch.setattr(shared_memory.Region, "key", lambda self: "/artforge-not-this-machine")
    x = photo(160, seed=4)
    with Client(server.grpc_url) as client:
        want = client.infer("stylize", x)["image"]
        assert np.array_equal(client.infer("stylize", x)["image"], want)
        assert not client.transfer.enabled and our_memory() == [] and registered(server) == []
        assert np.array_equal(client.infer("stylize", x)["image"], want)
