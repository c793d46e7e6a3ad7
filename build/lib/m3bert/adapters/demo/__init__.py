"""A labelled demo corpus rendered from real compositions that ship inside the music21 package, so the whole suite
(prepare, pre-train, fine-tune on the paper's five task types) runs without downloading anything.

``tracks(root, size="demo_small" | "demo", seed=0, ...)`` builds the corpus into ``root`` the first time (see
:mod:`m3bert.adapters.demo.build` for the files) and reuses it afterwards; ``conf/dataset/demo.yaml`` and
``demo_small.yaml`` point ``python -m m3bert.prepare`` at it. Building needs music21, pretty_midi (for its General
MIDI soundfont), pyfluidsynth and the FluidSynth library.

How a clip is made
    A piece of one of seven styles (:mod:`.sources`) is parsed with music21; an excerpt of whole bars in one meter
    is cut from it (11 s up to 13 s for ``demo_small``, up to 30 s for ``demo``, a 1 s tail included); a tempo
    (60-160 quarter notes per minute), a transposition (-5..+6 semitones) and the instruments are drawn at random
    and recorded; music21 writes the MIDI file (note velocities follow the metric accent, so the meter is heard);
    FluidSynth renders it with the soundfont inside pretty_midi (22.05 kHz mono, reverb off, peak-normalised).

Two kinds of clip, told apart by the track id's first component
    ``ensemble/<style>/<piece>-<k>``: every part of a polyphonic piece, voiced by one ensemble: strings, choir,
    brass, woodwinds, piano, organ (each part gets the member nearest its range) or mixed (any instrument per part).
    ``solo/<style>/<piece>-<k>``: the top part alone (the melody of a folk tune, the soprano of a chorale, the first
    violin of a quartet), played by one of twelve instruments and moved by octaves towards that instrument's range.
    Polyphonic pieces give both kinds in turn; fiddle tunes and folk songs, which are single lines, give solo clips.

Labels (every clip has the first five; ``instrument`` is None on ensemble clips)
    ``style`` (multiclass): the collection: bach_chorale, palestrina_mass, monteverdi_madrigal, trecento,
    classical_quartet (Haydn, Mozart, Beethoven), fiddle_tune (Ryan's Mammoth Collection), essen_folksong.
    ``tags`` (multilabel, '/'-joined): the families of the instruments that play a note (keyboard, mallet, organ,
    guitar, strings, voice, brass, woodwind) and one tempo tag: slow (< 90 bpm), moderate, fast (>= 130 bpm).
    ``meter`` (multiclass, the rhythm task): the time signature of the excerpt as notated: 2/2, 2/4, 3/4, 4/2, 4/4,
    6/8. Excerpts never span a meter change; rarer meters (3/2, 3/8, 9/8, 12/8, ...) are not used.
    ``tempo`` (regression): quarter notes per minute of the rendering (so a 6/8 jig at 150 has 50 bars a minute).
    ``register`` (regression): mean MIDI pitch of the notes of the rendered MIDI file.
    ``instrument`` (multiclass, solo clips): piano, harpsichord, marimba, church_organ, nylon_guitar, violin,
    cello, trumpet, alto_sax, oboe, clarinet, flute.

Splits
    By work, never by clip: all clips of a work (a Bach cantata's chorales, a Palestrina mass's movements, a
    quartet's movements; otherwise the piece) are in one split. Each style's works are split on their own (80/10/10
    by default), at least one work per split, so every style is in train, valid and test.

Sizes
    ``demo_small`` (tests): 3 pieces per style, one clip each: 21 clips, 4 min of audio, built in 15-20 s on two
    cores. ``demo`` (pre-training): 36 pieces per style, two clips each (three from the string quartets, which are
    few): 521 clips, 3.3 h of audio (510 MB), built in 2.5 min with two worker processes on two idle cores (6 min
    on busy ones).

Determinism
    Every draw comes from a generator seeded by (seed, piece, clip), and pieces are taken in a seeded order, so a seed
    gives the same clips, labels and split whatever the number of workers (and, in our runs, byte-identical audio).
"""

from m3bert.adapters.demo.build import tracks

__all__ = ["tracks"]
