import sys

import pytest

from artforge.errors import ArtforgeError
from artforge.export import tensorrt as engine
from artforge.export.pipeline import export_checkpoint
from artforge.export.tensorrt import (ENGINE_TOLERANCE, EngineRunner, SizeClass, calibration_batches, compile_engine,
                                      engine_profiles, engine_request, size_classes, tensorrt_missing)
from artforge.families.dcgan import DCGANSpec
from artforge.families.style import StyleSpec
from artforge.families.dcgan.network import DCGANConfig
from artforge.families.style.network import StyleNetConfig
from tests.export import fake_tensorrt

SPEC = DCGANSpec(DCGANConfig(z_dim=16, num_classes=5))
STYLE = StyleSpec(StyleNetConfig.preset("lite", 2), ["ink", "mosaic"])
MISSING = tensorrt_missing()


@pytest.fixture
def fake_trt(monkeypatch):
    """The FAKE tensorrt module (tests/export/fake_tensorrt.py) in place of TensorRT, and a 'visible GPU'."""
    import torch

    fake_tensorrt.reset()
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "NVIDIA H200")
    return fake_tensorrt


def test_fixed_size_model_gets_one_profile_from_batch_1_to_max():
    classes = size_classes(SPEC, max_batch=64)
    assert classes == [SizeClass(0, 64)]
    assert engine_profiles(SPEC, classes) == [{"z": ((1, 16), (32, 16), (64, 16)),
                                              "style": ((1, 1), (32, 1), (64, 1))}]


def test_style_profiles_are_size_classes_that_never_ask_for_64_images_of_2048_px():
    classes = size_classes(STYLE, max_batch=64)
    # batch x pixels stays within 64 images of the optimal 256x256
    assert classes == [SizeClass(512, 16), SizeClass(1024, 4), SizeClass(2048, 1)]
    profiles = engine_profiles(STYLE, classes)
    assert [p["content"] for p in profiles] == [
        ((1, 16, 16, 3), (8, 256, 256, 3), (16, 512, 512, 3)),
        ((1, 16, 16, 3), (2, 768, 768, 3), (4, 1024, 1024, 3)),  # nested: a 20x1000 image fits a profile
        ((1, 16, 16, 3), (1, 1536, 1536, 3), (1, 2048, 2048, 3))]
    assert profiles[2]["style_weights"] == ((1, 2), (1, 2), (1, 2))


def test_size_classes_can_be_set_and_bad_ones_are_refused():
    assert size_classes(STYLE, 8, "256:8,1024:2") == [SizeClass(256, 8), SizeClass(1024, 2)]
    for text, message in (("1024:2,256:8", "increasing sides"), ("512x8", "SIDE:BATCH"),
                          ("512:16", "above --max-batch 8"), ("4096:1", "must lie in 16..2048")):
        with pytest.raises(ArtforgeError, match=message):
            size_classes(STYLE, 8, text)
    with pytest.raises(ArtforgeError, match="applies to models with dynamic sizes"):
        size_classes(SPEC, 8, "512:8")


def test_cache_key_changes_with_everything_an_engine_depends_on():
    profiles = engine_profiles(SPEC, size_classes(SPEC, 64))
    base = dict(onnx_bytes=b"model", profiles=profiles, precision="fp16", tensorrt_version="10.5.0",
                gpu_name="NVIDIA H100", workspace_gib=4.0, version_compatible=False)
    key = engine_request(**base).cache_key()
    assert key == engine_request(**base).cache_key()
    for change in (dict(onnx_bytes=b"model2"), dict(profiles=engine_profiles(SPEC, [SizeClass(0, 32)])),
                   dict(precision="int8"), dict(tensorrt_version="10.6.0"), dict(gpu_name="NVIDIA L4"),
                   dict(workspace_gib=2.0), dict(version_compatible=True)):
        assert engine_request(**{**base, **change}).cache_key() != key, change
    with pytest.raises(ArtforgeError, match="unknown precision"):
        engine_request(**{**base, "precision": "fp8"})


def test_tolerances_widen_with_lower_precision():
    order = ["fp32", "fp16", "bf16", "int8"]
    assert [ENGINE_TOLERANCE[p] for p in order] == sorted(ENGINE_TOLERANCE[p] for p in order)


