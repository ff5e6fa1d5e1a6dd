"""A real NVIDIA Triton Inference Server process over an artforge model repository.

The server binary and Python backend come from the `nvidia-pytriton` wheel (Triton 2.51).
Two facts of running it outside NVIDIA's container shape this file:
- the backend stub embeds libpython3.x.so: this Python's LIBDIR goes first on LD_LIBRARY_PATH,
  or a system libpython of the same version is picked up and the stub dies;
- the stub must sit next to libtriton_python.so in the --backend-directory, so a private
  backend folder is assembled for each server.

    with Server("repo", grpc_port=0) as server:   # 0: pick free ports
        client = Client(server.grpc_url)
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from artforge.errors import ArtforgeError
from artforge.serving.repository_config import parse_config, runtime_of

log = logging.getLogger(__name__)
LOG_NOISE = ("CudaDriverHelper", "NVML", "DCGM")  # errors every CPU-only start logs
SHM_DIR = Path("/dev/shm")
SHM_PREFIX = "triton_python_backend_shm_region_"  # the Python backend's shared memory, one file a stub


@dataclass(frozen=True)
class TritonInstall:
    """Where the wheel keeps the server, its libraries, the Python backend and its stub."""

    root: Path

    @property
    def binary(self) -> Path:
        return self.root / "bin" / "tritonserver"

    @property
    def libraries(self) -> Path:
        return self.root.parent.parent / "nvidia_pytriton.libs"

    @property
    def python_backend(self) -> Path:
        return self.root / "backends" / "python"

    def stub(self, version: str) -> Path:
        return self.root / "python_backend_stubs" / version / "triton_python_backend_stub"


def find_triton() -> TritonInstall:
    try:
        import pytriton
    except ImportError:
        raise ArtforgeError("the Triton server is not installed: pip install 'artforge[serve]' "
                            "(the nvidia-pytriton wheel ships tritonserver)") from None
    install = TritonInstall(Path(pytriton.__file__).parent / "tritonserver")
    if not install.binary.exists():
        raise ArtforgeError(f"tritonserver binary missing at {install.binary}; reinstall nvidia-pytriton")
    return install


def shared_libpython() -> Path:
    """The libpython the backend stub must load: this interpreter's own."""
    libdir = Path(sysconfig.get_config_var("LIBDIR") or "")
    name = sysconfig.get_config_var("LDLIBRARY") or ""
    if not sysconfig.get_config_var("Py_ENABLE_SHARED") or not (libdir / name).exists():
        raise ArtforgeError(f"this Python ({sys.executable}) was built without a shared libpython; Triton's Python "
                            "backend needs one (use a Python built with --enable-shared, e.g. pyenv with "
                            "PYTHON_CONFIGURE_OPTS=--enable-shared, or Debian's python3)")
    return libdir / name


def free_ports(count: int, host: str = "127.0.0.1", taken: tuple[int, ...] = ()) -> list[int]:
    """`count` distinct free ports, none in `taken`. All sockets stay bound until every port is chosen: ports
    asked for one at a time can come back equal (the kernel may hand a just-closed port out again), and Triton
    refuses to start when two of its ports are the same."""
    with contextlib.ExitStack() as stack:
        ports: list[int] = []
        while len(ports) < count:
            s = stack.enter_context(socket.socket())
            s.bind((host, 0))
            port = s.getsockname()[1]
            if port not in taken:
                ports.append(port)
        return ports


def free_port(host: str = "127.0.0.1") -> int:
    return free_ports(1, host)[0]


def check_port_free(host: str, port: int, what: str) -> None:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            raise ArtforgeError(f"{what} port {port} on {host} is in use; stop what uses it or choose "
                                f"another with --{what.lower()}-port") from None


def repository_models(repository: Path) -> list[str]:
    repository = Path(repository)
    if not repository.is_dir():
        raise ArtforgeError(f"model repository {repository} does not exist; create it with 'artforge export'")
    models = sorted(p.name for p in repository.iterdir() if (p / "config.pbtxt").exists())
    if not models:
        raise ArtforgeError(f"model repository {repository} has no models (no NAME/config.pbtxt); "
                            "add one with 'artforge export CHECKPOINT --repository ...'")
    native = [m for m in models if runtime_of(parse_config((repository / m / "config.pbtxt").read_text())) != "python"]
    if native:
        raise ArtforgeError(f"model(s) {', '.join(native)} in {repository} need Triton's onnxruntime/tensorrt "
                            "backends (--runtime native), which this server (the nvidia-pytriton wheel, Python "
                            "backend only) lacks: serve them in NVIDIA's container ('artforge gpu-compose "
                            f"--repository {repository}'), or export with --runtime embedded")
    return models


