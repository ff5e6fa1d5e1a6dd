"""The one training loop: every family trains through it.

    trainer = DCGANTrainer(opts, ctx)          # a family's FamilyTrainer
    last_checkpoint = run_training(trainer, opts, ctx)

The loop owns what every family needs the same way: resume (exact: every random draw of a step
comes from step_generator), the run folder (train_options.json, log.jsonl, samples/, atomic
checkpoints), progress, sample and checkpoint cadence, and rank 0 writing under torchrun. A family
supplies its state, its step and its samples (FamilyTrainer); device, DDP wrapping and bf16
autocast come from the Distributed context it is given.
"""
from __future__ import annotations

import abc
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

import torch
from torch import nn
from tqdm import tqdm

from artforge.checkpoint import (Checkpoint, config_from_dict, find_latest_checkpoint, load_checkpoint, load_weights,
                                 save_checkpoint)
from artforge.errors import ArtforgeError
from artforge.plots import curves_png
from artforge.training.distributed import Distributed, close_distributed, init_distributed
from artforge.training.run_folder import RunLog, write_run_options
from artforge.training.run_folder import parse_record

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainCommand:
    """How `artforge train FAMILY` reaches a family's training: its options (each field a flag, see
    artforge.options) and the function that trains with them."""

    options: type
    train: Callable[..., Path]
    help: str  # one line in `artforge train --help`
    description: str
    examples: str


class FamilyTrainer(abc.ABC):
    """What one family supplies to the training loop."""

    family: str  # the family's name, written into every checkpoint
    unit: str = "image"  # what a training item is: the log reports <unit>s_per_s

    def __init__(self, config: Any, batch_size: int):
        self.config = config  # the network config stored with every checkpoint
        self.batch_size = batch_size  # global items per step, for the log's throughput

    @abc.abstractmethod
    def state(self) -> dict[str, nn.Module | torch.optim.Optimizer]:
        """Everything a resume restores, by name (networks and optimisers)."""

    @abc.abstractmethod
    def train_step(self, step: int) -> dict[str, float]:
        """Draw this process's share of step `step`'s batch (from step_generator) and update; the losses."""

    @abc.abstractmethod
    def inference_weights(self) -> dict[str, torch.Tensor]:
        """The weights of the network inference uses (model.safetensors)."""

    @abc.abstractmethod
    def write_samples(self, path: Path) -> None:
        """What the model makes now, at `path` plus the family's suffix (.png for pictures, .txt, .mid)."""

    def quality_images(self, count: int, seed: int) -> tuple[Any, Any] | None:
        """(generated, real) uint8 (N, H, W, 3) images for --eval-every; None: the family makes no images."""
        return None

    def quality_measures(self) -> dict[str, float]:
        """--eval-every for a family judged otherwise than by images (held-out perplexity): the measures
        to log. A family that does not override it is measured by quality_images instead."""
        return {}

    def checkpoint_facts(self) -> dict[str, Any]:
        """Extra metadata for checkpoint.json (class names, data set, seed, ...)."""
        return {}

    def before_outputs(self) -> None:
        """Called once before samples or a checkpoint are written at a step (e.g. recalibrate norms)."""

    def check_resumable(self, checkpoint: Checkpoint) -> None:
        """Refuse a checkpoint whose network these options would not rebuild."""
        saved = config_from_dict(type(self.config), checkpoint.meta["config"], str(checkpoint.path))
        if saved != self.config:
            raise ArtforgeError(f"--resume: checkpoint {checkpoint.path} has config {saved}, "
                                f"but these options and data give {self.config}")

    def training_state(self, step: int) -> dict[str, Any]:
        return {**{name: part.state_dict() for name, part in self.state().items()},
                "torch_rng": torch.get_rng_state(), "step": step}

    def load_training_state(self, tree: dict[str, Any], where: str) -> int:
        for name, part in self.state().items():
            if isinstance(part, nn.Module):
                load_weights(part, tree[name], f"{where} ({name})")
            else:
                part.load_state_dict(tree[name])
        if "torch_rng" in tree:
            torch.set_rng_state(tree["torch_rng"])
        return int(tree["step"])


class ImageJudge(Protocol):
    """What --eval-every asks of a quality measure for families that make images (passed in by the family,
    e.g. artforge.evaluation.metrics.ImageQualityJudge: the loop never imports evaluation)."""

    feature_space: str  # named on the curve's title

    def __call__(self, generated: Any, real: Any) -> dict[str, float]:
        """Measures of the generated images against the real ones (the first five are drawn: fd, kid...)."""


def train(trainer_cls: type[FamilyTrainer], opts: Any,
          image_judge: Callable[[], ImageJudge] | None = None) -> Path | None:
    """Join torchrun's process group if there is one, build the family's trainer, train, and leave the
    group whatever happens; the newest checkpoint. `image_judge` builds --eval-every's measure of images."""
    ctx = init_distributed(getattr(opts, "device", "auto"), getattr(opts, "bf16", False),
                           getattr(opts, "deterministic", True))
    try:
        return run_training(trainer_cls(opts, ctx), opts, ctx, image_judge)
    finally:
        close_distributed(ctx)