def test_tensorrt_11_is_refused_before_any_work_with_the_reason(fake_trt):
    fake_trt.reset("11.4.0.106")
    reason = tensorrt_missing()
    assert "TensorRT 11.4.0.106 is installed" in reason and "removed the FP16/BF16/INT8 builder flags" in reason
    assert "pip install 'artforge[gpu]'" in reason
    fake_trt.reset("10.5.0.18")
    assert tensorrt_missing() is None


@pytest.mark.parametrize("precision, flags", [("fp32", []), ("fp16", ["FP16"]), ("bf16", ["BF16"]),
                                              ("int8", ["INT8", "FP16"])])
def test_every_precision_builds_with_tensorrt_10_calls(fake_trt, tmp_path, precision, flags):
    profiles = engine_profiles(STYLE, size_classes(STYLE, 8))
    request = engine_request(b"onnx", profiles, precision, "10.5.0.18", "NVIDIA H200", 2.0, version_compatible=True)
    plan = compile_engine(fake_trt, tmp_path / "model.onnx", b"onnx", STYLE, request, tmp_path)
    assert plan == b"engine-bytes"
    config = next(c[1] for c in fake_trt.calls if c[0] == "build_serialized_network")
    assert config.flags == ["VERSION_COMPATIBLE", *flags]
    assert [p.shapes for p in config.profiles] == profiles
    assert ("set_memory_pool_limit", "WORKSPACE", 2 << 30) in fake_trt.calls
    assert (tmp_path / "timing-10.5.0.18-NVIDIA-H200.cache").read_bytes() == b"timing-cache"
    calibration = [c for c in fake_trt.calls if c[0] == "set_calibration_profile"]
    if precision == "int8":
        # TensorRT calibrates dynamic shapes at the calibration profile's kOPT: the first profile,
        # whose kOPT batch the calibrator must report and fill (not a batch of its own choosing)
        assert calibration == [("set_calibration_profile", config.profiles[0])]
        assert config.int8_calibrator.get_batch_size() == profiles[0]["content"][1][0]
    else:
        assert not calibration and config.int8_calibrator is None


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_reduced_precision_engines_keep_instance_norm_in_fp32(fake_trt, tmp_path, precision):
    fake_trt.outcomes["layers"] = ["CONVOLUTION", "NORMALIZATION", "ACTIVATION", "NORMALIZATION"]
    request = engine_request(b"onnx", engine_profiles(STYLE, size_classes(STYLE, 8)), precision, "10.5.0.18",
                             "NVIDIA H200", 2.0)
    compile_engine(fake_trt, tmp_path / "model.onnx", b"onnx", STYLE, request, tmp_path)
    network = next(c[1] for c in fake_trt.calls if c[0] == "network")
    config = next(c[1] for c in fake_trt.calls if c[0] == "build_serialized_network")
    norms = [layer for layer in network.layers if layer.type == "NORMALIZATION"]
    others = [layer for layer in network.layers if layer.type != "NORMALIZATION"]
    assert all(layer.precision is None and not layer.output_types for layer in others)
    if precision == "fp32":  # nothing to keep out of a reduced precision
        assert all(layer.precision is None for layer in norms) and "OBEY_PRECISION_CONSTRAINTS" not in config.flags
        return
    for layer in norms:
        assert isinstance(layer, fake_trt.INormalizationLayer)
        assert layer.compute_precision == layer.precision == "float32" and layer.output_types == {0: "float32"}
    assert "OBEY_PRECISION_CONSTRAINTS" in config.flags


def test_calibration_batches_have_exactly_the_kopt_shapes():
    for spec in (SPEC, STYLE):
        profile = engine_profiles(spec, size_classes(spec, 64))[0]
        for batch in calibration_batches(spec, profile, batches=2):
            assert {n: v.shape for n, v in batch.items()} == {n: s[1] for n, s in profile.items()}


def test_a_refused_timing_cache_is_set_aside_and_the_build_goes_on(fake_trt, tmp_path, caplog):
    request = engine_request(b"onnx", engine_profiles(SPEC, size_classes(SPEC, 8)), "fp16", "10.5.0.18", "GPU")
    stale = tmp_path / "timing-10.5.0.18-GPU.cache"
    stale.write_bytes(b"from another GPU")
    fake_trt.outcomes["timing_refused"] = {b"from another GPU"}
    compile_engine(fake_trt, tmp_path / "m.onnx", b"onnx", SPEC, request, tmp_path)
    assert "refused the timing cache" in caplog.text
    assert (tmp_path / "timing-10.5.0.18-GPU.refused").read_bytes() == b"from another GPU"
    assert stale.read_bytes() == b"timing-cache"
    fake_trt.outcomes["timing_refused"] = {b""}
    with pytest.raises(ArtforgeError, match="refused an empty timing cache"):
        compile_engine(fake_trt, tmp_path / "m.onnx", b"onnx", SPEC, request, tmp_path / "fresh")


