"""The diffusion family end to end on a tiny model: training (exact resume), the diffusers folder loaded by
diffusers itself, export, the sampler served by Triton (the same pictures as in-process, previews as they
form, refused requests), and `artforge generate` / `artforge evaluate` through it."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from artforge.cli import main
from artforge.contract import SAMPLER_NAMES
from artforge.errors import ArtforgeError
from artforge.serving import denoising

pytest.importorskip("diffusers", reason="the diffusers extra (pip install -e '.[diffusers]')")

from tests.conftest import TINY_DIFFUSION as TINY  # noqa: E402


def test_resumed_training_equals_an_uninterrupted_run(art32, tmp_path):
    from artforge.checkpoint import load_checkpoint
    from artforge.families.diffusion.train import train_diffusion

    whole = train_diffusion(data=str(art32), out=str(tmp_path / "whole"), steps=4, seed=1, **TINY)
    train_diffusion(data=str(art32), out=str(tmp_path / "split"), steps=2, seed=1, **{**TINY, "checkpoint_every": 2})
    split = train_diffusion(out=str(tmp_path / "split"), steps=4, resume=True)
    a, b = load_checkpoint(whole).weights, load_checkpoint(split).weights
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    log = [json.loads(line) for line in (tmp_path / "whole" / "log.jsonl").read_text().splitlines()]
    assert any("loss" in record for record in log)


def test_the_diffusers_folder_samples_the_same_picture_in_diffusers_own_pipeline(diffusion_run):
    """diffusers loads the folder (DDIMPipeline) and its own DDIM scheduler and UNet, guided by hand, draw
    what artforge's sampler draws from the same checkpoint and noise."""
    from diffusers import DDIMPipeline

    from artforge.serving.generators import local_generator

    folder = diffusion_run / "diffusers"
    facts = json.loads((folder / "artforge.json").read_text())
    pipeline = DDIMPipeline.from_pretrained(folder)
    label, seed, steps, guidance = 2, 11, 6, 3.0
    x = torch.from_numpy(np.random.default_rng(seed).standard_normal((1, 3, 16, 16)).astype(np.float32))
    pipeline.scheduler.set_timesteps(steps)
    classes = torch.tensor([label, facts["null_class"]])
    with torch.no_grad():
        for t in pipeline.scheduler.timesteps:
            cond, uncond = pipeline.unet(x.repeat(2, 1, 1, 1), t, class_labels=classes).sample
            x = pipeline.scheduler.step((uncond + guidance * (cond - uncond))[None], t, x).prev_sample
    theirs = denoising.to_uint8(x[0].numpy())
    request = {"style": np.array([[label]]), "seed": np.array([[seed]]), "steps": np.array([[steps]], np.int32),
               "guidance": np.array([[guidance]], np.float32), "sampler": np.array([[SAMPLER_NAMES.index("ddim")]],
                                                                                  np.int32),
               "previews": np.zeros((1, 1), np.int32)}
    ours = local_generator(diffusion_run).images(request)[0]
    assert np.abs(ours.astype(int) - theirs.astype(int)).max() <= 1
    assert theirs.std() > 5  # a picture, not a flat field


def test_served_sampler_draws_what_the_checkpoint_draws_with_previews(diffusion_server, diffusion_run):
    from artforge.families.generate import generate
    from artforge.serving.client import Client
    from artforge.serving.generators import local_generator, remote_generator

    controls = {"steps": 8, "guidance": 2.0, "previews": 3}
    with Client(diffusion_server.grpc_url) as client:
        events = []
        served = generate(remote_generator(client, "diffusion"), count=6, seed=3, controls=controls,
                          on_event=lambda item, step, picture: events.append((item, step)))
    local = generate(local_generator(diffusion_run), count=6, seed=3, controls={**controls, "previews": 0})
    assert np.abs(served.astype(int) - local.astype(int)).max() <= 1  # ONNX Runtime against PyTorch
    assert sorted(events) == sorted((item, step) for item in range(6) for step in (3, 6, 8))
    for sampler in (0, 1):  # both samplers, and a class each, give other pictures
        with Client(diffusion_server.grpc_url) as client:
            other = generate(remote_generator(client, "diffusion"), count=6, seed=3,
                             controls={**controls, "sampler": sampler, "steps": 5})
        assert not np.array_equal(other, served)


def test_generate_command_writes_the_grid_and_the_pictures_forming(diffusion_server, tmp_path, capsys):
    from artforge.imaging import read_image

    url = diffusion_server.grpc_url
    main(["generate", "--url", url, "--model", "diffusion", "--count", "4", "--steps", "6", "--guidance", "2",
          "--sampler", "ddim", "--previews", "2", "--out", str(tmp_path / "art.png"),
          "--previews-gif", str(tmp_path / "forming.gif")])
    out = capsys.readouterr().out
    assert "wrote 4 image(s)" in out and "3 frames" in out
    assert read_image(tmp_path / "art.png").shape[2] == 3
    from PIL import Image
    with Image.open(tmp_path / "forming.gif") as gif:
        assert gif.n_frames == 3
    assert main(["generate", "--url", url, "--model", "diffusion", "--sampler", "euler", "--out",
                 str(tmp_path / "x.png")]) == 1
    assert not (tmp_path / "x.png").exists()
    assert "samplers are ['ddim', 'dpmpp_2m']" in capsys.readouterr().err


