import json
import shutil

import numpy as np
import pytest
import torch

from artforge.errors import ArtforgeError, CheckpointError
from artforge.export.onnx_model import read_metadata
from artforge.export.parity import onnx_session
from artforge.export.pipeline import export_checkpoint
from artforge.serving.repository_config import parse_config
from artforge.registry import load_network, spec_for


def test_round_trip_onnx_runtime_equals_pytorch_for_float_and_uint8(dcgan_run, tmp_path):
    result = export_checkpoint(dcgan_run, tmp_path / "repo", name="art", max_batch=8, float_output=True)
    assert {r.batch for r in result.parity} == {1, 3, 8}
    network, ckpt = load_network(dcgan_run)
    session = onnx_session(result.version_dir / "model.onnx")
    z = np.random.default_rng(5).standard_normal((5, 16)).astype(np.float32)  # batch 5 was never traced
    style = np.array([[0], [1], [2], [3], [4]], np.int64)
    image, image_float = session.run(["image", "image_float"], {"z": z, "style": style})
    with torch.no_grad():
        expected = network(torch.from_numpy(z), torch.from_numpy(style[:, 0])).numpy()
    assert image.shape == (5, 32, 32, 3) and image.dtype == np.uint8
    assert np.abs(image_float - expected).max() <= 1e-4
    want_uint8 = np.round((np.clip(expected, -1, 1) + 1) * 127.5).transpose(0, 2, 3, 1)
    assert np.abs(image.astype(int) - want_uint8).max() <= 1


def test_onnx_metadata_names_family_config_step_and_normalisation(dcgan_run, tmp_path):
    result = export_checkpoint(dcgan_run, tmp_path / "repo")
    meta = read_metadata(result.version_dir / "model.onnx")
    assert meta["family"] == "dcgan" and meta["checkpoint_step"] == 2
    assert meta["config"]["z_dim"] == 16 and meta["spec"]["inputs"][0]["name"] == "z"
    assert meta["normalization"]["image_output"].startswith("uint8")
    record = json.loads((result.version_dir / "export.json").read_text())
    assert record["onnx"]["nodes_final"] <= record["onnx"]["nodes_exported"]


def test_config_parses_with_tritons_schema_and_follows_the_spec(dcgan_run, tmp_path):
    export_checkpoint(dcgan_run, tmp_path / "repo", name="art", max_batch=16, instances=2)
    config = parse_config((tmp_path / "repo" / "art" / "config.pbtxt").read_text())
    spec = spec_for(load_network(dcgan_run)[1])
    assert config.name == "art" and config.backend == "python" and config.max_batch_size == 16
    assert [(i.name, list(i.dims)) for i in config.input] == [(t.name, t.dims) for t in spec.inputs]
    assert [(o.name, list(o.dims)) for o in config.output] == [("image", [32, 32, 3])]
    assert config.HasField("dynamic_batching") and config.dynamic_batching.max_queue_delay_microseconds == 0
    assert config.instance_group[0].count == 2 and config.version_policy.latest.num_versions == 3
    warm = config.model_warmup[0].inputs
    assert warm["style"].input_data_file == "style"
    assert (tmp_path / "repo" / "art" / "warmup" / "style").stat().st_size == 8
    assert json.loads(config.parameters["artforge.metadata"].string_value)["styles"][0] == "circles"
    native = export_checkpoint(dcgan_run, tmp_path / "native", runtime="native")
    config = parse_config((native.version_dir.parent / "config.pbtxt").read_text())
    assert config.platform == "onnxruntime_onnx" and config.instance_group[0].kind == config.instance_group[0].KIND_GPU
    assert not (native.version_dir / "model.py").exists()


def test_a_config_typo_is_caught_by_the_schema():
    with pytest.raises(Exception, match="max_batch"):
        parse_config('name: "x"\nmax_batch: 4\n')


def test_new_export_adds_a_version_and_is_byte_identical(dcgan_run, tmp_path):
    first = export_checkpoint(dcgan_run, tmp_path / "repo")
    second = export_checkpoint(dcgan_run, tmp_path / "repo")
    assert (first.version, second.version) == (1, 2)
    assert (first.version_dir / "model.onnx").read_bytes() == (second.version_dir / "model.onnx").read_bytes()
    assert sorted(p.name for p in (tmp_path / "repo" / "dcgan").iterdir()) == ["1", "2", "config.pbtxt", "warmup"]


def test_failed_parity_writes_nothing(dcgan_run, tmp_path):
    repo = tmp_path / "repo"
    export_checkpoint(dcgan_run, repo)
    before = sorted(p.relative_to(repo) for p in repo.rglob("*"))
    with pytest.raises(ArtforgeError, match="parity check failed for output 'image_float'"):
        export_checkpoint(dcgan_run, repo, float_output=True, tolerance=1e-12, name="dcgan2")
    with pytest.raises(ArtforgeError, match="parity check failed"):
        export_checkpoint(dcgan_run, repo, float_output=True, tolerance=1e-12)
    assert sorted(p.relative_to(repo) for p in repo.rglob("*")) == before


