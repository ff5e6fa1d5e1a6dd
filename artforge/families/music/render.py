"""What a piece becomes: a MIDI file, a piano-roll picture, and (with FluidSynth and a General MIDI
soundfont installed) a WAV file."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np

from artforge.errors import ArtforgeError
from artforge.families.music.events import Note, midi_bytes, notes_to_midi
from artforge.files import atomic_write_bytes
from artforge.plots import figure_png

SOUNDFONTS = (Path("/usr/share/sounds/sf2/FluidR3_GM.sf2"), Path("/usr/share/sounds/sf2/default-GM.sf2"))
RENDER_TIMEOUT_S = 120


def write_midi(notes: list[Note], steps_per_beat: int, path: Path, bpm: float = 90.0, program: int = 0) -> Path:
    atomic_write_bytes(Path(path), midi_bytes(notes_to_midi(notes, steps_per_beat, bpm, program)))
    return Path(path)


def piano_roll_png(notes: list[Note], steps_per_beat: int, path: Path, title: str = "") -> None:
    """Pitch against time in beats, bar lines every 4 beats, darker for louder notes."""
    from matplotlib.figure import Figure

    end = max((n.end for n in notes), default=steps_per_beat * 4)
    pitches = [n.pitch for n in notes] or [60]
    figure = Figure(figsize=(min(14, 2 + end / steps_per_beat / 4), 3.2))
    axes = figure.add_subplot()
    for n in notes:
        shade = 0.25 + 0.75 * n.velocity / 127
        axes.broken_barh([(n.start / steps_per_beat, (n.end - n.start) / steps_per_beat)], (n.pitch - 0.4, 0.8),
                         facecolors=(0.1, 0.3, 0.6, shade))
    for bar in np.arange(0, end / steps_per_beat + 1, 4):
        axes.axvline(bar, color="0.85", linewidth=0.6, zorder=0)
    axes.set_xlim(0, end / steps_per_beat)
    axes.set_ylim(min(pitches) - 2, max(pitches) + 2)
    axes.set_xlabel("beat")
    axes.set_ylabel("MIDI pitch")
    if title:
        axes.set_title(title, fontsize=9)
    figure_png(figure, path)


def find_soundfont(given: str | None = None) -> Path:
    if given:
        if not Path(given).is_file():
            raise ArtforgeError(f"soundfont {given} does not exist")
        return Path(given)
    found = next((p for p in SOUNDFONTS if p.is_file()), None)
    if found is None:
        raise ArtforgeError("no General MIDI soundfont found: install one (Debian: sudo apt-get install "
                            "fluid-soundfont-gm) or give --soundfont FILE.sf2")
    return found


def render_wav(midi_path: Path, wav_path: Path, soundfont: str | None = None, sample_rate: int = 44100) -> Path:
    """MIDI -> WAV with the fluidsynth program (no audio device: file output only)."""
    program = shutil.which("fluidsynth")
    if program is None:
        raise ArtforgeError("rendering audio needs FluidSynth: install it (Debian: sudo apt-get install fluidsynth "
                            "fluid-soundfont-gm)")
    font = find_soundfont(soundfont)
    wav_path = Path(wav_path)
    tmp = wav_path.with_name(wav_path.name + ".tmp.wav")
    try:
        done = subprocess.run([program, "-ni", "-q", "-F", str(tmp), "-r", str(sample_rate), str(font),
                               str(midi_path)], capture_output=True, text=True, timeout=RENDER_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        tmp.unlink(missing_ok=True)
        raise ArtforgeError(f"fluidsynth took more than {RENDER_TIMEOUT_S} s on {midi_path}") from None
    if done.returncode != 0 or not tmp.exists() or tmp.stat().st_size <= 44:
        tmp.unlink(missing_ok=True)
        raise ArtforgeError(f"fluidsynth could not render {midi_path}: {(done.stderr or done.stdout).strip()[-300:]}")
    tmp.replace(wav_path)
    return wav_path
