"""How many steps does starting from another style's checkpoint (`--init`) save?

    artforge init-gain --out runs/init-gain --steps 300 --size 128

Trains a base model on style A, then style B twice for the same budget, seed and batches: from
scratch, and from the base model. For each quarter of the budget it reports the step at which the
fine-tuned run first reaches the scratch run's loss at that point (20-step running means of the
training loss), or None when it never does. OUT gets the three runs, init_gain.json and .md.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from artforge.errors import ArtforgeError
from artforge.families.style.loss_layers import StyleExperimentOptions, write_default_styles
from artforge.families.style.train import train_style
from artforge.files import atomic_write_text
from artforge.options import Command, with_defaults

SMOOTHING = 20  # steps in the running mean


def init_gain(out: Path, steps: int = 300, size: int = 128, styles: list[str] | None = None,
              progress: bool = True) -> dict[str, Any]:
    out = Path(out)
    base_style, new_style = styles or write_default_styles(out / "styles", size)
    # lite: the network docs/families/style.md's figures were measured with
    common = dict(size=size, steps=steps, sample_every=steps, checkpoint_every=steps, keep=1, progress=progress,
                  width="lite")
    train_style(out=str(out / "base"), styles=[base_style], **common)
    train_style(out=str(out / "scratch"), styles=[new_style], **common)
    train_style(out=str(out / "finetune"), styles=[new_style], init=str(out / "base"), **common)
    scratch, finetune = running_loss(out / "scratch"), running_loss(out / "finetune")
    rows = [{"scratch_step": step, "scratch_loss": scratch[step - 1],
             "finetune_steps_to_reach_it": first_step_at_or_below(finetune, scratch[step - 1])}
            for step in quarter_steps(steps)]
    document = {"steps": steps, "size": size, "base_style": str(base_style), "new_style": str(new_style),
                "smoothing_steps": SMOOTHING, "finetune_final_loss": finetune[-1], "points": rows}
    atomic_write_text(out / "init_gain.json", json.dumps(document, indent=2) + "\n")
    atomic_write_text(out / "init_gain.md", markdown(document))
    return document


def running_loss(run: Path) -> list[float]:
    losses = [json.loads(line)["loss"] for line in (run / "log.jsonl").read_text().splitlines()]
    means = []
    for i in range(len(losses)):
        window = losses[max(0, i - SMOOTHING + 1):i + 1]
        means.append(sum(window) / len(window))
    return means


def quarter_steps(steps: int) -> list[int]:
    return sorted({max(1, steps * q // 4) for q in (1, 2, 3, 4)})


def first_step_at_or_below(losses: list[float], target: float) -> int | None:
    return next((i + 1 for i, loss in enumerate(losses) if loss <= target), None)


def markdown(document: dict[str, Any]) -> str:
    lines = [f"`--init` from a model of another style vs scratch, {document['steps']} steps at {document['size']} px "
             f"({document['smoothing_steps']}-step running means of the training loss)", "",
             "| scratch step | scratch loss | fine-tuned run reaches it at step |", "|---|---|---|"]
    for p in document["points"]:
        reached = p["finetune_steps_to_reach_it"]
        lines.append(f"| {p['scratch_step']} | {p['scratch_loss']:.3f} | {reached if reached else 'not reached'} |")
    return "\n".join(lines) + "\n"


# ---- `artforge init-gain` ----
@dataclass(kw_only=True)
@with_defaults(steps=300)
class InitGainOptions(StyleExperimentOptions):
    """--style takes two images here: the base model's style, then the new one."""


def init_gain_command(opts: InitGainOptions) -> None:
    if opts.style and len(opts.style) != 2:
        raise ArtforgeError("--style takes exactly two images: the base model's style, then the new one")
    init_gain(Path(opts.out), steps=opts.steps, size=opts.size, styles=opts.style, progress=opts.progress)
    print((Path(opts.out) / "init_gain.md").read_text())


COMMAND = Command(
    "init-gain", help="measure how many steps fine-tuning a style model (--init) saves over training from scratch",
    description="Train a base style model on one style, then a second style from scratch and from the base "
                "(train style --init), with the same budget, seed and batches. Reports, for each quarter of "
                "the budget, the step at which the fine-tuned run reaches the scratch run's loss. Writes "
                "init_gain.json and init_gain.md.",
    examples="  artforge init-gain --out runs/init-gain                 # about 5 min on 2 cores\n"
             "  artforge init-gain --out runs/ig --style old.jpg --style new.jpg --steps 1000",
    options=InitGainOptions, run=init_gain_command)
