"""From a piece of the music21 corpus to clips ready to render: an excerpt of whole bars in one meter, a tempo, a
transposition and instruments drawn at random, the MIDI file music21 writes for it, and the facts of that MIDI file
that become the clip's labels. Runs in worker processes; needs no synthesizer.
"""

from __future__ import annotations

import bisect
import copy
import io
import itertools
import random
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from m3bert.adapters.base import join_tags
from m3bert.adapters.demo.instruments import BY_PROGRAM, ENSEMBLES, SOLO, octave_shift, tempo_tag, voice_parts
from m3bert.adapters.demo.sources import Piece

TAIL_S = 1.0  # rendered after the last beat, so the final notes decay instead of being cut
BPM_RANGE = (60, 160)  # quarter notes per minute, drawn uniformly, whatever the style
TRANSPOSE_RANGE = (-5, 6)  # semitones, drawn uniformly
MAX_PARTS = 8  # more parts than this are rare in the corpus and would crowd the MIDI channels
MIN_NOTES = 8  # an excerpt with fewer notes (a passage of rests) is not used
EXCERPT_TRIES = 8  # tempo draws tried before a clip is given up (bars too long for the clip length)
# The meter classes: time signatures with enough pieces in the chosen styles; an excerpt never spans a meter change
# and one in another meter (3/2, 3/8, 9/8, 12/8 and the trecento's rarities) is never made.
METERS = ("2/2", "2/4", "3/4", "4/2", "4/4", "6/8")
VELOCITY_BASE, VELOCITY_ACCENT = 60, 40  # MIDI velocity = base + accent * music21's beat strength (1 on a downbeat)


class UnusableClip(ValueError):
    """The MIDI file written for an excerpt can't be used as it is (no notes, or notes past the excerpt's end, from
    an oddly encoded bar); the clip is skipped and counted."""


@dataclass(frozen=True)
class Bar:
    offset: float  # quarter notes from the start of the piece
    meter: str | None  # time signature in force, e.g. "6/8"


@dataclass
class Clip:
    """A clip ready to render: its MIDI file and the facts about it."""

    track_id: str  # <kind>/<style>/<piece name>-<k>
    midi: bytes
    seconds: float  # length of the audio to render: the excerpt's beats at its tempo plus TAIL_S
    facts: dict  # labels and provenance, one row of clips.csv


@dataclass
class Outcome:
    piece: Piece
    clips: list[Clip] = field(default_factory=list)
    rejected: str | None = None  # why the piece gave no clip
    skipped: list[str] = field(default_factory=list)  # why clips of it were not made


def score_piece(piece: Piece, corpus: Path, count: int, seed: int, min_seconds: float, max_seconds: float) -> Outcome:
    """Up to ``count`` clips of ``piece``, each ``min_seconds`` to ``max_seconds`` long, from evenly spread parts of
    the piece. Deterministic for (piece, count, seed, lengths). Polyphonic pieces alternate ensemble clips (every part)
    and solo clips (the top part alone), starting with either (drawn per piece); a single-line piece gives solo
    clips."""
    from music21 import converter

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # music21 warns about every notational oddity of the encodings
        try:
            score = converter.parse(corpus / piece.source, number=piece.number, forceSource=True)
        except Exception as err:  # noqa: BLE001  (music21's parsers raise anything on a bad file; skipped, counted)
            return Outcome(piece, rejected=f"unparseable: {type(err).__name__}")
        parts = list(score.parts)
        if not parts:
            return Outcome(piece, rejected="no parts")
        if len(parts) > MAX_PARTS:
            return Outcome(piece, rejected=f"more than {MAX_PARTS} parts")
        bars = bar_table(parts[0])
        if len(bars) < 2:
            return Outcome(piece, rejected="fewer than 2 bars")
        offsets = [b.offset for b in bars] + [float(parts[0].highestTime)]
        together = bars_together(parts, offsets)
        onsets = [sorted(float(n.offset) for n in p.flatten().notes) for p in parts]
        clips, skipped = [], []
        first_solo = random.Random(f"{seed}/{piece.style}/{piece.name}").randrange(2)
        for k in range(count):
            rng = random.Random(f"{seed}/{piece.style}/{piece.name}/{k}")
            solo = len(parts) == 1 or k % 2 == first_solo
            window = pick_window(
                bars,
                offsets,
                [True] * len(bars) if solo else together,
                onsets[:1] if solo else onsets,
                rng,
                k,
                count,
                min_seconds,
                max_seconds,
            )
            if window is None:
                skipped.append(
                    f"no excerpt of whole bars in one of the meters {', '.join(METERS)} lasts "
                    f"{min_seconds:g}-{max_seconds:g} s"
                )
                continue
            try:
                clips.append(make_clip(piece, score, k, solo, *window, bars, offsets, rng))
            except UnusableClip as err:
                skipped.append(str(err))
    if not clips:
        return Outcome(piece, rejected=skipped[0] if skipped else "no clips asked for")
    return Outcome(piece, clips, skipped=skipped)


