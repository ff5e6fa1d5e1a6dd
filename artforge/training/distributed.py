"""torchrun's process group, the device and precision of a run, and per-step randomness every rank agrees on."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from artforge.errors import ArtforgeError


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
