"""Several Triton servers behind one client: balancing and failover on the client side.

`Client("a:8001,b:8001")` keeps a connection to each replica. Each call goes to the healthy replica
with the fewest calls in flight (ties in turn). A replica that answers UNAVAILABLE is taken out and
the call goes to another at once: inference here has no side effects (a generator, a style model
or a critic computes and returns; nothing is stored), so sending a failed call again cannot do
anything twice. A replica taken out is asked `/v2/health/ready` (gRPC ServerReady) once its wait
has passed, and comes back when it says yes; each failed check doubles its wait, up to 30 s.

A target with a gRPC scheme (`dns:///triton-headless.ns.svc.cluster.local:8001`, `ipv4:a:8001,b:8001`)
is one channel whose addresses gRPC itself balances with its round_robin policy (Kubernetes headless
Services); artforge then sees one replica.
"""
from __future__ import annotations

import itertools
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from artforge.errors import ArtforgeError

GRPC_SCHEMES = ("dns:", "ipv4:", "ipv6:", "unix:")
MAX_WAIT_S = 30.0


def split_targets(url: str) -> list[str]:
    """'a:8001,b:8001' -> each replica; a target with a gRPC scheme stays whole (gRPC balances it)."""
    if url.startswith(GRPC_SCHEMES):
        return [url]
    targets = [t.strip() for t in url.split(",") if t.strip()]
    if not targets:
        raise ArtforgeError(f"--url '{url}' names no server; give host:port, several joined by commas")
    return targets


@dataclass
class Replica:
    url: str
    client: Any  # a tritonclient InferenceServerClient
    in_flight: int = 0
    down_until: float = 0.0  # time.monotonic(); 0: in service
    wait_s: float = 0.0  # how long the next failed check keeps it out

    @property
    def in_service(self) -> bool:
        return self.down_until == 0.0


class ReplicaSet:
    """The replicas of one client, which of them serve, and how many calls each has in flight."""

    def __init__(self, urls: list[str], connect: Callable[[str], Any], first_wait_s: float = 0.2):
        self.replicas = [Replica(url, connect(url)) for url in urls]
        self.first_wait_s = first_wait_s
        self.turn = itertools.count()
        self.lock = threading.Lock()

    def pick(self) -> Replica | None:
        """The in-service replica with the fewest calls in flight; None when none serves right now."""
        self.check_the_waiting()
        with self.lock:
            serving = [r for r in self.replicas if r.in_service]
            if not serving:
                return None
            start = next(self.turn) % len(serving)
            return min(serving[start:] + serving[:start], key=lambda r: r.in_flight)

    def take_out(self, replica: Replica) -> None:
        with self.lock:
            if replica.in_service:
                replica.wait_s = self.first_wait_s
                replica.down_until = time.monotonic() + replica.wait_s

    def check_the_waiting(self) -> None:
        """Ask each replica whose wait has passed whether it is ready again."""
        now = time.monotonic()
        for replica in [r for r in self.replicas if not r.in_service and r.down_until <= now]:
            if ready(replica.client):
                replica.down_until, replica.wait_s = 0.0, 0.0
            else:
                replica.wait_s = min(MAX_WAIT_S, replica.wait_s * 2)
                replica.down_until = time.monotonic() + replica.wait_s

    def next_return_s(self) -> float:
        """Seconds until the first replica out of service may be asked again."""
        waiting = [r.down_until for r in self.replicas if not r.in_service]
        return max(0.0, min(waiting) - time.monotonic()) if waiting else 0.0

    @contextmanager
    def calling(self, replica: Replica) -> Iterator[Replica]:
        with self.lock:
            replica.in_flight += 1
        try:
            yield replica
        finally:
            with self.lock:
                replica.in_flight -= 1

    def close(self) -> None:
        for replica in self.replicas:
            replica.client.close()


def ready(client) -> bool:
    try:
        return bool(client.is_server_ready(client_timeout=2.0))
    except Exception:  # unreachable, refused, timed out: not ready
        return False
