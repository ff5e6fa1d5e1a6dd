"""Pieces every training loop shares: distributed set-up, per-step randomness, EMA, the run log."""
from __future__ import annotations

import dataclasses
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from artforge.checkpoint import find_latest_checkpoint, remove_incomplete_checkpoints
from artforge.errors import ArtforgeError
from artforge.files import atomic_write_text

log = logging.getLogger(__name__)
OPTIONS_FILE = "train_options.json"
TORCHRUN_FILE = "torchrun.json"  # the torchrun job that writes the run, so its restarts resume it
# options a resumed run may change in every family (its length, cadence, machine and output); a
# family adds its own (e.g. where its data now lives), every other option must match the run's
RUN_CONTROL_CHANGES = frozenset({"steps", "sample_every", "checkpoint_every", "keep", "device", "deterministic",
                                 "progress", "resume", "out"})


@dataclass
class Distributed:
    """Where this process runs: rank 0 of 1 unless started by torchrun."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")
    bf16: bool = False  # bfloat16 autocast for the forward passes

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def check_batch(self, batch_size: int) -> None:
        """A global batch must split evenly among the processes."""
        if batch_size % self.world_size:
            raise ArtforgeError(f"--batch-size {batch_size} must divide among {self.world_size} processes")

    def autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    def wrap(self, module: nn.Module, **ddp_options) -> nn.Module:
        """The module as this process trains it: itself, or DistributedDataParallel under torchrun."""
        if not self.enabled:
            return module
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=ids, **ddp_options)

    def average_gradients(self, module: nn.Module) -> None:
        """Average `module`'s gradients over the processes by hand, for training steps DDP cannot wrap
        (a gradient penalty takes the gradient of a gradient, which DDP's hooks do not support)."""
        if not self.enabled:
            return
        grads = [p.grad for p in module.parameters() if p.grad is not None]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= self.world_size
        offset = 0
        for g in grads:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()

    def check_same_start(self, step: int, run: Path) -> None:
        """Fail unless every process starts at the same step: a node that sees no checkpoint where rank 0
        resumed from one would train other steps and corrupt the run without a word."""
        if not self.enabled:
            return
        everyone = [torch.zeros(1, dtype=torch.long) for _ in range(self.world_size)]
        dist.all_gather(everyone, torch.tensor([step]))
        starts = [int(s) for s in everyone]
        if len(set(starts)) > 1:
            raise ArtforgeError(f"the {self.world_size} training processes would start at steps {starts}: "
                                f"every node must see the same run folder {run} (shared storage)")

    def check_in_step(self, module: nn.Module, what: str) -> None:
        """Fail if the processes' copies of `module` differ (their gradients were not averaged alike)."""
        if not self.enabled:
            return
        mine = torch.stack([p.detach().double().sum() for p in module.parameters()])
        everyone = [torch.empty_like(mine) for _ in range(self.world_size)]
        dist.all_gather(everyone, mine)
        if any(not torch.equal(everyone[0], other) for other in everyone[1:]):
            raise ArtforgeError(f"the {self.world_size} training processes hold different {what} weights")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def use_deterministic_kernels(deterministic: bool) -> None:
    """On GPUs, cuDNN picks convolution algorithms by timing them and several backward kernels add with
    atomics (the style network's nearest upsampling and reflection padding among them): the same step
    then gives slightly different weights from run to run, and a resumed run drifts from an
    uninterrupted one (seen on an H200: 1e-5 after three DCGAN steps; 6e-3 after four style steps,
    Adam amplifying the noise). Deterministic kernels made both exact there, at some speed cost;
    --fast-kernels trades exact resume for it. Process-wide settings: training owns its process."""
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = not deterministic
    if deterministic:  # cuBLAS reads this when its first handle is made
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    # warn_only: an operation without a deterministic kernel warns instead of stopping the run
    torch.use_deterministic_algorithms(deterministic, warn_only=True)


def init_distributed(device: str = "auto", bf16: bool = False, deterministic: bool = True) -> Distributed:
    """Join the torchrun process group (gloo on CPU, nccl on GPU) when WORLD_SIZE > 1."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    base = resolve_device(device)
    if base.type == "cuda":
        use_deterministic_kernels(deterministic)
    if world_size == 1:
        return Distributed(0, 1, base, bf16)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if base.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise ArtforgeError(f"torchrun started more processes per node than this machine has GPUs "
                                f"({torch.cuda.device_count()}): use --nproc-per-node {torch.cuda.device_count()}, "
                                "or --device cpu for processes on the CPU")
        base = torch.device("cuda", local_rank)
        torch.cuda.set_device(base)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if base.type == "cuda" else "gloo")
    return Distributed(rank, world_size, base, bf16)


def close_distributed(context: Distributed) -> None:
    if context.enabled and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def step_generator(seed: int, step: int, stream: int = 0) -> torch.Generator:
    """A random generator that depends only on (seed, step, stream).

    Every random draw of a training step comes from here, so a resumed run, or the same run on
    more processes, sees exactly the batches and noise of an uninterrupted single-process run.
    """
    state = np.random.SeedSequence([seed, step, stream]).generate_state(2, np.uint64)
    return torch.Generator().manual_seed(int(state[0] >> np.uint64(1)))


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * model, for parameters only (buffers are recalibrated)."""
    for p_ema, p in zip(ema.parameters(), model.parameters()):
        p_ema.lerp_(p.detach(), 1.0 - decay)


def ema_decay_at(step: int, decay: float) -> float:
    # short runs would otherwise average in the random initialisation for thousands of steps
    return min(decay, (1.0 + step) / (10.0 + step))


class RunLog:
    """Training history as JSON lines (RUN/log.jsonl); on resume, lines past the step are dropped.

    A kill can cut the last line short; such a line is dropped on resume instead of failing it.
    """

    def __init__(self, path: Path, resume_step: int = 0):
        self.path = Path(path)
        if resume_step and self.path.exists():
            kept = [line for line in self.path.read_text(errors="replace").splitlines()
                    if (record := parse_record(line)) and record.get("step", resume_step + 1) <= resume_step]
            atomic_write_text(self.path, "".join(line + "\n" for line in kept))
        elif not resume_step:
            atomic_write_text(self.path, "")

    def write(self, record: dict) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")


def parse_record(line: str) -> dict | None:
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return None
    return record if isinstance(record, dict) else None


def write_run_options(run: Path, opts: Any) -> None:
    """RUN/train_options.json, written atomically; leftovers of a killed writer are removed first."""
    run.mkdir(parents=True, exist_ok=True)
    removed = remove_incomplete_checkpoints(run)
    if removed:
        log.warning("removed %d incomplete checkpoint folder(s) left in %s by an interrupted run",
                    len(removed), run / "checkpoints")
    atomic_write_text(run / OPTIONS_FILE, json.dumps(dataclasses.asdict(opts), indent=2) + "\n")
    if job := torchrun_job():
        atomic_write_text(run / TORCHRUN_FILE, json.dumps({"rdzv_id": job}) + "\n")


def torchrun_job() -> str | None:
    """The rendezvous id of the torchrun job this process is a worker of; None outside torchrun, and for
    torchrun's default id "none", which names no job in particular."""
    job = os.environ.get("TORCHELASTIC_RUN_ID")
    return job if job and job != "none" else None


def restarted_by_its_torchrun_job(run: Path) -> bool:
    """True when `run` has checkpoints written by the torchrun job this process belongs to: torchrun
    restarted the job's workers (--max-restarts) after one failed, or the job was started again with the
    same --rdzv-id. torchrun restarts workers with the first command line, which had no --resume, so they
    must resume by themselves. (TORCHELASTIC_RESTART_COUNT cannot tell: a node whose worker was still
    healthy restarts it as a "membership change" and keeps counting 0.)"""
    job = torchrun_job()
    if job is None or find_latest_checkpoint(run) is None:
        return False
    try:
        return json.loads((run / TORCHRUN_FILE).read_text()).get("rdzv_id") == job
    except (OSError, ValueError, AttributeError):
        return False


def read_run_options(run: Path, options_cls: type) -> dict[str, Any]:
    """The options a run was started with, or a one-line error saying why they cannot be used."""
    path = run / OPTIONS_FILE
    if not path.exists():
        raise ArtforgeError(f"--resume: {run} has no {OPTIONS_FILE}; it is not an artforge run")
    try:
        saved = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ArtforgeError(f"--resume: {path} is empty or corrupt; restore it or start a new run") from None
    if not isinstance(saved, dict):
        raise ArtforgeError(f"--resume: {path} is not a JSON object; restore it or start a new run")
    unknown = sorted(set(saved) - {f.name for f in dataclasses.fields(options_cls)})
    if unknown:
        raise ArtforgeError(f"--resume: {run} is not a run of this command (its options have {unknown[:3]}, "
                            f"which {options_cls.__name__} does not)")
    return saved


def resolve_options(given: dict[str, Any], options_cls: type, resumable: set[str]) -> Any:
    """Options of a run: as given for a new run; for a resume, the run's saved options updated
    with the given ones, refusing changes (outside `resumable`) that would make it another run."""
    run = Path(given["out"])
    if run.exists() and not run.is_dir():
        raise ArtforgeError(f"--out {run} is a file, not a run folder")
    if not given.get("resume") and restarted_by_its_torchrun_job(run):
        log.warning("torchrun job %s started this worker again: resuming %s from its newest checkpoint",
                    torchrun_job(), run)
        given = {**given, "resume": True}
    if not given.get("resume"):
        if find_latest_checkpoint(run) is not None:
            raise ArtforgeError(f"run folder {run} already has checkpoints; pass --resume to continue it "
                                "or choose another --out" + (f" (torchrun job {torchrun_job()} did not write them)"
                                                             if torchrun_job() else ""))
        return options_cls(**given)
    saved = read_run_options(run, options_cls)
    for key, value in given.items():
        if key not in resumable and key in saved and value != saved[key]:
            raise ArtforgeError(f"--resume: run {run} was started with {key}={saved[key]!r}; "
                                f"{key}={value!r} would make it a different run")
    return options_cls(**{**saved, **given})