class Server:
    """Start, wait for, and stop one tritonserver process (a context manager)."""

    def __init__(self, repository: str | Path, grpc_port: int = 8001, http_port: int = 8000,
                 metrics_port: int = 8002, host: str = "127.0.0.1", log_file: str | Path | None = None,
                 startup_timeout_s: float = 180.0, verbose: bool = False, exit_timeout_s: int = 0):
        self.repository = Path(repository).resolve()
        self.host = host
        asked = {"gRPC": grpc_port, "HTTP": http_port, "metrics": metrics_port}
        chosen = iter(free_ports(sum(not p for p in asked.values()), host if host != "0.0.0.0" else "127.0.0.1",
                                 taken=tuple(p for p in asked.values() if p)))
        self.ports = {what: port or next(chosen) for what, port in asked.items()}
        self.log_file = Path(log_file) if log_file else None
        self.startup_timeout_s = startup_timeout_s
        self.verbose = verbose
        # Seconds Triton waits at SIGTERM for requests in flight and models to unload, polling once a second
        # (a stop then takes 2-3 s). 0 suits a server stopped by the code that sent it all its requests
        # (benchmarks, tests: 0.3-0.5 s); `artforge serve` gives clients GRACEFUL_EXIT_S to finish. Shared
        # memory a quick exit leaves behind is removed by stop().
        self.exit_timeout_s = exit_timeout_s
        self.process: subprocess.Popen | None = None
        self.models: list[str] = []
        self._backend_dir: Path | None = None
        self._log_handle = None
        self._log_start = 0

    @property
    def grpc_url(self) -> str:
        return f"{'127.0.0.1' if self.host == '0.0.0.0' else self.host}:{self.ports['gRPC']}"

    @property
    def http_url(self) -> str:
        return f"http://{'127.0.0.1' if self.host == '0.0.0.0' else self.host}:{self.ports['HTTP']}"

    @property
    def metrics_url(self) -> str:
        return f"http://{'127.0.0.1' if self.host == '0.0.0.0' else self.host}:{self.ports['metrics']}/metrics"

    def __enter__(self) -> "Server":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        """Check everything that can be checked, start the server, return when all models are ready."""
        self.models = repository_models(self.repository)
        remove_orphaned_shared_memory()  # left by servers that were killed
        install = find_triton()
        libpython = shared_libpython()
        self.check_ports_distinct()
        for what, port in self.ports.items():
            check_port_free(self.host, port, what)
        self._backend_dir = assemble_backends(install)
        if self.log_file is None:
            self.log_file = self._backend_dir / "triton.log"
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self._log_handle = open(self.log_file, "ab")
        self._log_start = self._log_handle.tell()  # a --log-file is appended to: earlier runs' lines are not ours
        self.process = subprocess.Popen(self.command(install), env=self.environment(install, libpython),
                                        stdout=self._log_handle, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            self.wait_until_ready()
        except BaseException:
            self.stop()
            raise

    def check_ports_distinct(self) -> None:
        seen: dict[int, str] = {}
        for what, port in self.ports.items():
            if port in seen:
                raise ArtforgeError(f"the {seen[port]} and {what} ports are both {port}; Triton needs its own port "
                                    f"for each (--{seen[port].lower()}-port, --{what.lower()}-port)")
            seen[port] = what

    def command(self, install: TritonInstall) -> list[str]:
        cmd = [str(install.binary), "--model-repository", str(self.repository),
               "--backend-directory", str(self._backend_dir),
               # explicit model control: only the models named here load; nothing can be loaded over the API
               "--model-control-mode", "explicit", "--disable-auto-complete-config",
               "--grpc-address", self.host, "--grpc-port", str(self.ports["gRPC"]),
               "--http-address", self.host, "--http-port", str(self.ports["HTTP"]),
               "--metrics-address", self.host, "--metrics-port", str(self.ports["metrics"]),
               "--exit-timeout-secs", str(self.exit_timeout_s), "--log-verbose", "1" if self.verbose else "0"]
        for model in self.models:
            cmd += ["--load-model", model]
        return cmd

    def environment(self, install: TritonInstall, libpython: Path) -> dict[str, str]:
        env = dict(os.environ)
        libs = [str(libpython.parent), str(install.libraries)]
        env["LD_LIBRARY_PATH"] = ":".join(libs + [p for p in env.get("LD_LIBRARY_PATH", "").split(":") if p])
        # the stub finds its Python (and so this environment's site-packages) through PATH
        env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
        return env

    def wait_until_ready(self) -> None:
        import tritonclient.grpc as grpcclient
        from tritonclient.utils import InferenceServerException

        client = grpcclient.InferenceServerClient(self.grpc_url)
        deadline = time.monotonic() + self.startup_timeout_s
        try:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise ArtforgeError(f"Triton exited with code {self.process.returncode} while starting: "
                                        f"{self.last_error()} (log: {self.log_file})")
                try:
                    if client.is_server_ready() and all(client.is_model_ready(m) for m in self.models):
                        return
                except InferenceServerException:
                    pass
                time.sleep(0.05)  # a cheap poll: every start in a benchmark or test waits here
        finally:
            client.close()
        raise ArtforgeError(f"Triton did not get ready within {self.startup_timeout_s:.0f} s (log: {self.log_file})")

    def last_error(self) -> str:
        """The most telling line of the server log, for one-line errors."""
        if self._log_handle:
            self._log_handle.flush()
        text = ""
        if self.log_file and self.log_file.exists():
            with open(self.log_file, "rb") as log:
                log.seek(self._log_start)
                text = log.read().decode(errors="replace")
        lines = [line.strip() for line in text.splitlines() if line.strip() and not any(n in line for n in LOG_NOISE)]
        if any(line.startswith("Usage: tritonserver") for line in lines):
            return lines[-1][:400]  # Triton rejected its command line: the reason follows its usage text
        for telling in (lambda line: line.startswith("E") and "failed to load" in line,  # carries the reason
                        lambda line: "what():" in line,  # a C++ exception that ended a process
                        lambda line: line.startswith(("E", "error:")),
                        lambda line: "Error" in line):
            hits = [line for line in lines if telling(line)]
            if hits:
                return hits[-1][:400]
        return lines[-1][:400] if lines else "no log output"

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout_s: float = 20.0) -> None:
        """SIGTERM the server's process group, then SIGKILL what is left; free the ports."""
        if self.process is not None and self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
            except ProcessLookupError:
                pass
        if self.process is not None:
            kill_group(self.process.pid)  # backend stubs that outlived the server
        if self._log_handle:
            self._log_handle.close()
            self._log_handle = None
        if self._backend_dir and self.log_file and self.log_file.parent == self._backend_dir:
            self.log_file = None  # the log lived in the temporary folder
        if self._backend_dir:
            shutil.rmtree(self._backend_dir, ignore_errors=True)
            self._backend_dir = None
        remove_orphaned_shared_memory()

    def check_health(self, timeout_s: float = 30.0) -> dict[str, str]:
        """{model: why it is broken} for every model whose warm-up request fails now."""
        import tritonclient.grpc as grpcclient
        from tritonclient.utils import InferenceServerException

        broken = {}
        with grpcclient.InferenceServerClient(self.grpc_url) as client:
            for model in self.models:
                inputs = probe_inputs(self.repository / model)
                try:
                    if is_decoupled(self.repository / model):
                        probe_stream(client, model, inputs, timeout_s)
                    else:
                        client.infer(model, inputs, client_timeout=timeout_s)
                except InferenceServerException as e:
                    broken[model] = str(e.message())[:300]
        return broken

    def reload(self, model: str, timeout_s: float = 120.0) -> None:
        """Unload and load one model again (a new backend stub); raises if it does not come back."""
        import tritonclient.grpc as grpcclient
        from tritonclient.utils import InferenceServerException

        with grpcclient.InferenceServerClient(self.grpc_url) as client:
            try:
                client.unload_model(model, client_timeout=timeout_s)
                client.load_model(model, client_timeout=timeout_s)
            except InferenceServerException as e:
                raise ArtforgeError(f"model '{model}' could not be reloaded: {e.message()} "
                                    f"(log: {self.log_file})") from None


