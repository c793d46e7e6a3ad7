"""Extended Ballroom (Marchand & Peeters 2016): about 4000 30 s excerpts from ballroomdancers.com in 13 dance styles;
M3BERT's dance-style classification task.

Layout as distributed: one folder per style, holding ``.mp3`` excerpts named by their ballroomdancers.com id::

    root/Chacha/100701.mp3
    root/Foxtrot/...
    ...
    root/Wcswing/...

Track id: ``<Style>/<id>``; label ``style`` = the folder name as published (``Chacha``, ``Viennesewaltz``, ...).
Folders that are not one of the 13 styles are ignored with a warning. The dataset has no official split:
``split="random"`` (default) draws a seeded split stratified by style; None leaves it to the prepare step.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from m3bert.adapters.base import DatasetLayoutError, Track, audio_files, check_unique, relative_id, require
from m3bert.adapters.splits import DEFAULT_FRACTIONS, split_option

log = logging.getLogger(__name__)
STYLES = (
    "Chacha",
    "Foxtrot",
    "Jive",
    "Pasodoble",
    "Quickstep",
    "Rumba",
    "Salsa",
    "Samba",
    "Slowwaltz",
    "Tango",
    "Viennesewaltz",
    "Waltz",
    "Wcswing",
)


def tracks(
    root: str | Path,
    styles: Sequence[str] | None = None,
    split: str | None = "random",
    seed: int = 0,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
) -> list[Track]:
    """Extended Ballroom tracks with ``style``, sorted by id.

    styles: the styles to keep (default all 13), e.g. to leave out the small classes.
    split: ``"random"`` (seeded, stratified by style, ``fractions`` train/valid/test) or None.
    """
    root = require(Path(root), f"the Extended Ballroom folder, one folder per style ({', '.join(STYLES)})")
    chosen = tuple(STYLES if styles is None else styles)
    unknown = [s for s in chosen if s not in STYLES]
    if unknown:
        raise ValueError(f"ballroom: unknown styles {unknown}; the 13 styles are {list(STYLES)}")

    others = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name not in STYLES)
    if others:
        log.warning("%s: ignored folders that are not Extended Ballroom styles: %s", root, ", ".join(others))
    missing = [style for style in chosen if not (root / style).is_dir()]
    if len(missing) == len(chosen):
        raise DatasetLayoutError(
            f"{root}: none of the style folders {', '.join(chosen)} is here; point root at the "
            "folder that holds Chacha/, Foxtrot/, ..."
        )
    if missing:
        log.warning("%s: style folders missing (partial download?): %s", root, ", ".join(missing))

    out = [
        Track(relative_id(path, root), path, None, {"style": style})
        for style in chosen
        if (root / style).is_dir()
        for path in audio_files(root / style)
    ]
    if not out:
        raise DatasetLayoutError(f"{root}: the style folders hold no audio files")
    out = check_unique(sorted(out, key=lambda t: t.track_id), root)
    return split_option(out, split, fractions, seed, "style", "ballroom")
