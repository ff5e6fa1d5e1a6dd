import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from artforge.checkpoint import load_checkpoint
from artforge.errors import ArtforgeError
from artforge.families.dcgan.train import train_dcgan
from tests.conftest import TINY_DCGAN

PROBE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "discriminator_class_probe.py"


def tensors(path):
    return load_file(str(path))


def test_training_writes_checkpoint_samples_log_and_options(art32, tmp_path):
    run = tmp_path / "run"
    last = train_dcgan(data=str(art32), out=str(run), steps=4, seed=0, **{**TINY_DCGAN, "sample_every": 2})
    assert last == run / "checkpoints" / "step_00000004"
    checkpoint = load_checkpoint(run, expect_family="dcgan")
    assert checkpoint.meta["classes"] == ["circles", "grid", "splatter", "stripes", "waves"]
    assert checkpoint.meta["config"]["num_classes"] == 5 and checkpoint.meta["seed"] == 0
    assert checkpoint.meta["dataset"]["images"] == 30
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["step_00000002.png", "step_00000004.png"]
    lines = [json.loads(record) for record in (run / "log.jsonl").read_text().splitlines()]
    assert [record["step"] for record in lines] == [1, 2, 3, 4]
    assert all(record["loss_d"] > 0 and record["loss_g"] > 0 for record in lines)
    assert json.loads((run / "train_options.json").read_text())["steps"] == 4


@pytest.mark.parametrize("augment", ["none", "diffaugment"])
def test_resume_reaches_the_same_weights_as_an_uninterrupted_run(art32, tmp_path, augment):
    straight, split = tmp_path / "straight", tmp_path / "split"
    options = dict(TINY_DCGAN, data=str(art32), seed=3, augment=augment)
    train_dcgan(out=str(straight), steps=6, **options)
    train_dcgan(out=str(split), steps=3, **options)
    train_dcgan(out=str(split), steps=6, resume=True, progress=False)  # everything else from the run
    a = straight / "checkpoints" / "step_00000006"
    b = split / "checkpoints" / "step_00000006"
    for name in ("model.safetensors", "state.safetensors"):
        ta, tb = tensors(a / name), tensors(b / name)
        assert ta.keys() == tb.keys()
        for key in ta:
            assert torch.equal(ta[key], tb[key]), f"{name}:{key} differs after resume"
    steps = [json.loads(record)["step"] for record in (split / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]


def three_steps(art32, tmp_path, name, **options):
    """The last checkpoint of a 3-step tiny run in tmp_path/name (seed 5), with `options` over TINY_DCGAN."""
    return train_dcgan(data=str(art32), out=str(tmp_path / name), steps=3, seed=5, **{**TINY_DCGAN, **options})


def test_the_auxiliary_classifier_trains_on_real_pictures_and_its_verdict_reaches_the_generator(art32, tmp_path):
    def run(name, **options):
        last = three_steps(art32, tmp_path, name, **options)
        log = [json.loads(line) for line in (tmp_path / name / "log.jsonl").read_text().splitlines()]
        return tensors(last / "model.safetensors"), tensors(last / "state.safetensors"), log

    plain, plain_state, plain_log = run("projection")
    heard, heard_state, heard_log = run("acgan", conditioning="acgan")
    deaf, _, _ = run("deaf", conditioning="acgan", class_weight=0.0)
    assert not any(".D.classify." in key for key in plain_state) and "d_class_fake" not in plain_log[-1]
    assert any(".D.classify." in key for key in heard_state)
    assert not any(".D.project." in key for key in heard_state)
    assert all(0 <= record["d_class_real"] <= 1 and 0 <= record["d_class_fake"] <= 1 for record in heard_log)
    # the same seed and networks: only the class loss (through D and G) tells the two generators apart
    assert any(not torch.equal(heard[key], deaf[key]) for key in heard if key.startswith("convs"))
    assert load_checkpoint(tmp_path / "acgan").meta["config"]["conditioning"] == "acgan"
    with pytest.raises(ArtforgeError, match="started with conditioning='acgan'"):
        train_dcgan(out=str(tmp_path / "acgan"), steps=4, resume=True, conditioning="both")


def test_augmentation_changes_what_the_discriminator_learns_and_is_kept_with_the_run(art32, tmp_path):
    def run(name, **options):
        return tensors(three_steps(art32, tmp_path, name, **options) / "state.safetensors")

    plain, augmented, geometric = run("plain"), run("augmented", augment="diffaugment"), run("geometric",
                                                                                           augment="geometric")
    d_weights = [key for key in plain if ".D." in key and "weight" in key]
    assert d_weights and all(key in augmented for key in d_weights)
    assert any(not torch.equal(plain[key], augmented[key]) for key in d_weights)
    assert any(not torch.equal(augmented[key], geometric[key]) for key in d_weights)
    assert json.loads((tmp_path / "augmented" / "train_options.json").read_text())["augment"] == "diffaugment"
    with pytest.raises(ArtforgeError, match="started with augment='diffaugment'"):
        train_dcgan(out=str(tmp_path / "augmented"), steps=4, resume=True, augment="none")


def test_resume_refuses_a_conflicting_option_and_a_fresh_run_refuses_an_old_folder(art32, tmp_path):
    run = tmp_path / "run"
    train_dcgan(data=str(art32), out=str(run), steps=2, **TINY_DCGAN)
    with pytest.raises(ArtforgeError, match="started with batch_size=8"):
        train_dcgan(out=str(run), steps=4, resume=True, batch_size=16)
    with pytest.raises(ArtforgeError, match="already has checkpoints"):
        train_dcgan(data=str(art32), out=str(run), steps=2, **TINY_DCGAN)
    with pytest.raises(ArtforgeError, match="no train_options.json"):
        train_dcgan(out=str(tmp_path / "empty"), resume=True)


def test_resume_survives_what_a_kill_leaves_behind(art32, tmp_path):
    run = tmp_path / "run"
    train_dcgan(data=str(art32), out=str(run), steps=3, **{**TINY_DCGAN, "checkpoint_every": 1, "keep": 2})
    checkpoints = run / "checkpoints"
    (checkpoints / ".step_00000004.tmp-abc").mkdir()  # killed mid-write
    (checkpoints / ".step_00000001.old-99").mkdir()  # killed mid-prune
    (checkpoints / "step_00000009").mkdir()  # a step folder without checkpoint.json
    with (run / "log.jsonl").open("a") as log:
        log.write('{"step": 4, "loss_d"')  # the last line cut short
    train_dcgan(out=str(run), steps=5, resume=True, progress=False)
    assert sorted(p.name for p in checkpoints.iterdir()) == ["step_00000004", "step_00000005"]
    assert [json.loads(record)["step"] for record in (run / "log.jsonl").read_text().splitlines()] == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("content, message", [("", "is empty or corrupt"), ("[1, 2]", "not a JSON object"),
                                              ('{"styles": ["a.png"], "width": "lite"}', "not a run of this command")])
def test_resume_with_unusable_options_is_a_one_line_error(art32, tmp_path, content, message):
    run = tmp_path / "run"
    train_dcgan(data=str(art32), out=str(run), steps=1, **TINY_DCGAN)
    (run / "train_options.json").write_text(content)
    with pytest.raises(ArtforgeError, match=message):
        train_dcgan(out=str(run), steps=2, resume=True)


def test_bf16_autocast_trains(art32, tmp_path):
    last = train_dcgan(data=str(art32), out=str(tmp_path / "bf16"), steps=2, bf16=True, **TINY_DCGAN)
    weights = load_checkpoint(last).weights
    floats = [t for name, t in weights.items() if t.is_floating_point()]
    assert floats and all(t.dtype == torch.float32 and torch.isfinite(t).all() for t in floats)


@pytest.mark.slow
def test_two_process_torchrun_trains_and_only_rank_zero_writes(art32, tmp_path):
    run = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1", "GLOO_SOCKET_IFNAME": "lo"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "artforge", "train", "dcgan", "--data", str(art32), "--out", str(run), "--steps", "3",
           "--batch-size", "8", "--g-width", "8", "--d-width", "8", "--z-dim", "16", "--quiet",
           "--conditioning", "both",  # both heads: each must take part in every backward pass DDP reduces
           "--device", "cpu"]  # gloo on the CPU: a machine with one GPU cannot give each process its own
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["step_00000003"]
    assert len((run / "log.jsonl").read_text().splitlines()) == 3  # one writer, not two
    assert all(torch.isfinite(t).all() for t in load_checkpoint(run).weights.values())


