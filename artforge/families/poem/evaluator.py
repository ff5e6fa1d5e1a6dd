"""`artforge evaluate` on a poem model: perplexity on poems it never trained on, and what its own
poems look like next to real ones.

- held-out perplexity (per character): the run's held-out split of its --data, or every poem of
  --data (then they must be poems the model never saw);
- --count poems written from nothing (temperature 0.8, top-p 0.9, seeds SEED...), next to the held-out
  poems: length, the share the model ended itself, the form of classical Chinese poems (form.py),
  and the share of written verses copied verbatim from the training poems (memorisation: a small
  corpus is easy to recite).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from artforge.errors import ArtforgeError
from artforge.families.poem.form import VERSE_END, form_report
from artforge.registry import Evaluator
from artforge.families.poem.corpus import heldout, read_text_poems
from artforge.families.poem.train import heldout_perplexity, write_poems
from artforge.families.poem.write import checkpoint_config
from artforge.registry import load_network

WRITE = {"temperature": 0.8, "top_p": 0.9}


def evaluate_model(opts) -> dict[str, Any]:
    """The document `artforge evaluate` writes for a poem model (opts: EvaluateOptions)."""

    if opts.url:
        raise ArtforgeError("evaluate a poem model from its run or checkpoint (the served model is the same "
                            "network: `artforge write --model` streams it)")
    lm, checkpoint = load_network(opts.source, expect_family="poem")
    config = checkpoint_config(checkpoint)
    training = checkpoint.meta.get("training", {})
    data = opts.data or training.get("data", "")
    if not data or not Path(data).exists():
        raise ArtforgeError(f"the poems to measure on were not found ({data or 'no --data'}): give --data")
    poems = list(read_text_poems(Path(data)))
    if opts.data:
        reference, trained, where = poems, [], f"every poem of {data} (given with --data: never trained on)"
    else:
        share = training.get("heldout", 0.05)
        reference = [p for p in poems if heldout(p, share)]
        trained = [p for p in poems if not heldout(p, share)]
        where = f"the {len(reference)} poems of {data} held out of training ({share:.0%})"
    written = write_poems(lm, config, opts.count, opts.seed, **WRITE)
    return {"source": {"checkpoint": str(checkpoint.path), "step": checkpoint.step, "family": "poem"},
            "kind": "poems", "options": vars(opts).copy(), "heldout": where,
            "heldout_perplexity": heldout_perplexity(lm, config, reference),
            "sampling": {**WRITE, "count": opts.count, "seeds": f"{opts.seed}..{opts.seed + opts.count - 1}"},
            "written": poem_facts(written, max_length=2 * config.context, trained=trained),
            "real": poem_facts(reference, trained=trained),
            "examples": written[:4]}


def poem_facts(poems: list[str], max_length: int = 0, trained: list[str] | None = None) -> dict[str, Any]:
    lengths = [len(p) for p in poems]
    facts = {"poems": len(poems), "mean_characters": float(np.mean(lengths)) if lengths else 0.0,
             "form": form_report(poems)}
    if max_length:
        facts["ended_by_model"] = float(np.mean([n < max_length for n in lengths])) if lengths else 0.0
    if trained:
        facts["verses_copied"] = copied_share(poems, trained)
    return facts


def verses(poem: str) -> list[str]:
    return [v.strip() for v in VERSE_END.split(poem) if len(v.strip()) >= 3]


def copied_share(poems: list[str], trained: list[str]) -> float:
    """Share of the poems' verses (3 characters or more) that appear verbatim in the training poems."""
    known = {v for p in trained for v in verses(p)}
    written = [v for p in poems for v in verses(p)]
    return sum(v in known for v in written) / len(written) if written else 0.0


def markdown_lines(document: dict[str, Any]) -> list[str]:
    written, real = document["written"], document["real"]
    form_w, form_r = written["form"], real["form"]
    sampling = document["sampling"]
    lines = [f"Held-out perplexity per character: **{document['heldout_perplexity']:.2f}** on {document['heldout']}.",
             "",
             f"{sampling['count']} poems written from nothing (temperature {sampling['temperature']}, top-p "
             f"{sampling['top_p']}, seeds {sampling['seeds']}) next to the held-out poems:", "",
             "| | poems | mean characters | ended by the model | regular form | verses matching the first | "
             "verses copied from training |", "|---|---|---|---|---|---|---|",
             f"| written | {written['poems']} | {written['mean_characters']:.1f} | "
             f"{written.get('ended_by_model', 0):.0%} | {form_w['regular']:.0%} | {form_w['verses_matching_first']:.0%}"
             f" | {percent(written.get('verses_copied'))} |",
             f"| real (held out) | {real['poems']} | {real['mean_characters']:.1f} | | {form_r['regular']:.0%} | "
             f"{form_r['verses_matching_first']:.0%} | {percent(real.get('verses_copied'))} |", "",
             "Regular form: 4 or 8 verses (jueju, lüshi) all of 5 or 7 characters; it applies to classical Chinese "
             "poems only.", "", "Examples:", ""]
    for poem in document["examples"]:
        lines += ["```", poem.strip(), "```"]
    return lines


def percent(value: float | None) -> str:
    return "—" if value is None else f"{value:.0%}"


EVALUATOR = Evaluator(evaluate_model, markdown_lines)
