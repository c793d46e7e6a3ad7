"""Rendering MIDI to audio with FluidSynth: one synthesizer, loaded with one General MIDI soundfont, reused for
every file (starting a synthesizer and loading the soundfont costs more than rendering a short clip)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

INSTALL_HINT = (
    "install the FluidSynth library (Debian/Ubuntu: `apt-get install libfluidsynth3`; macOS: "
    "`brew install fluid-synth`) and its Python binding (`pip install pyfluidsynth`)"
)
SOUNDFONT_NAME = "TimGM6mb.sf2"  # the General MIDI soundfont that ships inside the pretty_midi package
GAIN = 0.2  # FluidSynth's master gain; low enough that eight loud parts don't clip its 16-bit output
DRUM_CHANNEL = 9  # General MIDI reserves channel 10 (0-based 9) for percussion, whatever program it is given


class SynthUnavailable(RuntimeError):
    """FluidSynth, its Python binding or the soundfont is missing; the message says how to install it."""


def default_soundfont() -> Path:
    """The General MIDI soundfont inside the installed pretty_midi package."""
    try:
        import pretty_midi
    except ImportError as err:
        raise SynthUnavailable(
            f"rendering the demo corpus needs the soundfont inside pretty_midi ({err}); "
            "`pip install pretty_midi`, or pass soundfont=<a General MIDI .sf2 file>"
        ) from err
    path = Path(pretty_midi.__file__).with_name(SOUNDFONT_NAME)
    if not path.is_file():
        raise SynthUnavailable(
            f"{path}: the General MIDI soundfont that ships with pretty_midi is missing; "
            "reinstall pretty_midi or pass soundfont=<a General MIDI .sf2 file>"
        )
    return path


def load_fluidsynth():
    """The pyfluidsynth module, or a SynthUnavailable saying what to install."""
    try:
        import fluidsynth
    except ImportError as err:  # pyfluidsynth raises ImportError itself when it can't find libfluidsynth
        what = (
            "the Python package pyfluidsynth is not installed"
            if getattr(err, "name", None) == "fluidsynth"
            else f"the FluidSynth library could not be loaded ({err})"
        )
        raise SynthUnavailable(f"rendering the demo corpus needs FluidSynth, but {what}: {INSTALL_HINT}") from err
    return fluidsynth


class Renderer:
    """Renders MIDI files to mono float32 audio at ``sample_rate`` with one reused synthesizer."""

    def __init__(self, soundfont: Path, sample_rate: int):
        if not soundfont.is_file():
            raise SynthUnavailable(f"{soundfont}: soundfont not found; pass soundfont=<a General MIDI .sf2 file>")
        fluidsynth = load_fluidsynth()
        self.sample_rate = sample_rate
        # Reverb and chorus off: their tails would carry from one file into the next.
        self.synth = fluidsynth.Synth(
            gain=GAIN, samplerate=float(sample_rate), **{"synth.reverb.active": 0, "synth.chorus.active": 0}
        )
        self.font = self.synth.sfload(str(soundfont))
        if self.font == -1:
            self.synth.delete()
            raise SynthUnavailable(f"{soundfont}: FluidSynth could not load this file as a soundfont")

    def render(self, midi: bytes, seconds: float) -> np.ndarray:
        """``(round(seconds * sample_rate),)`` float32 samples of ``midi`` (a Standard MIDI File's bytes); notes
        still sounding at the end are cut there."""
        import pretty_midi

        parsed = pretty_midi.PrettyMIDI(io.BytesIO(midi))
        channels = [c for c in range(16) if c != DRUM_CHANNEL]
        sounding = [i for i in parsed.instruments if i.notes and not i.is_drum]
        if len(sounding) > len(channels):
            raise ValueError(f"{len(sounding)} parts to render but only {len(channels)} melodic MIDI channels")
        events = []  # (sample, note-off before note-on at the same sample, channel, pitch, velocity)
        for channel, part in zip(channels, sounding):
            self.synth.program_select(channel, self.font, 0, int(part.program))
            for note in part.notes:
                events.append((self.at(note.start), 1, channel, int(note.pitch), int(note.velocity)))
                events.append((self.at(note.end), 0, channel, int(note.pitch), 0))
        total = self.at(seconds)
        chunks, position = [], 0
        for sample, is_on, channel, pitch, velocity in sorted(events):
            if sample >= total:
                break
            if sample > position:
                chunks.append(self.synth.get_samples(sample - position))
                position = sample
            if is_on:
                self.synth.noteon(channel, pitch, max(1, min(127, velocity)))
            else:
                self.synth.noteoff(channel, pitch)
        if total > position:
            chunks.append(self.synth.get_samples(total - position))
        self.synth.system_reset()  # silences every voice and resets programs before the next file
        stereo = np.concatenate(chunks).reshape(-1, 2).astype(np.float32) if chunks else np.zeros((0, 2), np.float32)
        return stereo.mean(axis=1) / 32768.0

    def at(self, seconds: float) -> int:
        return round(seconds * self.sample_rate)

    def close(self) -> None:
        self.synth.delete()
