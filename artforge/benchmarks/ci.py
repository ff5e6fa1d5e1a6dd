"""What `artforge bench` leaves for a CI system: JUnit XML of the baseline check, the report in GitHub's job
summary, one line per run in a history file, and the trend of that history as a picture.

    artforge bench RUN --check baseline.json --junit bench.xml --history bench-history.jsonl
    artforge bench-history bench-history.jsonl --out trend.png
"""
from __future__ import annotations

import datetime
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from artforge.benchmarks.report import Verdict, machine_line
from artforge.errors import ArtforgeError
from artforge.files import atomic_write_bytes
from artforge.options import Command, option
from artforge.plots import figure_png


def write_junit(path: Path, verdicts: list[Verdict], errors: list[str]) -> None:
    """One test case per baseline ratio (failed when it regressed past its limit) and one for failed requests."""
    suite = ElementTree.Element("testsuite", name="artforge bench", tests=str(len(verdicts) + 1),
                                failures=str(sum(not v.ok for v in verdicts) + bool(errors)))
    for v in verdicts:
        case = ElementTree.SubElement(suite, "testcase", classname="artforge.bench.ratios", name=v.name)
        if not v.ok:
            ElementTree.SubElement(case, "failure", message=v.problem())
        else:
            ElementTree.SubElement(case, "system-out").text = (f"{v.value:.4f} (baseline {v.base:.4f}, "
                                                               f"limit {v.limit:.4f}): {v.meaning}")
    case = ElementTree.SubElement(suite, "testcase", classname="artforge.bench", name="every request answered")
    if errors:
        ElementTree.SubElement(case, "failure", message="; ".join(errors)[:2000])
    atomic_write_bytes(path, ElementTree.tostring(suite, encoding="utf-8", xml_declaration=True))


def add_to_job_summary(markdown: str, verdict_lines: list[str]) -> bool:
    """Append the report (and the check's verdict) to $GITHUB_STEP_SUMMARY when GitHub Actions sets it."""
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if not summary:
        return False
    with open(summary, "a", encoding="utf-8") as f:
        f.write(markdown + ("\n" + "\n".join(verdict_lines) + "\n" if verdict_lines else "") + "\n")
    return True


def current_commit() -> str:
    """The commit being measured: $GITHUB_SHA in GitHub Actions, else git's HEAD here, else 'unknown'."""
    if os.environ.get("GITHUB_SHA"):
        return os.environ["GITHUB_SHA"]
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
    except OSError:
        return "unknown"
    return done.stdout.strip() if done.returncode == 0 else "unknown"


def append_history(path: Path, document: dict[str, Any]) -> dict[str, Any]:
    """One JSON line for this run: when, which commit, which machine and model, and its ratios."""
    entry = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
             "commit": current_commit(), "machine": machine_line(document.get("machine", {})),
             "model": document["model"]["family"], "ratios": document["ratios"]}
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:  # appending one line at a time: a crash leaves whole lines
        f.write(json.dumps(entry) + "\n")
    return entry


def read_history(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        raise ArtforgeError(f"{path}: no such history file (artforge bench --history writes it)")
    entries = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise ArtforgeError(f"{path}:{number}: not a JSON line ({e.msg})") from None
        if not isinstance(entries[-1], dict) or not isinstance(entries[-1].get("ratios"), dict):
            raise ArtforgeError(f"{path}:{number}: a history line needs 'ratios' (artforge bench --history)")
    if not entries:
        raise ArtforgeError(f"{path}: the history is empty")
    return entries


def plot_history(entries: list[dict[str, Any]], out: Path) -> Path:
    """Each ratio over the runs, relative to its first value (1 = unchanged), one line per ratio."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no display needed

    names = sorted({name for e in entries for name in e["ratios"]})
    fig = Figure(figsize=(9, 4.8))
    ax = fig.add_subplot()
    for name in names:
        runs = [(i, e["ratios"][name]) for i, e in enumerate(entries) if e["ratios"].get(name)]
        if runs:
            first = runs[0][1]
            ax.plot([i for i, _ in runs], [v / first for _, v in runs], marker="o", label=name)
    ax.set_xticks(range(len(entries)), [e.get("commit", "?")[:7] for e in entries], rotation=45, fontsize=7)
    ax.axhline(1.0, color="grey", linewidth=0.8)
    ax.set_ylabel("ratio / its first value")
    ax.set_title(f"artforge bench history: {entries[-1].get('model', '')} on {entries[-1].get('machine', '')}",
                 fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, ncol=2)
    figure_png(fig, out)
    return out


# ---- `artforge bench-history` ----
@dataclass(kw_only=True)
class HistoryOptions:
    history: str = option(help="the JSON-lines file `artforge bench --history` appends to", positional=True)
    out: str = option("bench-history.png", help="the picture to write")


def history_command(opts: HistoryOptions) -> None:
    entries = read_history(Path(opts.history))
    plot_history(entries, Path(opts.out))
    print(f"{len(entries)} runs from {entries[0].get('date', '?')} to {entries[-1].get('date', '?')}: {opts.out}")


COMMAND = Command(
    "bench-history", help="draw the ratios of `artforge bench --history` runs over time",
    description="Read the JSON lines `artforge bench --history FILE` appends (date, commit, machine, model, "
                "ratios) and draw each ratio over the runs, relative to its first value.",
    examples="  artforge bench-history benchmarks/history.jsonl --out trend.png",
    options=HistoryOptions, run=history_command)
