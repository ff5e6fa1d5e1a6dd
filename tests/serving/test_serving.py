"""Functional tests against a real Triton Inference Server process."""
import asyncio
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from artforge.errors import ArtforgeError
from artforge.serving.client import AsyncClient, Client
from artforge.families.generate import generate
from artforge.serving.generators import local_generator, remote_generator
from artforge.serving.server import Server, free_port, free_ports

pytestmark = pytest.mark.slow


def test_generate_over_grpc_equals_in_process_pytorch(triton, dcgan_run):
    with Client(triton.grpc_url) as client:
        for style in (None, "waves", 2):
            remote = generate(remote_generator(client, "dcgan"), count=11, seed=7, label=style)  # 11 > max batch 8
            local = generate(local_generator(dcgan_run), count=11, seed=7, label=style)
            assert remote.shape == local.shape == (11, 32, 32, 3) and remote.dtype == np.uint8
            assert np.abs(remote.astype(int) - local.astype(int)).max() <= 1
        other_seed = generate(remote_generator(client, "dcgan"), count=11, seed=8)
        assert np.abs(other_seed.astype(int) - remote.astype(int)).max() > 1


def test_generate_command_served_and_from_the_checkpoint_draw_the_same_grid(triton, dcgan_run, tmp_path, capsys):
    from artforge.cli import main
    from artforge.imaging import make_grid, read_image, save_png

    common = ["--count", "6", "--seed", "3", "--columns", "3"]
    assert main(["generate", "--model", "dcgan", "--url", triton.grpc_url, *common, "--class", "waves",
                 "--out", str(tmp_path / "served.png")]) == 0
    assert main(["generate", "--checkpoint", str(dcgan_run), *common, "--style", "waves",  # the old spelling works
                 "--out", str(tmp_path / "local.png")]) == 0
    served, local = read_image(tmp_path / "served.png"), read_image(tmp_path / "local.png")
    assert served.shape == local.shape and served.shape[0] < served.shape[1]  # 2 rows of 3
    assert np.abs(served.astype(int) - local.astype(int)).max() <= 1
    with Client(triton.grpc_url) as client:  # the grid holds the requested pictures
        pictures = generate(remote_generator(client, "dcgan"), count=6, seed=3, label="waves")
    save_png(make_grid(pictures, 3), tmp_path / "want.png", upscale=4)
    assert np.array_equal(read_image(tmp_path / "want.png"), served)


def test_client_checks_inputs_against_model_metadata_before_sending(triton):
    good = {"z": np.zeros((2, 16), np.float32), "style": np.zeros((2, 1), np.int64)}
    with Client(triton.grpc_url) as client:
        assert client.infer("dcgan", good)["image"].shape == (2, 32, 32, 3)
        cases = [({**good, "z": np.zeros((2, 15), np.float32)}, "input 'z' must have shape"),
                 ({**good, "z": np.zeros((2, 16), np.float64)}, "input 'z' must be float32"),
                 ({"z": good["z"]}, "missing \\['style'\\]"),
                 ({**good, "style": np.zeros((3, 1), np.int64)}, "different batch sizes"),
                 ({"z": np.zeros((9, 16), np.float32), "style": np.zeros((9, 1), np.int64)}, "outside 1..8")]
        for inputs, message in cases:
            with pytest.raises(ArtforgeError, match=message):
                client.infer("dcgan", inputs)
        with pytest.raises(ArtforgeError, match="class 9 is out of range"):
            generate(remote_generator(client, "dcgan"), count=1, seed=0, label=9)
        with pytest.raises(ArtforgeError, match="no truncation input"):
            generate(remote_generator(client, "dcgan"), count=1, seed=0, controls={"truncation": 0.7})


def test_unknown_model_lists_what_the_server_has(triton):
    with Client(triton.grpc_url) as client, pytest.raises(ArtforgeError, match=r"no ready model 'nope'.*\['dcgan'\]"):
        client.infer("nope", {})


def test_asyncio_client_runs_concurrent_requests(triton):
    async def burst():
        async with AsyncClient(triton.grpc_url) as client:
            z = np.random.default_rng(0).standard_normal((8, 1, 16)).astype(np.float32)
            calls = [client.infer("dcgan", {"z": z[i], "style": np.full((1, 1), i % 5, np.int64)}) for i in range(8)]
            return await asyncio.gather(*calls)

    results = asyncio.run(burst())
    assert len(results) == 8 and all(r["image"].shape == (1, 32, 32, 3) for r in results)
    assert len({r["image"].tobytes() for r in results}) == 8


def test_server_statistics_count_requests(triton):
    def successes(client) -> int:
        return int(client.statistics("dcgan")["inference_stats"]["success"].get("count", 0))

    with Client(triton.grpc_url) as client:
        before = successes(client)
        client.infer("dcgan", {"z": np.zeros((1, 16), np.float32), "style": np.zeros((1, 1), np.int64)})
        # Triton may count a request a moment after its answer left: wait for it (the bound catches a hang)
        deadline = time.monotonic() + 60
        while successes(client) == before and time.monotonic() < deadline:
            time.sleep(0.02)
        assert successes(client) == before + 1


