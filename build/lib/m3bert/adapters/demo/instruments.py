"""The General MIDI instruments the demo corpus is rendered with, their families (the ``tags`` vocabulary) and the
ensembles that voice a polyphonic piece."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Instrument:
    name: str  # the ``instrument`` label of a solo clip
    program: int  # General MIDI program, 0-based
    family: str  # the tag a clip gets when this instrument sounds in it
    centre: int  # MIDI pitch in the middle of its usual (sounding) range


PIANO = Instrument("piano", 0, "keyboard", 67)
HARPSICHORD = Instrument("harpsichord", 6, "keyboard", 67)
MARIMBA = Instrument("marimba", 12, "mallet", 72)
CHURCH_ORGAN = Instrument("church_organ", 19, "organ", 64)
NYLON_GUITAR = Instrument("nylon_guitar", 24, "guitar", 59)
VIOLIN = Instrument("violin", 40, "strings", 76)
VIOLA = Instrument("viola", 41, "strings", 64)
CELLO = Instrument("cello", 42, "strings", 55)
CONTRABASS = Instrument("contrabass", 43, "strings", 43)
CHOIR = Instrument("choir_aahs", 52, "voice", 62)
TRUMPET = Instrument("trumpet", 56, "brass", 70)
TROMBONE = Instrument("trombone", 57, "brass", 55)
TUBA = Instrument("tuba", 58, "brass", 43)
FRENCH_HORN = Instrument("french_horn", 60, "brass", 60)
ALTO_SAX = Instrument("alto_sax", 65, "woodwind", 65)
OBOE = Instrument("oboe", 68, "woodwind", 76)
BASSOON = Instrument("bassoon", 70, "woodwind", 50)
CLARINET = Instrument("clarinet", 71, "woodwind", 67)
FLUTE = Instrument("flute", 73, "woodwind", 81)

# The twelve classes of the ``instrument`` task: one melodic line played by one of these.
SOLO = (
    PIANO,
    HARPSICHORD,
    MARIMBA,
    CHURCH_ORGAN,
    NYLON_GUITAR,
    VIOLIN,
    CELLO,
    TRUMPET,
    ALTO_SAX,
    OBOE,
    CLARINET,
    FLUTE,
)
# An ensemble voices each part with the member whose range centre is nearest the part's mean pitch; "mixed" gives
# each part an instrument drawn from all of them.
ENSEMBLES: dict[str, tuple[Instrument, ...]] = {
    "strings": (VIOLIN, VIOLA, CELLO, CONTRABASS),
    "choir": (CHOIR,),
    "brass": (TRUMPET, FRENCH_HORN, TROMBONE, TUBA),
    "woodwinds": (FLUTE, OBOE, CLARINET, BASSOON),
    "piano": (PIANO,),
    "organ": (CHURCH_ORGAN,),
    "mixed": (),
}
EVERY = tuple({i.program: i for i in (*SOLO, *(m for e in ENSEMBLES.values() for m in e))}.values())
BY_PROGRAM = {i.program: i for i in EVERY}
FAMILIES = tuple(sorted({i.family for i in EVERY}))

# Quarter notes per minute; every clip gets exactly one tempo tag.
SLOW_BELOW, FAST_FROM = 90, 130
TEMPO_TAGS = ("slow", "moderate", "fast")


def tempo_tag(bpm: float) -> str:
    return "slow" if bpm < SLOW_BELOW else "fast" if bpm >= FAST_FROM else "moderate"


def voice_parts(ensemble: str, part_means: list[float], rng: random.Random) -> list[Instrument]:
    """An instrument for each part (given by its mean MIDI pitch, top part first) of ``ensemble``."""
    members = ENSEMBLES[ensemble]
    if not members:
        return [rng.choice(EVERY) for _ in part_means]
    return [min(members, key=lambda m: abs(m.centre - mean)) for mean in part_means]


def octave_shift(mean_pitch: float, instrument: Instrument) -> int:
    """Semitones (a multiple of 12) that bring a line of this mean pitch nearest the instrument's range centre, as a
    player would take a soprano line down an octave on the cello."""
    return 12 * round((instrument.centre - mean_pitch) / 12)
