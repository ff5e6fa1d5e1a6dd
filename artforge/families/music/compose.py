"""`artforge compose`: a piece from a served music model, its events streamed from Triton as they are
made, written as MIDI with a piano roll (and a WAV with --wav); or, with --run, composed in-process."""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from artforge.checkpoint import config_from_dict
from artforge.errors import ArtforgeError
from artforge.families.music import MusicConfig
from artforge.families.music.events import EventVocab, tokens_to_notes
from artforge.families.music.render import piano_roll_png, render_wav, write_midi
from artforge.families.music.train import compose_pieces
from artforge.options import Command, Page, Sampling, ServerAddress, option, with_defaults
from artforge.registry import load_network
from artforge.serving.client import Client

BEATS_PER_BAR = 4


@dataclass(kw_only=True)
@with_defaults(top_p=0.95)
class ComposeOptions(ServerAddress, Sampling):
    model: str | None = option(None, help="music model name on the server (events streamed over gRPC)",
                               one_of="where")
    run: str | None = option(None, help="a run or checkpoint folder: compose in-process with PyTorch instead",
                             one_of="where")
    bars: int = option(8, help="length in 4/4 bars; the model may end sooner")
    out: str = option("piece.mid", help="MIDI file to write; a piano roll goes beside it (.png)")
    wav: str | None = option(None, help="also render audio to this WAV file (needs fluidsynth and a GM soundfont)")
    soundfont: str | None = option(None, help="General MIDI soundfont for --wav (default: Debian's "
                                              "fluid-soundfont-gm)")
    bpm: float = option(90.0, help="tempo of the MIDI file")
    program: int = option(0, help="General MIDI instrument, 0-127 (0 piano, 19 church organ)")


def run(args: ComposeOptions) -> None:
    if args.bars < 1 or not 0 <= args.program <= 127 or args.bpm <= 0:
        raise ArtforgeError("--bars must be at least 1, --program 0..127 and --bpm above 0")
    tokens, vocab = served_piece(args) if args.model else local_piece(args)
    notes = tokens_to_notes(tokens, vocab)
    if not notes:
        raise ArtforgeError(f"the model ended the piece before any note (seed {args.seed}): try another seed")
    out = Path(args.out)
    write_midi(notes, vocab.steps_per_beat, out, args.bpm, args.program)
    piano_roll_png(notes, vocab.steps_per_beat, out.with_suffix(".png"),
                   f"{args.model or args.run}, seed {args.seed}, {args.bars} bars")
    written = [str(out), str(out.with_suffix(".png"))]
    if args.wav:
        written.append(str(render_wav(out, Path(args.wav), args.soundfont)))
    print(f"{len(notes)} notes, {len(tokens)} events: {', '.join(written)}")


def bar_steps(args: ComposeOptions, steps_per_beat: int) -> int:
    return args.bars * BEATS_PER_BAR * steps_per_beat


def served_piece(args: ComposeOptions):
    with Client(args.url, timeout_s=args.timeout) as client:
        info = client.model(args.model)
        meta = info.metadata
        if not info.stream or "steps_per_beat" not in meta:
            raise ArtforgeError(f"model '{args.model}' is not a music model")
        vocab = EventVocab(meta["steps_per_beat"], **meta["vocab"])
        goal, waited, tokens = bar_steps(args, vocab.steps_per_beat), 0, []
        request = {"prompt": np.array([[0]], np.int64),
                   "max_tokens": np.array([[info.stream.max_new_tokens]], np.int32),
                   "temperature": np.array([[args.temperature]], np.float32),
                   "top_k": np.array([[args.top_k]], np.int32), "top_p": np.array([[args.top_p]], np.float32),
                   "seed": np.array([[args.seed]], np.int64)}
        for token in client.stream_tokens(args.model, request):  # leaving the loop cancels the rest on the server
            if token == 0:
                break
            tokens.append(token)
            if vocab.first_wait <= token < vocab.first_velocity:
                waited += token - vocab.first_wait + 1
                print(f"\rbar {min(args.bars, waited // (BEATS_PER_BAR * vocab.steps_per_beat) + 1)}/{args.bars}",
                      end="", file=sys.stderr, flush=True)
            if waited >= goal:
                break
        print(file=sys.stderr)
    return tokens, vocab


def local_piece(args: ComposeOptions):
    lm, checkpoint = load_network(args.run, expect_family="music")
    config = config_from_dict(MusicConfig, checkpoint.meta["config"], str(checkpoint.path))
    tokens = compose_pieces(lm, config, 1, args.seed, args.bars, BEATS_PER_BAR, args.temperature, args.top_p,
                            args.top_k)[0]
    return tokens, config.events


VERB = Command(
    "compose", help="compose a piece with a music model: events streamed from Triton, written as MIDI and a "
                    "piano roll (WAV with --wav)",
    description="Start a piece from nothing on a music model served on Triton; its events (note on/off, waits,\n"
                "velocity) stream in as the server makes them until --bars bars have passed or the model ends\n"
                "the piece. Writes OUT (MIDI), OUT with .png (a piano roll) and with --wav audio rendered by\n"
                "FluidSynth. The same --seed gives the same piece. --run composes in-process from a checkpoint.",
    examples="  artforge compose --model music --bars 8 --seed 3 --out piece.mid\n"
             "  artforge compose --model music --bars 16 --seed 3 --out piece.mid --wav piece.wav --program 19\n"
             "  artforge compose --run runs/music --bars 4 --out local.mid",
    options=ComposeOptions, run=run,
    # the studio's music page: the same command, its MIDI, piano roll and audio shown (audio needs FluidSynth)
    page=Page(shown=("bars", "seed", "temperature", "top_k", "top_p", "bpm", "program"),
              files={"out": "piece.mid", "wav": "piece.wav"}, button="Compose"))