def resume(trainer: FamilyTrainer, run: Path) -> int:
    """Restore the newest checkpoint of `run` into the trainer; the step it had reached."""
    latest = find_latest_checkpoint(run)
    if latest is None:
        raise ArtforgeError(f"--resume: run folder {run} has no checkpoint yet; start it without --resume")
    checkpoint = load_checkpoint(latest, expect_family=trainer.family)
    trainer.check_resumable(checkpoint)
    step = trainer.load_training_state(checkpoint.training_state(), str(latest))
    log.info("resumed %s at step %d", run, step)
    return step


def run_training(trainer: FamilyTrainer, opts: Any, ctx: Distributed,
                 image_judge: Callable[[], ImageJudge] | None = None) -> Path | None:
    """Train until opts.steps; returns the newest checkpoint. `opts` is the family's options dataclass
    (out, steps, sample_every, checkpoint_every, keep, resume, progress are read here)."""
    run = Path(opts.out)
    step = resume(trainer, run) if opts.resume else 0
    ctx.check_same_start(step, run)
    if ctx.is_main:
        write_run_options(run, opts)
    history = RunLog(run / "log.jsonl", resume_step=step) if ctx.is_main else None
    quality = QualityLog(trainer, opts, run, image_judge) if ctx.is_main and getattr(opts, "eval_every", 0) else None
    if quality and step == 0:
        history.write({"step": 0, **quality.measure(0)})  # the untrained network: where the curve starts
    bar = tqdm(total=opts.steps, initial=step, desc=trainer.family, unit="step", mininterval=0.5,
               disable=not (opts.progress and ctx.is_main))
    last = find_latest_checkpoint(run)
    if opts.steps == 0 and ctx.is_main:  # --steps 0: the untrained network, a baseline to measure against
        last = write_outputs(trainer, opts, run, 0)
    tick = time.perf_counter()
    while step < opts.steps:
        losses = trainer.train_step(step)
        step += 1
        now = time.perf_counter()
        record = {"step": step, **losses, f"{trainer.unit}s_per_s": trainer.batch_size / max(now - tick, 1e-9)}
        bar.update(1)
        bar.set_postfix({k: f"{v:.3f}" for k, v in list(losses.items())[:3]}, refresh=False)  # drawn at mininterval
        if quality and (step % opts.eval_every == 0 or step == opts.steps):
            record.update(quality.measure(step))
        if ctx.is_main:
            history.write(record)
            last = write_outputs(trainer, opts, run, step) or last
        tick = time.perf_counter()  # throughput counts training, not the samples and checkpoints written
    bar.close()
    return last


def write_outputs(trainer: FamilyTrainer, opts: Any, run: Path, step: int) -> Path | None:
    """Samples and checkpoints when their cadence (or the last step) says so; the new checkpoint."""
    done = step == opts.steps
    samples = done or step % opts.sample_every == 0
    checkpoint = done or step % opts.checkpoint_every == 0
    if not (samples or checkpoint):
        return None
    trainer.before_outputs()
    if samples:
        (run / "samples").mkdir(parents=True, exist_ok=True)
        trainer.write_samples(run / "samples" / f"step_{step:08d}")
    if not checkpoint:
        return None
    return save_checkpoint(run, family=trainer.family, config=trainer.config, step=step,
                           weights=trainer.inference_weights(), training_state=trainer.training_state(step),
                           extra=trainer.checkpoint_facts(), keep=opts.keep)


class QualityLog:
    """--eval-every: FD, KID, precision and recall of the family's images against its real ones, logged
    in log.jsonl with the step and drawn as RUN/quality.png. Real features are computed once."""

    def __init__(self, trainer: FamilyTrainer, opts: Any, run: Path,
                 image_judge: Callable[[], ImageJudge] | None = None):
        if opts.eval_every < 1 or getattr(opts, "eval_count", 8) < 8:
            raise ArtforgeError(f"--eval-every {opts.eval_every} must be at least 1 and --eval-count "
                                f"{opts.eval_count} at least 8")
        self.trainer, self.opts, self.run = trainer, opts, run
        self.own = type(trainer).quality_measures is not FamilyTrainer.quality_measures
        if not self.own and (image_judge is None or trainer.quality_images(8, opts.seed) is None):
            raise ArtforgeError(f"--eval-every: the {trainer.family} family makes no images to measure")
        self.judge = None if self.own else image_judge()

    def measure(self, step: int) -> dict[str, float]:
        trainer = self.trainer
        trainer.before_outputs()  # e.g. the EMA generator's batch-norm statistics, as samples see them
        if self.own:
            values = trainer.quality_measures()
            self.draw(step, values)
            return values
        values = self.judge(*trainer.quality_images(self.opts.eval_count, self.opts.seed))
        self.draw(step, values)
        return values

    def draw(self, step: int, values: dict[str, float]) -> None:
        names = list(values) if self.own else ["fd", "kid"]
        records = [r for r in read_log(self.run / "log.jsonl") if names[0] in r and r["step"] < step]
        records.append({"step": step, **values})
        title = (f"{self.trainer.family}: measured on held-out data" if self.own else
                 f"{self.trainer.family}: {self.opts.eval_count} images vs real, {self.judge.feature_space} "
                 "(not Inception FID)")
        curves_png([r["step"] for r in records], {n if self.own else n.upper(): [r[n] for r in records] for n in names},
                   self.run / "quality.png", title)


def read_log(path: Path) -> list[dict]:

    if not path.exists():
        return []
    return [r for line in path.read_text(errors="replace").splitlines() if (r := parse_record(line))]
