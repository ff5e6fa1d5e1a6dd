import pytest

from artforge.errors import ArtforgeError
from artforge.export.pipeline import export_checkpoint
from artforge.export.tensorrt import ENGINE_TOLERANCE, engine_request, tensorrt_missing
from artforge.models import DCGANConfig
from artforge.families.dcgan import DCGANSpec

SPEC = DCGANSpec(DCGANConfig(z_dim=16, num_classes=5))
MISSING = tensorrt_missing()


def test_profile_covers_min_opt_max_batch_for_every_input():
    profile = SPEC.profile_shapes(max_batch=64)
    assert profile == {"z": ((1, 16), (32, 16), (64, 16)), "style": ((1, 1), (32, 1), (64, 1))}


def test_cache_key_changes_with_everything_an_engine_depends_on():
    base = dict(onnx_bytes=b"model", spec=SPEC, max_batch=64, precision="fp16", tensorrt_version="10.3",
                gpu_name="NVIDIA H100")
    key = engine_request(**base).cache_key()
    assert key == engine_request(**base).cache_key()
    for change in (dict(onnx_bytes=b"model2"), dict(max_batch=32), dict(precision="int8"),
                   dict(tensorrt_version="10.4"), dict(gpu_name="NVIDIA L4")):
        assert engine_request(**{**base, **change}).cache_key() != key, change
    with pytest.raises(ArtforgeError, match="unknown precision"):
        engine_request(**{**base, "precision": "fp8"})


def test_tolerances_widen_with_lower_precision():
    order = ["fp32", "fp16", "bf16", "int8"]
    assert [ENGINE_TOLERANCE[p] for p in order] == sorted(ENGINE_TOLERANCE[p] for p in order)


@pytest.mark.skipif(MISSING is None, reason="TensorRT and a GPU are present: the missing-TensorRT message does not apply")
def test_tensorrt_without_tensorrt_is_a_clear_error_before_any_work(dcgan_run, tmp_path):
    with pytest.raises(ArtforgeError, match="--formats tensorrt cannot run here"):
        export_checkpoint(dcgan_run, tmp_path / "repo", formats="onnx,tensorrt", runtime="native", precision="fp16")
    with pytest.raises(ArtforgeError, match="needs --runtime native"):
        export_checkpoint(dcgan_run, tmp_path / "repo", formats="onnx,tensorrt")
    assert not (tmp_path / "repo").exists()


@pytest.mark.skipif(MISSING is not None, reason=f"TensorRT engine path needs the GPU stack: {MISSING}")
def test_engine_builds_matches_onnx_runtime_and_is_cached(dcgan_run, tmp_path):
    first = export_checkpoint(dcgan_run, tmp_path / "repo", formats="onnx,tensorrt", runtime="native",
                              precision="fp16", max_batch=8, engine_cache=tmp_path / "cache")
    assert first.engine_cached is False and all(r.ok for r in first.engine_parity)
    assert (first.version_dir / "model.plan").exists()
    second = export_checkpoint(dcgan_run, tmp_path / "repo", formats="onnx,tensorrt", runtime="native",
                               precision="fp16", max_batch=8, engine_cache=tmp_path / "cache")
    assert second.engine_cached is True
