"""OpenVINO as the CPU runtime: the session, the export's parity gate and Triton serving with it."""
import json

import numpy as np
import pytest

from artforge.errors import ArtforgeError
from artforge.export.parity import onnx_session
from artforge.export.pipeline import export_checkpoint
from artforge.serving.repository_config import parse_config
from artforge.serving.client import Client
from artforge.serving.server import Server

pytest.importorskip("openvino", reason="OpenVINO is not installed (pip install 'artforge[openvino]')")
pytestmark = pytest.mark.slow  # OpenVINO compiles models; one test serves with it
from artforge.serving.openvino_session import OpenVinoSession  # noqa: E402  (artforge's own: an import error fails)


@pytest.fixture(scope="module")
def style_onnx(style_run, tmp_path_factory):
    """The tiny two-style network exported for OpenVINO at bf16 (f32 where the CPU has no bf16)."""
    run, net = style_run
    repo = tmp_path_factory.mktemp("openvino-repo")
    result = export_checkpoint(run, repo, name="stylize", max_batch=4, cpu_runtime="openvino", precision="bf16")
    return repo, result, net


def photo(size, seed=0, batch=1):
    return {"content": np.random.default_rng(seed).integers(0, 256, (batch, size[0], size[1], 3), dtype=np.uint8),
            "style_weights": np.tile(np.array([[0.25, 0.75]], np.float32), (batch, 1))}


def test_the_session_matches_onnx_runtime_and_compiles_a_seen_shape_for_itself(style_onnx):
    repo, _, _ = style_onnx
    path = repo / "stylize" / "1" / "model.onnx"
    reference = onnx_session(path)
    session = OpenVinoSession(path, "fp32", static_shapes=1, compile_after=2)
    assert session.precision == "f32"
    for size in [(40, 24), (40, 24), (17, 33), (40, 24), (17, 33), (17, 33)]:
        feed = photo(size, seed=size[1])
        have, want = session.run(["image"], feed)[0], reference.run(["image"], feed)[0]
        assert have.shape == want.shape and np.abs(have.astype(int) - want).max() <= 1
        session.wait_for_compiles()
    # (40, 24) was seen twice and got its own compiled model; the limit of one kept (17, 33) dynamic
    assert [dict(key)["content"] for key in session.static] == [(1, 40, 24, 3)]
    kept = session.run(["image"], photo((40, 24), seed=5))[0]
    kept[:] = 0  # the caller owns the output: the next run must not write into it, nor this into OpenVINO's
    again = session.run(["image"], photo((40, 24), seed=5))[0]
    assert again.any() and not kept.any()


def test_a_shape_that_fails_to_compile_keeps_running_on_the_dynamic_model(style_onnx, monkeypatch):
    repo, _, _ = style_onnx
    session = OpenVinoSession(repo / "stylize" / "1" / "model.onnx", "fp32", compile_after=1)

    def refuse(*args, **kwargs):
        raise RuntimeError("out of memory")  # what a failed compile raises; cannot be provoked on demand

    monkeypatch.setattr(session.core, "compile_model", refuse)
    for _ in range(3):
        assert session.run(["image"], photo((20, 20)))[0].shape == (1, 20, 20, 3)
        session.wait_for_compiles()
    assert session.static == {} and len(session.failed) == 1


def test_export_records_the_runtime_its_precision_and_parity(style_onnx):
    repo, result, _ = style_onnx
    config = parse_config((repo / "stylize" / "config.pbtxt").read_text())
    assert config.parameters["artforge.cpu_runtime"].string_value == "openvino"
    assert config.parameters["artforge.precision"].string_value == "bf16"
    assert config.parameters["artforge.openvino_static_shapes"].string_value == "8"
    assert (result.version_dir / "openvino_session.py").exists()
    record = json.loads((result.version_dir / "export.json").read_text())
    assert record["openvino"]["precision"] == result.openvino_precision in ("bf16", "f32")
    assert len(record["openvino"]["parity"]) == len(result.parity) and all(r.ok for r in result.openvino_parity)
    assert f"OpenVINO ({result.openvino_precision} on this CPU) vs ONNX Runtime" in result.summary()


def test_openvino_options_that_cannot_run_are_refused_before_any_work(style_run, dcgan_run, tmp_path):
    run, _ = style_run
    with pytest.raises(ArtforgeError, match="--precision int8 is not one OpenVINO runs here"):
        export_checkpoint(run, tmp_path / "repo", cpu_runtime="openvino", precision="int8")
    with pytest.raises(ArtforgeError, match="--cpu-runtime openvino runs inside Triton's Python backend"):
        export_checkpoint(run, tmp_path / "repo", cpu_runtime="openvino", runtime="native")
    with pytest.raises(ArtforgeError, match="unknown --cpu-runtime 'tvm'"):
        export_checkpoint(dcgan_run, tmp_path / "repo", cpu_runtime="tvm")
    with pytest.raises(ArtforgeError, match="applies to TensorRT engines .* and to --cpu-runtime openvino"):
        export_checkpoint(dcgan_run, tmp_path / "repo", precision="bf16")
    assert not (tmp_path / "repo").exists()


def test_triton_serves_the_model_with_openvino(style_onnx):
    """A real Triton server: every request of a size the model compiles for mid-run equals OpenVINO
    in-process, and the server log says which precision the CPU ran."""
    repo, result, _ = style_onnx
    path = repo / "stylize" / "1" / "model.onnx"
    reference = onnx_session(path)
    with Server(repo, grpc_port=0, http_port=0, metrics_port=0) as server, Client(server.grpc_url) as client:
        for i in range(4):  # the third request onwards may run on the model compiled for (1, 48, 64, 3)
            feed = photo((48, 64), seed=i)
            served = client.infer("stylize", feed)["image"]
            assert np.abs(served.astype(int) - reference.run(["image"], feed)[0]).max() <= 8
        batch = client.infer("stylize", photo((30, 30), seed=9, batch=3))["image"]
        assert batch.shape == (3, 30, 30, 3)
        log = server.log_file.read_text(errors="replace")
    assert f"stylize: OpenVINO runs model.onnx in {result.openvino_precision}" in log
