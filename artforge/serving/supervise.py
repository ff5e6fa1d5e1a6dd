"""`artforge serve`: Triton servers on a repository, kept running until Ctrl-C or SIGTERM.

A lone server that exits is an error; a replica that exits is started again while its clients use the
others. Every --health-interval seconds each model gets its warm-up request, and one whose backend no
longer answers is reloaded.
"""
from __future__ import annotations

import signal
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass

from artforge.errors import ArtforgeError
from artforge.options import Command, option
from artforge.serving.server import GRACEFUL_EXIT_S, Server, replica_servers


@dataclass(kw_only=True)
class ServeOptions:
    repository: str = option(help="Triton model repository (from 'artforge export')", required=True)
    grpc_port: int = option(8001, help="gRPC port (clients: --url HOST:PORT)")
    http_port: int = option(8000, help="HTTP port (health: /v2/health/ready)")
    metrics_port: int = option(8002, help="Prometheus metrics port (/metrics)")
    host: str = option("127.0.0.1", help="address to bind; 127.0.0.1 keeps it on this machine")
    log_file: str = option("runs/serve/triton.log", help="where the server's log goes")
    health_interval: float = option(5.0, help="seconds between health checks: each model gets its warm-up "
                                              "request and is reloaded if its backend died (0: no checks)")
    replicas: int = option(1, help="Triton servers on the same repository; replica i listens on the given ports "
                                   "+ 3*i (8000-8002, 8003-8005, ...; port 0: free ports) and a replica that "
                                   "exits is started again. Clients take them all: "
                                   "--url 127.0.0.1:8001,127.0.0.1:8004")


def serve(opts: ServeOptions) -> None:
    """Start the servers, print where they listen, and keep them healthy until asked to stop."""
    stop = {"requested": False}

    def request_stop(signum, frame):
        stop["requested"] = True

    servers = replica_servers(opts.repository, opts.replicas, grpc_port=opts.grpc_port, http_port=opts.http_port,
                              metrics_port=opts.metrics_port, host=opts.host, log_file=opts.log_file,
                              exit_timeout_s=GRACEFUL_EXIT_S)
    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    with ExitStack() as running:
        for server in servers:
            running.enter_context(server)
        print_endpoints(servers)
        next_check = time.monotonic() + opts.health_interval
        while not stop["requested"]:
            for server in servers:
                keep_running(server, len(servers))
            if opts.health_interval and time.monotonic() >= next_check:
                for server in servers:
                    revive_broken_models(server)
                next_check = time.monotonic() + opts.health_interval
            time.sleep(0.2)
    print("Triton stopped." if len(servers) == 1 else f"{len(servers)} Triton replicas stopped.")


def print_endpoints(servers: list[Server]) -> None:
    first = servers[0]
    print(f"Triton is serving {', '.join(first.models)} from {first.repository}", flush=True)
    for i, server in enumerate(servers):
        label = f"replica {i}: " if len(servers) > 1 else ""
        print(f"  {label}gRPC {server.grpc_url}   HTTP {server.http_url}   metrics {server.metrics_url}\n"
              f"  {' ' * len(label)}log  {server.log_file}")
    if len(servers) > 1:
        print(f"  clients: --url {','.join(s.grpc_url for s in servers)}")
    print("Ctrl-C stops it." if len(servers) == 1 else "Ctrl-C stops them all.", flush=True)


def keep_running(server: Server, replicas: int) -> None:
    """A lone server that exits is an error; a replica that exits is started again (its clients use the others
    meanwhile)."""
    if server.alive():
        return
    problem = f"Triton exited with status {server.process.returncode}: {server.last_error()} (log: {server.log_file})"
    if replicas == 1:
        raise ArtforgeError(problem)
    print(f"artforge: warning: replica {server.grpc_url}: {problem}; starting it again", file=sys.stderr, flush=True)
    server.stop()
    server.start()
    print(f"artforge: replica {server.grpc_url} serves again", file=sys.stderr, flush=True)


def revive_broken_models(server: Server) -> None:
    """Reload each model whose backend no longer answers its warm-up request; raise if one stays dead."""
    for model, problem in server.check_health().items():
        print(f"artforge: warning: model '{model}' failed its health check ({problem}); reloading it",
              file=sys.stderr, flush=True)
        server.reload(model)
        still = server.check_health().get(model)
        if still:
            raise ArtforgeError(f"model '{model}' is still broken after a reload: {still}")
        print(f"artforge: model '{model}' reloaded and healthy again", file=sys.stderr, flush=True)


COMMAND = Command(
    "serve", help="serve a model repository on NVIDIA Triton Inference Server (gRPC + HTTP)",
    description="Start a real Triton Inference Server (from the nvidia-pytriton wheel) on a repository "
                "written by 'artforge export'. It waits until every model is ready, prints the endpoints, "
                "and shuts down cleanly on Ctrl-C or SIGTERM. Models load at start only (explicit model "
                "control): nothing can be loaded over the API.",
    examples="  artforge serve --repository repo\n"
             "  artforge serve --repository repo --grpc-port 9001 --http-port 9000 --metrics-port 9002\n"
             "  artforge serve --repository repo --host 0.0.0.0      # reachable from other machines\n"
             "  artforge serve --repository repo --replicas 2        # gRPC on 8001 and 8004\n"
             "GPU servers: run the --runtime native repository in NVIDIA's container ('artforge gpu-compose', "
             "docs/gpu.md).",
    options=ServeOptions, run=serve)
