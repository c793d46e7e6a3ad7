"""RWC Music Database: Musical Instrument Sound (RWC-MDB-I-2001, Goto et al.); M3BERT's instrument classification
task.

Layout: the 12 CDs' files copied into one folder, any nesting (``RWC_I_01/011/011PFNOF.WAV``, or flat), ``.wav``
or converted to ``.flac``. A file name is 8 characters::

    011PFNOF = 01 instrument number | 1 variation (maker or player) | PF instrument code | NO style | F dynamics

Anything after the 8 characters (``091CGAFM_11.flac``, a file cut into single notes) is allowed. Track id: the path
relative to ``root`` without the suffix. Label ``instrument``: from the 2-letter instrument code, by ``INSTRUMENTS``
below, rather than from the number, because one number can hold two instruments (291 is oboe, 293 English horn).

The code table (no official machine-readable list was at hand):
- codes confirmed by RWC file names seen in public research code, with the RWC instrument numbers listed by IRCAM's
  RWC marker-file page: PF piano (01), CG classical guitar (09), AG acoustic guitar (11), VN violin (15), VC cello
  (17), CB contrabass (18), TR trumpet (21), TB trombone (22), TU tuba (23), HR horn (24), OB oboe (29), FG bassoon
  (30), CL clarinet (31), FL flute (33);
- codes read from the abbreviation and the same number list: EP electric piano (02), HC harpsichord (03),
  HM harmonica (08), EG electric guitar (13), EB electric bass (14), VL viola (16), HP harp (19), SS soprano sax (25),
  AS alto sax (26), TS tenor sax (27), BS baritone sax (28), EH English horn (29x), PC piccolo (32), RC recorder (34),
  BJ banjo (36), KT koto (38);
- codes read from the abbreviation alone: GL glockenspiel, MB marimba, XY xylophone, AC accordion, UK ukulele,
  MD mandolin, TM timpani.
Every other code (organ, shakuhachi, shamisen, pan flute, the drums and Japanese percussion, ...) is not guessed:
with ``unknown="code"`` (default) its label is the raw code (``"SK"``) and a warning lists them; with
``unknown="error"`` it is a DatasetLayoutError. Extend ``INSTRUMENTS`` once the codes are checked against the
database's own documentation.

No official split: ``split="random"`` (default) draws a seeded split stratified by instrument. Note that the files
of one physical instrument (same number and variation) then spread over the splits.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path

from m3bert.adapters.base import DatasetLayoutError, Track, audio_files, check_unique, relative_id, require
from m3bert.adapters.splits import DEFAULT_FRACTIONS, split_option

log = logging.getLogger(__name__)
# number (2 digits), variation (1 digit), instrument code, playing style, dynamics; anything may follow.
RWC_NAME = re.compile(r"^(\d{2})(\d)([A-Z0-9]{2})([A-Z0-9]{2})([A-Z0-9])(?![A-Z0-9])")
INSTRUMENTS = {
    "PF": "piano",
    "EP": "electric piano",
    "HC": "harpsichord",
    "GL": "glockenspiel",
    "MB": "marimba",
    "XY": "xylophone",
    "AC": "accordion",
    "HM": "harmonica",
    "CG": "classical guitar",
    "UK": "ukulele",
    "AG": "acoustic guitar",
    "MD": "mandolin",
    "EG": "electric guitar",
    "EB": "electric bass",
    "BJ": "banjo",
    "KT": "koto",
    "VN": "violin",
    "VL": "viola",
    "VC": "cello",
    "CB": "contrabass",
    "HP": "harp",
    "TM": "timpani",
    "TR": "trumpet",
    "TB": "trombone",
    "TU": "tuba",
    "HR": "horn",
    "SS": "soprano sax",
    "AS": "alto sax",
    "TS": "tenor sax",
    "BS": "baritone sax",
    "OB": "oboe",
    "EH": "english horn",
    "FG": "bassoon",
    "CL": "clarinet",
    "PC": "piccolo",
    "FL": "flute",
    "RC": "recorder",
}
UNKNOWN = ("code", "error")


def tracks(
    root: str | Path,
    unknown: str = "code",
    split: str | None = "random",
    seed: int = 0,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
) -> list[Track]:
    """RWC-MDB-I files with ``instrument``, sorted by id.

    unknown: what a code missing from ``INSTRUMENTS`` becomes: ``"code"`` (the raw code as label) or ``"error"``.
    split: ``"random"`` (seeded, stratified by instrument, ``fractions`` train/valid/test) or None.
    """
    if unknown not in UNKNOWN:
        raise ValueError(f"rwc: unknown must be one of {UNKNOWN}, got {unknown!r}")
    root = require(Path(root), "the RWC-MDB-I files, named like 011PFNOF.wav")
    files = audio_files(root)
    if not files:
        raise DatasetLayoutError(f"{root}: no audio files; expected RWC-MDB-I files named like 011PFNOF.wav")
    out, unmapped = [], set()
    for path in files:
        match = RWC_NAME.match(path.name.upper())
        if match is None:
            raise DatasetLayoutError(
                f"{path}: not an RWC-MDB-I file name (3 digits, instrument code, playing "
                "style, dynamics, like 011PFNOF.wav)"
            )
        code = match.group(3)
        if code not in INSTRUMENTS:
            if unknown == "error":
                raise DatasetLayoutError(
                    f"{path}: instrument code {code!r} is not in rwc.INSTRUMENTS; add it, or "
                    "pass unknown='code' to use the raw code as label"
                )
            unmapped.add(code)
        out.append(Track(relative_id(path, root), path, None, {"instrument": INSTRUMENTS.get(code, code)}))
    if unmapped:
        log.warning(
            "%s: instrument codes without a name in rwc.INSTRUMENTS, labelled by the raw code: %s",
            root,
            ", ".join(sorted(unmapped)),
        )
    out = check_unique(sorted(out, key=lambda t: t.track_id), root)
    return split_option(out, split, fractions, seed, "instrument", "rwc")