def test_a_huge_count_is_refused_before_anything_is_allocated(dcgan_run, capsys):
    from artforge.cli import main

    assert main(["generate", "--checkpoint", str(dcgan_run), "--count", "100000000", "--out", "x.png"]) == 1
    assert "--count must be 1 to 4096, got 100000000" in capsys.readouterr().err


def test_a_dead_server_is_a_clear_error_after_the_retry_budget():
    client = Client(f"127.0.0.1:{free_port()}", retries=2, backoff_s=0.01, timeout_s=5)
    started = time.monotonic()
    with pytest.raises(ArtforgeError, match="unavailable after 3 tries"):
        client.models()
    # refused connects return at once (0.03 s measured) and the retries back off in milliseconds; even three
    # tries that each waited out the 5 s timeout stay far inside 120 s, so the bound only catches a hang
    assert time.monotonic() - started < 120


@pytest.mark.parametrize("command", [["generate", "--count", "4", "--out", "grid.png"],
                                     ["stylize", "--input", "photo.png", "--style", "0", "--out", "out.png"]])
def test_client_commands_give_up_on_a_dead_server_with_one_line(command, tmp_path, capsys, monkeypatch):
    from artforge.cli import main

    monkeypatch.chdir(tmp_path)
    from PIL import Image

    Image.new("RGB", (32, 32)).save("photo.png")
    code = main([*command, "--url", f"127.0.0.1:{free_port()}"])
    err = capsys.readouterr().err
    assert code == 1 and "is unavailable after 5 tries" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "grid.png").exists() and not (tmp_path / "out.png").exists()


def test_start_errors_come_before_anything_starts(tmp_path, dcgan_repo, monkeypatch):
    with pytest.raises(ArtforgeError, match="does not exist"):
        Server(tmp_path / "nope").start()
    with pytest.raises(ArtforgeError, match="has no models"):
        Server(tmp_path).start()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ArtforgeError, match=f"gRPC port {port} on 127.0.0.1 is in use"):
            Server(dcgan_repo, grpc_port=port, http_port=0, metrics_port=0).start()
    with pytest.raises(ArtforgeError, match="the gRPC and HTTP ports are both 8123; Triton needs its own port"):
        Server(dcgan_repo, grpc_port=8123, http_port=8123, metrics_port=0).start()
    import sysconfig

    real = sysconfig.get_config_var
    monkeypatch.setattr(sysconfig, "get_config_var", lambda k: 0 if k == "Py_ENABLE_SHARED" else real(k))
    with pytest.raises(ArtforgeError, match="without a shared libpython"):
        Server(dcgan_repo, grpc_port=0, http_port=0, metrics_port=0).start()


def test_a_model_that_fails_to_load_is_reported_with_the_servers_reason(tmp_path, dcgan_repo):
    import shutil

    repo = tmp_path / "repo"
    shutil.copytree(dcgan_repo, repo)
    (repo / "dcgan" / "1" / "model.onnx").write_bytes(b"not an onnx file")
    server = Server(repo, grpc_port=0, http_port=0, metrics_port=0, startup_timeout_s=60)
    with pytest.raises(ArtforgeError, match="Triton exited .*while starting: .*dcgan"):
        server.start()
    assert not server.alive()


def test_servers_choose_distinct_free_ports():
    ports = free_ports(64, taken=(8001,))
    assert len(set(ports)) == 64 and 8001 not in ports
    server = Server(".", grpc_port=0, http_port=9000, metrics_port=0)
    assert len(set(server.ports.values())) == 3 and server.ports["HTTP"] == 9000


class OneHTTPPortTwice(Server):
    def command(self, install):
        return super().command(install) + ["--http-port", str(self.ports["gRPC"])]


def test_a_command_line_triton_rejects_is_reported_with_its_reason_not_an_earlier_runs(dcgan_repo, tmp_path):
    log = tmp_path / "triton.log"
    log.write_text("E1203 10:00:00.000000 1 model_lifecycle.cc:1] failed to load 'old' from an earlier run\n")
    server = OneHTTPPortTwice(dcgan_repo, grpc_port=0, http_port=0, metrics_port=0, log_file=log)
    with pytest.raises(ArtforgeError, match="while starting: The server cannot listen to HTTP requests and GRPC "
                                            "requests at the same address") as error:
        server.start()
    assert "old" not in str(error.value) and "earlier run" in log.read_text()


def test_serve_command_stops_cleanly_on_sigterm_and_frees_its_ports(dcgan_repo, tmp_path):
    ports = free_ports(3)
    log = tmp_path / "triton.log"
    cmd = [sys.executable, "-m", "artforge", "serve", "--repository", str(dcgan_repo), "--grpc-port", str(ports[0]),
           "--http-port", str(ports[1]), "--metrics-port", str(ports[2]), "--log-file", str(log)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if "Ctrl-C stops it" in line:
                break
        assert any(f"127.0.0.1:{ports[0]}" in line for line in lines), lines
        with Client(f"127.0.0.1:{ports[0]}") as client:
            assert client.models() == ["dcgan"]
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0 and "Triton stopped" in out
    assert log.exists() and "Started GRPCInferenceService" in log.read_text()
    for port in ports:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))  # would raise if anything still held it