@pytest.mark.slow
def test_eval_every_logs_fd_and_kid_from_the_untrained_start_and_draws_the_curve(art32, tmp_path):
    run = tmp_path / "run"
    train_dcgan(data=str(art32), out=str(run), steps=3, seed=0, eval_every=2, eval_count=12, **TINY_DCGAN)
    lines = [json.loads(record) for record in (run / "log.jsonl").read_text().splitlines()]
    measured = [record for record in lines if "fd" in record]
    assert [record["step"] for record in measured] == [0, 2, 3]  # the untrained start, every 2 steps, the end
    assert all(record["fd"] > 0 and record["kid_std"] >= 0 and 0 <= record["precision"] <= 1 for record in measured)
    assert "loss_d" in measured[1] and (run / "quality.png").stat().st_size > 1000
    with pytest.raises(ArtforgeError, match="--eval-count 4 at least 8"):
        train_dcgan(data=str(art32), out=str(tmp_path / "few"), steps=1, eval_every=1, eval_count=4, **TINY_DCGAN)


def test_zero_steps_writes_the_untrained_generator_as_a_baseline(art32, tmp_path):
    last = train_dcgan(data=str(art32), out=str(tmp_path / "run"), steps=0, seed=0, **TINY_DCGAN)
    assert last.name == "step_00000000" and load_checkpoint(last).step == 0


@pytest.mark.parametrize("conditioning", ["projection", "acgan", "both"])
def test_the_class_probe_reads_what_each_discriminator_is_told(art32, tmp_path, conditioning):
    """docs/examples/discriminator_class_probe.py, behind docs/conditioning.md's figures, on a tiny run."""
    train_dcgan(data=str(art32), out=str(tmp_path / "run"), steps=2, seed=1, conditioning=conditioning, **TINY_DCGAN)
    probe = subprocess.run([sys.executable, str(PROBE), str(tmp_path / "run"), str(art32), "--count", "20",
                            "--json", str(tmp_path / "probe.json")],
                           capture_output=True, text=True, timeout=300)
    assert probe.returncode == 0, probe.stderr
    report = json.loads((tmp_path / "probe.json").read_text())
    assert report["step"] == 2 and report["conditioning"] == conditioning
    for side in ("real", "generated"):
        assert 0 <= report[f"{side}_true_label_scores_highest"] <= 1
        # without projection the real/fake logit cannot depend on the label: no class margin at all
        assert (abs(report[f"{side}_class_margin"]) < 1e-5) == (conditioning == "acgan")
        assert (f"{side}_classifier_accuracy" in report) == (conditioning != "projection")


def test_the_class_probe_names_a_missing_run_in_one_line(art32, tmp_path):
    missing = subprocess.run([sys.executable, str(PROBE), str(tmp_path / "none"), str(art32)],
                             capture_output=True, text=True, timeout=300)
    assert missing.returncode != 0 and "Traceback" not in missing.stderr and "none" in missing.stderr
