"""Music training: next-event prediction on MIDI pieces, with held-out perplexity.

    train_music(data="bach", out="runs/music", steps=2000)

Pieces are read with mido into note events (events.py). Every training piece is also learnt moved
up and down by 1..--transpose semitones (the key is not what makes a chorale); held-out pieces (split
by file name) are measured as written. The shared token trainer (artforge/families/token_model.py) does the
rest: windows of the event stream, AdamW, held-out perplexity, resume, DDP.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from artforge.errors import ArtforgeError
from artforge.families.music import NAME, MusicConfig, build_network
from artforge.families.music.corpus import heldout, midi_files, resolve_data
from artforge.families.music.events import EventVocab, Note, notes_to_tokens, read_notes, tokens_to_notes
from artforge.families.transformer import sample_sequences
from artforge.options import option
from artforge.training.distributed import Distributed
from artforge.training.run_options import resolve_options
from artforge.training.loop import TrainCommand, train
from artforge.families.token_model import END, RESUMABLE_CHANGES, Sequences, TokenModelOptions, TokenModelTrainer
from artforge.families.music.render import piano_roll_png, write_midi


@dataclass
class MusicTrainOptions(TokenModelOptions):
    """Everything that defines a music run; written to RUN/train_options.json."""

    data: str = option(help="a folder of MIDI files (.mid, .midi; any depth), or 'bach': the chorales inside "
                            "music21 (converted to MIDI once, into ~/.cache/artforge)", required=True)
    out: str = option(help="run folder for checkpoints, samples and logs", required=True)
    context: int = option(512, help="events the model sees at once")
    steps_per_beat: int = option(4, help="time grid per quarter note (4: sixteenths)")
    transpose: int = option(3, help="also train on every piece moved up and down by 1..N semitones (0: as written)")


def train_music(**kwargs: Any) -> Path:
    """Train (or with resume=True continue) a music model; returns the last checkpoint's path."""
    return train(MusicTrainer, resolve_options(kwargs, MusicTrainOptions, RESUMABLE_CHANGES))


COMMAND = TrainCommand(
    MusicTrainOptions, train_music, help="train an event transformer on MIDI pieces (e.g. the Bach chorales)",
    description="Train a decoder-only transformer on note events (on, off, wait, velocity) of MIDI files.\n"
                "RUN gets samples/step_N.mid and .png (a piano roll), log.jsonl with the held-out\n"
                "perplexity, checkpoints/step_N/ and train_options.json.",
    examples="  artforge train music --data bach --out runs/music --steps 2000\n"
             "  artforge train music --data midi/ --out runs/piano --context 1024 --eval-every 250")


def read_pieces(files: list[Path], vocab: EventVocab, progress: bool) -> list[list[Note]]:
    pieces = []
    for path in tqdm(files, desc="reading MIDI", unit="file", disable=not progress):
        notes = read_notes(path, vocab.steps_per_beat)
        if any(vocab.low <= n.pitch <= vocab.high for n in notes):
            pieces.append(notes)
    return pieces


def transposed(notes: list[Note], shift: int) -> list[Note]:
    return [Note(n.pitch + shift, n.start, n.end, n.velocity) for n in notes]


def load_sequences(opts: MusicTrainOptions, vocab: EventVocab) -> Sequences:
    folder = resolve_data(opts.data, opts.progress)
    files = midi_files(folder)
    train_files = [f for f in files if not heldout(f, opts.heldout)]
    heldout_files = [f for f in files if heldout(f, opts.heldout)]
    if not 0 <= opts.transpose <= 12:
        raise ArtforgeError(f"--transpose {opts.transpose} must be 0..12 semitones")
    shifts = [0] + [s for k in range(1, opts.transpose + 1) for s in (k, -k)]
    train = [notes_to_tokens(transposed(p, s), vocab) for p in read_pieces(train_files, vocab, opts.progress)
             for s in shifts]
    held = [notes_to_tokens(p, vocab) for p in read_pieces(heldout_files, vocab, opts.progress)]
    return Sequences([t for t in train if t], [t for t in held if t], "pieces")


class MusicTrainer(TokenModelTrainer):
    family = NAME

    def __init__(self, opts: MusicTrainOptions, ctx: Distributed):
        import torch

        config = MusicConfig(steps_per_beat=opts.steps_per_beat, context=opts.context, layers=opts.layers,
                             heads=opts.heads, width=opts.width)
        sequences = load_sequences(opts, config.events)
        torch.manual_seed(opts.seed)
        super().__init__(config, build_network(config, opts.dropout), sequences, opts, ctx)

    def write_samples(self, path: Path) -> None:

        pieces = compose_pieces(self.lm, self.config, count=2, seed=self.opts.seed, bars=8)
        for i, tokens in enumerate(pieces):
            target = path.with_name(f"{path.name}_{i}")
            notes = tokens_to_notes(tokens, self.config.events)
            write_midi(notes, self.config.steps_per_beat, target.with_suffix(".mid"))
            piano_roll_png(notes, self.config.steps_per_beat, target.with_suffix(".png"),
                           f"step {path.name.split('_')[-1].lstrip('0') or 0}, seed {self.opts.seed + i}")


def compose_pieces(lm, config: MusicConfig, count: int, seed: int, bars: int, beats_per_bar: int = 4,
                   temperature: float = 1.0, top_p: float = 0.95, top_k: int = 0) -> list[list[int]]:
    """Pieces written in-process from nothing, each until `bars` bars of time have passed or the model
    ends it; piece i with seed `seed + i` (what `artforge compose --run` writes)."""
    vocab, steps = config.events, bars * beats_per_bar * config.steps_per_beat
    first_wait, first_velocity = vocab.first_wait, vocab.first_velocity

    def enough(tokens: list[int]) -> bool:
        waited = sum(t - first_wait + 1 for t in tokens if first_wait <= t < first_velocity)
        return waited >= steps

    return [[t for t in piece if t != END] for piece in
            sample_sequences(lm, [END], count, seed, max_tokens=64 * steps, temperature=temperature, top_p=top_p,
                             top_k=top_k, eos=END, stop=enough)]

