"""Million Song Dataset audio previews (the 30 s 7digital clips), the pre-training corpus of M3BERT.

Layout: a folder of previews named by MSD track id, usually nested by the id's 3rd-5th characters as the MSD itself
is::

    root/A/A/A/TRAAAAK128F9318786.mp3
    root/A/A/A/TRAAAAV128F421A322.mp3
    ...

Any nesting works: files are found recursively, and the track id is the MSD id at the start of the file name
(``TR`` + 16 capitals or digits), so ``TRAAAAK128F9318786.clip.mp3`` also works. Other audio files are skipped
with a warning.

Genres (optional), from a tagtraum-style ``.cls`` file (``msd_tagtraum_cd2.cls``, ``cd2c``, ``cd1``)::

    # comment lines
    TRAAAAK128F9318786<TAB>Rock
    TRAAAAV128F421A322<TAB>Pop_Rock<TAB>Electronic

The first genre on a line becomes ``genre`` (the cd2 files give a second, minority genre on some lines; it is not
used). The previews have no official split.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from m3bert.adapters.base import DatasetLayoutError, Track, audio_files, require

log = logging.getLogger(__name__)
MSD_ID = re.compile(r"^(TR[A-Z0-9]{16})(?![A-Za-z0-9])")


def tracks(root: str | Path, genre_file: str | Path | None = None, labelled_only: bool = False) -> list[Track]:
    """One Track per preview below ``root``, id = MSD track id, sorted, no split.

    genre_file: a tagtraum ``.cls`` file; tracks it lists get a ``genre`` label, others none.
    labelled_only: keep only the tracks the genre file labels (for genre fine-tuning rather than pre-training).
    """
    root = require(Path(root), "a folder of MSD previews named by track id (e.g. A/A/A/TRAAAAK128F9318786.mp3)")
    if labelled_only and genre_file is None:
        raise ValueError("msd: labelled_only=True needs a genre_file")
    files: dict[str, Path] = {}
    unnamed = []
    for path in audio_files(root):
        match = MSD_ID.match(path.name)
        if match is None:
            unnamed.append(path)
            continue
        track_id = match.group(1)
        if track_id in files:
            raise DatasetLayoutError(
                f"{root}: MSD track {track_id} has two audio files, {files[track_id]} and {path}; keep one"
            )
        files[track_id] = path
    if not files:
        raise DatasetLayoutError(f"{root}: no audio files named by an MSD track id (like TRAAAAK128F9318786.mp3)")
    if unnamed:
        log.warning(
            "%s: skipped %d audio files not named by an MSD track id (first: %s)", root, len(unnamed), unnamed[0]
        )

    genres = read_genres(Path(genre_file)) if genre_file is not None else {}
    if genres:
        unheard = sum(1 for track_id in genres if track_id not in files)
        if unheard:
            log.warning(
                "%s: %d of %d tracks in the genre file have no preview under %s; skipped",
                genre_file,
                unheard,
                len(genres),
                root,
            )
    out = []
    for track_id in sorted(files):
        if labelled_only and track_id not in genres:
            continue
        labels = {"genre": genres[track_id]} if track_id in genres else {}
        out.append(Track(track_id, files[track_id], None, labels))
    return out


def read_genres(path: Path) -> dict[str, str]:
    """MSD track id -> first genre, from a tagtraum ``.cls`` file (tab-separated, '#' comments)."""
    require(path, "a tagtraum genre file: one 'TRACK_ID<TAB>genre' per line, '#' comments")
    genres: dict[str, str] = {}
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            fields = [f.strip() for f in line.split("\t")]
            if len(fields) < 2 or not MSD_ID.match(fields[0]) or not fields[1]:
                raise DatasetLayoutError(f"{path}:{number}: expected 'TRACK_ID<TAB>genre', got {line[:80]!r}")
            genres[fields[0]] = fields[1]
    if not genres:
        raise DatasetLayoutError(f"{path}: no 'TRACK_ID<TAB>genre' lines found")
    return genres