GRACEFUL_EXIT_S = 10  # `artforge serve`: what clients get to finish their requests when it is stopped


def replica_servers(repository: str | Path, count: int, grpc_port: int = 8001, http_port: int = 8000,
                    metrics_port: int = 8002, host: str = "127.0.0.1", log_file: str | Path | None = None,
                    **options) -> list[Server]:
    """`count` servers (not started) on one repository: replica i on each given port + 3*i (0: a free port),
    logging to LOG-i.log beside LOG after the first."""
    if not 1 <= count <= 64:
        raise ArtforgeError(f"--replicas must be 1..64, got {count}")
    shifted = lambda port, i: port + 3 * i if port else 0  # noqa: E731
    servers = []
    for i in range(count):
        log = Path(log_file) if log_file else None
        if log and i:
            log = log.with_name(f"{log.stem}-{i}{log.suffix}")
        servers.append(Server(repository, shifted(grpc_port, i), shifted(http_port, i), shifted(metrics_port, i),
                              host=host, log_file=log, **options))
    return servers


def warmup_request(model_dir: Path) -> list[tuple[str, str, list[int], bytes]]:
    """(name, wire dtype, shape, raw bytes) of each input of the model's warm-up request (batch 1),
    from its config.pbtxt and NAME/warmup/ files: a request the model is known to accept."""
    from tritonclient.grpc import model_config_pb2 as mc

    config = parse_config((model_dir / "config.pbtxt").read_text())
    return [(name, mc.DataType.Name(entry.data_type).removeprefix("TYPE_"), [1, *entry.dims],
             (model_dir / "warmup" / entry.input_data_file).read_bytes())
            for name, entry in sorted(config.model_warmup[0].inputs.items())]


