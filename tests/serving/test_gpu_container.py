"""`artforge gpu-compose`: which NVIDIA container can serve a native repository (no GPU or Docker needed)."""
import pytest

from artforge.cli import main
from artforge.errors import ArtforgeError
from artforge.export.triton_repo import TritonOptions, config_text, model_config
from artforge.families.dcgan import DCGANSpec
from artforge.families.dcgan.network import DCGANConfig
from artforge.serving.gpu_container import COMPOSE_FILE, plan_container
from artforge.serving.server import repository_models

SPEC = DCGANSpec(DCGANConfig(z_dim=16, num_classes=5))


def add_model(repo, name, runtime="native", engine="tensorrt", version="10.5.0.18", compatible=False):
    record = {"tensorrt_version": version, "version_compatible": compatible, "profiles": [{}]}
    config = model_config(name, SPEC, TritonOptions(runtime=runtime, engine=engine),
                          record if engine == "tensorrt" and runtime == "native" else None)
    (repo / name).mkdir(parents=True)
    (repo / name / "config.pbtxt").write_text(config_text(config))


def test_engines_of_one_tensorrt_get_the_container_that_ships_it(tmp_path, capsys):
    add_model(tmp_path, "dcgan")
    add_model(tmp_path, "onnx-native", engine="onnx")
    plan = plan_container(tmp_path)
    assert plan.image == "nvcr.io/nvidia/tritonserver:24.10-py3" and plan.triton_args == ""
    assert main(["gpu-compose", "--repository", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "dcgan: TensorRT 10.5.0.18 engine" in out
    assert f"REPO={tmp_path.resolve()}" in out and f"-f {COMPOSE_FILE} up" in out


def test_version_compatible_engines_load_in_the_container_of_the_strict_ones(tmp_path):
    add_model(tmp_path, "old", version="10.3.0.26", compatible=True)
    add_model(tmp_path, "new", version="10.5.0.18")
    plan = plan_container(tmp_path)
    assert plan.image.endswith(":24.10-py3")
    assert plan.triton_args == "--backend-config=tensorrt,version-compatible=true"


@pytest.mark.parametrize("models, image, message", [
    ([("a", "10.5.0.18", False), ("b", "10.8.0.43", False)], None, "built by different TensorRT versions"),
    ([("a", "10.5.0.18", False), ("b", "10.8.0.43", True)], None, "later TensorRT .*b: TensorRT 10.8.0.43"),
    ([("a", "10.5.0.18", False)], "nvcr.io/nvidia/tritonserver:24.08-py3", "ships TensorRT 10.3"),
    ([("a", "10.14.1.48", False)], None, "no known Triton container ships TensorRT 10.14.1.48; pass --image"),
])
def test_repositories_no_single_container_can_serve_are_refused(tmp_path, models, image, message):
    for name, version, compatible in models:
        add_model(tmp_path, name, version=version, compatible=compatible)
    with pytest.raises(ArtforgeError, match=message):
        plan_container(tmp_path, image)


def test_an_unknown_image_given_by_the_user_is_taken(tmp_path):
    add_model(tmp_path, "a", version="10.14.1.48")
    assert plan_container(tmp_path, "registry.local/triton:custom").image == "registry.local/triton:custom"


def test_python_backend_models_are_refused_for_the_container_and_native_ones_for_artforge_serve(tmp_path, capsys):
    add_model(tmp_path / "cpu", "dcgan", runtime="embedded", engine="onnx")
    with pytest.raises(ArtforgeError, match="run in the Python backend .* serve them with 'artforge serve'"):
        plan_container(tmp_path / "cpu")
    add_model(tmp_path / "gpu", "dcgan")
    with pytest.raises(ArtforgeError, match="need Triton's onnxruntime/tensorrt backends .* gpu-compose"):
        repository_models(tmp_path / "gpu")
    assert main(["serve", "--repository", str(tmp_path / "gpu")]) == 1
    assert "artforge gpu-compose" in capsys.readouterr().err


def test_compose_file_loads_every_model_and_needs_an_absolute_repository():
    text = COMPOSE_FILE.read_text()
    assert "--load-model=*" in text and "dcgan" not in text.split("services:")[1]
    assert "${REPO:?" in text and "${TRITON_IMAGE:?" in text and "${TRITON_ARGS:-}" in text