def test_requests_outside_the_limits_are_refused_in_one_line(diffusion_server):
    from artforge.serving.client import Client

    request = {"style": np.zeros((1, 1), np.int64), "seed": np.ones((1, 1), np.int64),
               "steps": np.full((1, 1), 201, np.int32), "guidance": np.ones((1, 1), np.float32),
               "sampler": np.zeros((1, 1), np.int32), "previews": np.zeros((1, 1), np.int32)}
    with Client(diffusion_server.grpc_url) as client:
        with pytest.raises(ArtforgeError, match="steps"):
            list(client.stream("diffusion", request))
        with pytest.raises(ArtforgeError, match="streams its answer"):
            client.infer("diffusion", request)


def test_evaluate_measures_the_served_model_and_the_checkpoint_alike(diffusion_server, diffusion_run, art32, tmp_path):
    from artforge.evaluation.evaluate import evaluate

    common = dict(data=str(art32), count=10, batch=10)
    served = evaluate(source="diffusion", url=diffusion_server.grpc_url, out=str(tmp_path / "served"), **common)
    local = evaluate(source=str(diffusion_run), out=str(tmp_path / "local"), **common)
    assert served["quality"]["generated"] == local["quality"]["generated"] == 10
    assert served["quality"]["fd"] == pytest.approx(local["quality"]["fd"], rel=1e-3)
    fewer = evaluate(source=str(diffusion_run), out=str(tmp_path / "fewer"), controls={"steps": 2}, **common)
    assert fewer["quality"]["fd"] != pytest.approx(local["quality"]["fd"], rel=1e-3)  # the controls reached the sampler
    assert "controls steps=2" in (tmp_path / "fewer" / "evaluate.md").read_text()


def test_sampler_names_agree_between_the_contract_and_the_served_sampler():
    assert SAMPLER_NAMES == denoising.SAMPLERS


def test_bench_times_the_served_sampler_against_in_process_in_turns(diffusion_run, tmp_path):
    from artforge.benchmarks.run import run_benchmark

    document = run_benchmark(checkpoint=str(diffusion_run), out=str(tmp_path / "bench"), concurrency=[1, 4],
                             requests=8, steps=4, threads=1)
    ways = document["ways"]
    assert set(ways) == {"inprocess_one", "served_one", "inprocess_together", "served_batched", "served_single"}
    assert all(len(w["per_turn"]) == 3 and w["pictures_per_s"] > 0 for w in ways.values())
    assert 0 < ways["served_one"]["first_preview_ms"] < ways["served_one"]["request_ms"]
    assert set(document["ratios"]) == {"served_over_inprocess_pictures_per_s_c1", "first_preview_share_of_request",
                                       "batched_over_single_pictures_per_s_c4",
                                       "served_batched_over_inprocess_together_c4"}
    text = (tmp_path / "bench" / "bench.md").read_text()
    assert "Triton, 4 requests open, batched stepping" in text and "first preview after" in text


def test_a_sweep_measures_each_value_as_evaluate_does_alone(diffusion_run, art32, tmp_path, capsys):
    from artforge.cli import main
    from artforge.errors import ArtforgeError
    from artforge.evaluation.evaluate import evaluate

    common = dict(data=str(art32), count=10, batch=10, controls={"guidance": 1.0})
    assert main(["evaluate", str(diffusion_run), "--data", str(art32), "--count", "10", "--batch", "10",
                 "--controls", "guidance=1", "--sweep", "steps=2,4", "--out", str(tmp_path / "sweep")]) == 0
    assert "sweep.png" in capsys.readouterr().out
    swept = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    alone = evaluate(source=str(diffusion_run), out=str(tmp_path / "alone"), **{**common, "controls": {
        "guidance": 1.0, "steps": 4.0}})
    assert swept["control"] == "steps" and [p["value"] for p in swept["points"]] == [2, 4]
    assert swept["points"][1]["quality"] == alone["quality"]  # the same requests and real images as alone
    assert swept["points"][0]["quality"]["fd"] != alone["quality"]["fd"]  # the value reached the sampler
    kept = json.loads((tmp_path / "sweep" / "steps=4" / "evaluate.json").read_text())
    assert kept["quality"] == alone["quality"] and kept["options"]["controls"] == {"guidance": 1.0, "steps": 4.0}
    table = (tmp_path / "sweep" / "sweep.md").read_text()
    assert "| steps | FD |" in table and "\n| 2 |" in table and "\n| 4 |" in table
    assert (tmp_path / "sweep" / "sweep.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ArtforgeError, match="no sharpness input"):
        evaluate(source=str(diffusion_run), out=str(tmp_path / "bad"), sweep={"sharpness": [1.0]}, **common)
    with pytest.raises(SystemExit):  # argparse's usage error: NAME=V1,V2,...
        main(["evaluate", str(diffusion_run), "--data", str(art32), "--sweep", "steps"])
    assert "expected NAME=V1,V2,..." in capsys.readouterr().err


def test_two_process_torchrun_trains_in_step_and_only_rank_zero_writes(art32, tmp_path):
    """DDP through the one training loop: both processes average their gradients, so the EMA weights each
    keeps stay equal (the trainer checks before a checkpoint and fails if not); only rank 0 writes the run."""
    import os
    import subprocess
    import sys

    from artforge.checkpoint import load_checkpoint

    run = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1", "GLOO_SOCKET_IFNAME": "lo"}
    flags = [f"--{name.replace('_', '-')}={value}" for name, value in TINY.items()
             if name not in ("sample_every", "checkpoint_every", "progress")]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "artforge", "train", "diffusion", "--data", str(art32), "--out", str(run), "--steps", "3",
           *flags, "--quiet", "--device", "cpu"]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["step_00000003"]
    assert len((run / "log.jsonl").read_text().splitlines()) == 3  # one writer, not two
    assert all(torch.isfinite(t).all() for t in load_checkpoint(run).weights.values())
