"""Symbolic music as tokens: MIDI files <-> note events <-> token ids (Performance-RNN-style events).

A piece is a sequence of events on a grid of `steps_per_beat` per quarter note:
- wait:N   advance time by N grid steps (1..max_wait; longer rests are several waits),
- vel:V    the velocity bin of the notes that follow (only written when it changes),
- on:P     a note of pitch P starts, off:P it ends (P in low..high; offs before ons at one time).
All channels are merged, drums (channel 10) dropped, notes outside the range dropped; a piece's
tempo is not kept (output plays at --bpm). MIDI is read and written with mido.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from artforge.errors import ArtforgeError

DRUM_CHANNEL = 9


@dataclass(frozen=True)
class Note:
    pitch: int
    start: int  # grid steps
    end: int
    velocity: int  # 1..127


@dataclass(frozen=True)
class EventVocab:
    """Token ids: 0 end of piece, then waits, velocity bins, note-ons, note-offs."""

    steps_per_beat: int = 4
    max_wait: int = 16
    velocity_bins: int = 8
    low: int = 21  # A0
    high: int = 108  # C8

    @property
    def pitches(self) -> int:
        return self.high - self.low + 1

    @property
    def first_wait(self) -> int:
        return 1

    @property
    def first_velocity(self) -> int:
        return self.first_wait + self.max_wait

    @property
    def first_on(self) -> int:
        return self.first_velocity + self.velocity_bins

    @property
    def first_off(self) -> int:
        return self.first_on + self.pitches

    @property
    def size(self) -> int:
        return self.first_off + self.pitches

    def texts(self) -> tuple[str, ...]:
        """What each token id is, as streamed to clients: 'wait:4 ', 'vel:5 ', 'on:60 ', 'off:60 '."""
        return ("",
                *(f"wait:{n} " for n in range(1, self.max_wait + 1)),
                *(f"vel:{v} " for v in range(self.velocity_bins)),
                *(f"on:{p} " for p in range(self.low, self.high + 1)),
                *(f"off:{p} " for p in range(self.low, self.high + 1)))

    def velocity_bin(self, velocity: int) -> int:
        return min(self.velocity_bins - 1, (velocity - 1) * self.velocity_bins // 127)

    def bin_velocity(self, index: int) -> int:
        return int(round((index + 0.5) * 127 / self.velocity_bins))


def read_notes(path: Path, steps_per_beat: int) -> list[Note]:
    """Every note of a MIDI file on the grid (all tracks, drums dropped); a one-line error if it does not parse."""
    import mido

    try:
        midi = mido.MidiFile(str(path))
    except (OSError, EOFError, ValueError, KeyError, IndexError) as e:
        raise ArtforgeError(f"{path} is not a readable MIDI file: {e}") from e
    if midi.type == 2:
        raise ArtforgeError(f"{path} is a type-2 MIDI file (independent patterns), which artforge does not read")
    ticks = midi.ticks_per_beat or 480
    notes, sounding, now = [], {}, 0
    for message in mido.merge_tracks(midi.tracks):
        now += message.time
        if message.type not in ("note_on", "note_off") or message.channel == DRUM_CHANNEL:
            continue
        key = (message.channel, message.note)
        step = int(round(now * steps_per_beat / ticks))
        if message.type == "note_on" and message.velocity > 0:
            if key in sounding:  # re-struck before its off: end the first one here
                notes.append(finish(key, sounding.pop(key), step))
            sounding[key] = (step, message.velocity)
        elif key in sounding:
            notes.append(finish(key, sounding.pop(key), step))
    end = int(round(now * steps_per_beat / ticks))
    notes += [finish(key, started, end) for key, started in sounding.items()]
    return sorted(notes, key=lambda n: (n.start, n.pitch))


def finish(key: tuple[int, int], started: tuple[int, int], end: int) -> Note:
    start, velocity = started
    return Note(key[1], start, max(end, start + 1), velocity)  # a note shorter than a step lasts one step


def notes_to_tokens(notes: list[Note], vocab: EventVocab) -> list[int]:
    """Events for notes within the vocabulary's range, from the first note's start."""
    notes = [n for n in notes if vocab.low <= n.pitch <= vocab.high]
    if not notes:
        return []
    origin = min(n.start for n in notes)
    events = sorted([(n.end - origin, 0, n.pitch, 0) for n in notes] + [(n.start - origin, 1, n.pitch, n.velocity)
                                                                        for n in notes])
    tokens, now, velocity_bin = [], 0, None
    for time, is_on, pitch, velocity in events:
        while time > now:
            wait = min(vocab.max_wait, time - now)
            tokens.append(vocab.first_wait + wait - 1)
            now += wait
        if is_on:
            bin_ = vocab.velocity_bin(velocity)
            if bin_ != velocity_bin:
                tokens.append(vocab.first_velocity + bin_)
                velocity_bin = bin_
            tokens.append(vocab.first_on + pitch - vocab.low)
        else:
            tokens.append(vocab.first_off + pitch - vocab.low)
    return tokens


def tokens_to_notes(tokens: list[int], vocab: EventVocab) -> list[Note]:
    """Notes from events; a note never switched off ends at the last time, a stray off is ignored."""
    notes, sounding, now, velocity = [], {}, 0, vocab.bin_velocity(vocab.velocity_bins // 2)
    for token in tokens:
        if vocab.first_wait <= token < vocab.first_velocity:
            now += token - vocab.first_wait + 1
        elif vocab.first_velocity <= token < vocab.first_on:
            velocity = vocab.bin_velocity(token - vocab.first_velocity)
        elif vocab.first_on <= token < vocab.first_off:
            pitch = token - vocab.first_on + vocab.low
            if pitch in sounding:  # struck again while sounding: the first one ends here
                start, v = sounding.pop(pitch)
                notes.append(Note(pitch, start, max(now, start + 1), v))
            sounding[pitch] = (now, velocity)
        elif vocab.first_off <= token < vocab.size:
            pitch = token - vocab.first_off + vocab.low
            if pitch in sounding:
                start, v = sounding.pop(pitch)
                notes.append(Note(pitch, start, max(now, start + 1), v))
    notes += [Note(p, start, max(now, start + 1), v) for p, (start, v) in sounding.items()]
    return sorted(notes, key=lambda n: (n.start, n.pitch))


def notes_to_midi(notes: list[Note], steps_per_beat: int, bpm: float = 90.0, program: int = 0):
    """A type-0 mido.MidiFile at `bpm` on one channel with a General MIDI `program` (0: piano)."""
    import mido

    ticks = 480
    midi = mido.MidiFile(type=0, ticks_per_beat=ticks)
    track = mido.MidiTrack()
    midi.tracks.append(track)
    track.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm), time=0))
    track.append(mido.Message("program_change", program=program, time=0))
    events = sorted([(n.end, 0, n.pitch, 0) for n in notes] + [(n.start, 1, n.pitch, n.velocity) for n in notes])
    last = 0
    for step, is_on, pitch, velocity in events:
        tick = step * ticks // steps_per_beat
        kind = "note_on" if is_on else "note_off"
        track.append(mido.Message(kind, note=pitch, velocity=velocity if is_on else 0, time=tick - last))
        last = tick
    track.append(mido.MetaMessage("end_of_track", time=0))
    return midi


def midi_bytes(midi) -> bytes:
    buffer = io.BytesIO()
    midi.save(file=buffer)
    return buffer.getvalue()


def parses_back(tokens: list[int], vocab: EventVocab) -> bool:
    """Do the tokens make a MIDI file that mido reads back with the same notes (and at least one)?"""
    import mido

    notes = tokens_to_notes(tokens, vocab)
    if not notes:
        return False
    try:
        again = mido.MidiFile(file=io.BytesIO(midi_bytes(notes_to_midi(notes, vocab.steps_per_beat))))
    except (OSError, EOFError, ValueError):
        return False
    ons = sum(1 for m in again.tracks[0] if m.type == "note_on" and m.velocity > 0)
    return ons == len(notes)


def pitch_class_histogram(notes: list[Note]) -> np.ndarray:
    counts = np.bincount([n.pitch % 12 for n in notes], minlength=12).astype(np.float64)
    return counts / max(counts.sum(), 1.0)


def notes_per_beat(notes: list[Note], steps_per_beat: int) -> float:
    if not notes:
        return 0.0
    span = max(n.end for n in notes) - min(n.start for n in notes)
    return len(notes) * steps_per_beat / max(span, 1)