def test_failed_parse_and_build_are_clear_errors(fake_trt, tmp_path):
    request = engine_request(b"onnx", engine_profiles(SPEC, size_classes(SPEC, 8)), "fp16", "10.5.0.18", "GPU")
    fake_trt.outcomes["parse"] = False
    with pytest.raises(ArtforgeError, match="TensorRT cannot parse .*fake parser error"):
        compile_engine(fake_trt, tmp_path / "m.onnx", b"onnx", SPEC, request, tmp_path)
    fake_trt.outcomes.update(parse=True, build=None)
    with pytest.raises(ArtforgeError, match="failed to build an engine"):
        compile_engine(fake_trt, tmp_path / "m.onnx", b"onnx", SPEC, request, tmp_path)


def test_engine_runner_checks_what_tensorrt_can_return_as_none(fake_trt, tmp_path):
    plan = tmp_path / "model.plan"
    plan.write_bytes(b"engine")
    fake_trt.outcomes["memory"] = [3 << 20, 40 << 20]
    with EngineRunner(plan) as runner:
        assert runner.profile_memory() == [3 << 20, 40 << 20]
    # version-compatible engines need host code allowed; contexts allocate for their profile only
    assert ("deserialize_cuda_engine", True) in fake_trt.calls
    assert ("create_execution_context", "ON_PROFILE_CHANGE") in fake_trt.calls
    fake_trt.outcomes["context"] = False
    with pytest.raises(ArtforgeError, match="could not create an execution context"):
        EngineRunner(plan)
    fake_trt.outcomes["engine"] = False
    with pytest.raises(ArtforgeError, match="could not load the engine .*another TensorRT version"):
        EngineRunner(plan)


@pytest.mark.skipif(MISSING is None,
                    reason="TensorRT and a GPU are present: the missing-TensorRT message does not apply")
def test_tensorrt_without_tensorrt_is_a_clear_error_before_any_work(dcgan_run, tmp_path):
    with pytest.raises(ArtforgeError, match="--formats tensorrt cannot run here"):
        export_checkpoint(dcgan_run, tmp_path / "repo", formats="onnx,tensorrt", runtime="native", precision="fp16")
    with pytest.raises(ArtforgeError, match="needs --runtime native"):
        export_checkpoint(dcgan_run, tmp_path / "repo", formats="onnx,tensorrt")
    assert not (tmp_path / "repo").exists()


GPU_REASON = f"TensorRT engine path needs the GPU stack: {MISSING}"


@pytest.mark.skipif(MISSING is not None, reason=GPU_REASON)
@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16", "int8"])
def test_dcgan_engine_builds_at_every_precision_matches_onnx_runtime_and_is_cached(dcgan_run, tmp_path, precision):
    options = dict(formats="onnx,tensorrt", runtime="native", precision=precision, max_batch=8,
                   engine_cache=tmp_path / "cache")
    first = export_checkpoint(dcgan_run, tmp_path / "repo", **options)
    assert first.engine_cached is False and all(r.ok for r in first.engine_parity)
    assert (first.version_dir / "model.plan").exists() and first.engine.profile_memory[0] > 0
    second = export_checkpoint(dcgan_run, tmp_path / "repo", **options)
    assert second.engine_cached is True


@pytest.mark.skipif(MISSING is not None, reason=GPU_REASON)
def test_style_engine_serves_every_size_class(style_run, tmp_path):
    run, _ = style_run
    result = export_checkpoint(run, tmp_path / "repo", formats="onnx,tensorrt", runtime="native", precision="fp16",
                               max_batch=8, trt_size_classes="256:8,1024:2", engine_cache=tmp_path / "cache")
    sizes = {tuple(r.sizes.values()) for r in result.engine_parity}
    assert (256, 256) in sizes and (1024, 1024) in sizes and all(r.ok for r in result.engine_parity)
    assert len(result.engine.profile_memory) == 2
    assert result.engine.profile_memory[1] > result.engine.profile_memory[0]


def test_engine_module_names_no_family():
    source = engine.__file__
    text = open(source).read()
    assert "dcgan" not in text.lower() and "stylize" not in text.lower()