def bars_together(parts, offsets: list[float]) -> list[bool]:
    """Whether each bar of the first part has the same length in every part. Some editions have a bar too many
    beats in one part, which shifts that part's later bars; an ensemble excerpt must only hold bars of equal
    lengths, so that its parts, each restarted at the excerpt's first bar, stay together."""
    lengths = [b - a for a, b in itertools.pairwise(offsets)]
    together = [True] * len(lengths)
    for part in parts[1:]:
        own = [b.offset for b in bar_table(part)] + [float(part.highestTime)]
        own_lengths = [b - a for a, b in itertools.pairwise(own)]
        for i, length in enumerate(lengths):
            together[i] = together[i] and i < len(own_lengths) and abs(own_lengths[i] - length) < 1e-6
    return together


def bar_table(part) -> list[Bar]:
    """The bars of a music21 part with their offsets and the time signature in force."""
    from music21 import meter as m21meter
    from music21 import stream

    bars, current = [], None
    for measure in part.getElementsByClass(stream.Measure):
        signature = measure.timeSignature
        if signature is None and current is None:
            signature = measure.getContextByClass(m21meter.TimeSignature)
        if signature is not None:
            current = signature.ratioString
        bars.append(Bar(float(measure.offset), current))
    return bars


def pick_window(
    bars: list[Bar],
    offsets: list[float],
    usable: list[bool],
    onsets: list[list[float]],
    rng: random.Random,
    k: int,
    count: int,
    min_seconds: float,
    max_seconds: float,
) -> tuple[int, int, int] | None:
    """(first bar, end bar (exclusive), bpm) of an excerpt of ``usable`` bars in one meter of ``METERS`` whose length
    at the drawn tempo is within the limits and which holds at least MIN_NOTES onsets; the k-th clip of ``count``
    starts in the k-th stretch of the piece, so the clips of a piece differ. None when no tempo drawn finds one."""
    for _ in range(EXCERPT_TRIES):
        bpm = rng.randint(*BPM_RANGE)
        shortest, longest = ((s - TAIL_S) * bpm / 60 for s in (min_seconds, max_seconds))
        windows = []
        end = 0
        for start in range(len(bars)):
            if not usable[start]:
                continue
            end = max(end, start + 1)
            # The window [start, end) only grows to the right: every bar in it is usable, in the first bar's meter.
            while (
                end < len(bars)
                and usable[end]
                and bars[end].meter == bars[start].meter
                and offsets[end + 1] - offsets[start] <= longest
            ):
                end += 1
            beats = offsets[end] - offsets[start]
            notes = sum(bisect.bisect_left(o, offsets[end]) - bisect.bisect_left(o, offsets[start]) for o in onsets)
            if bars[start].meter in METERS and shortest <= beats <= longest and notes >= MIN_NOTES:
                windows.append((start, end))
        if windows:
            stretch = windows[k * len(windows) // count : (k + 1) * len(windows) // count] or windows
            start, end = rng.choice(stretch)
            return start, end, bpm
    return None


def make_clip(
    piece: Piece,
    score,
    k: int,
    solo: bool,
    start: int,
    end: int,
    bpm: int,
    bars: list[Bar],
    offsets: list[float],
    rng: random.Random,
) -> Clip:
    from music21 import bar as m21bar
    from music21 import instrument as m21instrument
    from music21 import midi, stream, tempo

    if solo:
        excerpt = stream.Score()
        excerpt.insert(0, copy.deepcopy(score.parts[0].measures(start, end, indicesNotNumbers=True)))
    else:
        excerpt = copy.deepcopy(score.measures(start, end, indicesNotNumbers=True))
    # Tempo marks and instruments of the edition would override the drawn ones; chord symbols would sound as chords;
    # key signatures don't sound, and a transposed one can pass 7 sharps, which a MIDI file can't hold.
    # Repeats are dropped so the excerpt plays straight through, as long as its bars say (music21 would expand them).
    for substream in excerpt.recurse(streamsOnly=True, includeSelf=True):
        substream.removeByClass(
            ["TempoIndication", "Instrument", "Harmony", "KeySignature", "RepeatExpression", "RepeatBracket"]
        )
    for measure in excerpt.recurse().getElementsByClass("Measure"):
        if isinstance(measure.leftBarline, m21bar.Repeat):
            measure.leftBarline = None
        if isinstance(measure.rightBarline, m21bar.Repeat):
            measure.rightBarline = None
    means = [mean_pitch(part) for part in excerpt.parts]
    shift = rng.randint(*TRANSPOSE_RANGE)
    if solo:
        soloist = rng.choice(SOLO)
        octaves = octave_shift((60.0 if means[0] is None else means[0]) + shift, soloist)
        voices, ensemble = [soloist], None
    else:
        octaves = 0
        ensemble = rng.choice(sorted(ENSEMBLES))
        voices = voice_parts(ensemble, [(60.0 if m is None else m) + shift for m in means], rng)
    excerpt.transpose(shift + octaves, inPlace=True)
    for note in excerpt.recurse().notes:
        note.volume.velocity = round(VELOCITY_BASE + VELOCITY_ACCENT * note.beatStrength)
    for part, voice in zip(excerpt.parts, voices):
        part.insert(0, m21instrument.instrumentFromMidiProgram(voice.program))
    excerpt.insert(0, tempo.MetronomeMark(number=bpm))
    data = midi.translate.streamToMidiFile(excerpt).writestr()

    beats = offsets[end] - offsets[start]
    kind = "solo" if solo else "ensemble"
    facts = {
        "track_id": f"{kind}/{piece.style}/{piece.name}-{k}",
        "kind": kind,
        "style": piece.style,
        "meter": bars[start].meter,
        **midi_facts(data, bpm, {v.program for v in voices}, beats * 60 / bpm),
        "instrument": voices[0].name if solo else None,
        "ensemble": ensemble,
        "transpose": shift,
        "octave_shift": octaves,
        "work": piece.work,
        "source": piece.source,
        "number": piece.number,
        "first_bar": start,
        "bars": end - start,
        "beats": beats,
    }
    seconds = beats * 60 / bpm + TAIL_S
    facts["seconds"] = round(seconds, 4)
    return Clip(facts["track_id"], data, seconds, facts)


def mean_pitch(part) -> float | None:
    pitches = [p.ps for n in part.recurse().notes for p in n.pitches]
    return sum(pitches) / len(pitches) if pitches else None


def midi_facts(data: bytes, bpm: int, programs: set[int], seconds: float) -> dict:
    """Labels read back from the MIDI file as written, so they describe what is rendered: ``tempo`` (its one tempo,
    quarter notes per minute), ``register`` (mean MIDI pitch of its notes), ``tags`` (families of the instruments
    that play a note, and the tempo tag), ``programs``."""
    import pretty_midi

    parsed = pretty_midi.PrettyMIDI(io.BytesIO(data))
    _, tempi = parsed.get_tempo_changes()
    if len(tempi) != 1 or abs(tempi[0] - bpm) > 0.01:  # a bug in the excerpt's cleaning, never the piece's fault
        raise RuntimeError(f"MIDI written for {bpm} bpm has tempi {list(tempi)}")
    sounding = [i for i in parsed.instruments if i.notes]
    played = sorted({int(i.program) for i in sounding})
    if not set(played) <= programs:
        raise RuntimeError(f"MIDI has programs {played}, but only {sorted(programs)} were assigned")
    pitches = [n.pitch for i in sounding for n in i.notes]
    if not pitches:
        raise UnusableClip("the MIDI file has no notes")
    if max(n.end for i in sounding for n in i.notes) > seconds + 0.01:
        raise UnusableClip("the MIDI file has notes past the excerpt's end")
    return {
        "tempo": bpm,
        "register": round(sum(pitches) / len(pitches), 3),
        "tags": join_tags([*(BY_PROGRAM[p].family for p in played), tempo_tag(bpm)]),
        "programs": " ".join(map(str, played)),
    }


def score_job(args: tuple) -> Outcome:
    """:func:`score_piece` with its arguments in one tuple, for ``Pool.imap``."""
    return score_piece(*args)
