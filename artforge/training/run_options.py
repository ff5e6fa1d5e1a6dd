"""A resumed run's options: what the run started with, what this command may change, and the refusals."""
from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

from artforge.checkpoint import find_latest_checkpoint
from artforge.errors import ArtforgeError
from artforge.training.run_folder import OPTIONS_FILE, restarted_by_its_torchrun_job, torchrun_job

log = logging.getLogger(__name__)
# options a resumed run may change in every family (its length, cadence, machine and output); a
# family adds its own (e.g. where its data now lives), every other option must match the run's
RUN_CONTROL_CHANGES = frozenset({"steps", "sample_every", "checkpoint_every", "keep", "device", "deterministic",
                                 "progress", "resume", "out"})


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
