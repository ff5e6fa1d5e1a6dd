"""The music family: MIDI <-> events <-> tokens on known cases, bad files, the piano roll and audio,
training on a tiny folder of MIDI files, and a piece composed over a Triton gRPC stream."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import mido  # a core dependency: its absence is a failure, not a skip
import numpy as np
import pytest

from artforge.errors import ArtforgeError
from artforge.families.music.events import (EventVocab, Note, notes_to_tokens, parses_back, read_notes,
                                            tokens_to_notes)

VOCAB = EventVocab(steps_per_beat=4, max_wait=8, velocity_bins=4, low=48, high=84)


def write_midi_file(path: Path, notes: list[tuple[int, float, float, int]], channel: int = 0, ticks: int = 96,
                    extra=None) -> Path:
    """notes: (pitch, start beat, end beat, velocity), written as note_on / note_on-velocity-0 pairs."""
    midi = mido.MidiFile(ticks_per_beat=ticks)
    track = mido.MidiTrack()
    midi.tracks.append(track)
    events = sorted([(s, 1, p, v) for p, s, e, v in notes] + [(e, 0, p, 0) for p, s, e, v in notes])
    last = 0
    for beat, on, pitch, velocity in events:
        tick = int(round(beat * ticks))
        track.append(mido.Message("note_on", note=pitch, velocity=velocity if on else 0, channel=channel,
                                  time=tick - last))
        last = tick
    if extra:
        midi.tracks.append(extra)
    midi.save(str(path))
    return path


def test_events_round_trip_with_long_rests_velocity_changes_and_chords():
    notes = [Note(60, 0, 4, 100), Note(64, 0, 4, 100), Note(67, 4, 6, 40), Note(72, 30, 31, 40)]
    tokens = notes_to_tokens(notes, VOCAB)
    texts = [VOCAB.texts()[t].strip() for t in tokens]
    assert texts[:4] == ["vel:3", "on:60", "on:64", "wait:4"]
    assert texts[4:8] == ["off:60", "off:64", "vel:1", "on:67"]  # offs before ons at one time; velocity changes
    assert texts[10:13] == ["wait:8"] * 3 and texts[13] == "on:72"  # a 24-step rest: waits of at most 8
    again = tokens_to_notes(tokens, VOCAB)
    assert [(n.pitch, n.start, n.end) for n in again] == [(n.pitch, n.start, n.end) for n in notes]
    assert [VOCAB.velocity_bin(n.velocity) for n in again] == [3, 3, 1, 1]


def test_midi_files_merge_tracks_drop_drums_and_quantise(tmp_path):
    drums = mido.MidiTrack([mido.Message("note_on", note=36, velocity=90, channel=9, time=0),
                            mido.Message("note_off", note=36, velocity=0, channel=9, time=48)])
    path = write_midi_file(tmp_path / "a.mid", [(60, 0, 1, 80), (62, 1.02, 1.5, 80), (100, 0, 1, 80)], extra=drums)
    notes = read_notes(path, steps_per_beat=4)
    assert [(n.pitch, n.start, n.end) for n in notes] == [(60, 0, 4), (100, 0, 4), (62, 4, 6)]  # drums gone
    tokens = notes_to_tokens(notes, VOCAB)
    assert all(VOCAB.texts()[t] != "on:100 " for t in tokens)  # pitch 100 is outside 48..84


def test_a_broken_midi_file_is_one_line_naming_it(tmp_path):
    (tmp_path / "bad.mid").write_bytes(b"MThd\x00\x00\x00\x06\x00")
    with pytest.raises(ArtforgeError, match="bad.mid is not a readable MIDI file"):
        read_notes(tmp_path / "bad.mid", 4)


def test_any_token_sequence_makes_valid_notes():
    rng = np.random.default_rng(0)
    for _ in range(20):
        tokens = rng.integers(1, VOCAB.size, 200).tolist()
        notes = tokens_to_notes(tokens, VOCAB)
        assert all(n.end > n.start and VOCAB.low <= n.pitch <= VOCAB.high for n in notes)
        assert parses_back(tokens, VOCAB) == bool(notes)
    assert not parses_back([VOCAB.first_wait] * 5, VOCAB)  # only rests: nothing to play


def test_piano_roll_midi_and_audio_files(tmp_path):
    from artforge.families.music.render import piano_roll_png, render_wav, write_midi

    notes = [Note(60, 0, 4, 100), Note(67, 4, 8, 60)]
    write_midi(notes, 4, tmp_path / "p.mid", bpm=120, program=19)
    again = mido.MidiFile(str(tmp_path / "p.mid"))
    assert [m.program for m in again.tracks[0] if m.type == "program_change"] == [19]
    assert read_notes(tmp_path / "p.mid", 4) == [Note(60, 0, 4, 100), Note(67, 4, 8, 60)]
    piano_roll_png(notes, 4, tmp_path / "p.png", "two notes")
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if not shutil.which("fluidsynth") or not Path("/usr/share/sounds/sf2/FluidR3_GM.sf2").exists():
        with pytest.raises(ArtforgeError, match="fluidsynth|soundfont"):
            render_wav(tmp_path / "p.mid", tmp_path / "p.wav")
        pytest.skip("fluidsynth and fluid-soundfont-gm are not installed: audio rendering not checked")
    import wave

    render_wav(tmp_path / "p.mid", tmp_path / "p.wav")
    with wave.open(str(tmp_path / "p.wav")) as w:
        assert w.getframerate() == 44100 and w.getnframes() > 44100 * 3  # 8 beats at 120 bpm: 4 s


def scale_piece(index: int) -> list[tuple[int, float, float, int]]:
    """An arpeggio up and down from a root that depends on the piece: a pattern a tiny model learns."""
    root = 52 + index % 7
    steps = [0, 4, 7, 12, 7, 4] * 3
    return [(root + s, i * 0.5, i * 0.5 + 0.5, 90) for i, s in enumerate(steps)]


@pytest.fixture(scope="module")
def midi_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("midi")
    for i in range(40):
        write_midi_file(folder / f"piece{i:02d}.mid", scale_piece(i))
    return folder


@pytest.fixture(scope="module")
def music_run(midi_folder, tmp_path_factory) -> Path:
    from artforge.families.music.train import train_music

    run = tmp_path_factory.mktemp("music-run")
    train_music(data=str(midi_folder), out=str(run), steps=300, eval_every=150, context=64, layers=2, heads=2,
                width=64, batch_size=16, dropout=0.0, lr=3e-3, transpose=1, heldout=0.15, sample_every=300,
                checkpoint_every=300, progress=False)
    return run


def test_training_lowers_heldout_perplexity_and_writes_samples(music_run):
    records = [json.loads(line) for line in (music_run / "log.jsonl").read_text().splitlines()]
    curve = [r["heldout_perplexity"] for r in records if "heldout_perplexity" in r]
    assert len(curve) == 3 and curve[-1] < curve[0] / 5
    samples = sorted((music_run / "samples").iterdir())
    assert {p.suffix for p in samples} == {".mid", ".png"}
    assert read_notes(next(p for p in samples if p.suffix == ".mid"), 4)


def test_compose_over_triton_equals_in_process_and_evaluate_measures(music_run, tmp_path, capsys):
    from artforge.cli import main
    from artforge.export.pipeline import export_checkpoint
    from artforge.serving.server import Server

    result = export_checkpoint(music_run, tmp_path / "repo", max_batch=2)
    assert all(r.ok for r in result.parity)
    args = ["--bars", "2", "--seed", "3", "--temperature", "0.9"]
    assert main(["compose", "--run", str(music_run), *args, "--out", str(tmp_path / "local.mid")]) == 0
    with Server(tmp_path / "repo", grpc_port=0, http_port=0, metrics_port=0) as server:
        assert main(["compose", "--model", "music", *args, "--out", str(tmp_path / "served.mid"),
                     "--url", server.grpc_url]) == 0
    assert (tmp_path / "served.png").exists()
    local, served = read_notes(tmp_path / "local.mid", 4), read_notes(tmp_path / "served.mid", 4)
    assert served == local and len(served) >= 4
    assert max(n.end for n in served) <= 2 * 4 * 4 + 4  # two bars of 4/4 (and the notes still sounding)
    capsys.readouterr()
    assert main(["evaluate", str(music_run), "--count", "4", "--out", str(tmp_path / "eval")]) == 0
    document = json.loads((tmp_path / "eval" / "evaluate.json").read_text())
    assert document["parse_back"] == 1.0 and document["heldout_perplexity"] < 10
    assert 0 <= document["composed"]["pitch_class_distance"] <= 1


def test_bach_chorales_come_out_of_music21_as_midi(tmp_path, capsys):
    pytest.importorskip("music21")
    from artforge.cli import main

    assert main(["data", "music", "--source", "bach", "--out", str(tmp_path / "bach"), "--limit", "2"]) == 0
    files = sorted((tmp_path / "bach").glob("*.mid"))
    assert len(files) == 2 and all(len(read_notes(f, 4)) > 20 for f in files)