def is_decoupled(model_dir: Path) -> bool:
    return parse_config((model_dir / "config.pbtxt").read_text()).model_transaction_policy.decoupled


def probe_stream(client, model: str, inputs: list, timeout_s: float) -> None:
    """Send a loop model its warm-up request over a gRPC stream; raise unless it ends within timeout_s."""
    import queue

    from tritonclient.utils import InferenceServerException

    arrived: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: arrived.put((result, error)))
    try:
        client.async_stream_infer(model, inputs, enable_empty_final_response=True)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                result, error = arrived.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise InferenceServerException(f"no final response within {timeout_s:g} s") from None
            if error is not None:
                raise error
            if result.get_response().parameters["triton_final_response"].bool_param:
                return
    finally:
        client.stop_stream(cancel_requests=True)


def probe_inputs(model_dir: Path) -> list:
    """The model's warm-up request as tritonclient inputs."""
    import numpy as np
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import triton_to_np_dtype

    inputs = []
    for name, wire, shape, data in warmup_request(model_dir):
        tensor = grpcclient.InferInput(name, shape, wire)
        tensor.set_data_from_numpy(np.frombuffer(data, triton_to_np_dtype(wire)).reshape(shape))
        inputs.append(tensor)
    return inputs


def remove_orphaned_shared_memory() -> list[Path]:
    """Delete Python-backend shared-memory files that no running process maps (crashed servers)."""
    regions = list(SHM_DIR.glob(SHM_PREFIX + "*")) if SHM_DIR.is_dir() else []
    if not regions:
        return []
    in_use = mapped_shared_memory()
    removed = []
    for region in regions:
        if region.name not in in_use:
            try:
                region.unlink()
                removed.append(region)
            except OSError:  # another user's, or gone already
                pass
    if removed:
        log.info("removed %d orphaned Triton shared-memory file(s) from %s", len(removed), SHM_DIR)
    return removed


def mapped_shared_memory() -> set[str]:
    """Names of the shared-memory files some process on this machine has mapped."""
    names = set()
    for maps in Path("/proc").glob("[0-9]*/maps"):
        try:
            text = maps.read_text(errors="replace")
        except OSError:  # the process ended, or is not ours to read
            continue
        names.update(line.rsplit("/", 1)[-1].split()[0] for line in text.splitlines() if SHM_PREFIX in line)
    return names


def kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def assemble_backends(install: TritonInstall) -> Path:
    """A private --backend-directory: python/ = libtriton_python.so + utils + this Python's stub."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = install.stub(version)
    if not stub.exists():
        raise ArtforgeError(f"Triton's Python backend has no stub for Python {version} (looked in {stub.parent})")
    root = Path(tempfile.mkdtemp(prefix="artforge-triton-"))
    python = root / "python"
    python.mkdir()
    for item in install.python_backend.iterdir():
        if item.is_file():
            (python / item.name).symlink_to(item)
    shutil.copy2(stub, python / stub.name)
    return root
