"""`artforge evaluate` on a music model: perplexity on pieces it never trained on, and its own pieces
next to real ones.

- held-out perplexity (per event): the run's held-out split of its --data, or every piece of --data
  (then pieces the model never saw);
- --count pieces composed from nothing (8 bars, temperature 1, top-p 0.95, seeds SEED...): the share
  that parse back as MIDI without error, the distance of their pitch-class histogram to the held-out
  pieces' (total variation: 0 same, 1 disjoint), and of their note density (notes per beat: the
  difference of the medians, and of the spread), with the held-out pieces against the training ones
  as the yardstick of what "close" is.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from artforge.errors import ArtforgeError
from artforge.registry import Evaluator
from artforge.checkpoint import config_from_dict
from artforge.families.music import MusicConfig
from artforge.families.music.corpus import heldout, midi_files, resolve_data
from artforge.families.music.events import (notes_per_beat, notes_to_tokens, parses_back, pitch_class_histogram,
                                            tokens_to_notes)
from artforge.families.music.train import compose_pieces, read_pieces
from artforge.families.transformer import sequence_perplexity
from artforge.registry import load_network

COMPOSE = {"bars": 8, "temperature": 1.0, "top_p": 0.95}


def evaluate_model(opts) -> dict[str, Any]:
    """The document `artforge evaluate` writes for a music model (opts: EvaluateOptions)."""

    if opts.url:
        raise ArtforgeError("evaluate a music model from its run or checkpoint (`artforge compose --model` "
                            "streams the served one)")
    lm, checkpoint = load_network(opts.source, expect_family="music")
    config = config_from_dict(MusicConfig, checkpoint.meta["config"], str(checkpoint.path))
    vocab = config.events
    training = checkpoint.meta.get("training", {})
    data = opts.data or training.get("data", "")
    if not data:
        raise ArtforgeError("the pieces to measure on are unknown: give --data")
    files = midi_files(resolve_data(data, progress=False))
    share = training.get("heldout", 0.05)
    reference_files = files if opts.data else [f for f in files if heldout(f, share)]
    trained_files = [] if opts.data else [f for f in files if not heldout(f, share)]
    reference = read_pieces(reference_files, vocab, progress=False)
    trained = read_pieces(trained_files, vocab, progress=False)
    tokens = [notes_to_tokens(p, vocab) for p in reference]
    composed = compose_pieces(lm, config, opts.count, opts.seed, COMPOSE["bars"], temperature=COMPOSE["temperature"],
                              top_p=COMPOSE["top_p"])
    composed_notes = [tokens_to_notes(t, vocab) for t in composed]
    where = (f"every piece of {data} (given with --data: never trained on)" if opts.data else
             f"the {len(reference)} pieces of {data} held out of training ({share:.0%})")
    return {"source": {"checkpoint": str(checkpoint.path), "step": checkpoint.step, "family": "music"},
            "kind": "music", "options": vars(opts).copy(), "heldout": where,
            "heldout_perplexity": sequence_perplexity(lm, [[0] + t + [0] for t in tokens]),
            "composing": {**COMPOSE, "count": opts.count, "seeds": f"{opts.seed}..{opts.seed + opts.count - 1}"},
            "parse_back": float(np.mean([parses_back(t, vocab) for t in composed])) if composed else 0.0,
            "composed": statistics(composed_notes, reference, config.steps_per_beat),
            "heldout_vs_training": statistics(reference, trained, config.steps_per_beat) if trained else None}


def statistics(pieces: list, reference: list, steps_per_beat: int) -> dict[str, Any]:
    """Pitch classes and note density of `pieces`, and their distances to `reference`'s."""

    def histogram(group):
        notes = [n for p in group for n in p]
        return pitch_class_histogram(notes)

    density = [notes_per_beat(p, steps_per_beat) for p in pieces if p]
    reference_density = [notes_per_beat(p, steps_per_beat) for p in reference if p]
    mine, theirs = histogram(pieces), histogram(reference)
    # each piece in the key that fits the reference best: training transposes pieces, so the keys differ
    any_key = [min(0.5 * np.abs(np.roll(pitch_class_histogram(p), k) - theirs).sum() for k in range(12))
               for p in pieces if p]
    return {"pieces": len(pieces), "notes": sum(len(p) for p in pieces),
            "pitch_classes": mine.round(4).tolist(),
            "pitch_class_distance": float(0.5 * np.abs(mine - theirs).sum()),
            "piece_pitch_class_distance_any_key": float(np.mean(any_key)) if any_key else None,
            "notes_per_beat_median": float(np.median(density)) if density else 0.0,
            "reference_notes_per_beat_median": float(np.median(reference_density)) if reference_density else 0.0,
            "density_distance": float(abs(np.median(density) - np.median(reference_density)))
            if density and reference_density else None}


def markdown_lines(document: dict[str, Any]) -> list[str]:
    composed, yardstick = document["composed"], document["heldout_vs_training"]
    c = document["composing"]
    lines = [f"Held-out perplexity per event: **{document['heldout_perplexity']:.2f}** on {document['heldout']}.", "",
             f"{c['count']} pieces composed from nothing ({c['bars']} bars, temperature {c['temperature']}, top-p "
             f"{c['top_p']}, seeds {c['seeds']}); {document['parse_back']:.0%} parse back as MIDI.", "",
             "| | pieces | notes | pitch-class distance | per piece, in its best key | notes per beat (median) | "
             "density distance |", "|---|---|---|---|---|---|---|",
             row("composed vs held out", composed)]
    if yardstick:
        lines.append(row("held out vs training (the yardstick)", yardstick))
    lines += ["", "Pitch-class distance: total variation between 12-bin pitch-class histograms (0 same, 1 disjoint), "
              "all notes together; per piece: each piece's own histogram turned to the key that fits the "
              "reference best, averaged (training transposes pieces, so keys differ). Density: notes per beat."]
    return lines


def row(label: str, facts: dict[str, Any]) -> str:
    return (f"| {label} | {facts['pieces']} | {facts['notes']} | {facts['pitch_class_distance']:.3f} | "
            f"{fmt(facts.get('piece_pitch_class_distance_any_key'), 3)} | {facts['notes_per_beat_median']:.2f} vs "
            f"{facts['reference_notes_per_beat_median']:.2f} | {fmt(facts['density_distance'])} |")


def fmt(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


EVALUATOR = Evaluator(evaluate_model, markdown_lines)
