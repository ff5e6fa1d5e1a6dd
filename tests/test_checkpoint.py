import json
import re
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

import artforge.checkpoint as ckpt
from artforge.checkpoint import find_latest_checkpoint, load_checkpoint, save_checkpoint
from artforge.errors import CheckpointError
from artforge.registry import build_from_checkpoint, load_network
from artforge.families.dcgan.network import DCGANConfig, Generator

CONFIG = DCGANConfig(num_classes=3, z_dim=8, g_width=4, d_width=4)


def save(run, step=1, **kw):
    torch.manual_seed(step)
    G = Generator(CONFIG).eval()
    path = save_checkpoint(run, family="dcgan", config=CONFIG, step=step, weights=G.state_dict(), **kw)
    return G, path


def test_round_trip_rebuilds_the_same_network_from_the_checkpoint_alone(tmp_path):
    G, path = save(tmp_path, step=7, extra={"classes": ["a", "b", "c"]})
    loaded, checkpoint = load_network(tmp_path)  # a run folder resolves to its newest checkpoint
    assert checkpoint.path == path and checkpoint.step == 7 and checkpoint.meta["classes"] == ["a", "b", "c"]
    z, labels = torch.randn(4, 8), torch.tensor([0, 1, 2, 0])
    for name, tensor in G.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name]), name
    with torch.no_grad():  # same weights; oneDNN may pick another kernel, hence allclose
        torch.testing.assert_close(G(z, labels), loaded(z, labels), rtol=1e-5, atol=1e-6)
    meta = json.loads((path / "checkpoint.json").read_text())
    assert meta["family"] == "dcgan" and meta["config"]["g_width"] == 4
    assert {"torch", "safetensors", "artforge", "python"} <= set(meta["versions"])


def test_training_state_tree_survives_with_int_keys_tuples_and_scalars(tmp_path):
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters(), 1e-3, betas=(0.5, 0.999))
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    _, path = save(tmp_path, training_state={"opt": opt.state_dict(), "step": 5, "rng": torch.get_rng_state()})
    state = load_checkpoint(path).training_state()
    restored = torch.optim.Adam(torch.nn.Linear(3, 2).parameters(), 1e-3)
    restored.load_state_dict(state["opt"])
    assert torch.equal(restored.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    assert list(restored.param_groups[0]["betas"]) == [0.5, 0.999] and state["step"] == 5


def test_newest_complete_checkpoint_wins_and_keep_prunes(tmp_path):
    for step in (1, 2, 3):
        save(tmp_path, step=step, keep=2)
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["step_00000002", "step_00000003"]
    assert find_latest_checkpoint(tmp_path).name == "step_00000003"


def test_crash_mid_write_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    G1, first = save(tmp_path, step=1)
    real_save = ckpt.save_file

    def save_then_die(tensors, path, **kw):
        real_save(tensors, path, **kw)
        with open(path, "r+b") as f:
            f.truncate(100)  # half a file on disk ...
        raise OSError(28, "No space left on device", path)  # ... and then the disk is full

    monkeypatch.setattr(ckpt, "save_file", save_then_die)
    with pytest.raises(OSError, match="No space"):
        save(tmp_path, step=2)
    assert find_latest_checkpoint(tmp_path) == first
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["step_00000001"]  # no temp folder left
    loaded, _ = load_network(tmp_path)
    assert all(torch.equal(a, b) for a, b in zip(G1.state_dict().values(), loaded.state_dict().values()))


def test_truncated_weights_are_a_clear_error(tmp_path):
    _, path = save(tmp_path)
    weights = path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-50])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(path)
    (path / "checkpoint.json").write_text("{ not json")
    with pytest.raises(CheckpointError, match="checkpoint.json is corrupt"):
        load_checkpoint(path)


def test_wrong_family_unknown_family_and_incompatible_config_are_named(tmp_path):
    _, path = save(tmp_path)
    with pytest.raises(CheckpointError, match="is a 'dcgan' model; this command needs a 'style' model"):
        load_checkpoint(path, expect_family="style")
    meta = json.loads((path / "checkpoint.json").read_text())
    meta["config"]["g_width"] = 8  # weights were made for width 4
    (path / "checkpoint.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="does not fit its network config"):
        load_network(path)
    meta["config"]["attention"] = True
    (path / "checkpoint.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="does not know"):
        load_network(path)
    meta["family"] = "flow-matching"
    (path / "checkpoint.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="unknown model family 'flow-matching'"):
        build_from_checkpoint(load_checkpoint(path))


def test_missing_paths_are_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope")
    with pytest.raises(CheckpointError, match="neither a checkpoint nor a run folder"):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize("key, value, message", [
    ("files", None, "'files' is null, expected a JSON object"),
    ("step", "abc", "'step' is \"abc\", expected a JSON integer"),
    ("step", -3, "'step' is -3"),
    ("family", 7, "'family' is 7, expected a JSON string"),
    ("files", {"model.safetensors": "x"}, "files.model.safetensors must hold"),
])
def test_metadata_of_the_wrong_type_is_a_one_line_error(tmp_path, key, value, message):
    _, path = save(tmp_path)
    meta = json.loads((path / "checkpoint.json").read_text())
    meta[key] = value
    (path / "checkpoint.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=re.escape(message)):
        load_network(path)


def test_metadata_that_is_not_an_object_is_refused(tmp_path):
    _, path = save(tmp_path)
    (path / "checkpoint.json").write_text("42")
    with pytest.raises(CheckpointError, match="holds a JSON int, not an object"):
        load_checkpoint(path)


@pytest.mark.parametrize("field, value, message", [
    ("g_width", "64", "g_width is \"64\", expected int"),
    ("g_width", 2.5, "g_width is 2.5, expected int"),
    ("g_width", -1, "builds no network"),
    ("g_width", 10**7, "does not fit its network config"),
    ("num_classes", 10**9, "does not fit its network config"),
])
def test_a_config_is_checked_against_the_weights_before_anything_is_allocated(tmp_path, field, value, message):
    _, path = save(tmp_path)
    meta = json.loads((path / "checkpoint.json").read_text())
    meta["config"][field] = value
    (path / "checkpoint.json").write_text(json.dumps(meta))
    with peak_memory_growth_kib() as growth:
        with pytest.raises(CheckpointError, match=re.escape(message)):
            load_network(path)
    # building g_width 10**7 for real needs terabytes; the check must not even start to
    assert growth() < 200_000


def test_the_peak_memory_probe_sees_an_allocation_below_the_process_peak():
    """The probe must catch an allocation smaller than what earlier tests already peaked at (the
    process's lifetime peak, ru_maxrss, cannot)."""
    with peak_memory_growth_kib() as growth:
        torch.ones(300_000_000 // 4)  # 300 MB, touched, then freed
    assert 250_000 < growth() < 400_000


@contextmanager
def peak_memory_growth_kib():
    """Yields a function giving how far the resident set peaked above where it stood on entry (KiB).

    Linux resets the peak (VmHWM) to the current size when 5 is written to /proc/self/clear_refs."""
    Path("/proc/self/clear_refs").write_text("5")
    start, peak = resident_kib("VmRSS"), []
    yield lambda: peak[0] - start
    peak.append(resident_kib("VmHWM"))


def resident_kib(field: str) -> int:
    return int(re.search(rf"{field}:\s+(\d+) kB", Path("/proc/self/status").read_text()).group(1))