def test_bad_inputs_are_one_line_errors(dcgan_run, tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        export_checkpoint(tmp_path / "missing", tmp_path / "repo")
    bad = tmp_path / "bad"
    shutil.copytree(dcgan_run / "checkpoints" / "step_00000002", bad)
    (bad / "model.safetensors").write_bytes(b"\x00" * 10)
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        export_checkpoint(bad, tmp_path / "repo")
    meta = json.loads((dcgan_run / "checkpoints" / "step_00000002" / "checkpoint.json").read_text())
    shutil.copyfile(dcgan_run / "checkpoints" / "step_00000002" / "model.safetensors", bad / "model.safetensors")
    (bad / "checkpoint.json").write_text(json.dumps({**meta, "family": "vae"}))
    with pytest.raises(CheckpointError, match="unknown model family 'vae'"):
        export_checkpoint(bad, tmp_path / "repo")
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(ArtforgeError, match="is a file"):
        export_checkpoint(dcgan_run, a_file)
    for name in ("a b", "../up", ".hidden", "x/y", "evil\n", ""):
        with pytest.raises(ArtforgeError, match="is not allowed"):
            export_checkpoint(dcgan_run, tmp_path / "repo", name=name)
    with pytest.raises(ArtforgeError, match="--max-batch 1000000000 is more than 4096"):
        export_checkpoint(dcgan_run, tmp_path / "repo", max_batch=10**9)
    with pytest.raises(ArtforgeError, match="--max-dim applies to models with dynamic sizes"):
        export_checkpoint(dcgan_run, tmp_path / "repo", max_dim=64)
    with pytest.raises(ArtforgeError, match="applies to TensorRT engines"):
        export_checkpoint(dcgan_run, tmp_path / "repo", precision="fp16")
    assert not (tmp_path / "repo").exists()


def test_a_checkpoint_with_other_tensors_cannot_join_an_existing_name(dcgan_run, tmp_path):
    repo = tmp_path / "repo"
    export_checkpoint(dcgan_run, repo, name="art")
    with pytest.raises(ArtforgeError, match="serves other tensors"):
        export_checkpoint(dcgan_run, repo, name="art", float_output=True)
    assert sorted(p.name for p in (repo / "art").iterdir()) == ["1", "config.pbtxt", "warmup"]


def test_a_version_with_another_runtime_cannot_join_a_model(dcgan_run, tmp_path):
    """Versions share config.pbtxt: an onnxruntime_onnx config would leave version 1 (model.py) unservable."""
    repo = tmp_path / "repo"
    export_checkpoint(dcgan_run, repo, name="art", max_batch=4)
    config_before = (repo / "art" / "config.pbtxt").read_text()
    with pytest.raises(ArtforgeError, match="served by python; .* onnxruntime_onnx version cannot join"):
        export_checkpoint(dcgan_run, repo, name="art", max_batch=4, runtime="native")
    assert sorted(p.name for p in (repo / "art").iterdir()) == ["1", "config.pbtxt", "warmup"]
    assert (repo / "art" / "config.pbtxt").read_text() == config_before
    export_checkpoint(dcgan_run, repo, name="art-native", max_batch=4, runtime="native")
    assert parse_config((repo / "art-native" / "config.pbtxt").read_text()).platform == "onnxruntime_onnx"


def test_a_multi_profile_engine_config_lists_its_profiles_and_the_tensorrt_that_built_it(style_run):
    from artforge.export.triton_repo import TritonOptions, model_config

    _, net = style_run
    spec = spec_for(load_network(style_run[0])[1])
    record = {"tensorrt_version": "10.5.0.18", "version_compatible": True, "profiles": [{}, {}, {}]}
    config = model_config("stylize", spec, TritonOptions(runtime="native", engine="tensorrt"), record)
    assert config.platform == "tensorrt_plan"
    assert list(config.instance_group[0].profile) == ["0", "1", "2"]  # else Triton uses profile 0 alone
    assert config.parameters["execution_context_allocation_strategy"].string_value == "ON_PROFILE_CHANGE"
    assert json.loads(config.parameters["artforge.tensorrt"].string_value) == {"version": "10.5.0.18",
                                                                               "version_compatible": True}
    single = model_config("stylize", spec, TritonOptions(runtime="native", engine="tensorrt"),
                          {**record, "profiles": [{}]})
    assert not single.instance_group[0].profile and "execution_context_allocation_strategy" not in single.parameters
