"""A run folder's own files: the log (log.jsonl), the options it was started with, and the torchrun job writing it."""
from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import Any

from artforge.checkpoint import find_latest_checkpoint, remove_incomplete_checkpoints
from artforge.files import atomic_write_text

log = logging.getLogger(__name__)
OPTIONS_FILE = "train_options.json"
TORCHRUN_FILE = "torchrun.json"  # the torchrun job that writes the run, so its restarts resume it


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
