"""The sampling loop of diffusion models served as a loop (a denoiser network called once per step): numpy only.

`export` copies this file beside the served model.py, which runs the whole loop inside Triton (no round
trip per step), and in-process generation runs the same code over PyTorch or ONNX Runtime, so one seed
gives the same picture both ways. It imports numpy only: no artforge, no torch.

The noise schedule, the timesteps and both samplers follow Hugging Face diffusers' definitions, so a
model artforge trains samples the same in diffusers (tests/serving/test_denoising.py checks every step
against diffusers' DDIMScheduler and DPMSolverMultistepScheduler):
- DDIM, deterministic (eta 0): diffusers' DDIMScheduler with set_alpha_to_one;
- DPM-Solver++ (2M), the second-order multistep data-prediction solver: diffusers'
  DPMSolverMultistepScheduler (midpoint, lower order at the last step, final sigma zero).

Concurrent requests step together (DenoiseBatch: one batched network call advances every request by a
step, whatever step each is at); classifier-free guidance doubles a request's rows (its class and the
null class).
"""
import math

import numpy as np

SAMPLERS = ("ddim", "dpmpp_2m")  # the wire's `sampler` input is an index into this


def betas(schedule):
    """The per-timestep noise variances of a schedule dict (diffusers' beta_schedule names)."""
    count, kind = int(schedule["num_train_timesteps"]), schedule["beta_schedule"]
    if kind == "linear":
        return np.linspace(schedule["beta_start"], schedule["beta_end"], count, dtype=np.float32)
    if kind == "scaled_linear":
        return np.linspace(schedule["beta_start"] ** 0.5, schedule["beta_end"] ** 0.5, count, dtype=np.float32) ** 2
    if kind == "squaredcos_cap_v2":  # the cosine schedule of improved DDPM, each beta capped at 0.999
        def alpha_bar(t):
            return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
        return np.array([min(1 - alpha_bar((i + 1) / count) / alpha_bar(i / count), 0.999) for i in range(count)],
                        np.float32)
    raise ValueError(f"unknown beta_schedule '{kind}'")


def alphas_cumprod(schedule):
    """(num_train_timesteps,) float32: how much of the clean picture is left at each timestep (signal power)."""
    return np.cumprod(1.0 - betas(schedule), dtype=np.float32)


def timesteps(schedule, steps):
    """The `steps` training timesteps a sampler visits, from the noisiest: 'trailing' spacing, which starts at
    the last timestep (pure noise) as few-step sampling needs, and on which diffusers' DDIM and DPM-Solver
    agree (their 'leading' spacings differ from each other)."""
    count, steps = int(schedule["num_train_timesteps"]), int(steps)
    if not 1 <= steps <= count:
        raise ValueError(f"steps must be 1 to {count}, got {steps}")
    if schedule.get("timestep_spacing", "trailing") != "trailing":
        raise ValueError(f"timestep_spacing '{schedule['timestep_spacing']}' is not supported: 'trailing' only")
    return np.round(np.arange(count, 0, -count / steps)).astype(np.int64) - 1


def clean_and_noise(output, x, signal, prediction):
    """(x0, eps): the clean picture and the noise the network's output says `x` is made of, at a timestep
    whose cumulative alpha is `signal`."""
    a, s = signal ** 0.5, (1 - signal) ** 0.5
    if prediction == "epsilon":
        return (x - s * output) / a, output
    if prediction == "v_prediction":
        return a * x - s * output, a * output + s * x
    if prediction == "sample":
        return output, (x - a * output) / s
    raise ValueError(f"unknown prediction_type '{prediction}'")


class DDIM:
    """Deterministic DDIM (eta 0) over a schedule's timesteps, as diffusers' DDIMScheduler steps."""

    def __init__(self, schedule, steps):
        self.acp, self.prediction = alphas_cumprod(schedule), schedule["prediction_type"]
        self.timesteps = timesteps(schedule, steps)
        self.stride = int(schedule["num_train_timesteps"]) // int(steps)  # diffusers' previous-timestep rule

    def step(self, index, output, x):
        """(x at the next timestep, predicted clean picture) after step `index` with the network's output."""
        t = int(self.timesteps[index])
        previous = t - self.stride
        signal_next = self.acp[previous] if previous >= 0 else np.float32(1.0)
        x0, eps = clean_and_noise(output, x, self.acp[t], self.prediction)
        return signal_next ** 0.5 * x0 + (1 - signal_next) ** 0.5 * eps, x0


