"""The served diffusion sampler (numpy) against diffusers' own schedulers, step for step.

diffusers is the reference no one here wrote: the same schedule config goes to both, a fixed
"network" (a smooth function of the picture and the timestep) gives both the same outputs, and every
step's picture must agree.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from artforge.serving import denoising

diffusers = pytest.importorskip("diffusers", reason="the diffusers extra (pip install -e '.[diffusers]')")

SCHEDULES = [
    dict(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", beta_start=0.0001, beta_end=0.02,
         prediction_type="v_prediction", timestep_spacing="trailing"),
    dict(num_train_timesteps=1000, beta_schedule="linear", beta_start=0.0001, beta_end=0.02,
         prediction_type="epsilon", timestep_spacing="trailing"),
    dict(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
         prediction_type="epsilon", timestep_spacing="trailing"),
]


def fake_network(x: np.ndarray, t: int) -> np.ndarray:
    """Outputs that depend on the picture and the timestep, as a denoiser's do."""
    return (0.6 * x + np.sin(t / 97.0 + np.arange(x.size).reshape(x.shape) / 50.0)).astype(np.float32)


def reference_scheduler(name: str, schedule: dict):
    if name == "ddim":
        return diffusers.DDIMScheduler(**schedule, clip_sample=False, set_alpha_to_one=True)
    return diffusers.DPMSolverMultistepScheduler(**schedule, algorithm_type="dpmsolver++", solver_order=2)


@pytest.mark.parametrize("schedule", SCHEDULES, ids=lambda s: f"{s['beta_schedule']}-{s['prediction_type']}")
def test_alphas_cumprod_match_diffusers(schedule):
    reference = diffusers.DDPMScheduler(**schedule).alphas_cumprod.numpy()
    np.testing.assert_allclose(denoising.alphas_cumprod(schedule), reference, rtol=2e-6, atol=1e-7)


@pytest.mark.parametrize("steps", [1, 4, 16, 25])
@pytest.mark.parametrize("sampler", denoising.SAMPLERS)
@pytest.mark.parametrize("schedule", SCHEDULES, ids=lambda s: f"{s['beta_schedule']}-{s['timestep_spacing']}")
def test_sampler_matches_diffusers_step_for_step(schedule, sampler, steps):
    ours = denoising.solver(sampler, schedule, steps)
    reference = reference_scheduler(sampler, schedule)
    reference.set_timesteps(steps)
    np.testing.assert_array_equal(ours.timesteps, reference.timesteps.numpy())
    x = np.random.default_rng(0).standard_normal((1, 3, 8, 8)).astype(np.float32)
    x_ref = torch.from_numpy(x.copy())
    for index, t in enumerate(reference.timesteps.tolist()):
        output = fake_network(x, t)
        x, _ = ours.step(index, output, x)
        x_ref = reference.step(torch.from_numpy(fake_network(x_ref.numpy(), t)), t, x_ref).prev_sample
        np.testing.assert_allclose(x, x_ref.numpy(), rtol=1e-4, atol=1e-4, err_msg=f"step {index} (t={t})")
    assert np.abs(x).max() > 0.1  # the check above compared pictures, not zeros


def test_other_timestep_spacings_are_refused():
    with pytest.raises(ValueError, match="'leading' is not supported"):
        denoising.timesteps({**SCHEDULES[0], "timestep_spacing": "leading"}, 10)


def test_guidance_combines_the_class_and_null_rows():
    loop = dict(channels=3, image_size=4, num_classes=5, schedule=SCHEDULES[0])
    calls = []

    def denoise(x, t, classes):
        calls.append(classes[:, 0].tolist())
        return np.where(classes[:, :, None, None] == 5, 0.0, 1.0).astype(np.float32) * np.ones_like(x)

    guided = denoising.Denoising(loop, label=2, seed=1, steps=1, guidance=3.0, sampler="ddim")
    plain = denoising.Denoising(loop, label=2, seed=1, steps=1, guidance=1.0, sampler="ddim")
    batch = denoising.DenoiseBatch(denoise)
    batch.join(guided), batch.join(plain)
    events = dict(batch.advance())
    assert calls == [[2, 5, 2]]  # one batched call: the guided picture's two rows, then the plain one's
    expected = denoising.DDIM(SCHEDULES[0], 1).step(0, np.full((1, 3, 4, 4), 3.0, np.float32),
                                                    np.random.default_rng(1).standard_normal((1, 3, 4, 4)).astype(
                                                        np.float32))[0]
    np.testing.assert_array_equal(events[guided][1], denoising.to_uint8(expected[0]))
    assert not batch.rows  # both finished and left


def test_previews_every_k_steps_then_the_final_picture():
    loop = dict(channels=3, image_size=4, num_classes=2, schedule=SCHEDULES[0])
    picture = denoising.Denoising(loop, label=0, seed=3, steps=8, guidance=1.0, sampler="dpmpp_2m", previews=3)
    seen = []
    final = denoising.sample(lambda x, t, c: 0.1 * x, [picture], lambda i, event: seen.append(event[0]))
    assert seen == [3, 6, 8]
    assert final.shape == (1, 4, 4, 3) and final.dtype == np.uint8


def test_batching_does_not_change_a_picture():
    """A picture sampled beside others at other steps equals the picture sampled alone."""
    loop = dict(channels=3, image_size=4, num_classes=3, schedule=SCHEDULES[0])

    def denoise(x, t, classes):  # row-wise: each row's output depends on its own inputs only
        return (0.5 * x + t[:, :, None, None] / 1000.0 + classes[:, :, None, None] / 10.0).astype(np.float32)

    def picture(seed, steps, guidance):
        return denoising.Denoising(loop, label=seed % 3, seed=seed, steps=steps, guidance=guidance, sampler="dpmpp_2m")
    alone = denoising.sample(denoise, [picture(7, 10, 2.0)])
    together = denoising.sample(denoise, [picture(1, 4, 1.0), picture(7, 10, 2.0), picture(2, 6, 0.0)])
    np.testing.assert_array_equal(together[1], alone[0])


def test_scheduler_steps_pictures_together_and_drops_a_cancelled_one():
    """The served model's thread: pictures submitted at once share each step; one whose client went away
    after its third preview stops there, the other runs to its final picture."""
    import threading

    from artforge.serving.decoding import StreamScheduler

    loop = dict(channels=3, image_size=4, num_classes=2, schedule=SCHEDULES[0])
    rows_per_call, both_submitted = [], threading.Event()

    def denoise(x, t, classes):
        both_submitted.wait(10)  # the first step may hold one picture; the next ones hold both
        rows_per_call.append(len(x))
        return 0.1 * x

    scheduler = StreamScheduler(denoising.DenoiseBatch(denoise), max_streams=4, cancel_check_s=0)
    events, ended = {"kept": [], "cancelled": []}, {}
    done = threading.Event()

    def submit(key, cancel_after_first):
        picture = denoising.Denoising(loop, label=0, seed=1, steps=100, guidance=1.0, sampler="ddim", previews=1)
        scheduler.submit(picture, lambda event: events[key].append(event[0]),
                         lambda error: (ended.__setitem__(key, error), len(ended) == 2 and done.set()),
                         lambda: cancel_after_first and len(events[key]) >= 3)
    submit("cancelled", True)
    submit("kept", False)
    both_submitted.set()
    assert done.wait(30)
    scheduler.close()
    assert ended == {"cancelled": "cancelled", "kept": None}
    assert events["kept"] == list(range(1, 101))
    assert 3 <= len(events["cancelled"]) <= 5  # stopped within a step or two of the client leaving
    assert max(rows_per_call) == 2  # the two pictures stepped in one call
