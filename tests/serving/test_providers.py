"""The served model.py's choice of ONNX Runtime providers (loaded outside Triton with a stand-in for
triton_python_backend_utils, which only exists inside Triton's Python backend)."""
import importlib.util
import sys
import types

import pytest

from artforge.export.triton_repo import PYTHON_MODEL


@pytest.fixture
def served(monkeypatch):
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", types.ModuleType("triton_python_backend_utils"))
    spec = importlib.util.spec_from_file_location("served_model", str(PYTHON_MODEL))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_instances_prefer_tensorrt_then_cuda_and_cpu_instances_stay_on_the_cpu(served):
    everything = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert served.pick_providers(everything, "KIND_GPU") == everything
    assert served.pick_providers(everything[1:], "KIND_GPU") == everything[1:]
    assert served.pick_providers(everything, "KIND_CPU") == ["CPUExecutionProvider"]


@pytest.mark.parametrize("installed, message", [
    (["onnxruntime 1.20.0", "onnxruntime-gpu 1.20.0"], "CPU package hides the CUDA provider; pip uninstall"),
    (["onnxruntime 1.20.0"], "onnxruntime-gpu is not installed"),
    (["onnxruntime-gpu 1.20.0"], "finds no CUDA"),
])
def test_a_gpu_instance_without_a_gpu_provider_fails_saying_why(served, installed, message):
    with pytest.raises(RuntimeError, match=message):
        served.pick_providers(["CPUExecutionProvider"], "KIND_GPU", installed)


def test_installed_runtimes_are_read_from_package_metadata(served):
    assert any(name.startswith("onnxruntime ") for name in served.installed_onnxruntimes())