class DPMSolver2M:
    """DPM-Solver++ (2M) in sigma form, as diffusers' DPMSolverMultistepScheduler steps with its defaults:
    midpoint update, first order at the first and last steps, the last step landing on sigma 0."""

    def __init__(self, schedule, steps):
        acp = alphas_cumprod(schedule)
        self.prediction = schedule["prediction_type"]
        self.timesteps = timesteps(schedule, steps)
        # sigma = noise / signal amplitude at each visited timestep, then 0 (the clean picture)
        sigmas = (((1 - acp) / acp) ** 0.5)[self.timesteps]
        self.sigmas = np.concatenate([sigmas, [0.0]]).astype(np.float32)
        self.previous_x0 = None

    def alpha_sigma(self, index):
        sigma = self.sigmas[index]
        alpha = 1 / (sigma ** 2 + 1) ** 0.5
        return alpha, sigma * alpha

    def step(self, index, output, x):
        alpha_s, sigma_s = self.alpha_sigma(index)
        x0, _ = clean_and_noise(output, x, alpha_s ** 2, self.prediction)
        alpha_t, sigma_t = self.alpha_sigma(index + 1)
        last = index == len(self.timesteps) - 1
        if last and sigma_t == 0:  # the first-order update at sigma 0 is the clean picture itself
            x_next = x0
        else:
            h = math.log(alpha_t / sigma_t) - math.log(alpha_s / sigma_s)
            x_next = (sigma_t / sigma_s) * x - alpha_t * (math.exp(-h) - 1.0) * x0
            if self.previous_x0 is not None and not last:
                alpha_r, sigma_r = self.alpha_sigma(index - 1)
                ratio = (math.log(alpha_s / sigma_s) - math.log(alpha_r / sigma_r)) / h
                x_next = x_next - 0.5 * alpha_t * (math.exp(-h) - 1.0) * (x0 - self.previous_x0) / ratio
        self.previous_x0 = x0
        return x_next.astype(np.float32), x0


def solver(name, schedule, steps):
    if name == "ddim":
        return DDIM(schedule, steps)
    if name == "dpmpp_2m":
        return DPMSolver2M(schedule, steps)
    raise ValueError(f"unknown sampler '{name}'; choose {' or '.join(SAMPLERS)}")


def to_uint8(x):
    """(C, H, W) float in [-1, 1] -> (H, W, C) uint8, rounded to the nearest level (as training writes them)."""
    return np.round((np.clip(x, -1, 1) + 1.0) * 127.5).astype(np.uint8).transpose(1, 2, 0)


class Denoising:
    """One picture being sampled: its noise (from its seed), its class, its solver and guidance.

    Its rows for a step are its picture with its class and, under guidance, again with the null class;
    `take` combines their outputs (uncond + guidance * (cond - uncond)) and steps. Events are
    (steps done, (H, W, 3) uint8): the predicted clean picture every `previews` steps, then the final one.
    """

    def __init__(self, loop, label, seed, steps, guidance, sampler, previews=0):
        shape = (1, loop["channels"], loop["image_size"], loop["image_size"])
        self.x = np.random.default_rng(int(seed)).standard_normal(shape).astype(np.float32)
        self.solver = solver(sampler, loop["schedule"], steps)
        self.label, self.null = int(label), int(loop["num_classes"])  # the null class: no class (guidance)
        self.guidance, self.previews = float(guidance), int(previews)
        self.steps, self.done = int(steps), 0

    @property
    def finished(self):
        return self.done >= self.steps

    def labels(self):
        """The class of each of its rows: the asked one, the null one, or both for guidance."""
        if self.guidance == 1.0:
            return [self.label]
        if self.guidance == 0.0:
            return [self.null]
        return [self.label, self.null]

    def take(self, outputs):
        """Step with the network's outputs for its rows ((rows, C, H, W)); the event this step makes, or None."""
        guided = outputs[0]
        if len(outputs) == 2:
            guided = outputs[1] + self.guidance * (outputs[0] - outputs[1])
        self.x, x0 = self.solver.step(self.done, guided[None], self.x)
        self.done += 1
        if self.finished:
            return self.done, to_uint8(self.x[0])
        if self.previews and self.done % self.previews == 0:
            return self.done, to_uint8(x0[0])
        return None


class DenoiseBatch:
    """Pictures sampled together: each call of `advance` runs the denoiser once on every row of every
    picture (each at its own timestep) and steps each. denoise(x (B, C, H, W) float32, t (B, 1) int64,
    class (B, 1) int64) -> (B, C, H, W) float32.

    It has the interface of decoding.ContinuousBatch that decoding.StreamScheduler drives: join a
    picture, advance all by a step, remove some, `rows`.
    """

    def __init__(self, denoise):
        self.denoise, self.rows = denoise, []

    def join(self, picture):
        self.rows.append(picture)
        return None  # no event until its first step

    def remove(self, leaving):
        self.rows = [p for p in self.rows if p not in leaving]

    def advance(self):
        """One step for every picture: [(picture, event)] for those that made one; finished ones leave."""
        if not self.rows:
            return []
        pictures = list(self.rows)
        labels = [p.labels() for p in pictures]
        x = np.concatenate([np.repeat(p.x, len(rows), axis=0) for p, rows in zip(pictures, labels)])
        t = np.array([[p.solver.timesteps[p.done]] for p, rows in zip(pictures, labels) for _ in rows], np.int64)
        classes = np.array([[label] for rows in labels for label in rows], np.int64)
        outputs = self.denoise(x, t, classes)
        events, start = [], 0
        for picture, rows in zip(pictures, labels):
            event = picture.take(outputs[start:start + len(rows)])
            start += len(rows)
            if event is not None:
                events.append((picture, event))
        self.remove([p for p in pictures if p.finished])
        return events


def sample(denoise, pictures, on_event=lambda index, event: None):
    """Run pictures to the end together (in-process generation); their final (H, W, 3) uint8 images."""
    batch, finals = DenoiseBatch(denoise), {}
    index = {id(p): i for i, p in enumerate(pictures)}
    for picture in pictures:
        batch.join(picture)
    while batch.rows:
        for picture, event in batch.advance():
            on_event(index[id(picture)], event)
            if picture.finished:
                finals[index[id(picture)]] = event[1]
    return np.stack([finals[i] for i in range(len(pictures))])
