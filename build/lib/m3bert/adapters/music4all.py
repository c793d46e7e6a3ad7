"""Music4All (Santana et al. 2020): 109,269 30 s clips with Last.fm genres and tags, a pre-training corpus of M3BERT.

Layout as distributed::

    root/audios/<id>.mp3            # id: 16 characters, e.g. 0009fFIM1eYThaPg
    root/id_genres.csv              # tab-separated: id, genres  (genres comma-separated, e.g. "pop,rock")
    root/id_tags.csv                # tab-separated: id, tags    (tags comma-separated)
    root/id_metadata.csv, id_information.csv, id_lang.csv, ...   (not read)

Labels: ``genre`` = the first genre listed, ``tags`` = the tags, '/'-joined. (``id_metadata.csv`` has Spotify's
``valence``, an audio descriptor rather than an annotation on DEAM's scale, so it is deliberately not mapped onto the
``valence`` label.) One Track per clip named in the metadata; rows whose clip is missing are skipped and counted.
No official split.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

from m3bert.adapters.base import DatasetLayoutError, Track, clean_tag, join_tags, keep_present, require

log = logging.getLogger(__name__)


def tracks(root: str | Path) -> list[Track]:
    """One Track per Music4All clip present in ``root/audios``, id = the Music4All id, sorted, no split."""
    root = require(Path(root), "the Music4All folder (audios/, id_genres.csv, id_tags.csv)")
    audio_dir = require(root / "audios", "the Music4All clips as audios/<id>.mp3")
    genres = read_lists(root / "id_genres.csv", "genres")
    tags = read_lists(root / "id_tags.csv", "tags")
    ids = sorted(set(genres) | set(tags))
    present = keep_present({i: audio_dir / f"{i}.mp3" for i in ids}, audio_dir, log)
    out = []
    for track_id in ids:
        if track_id not in present:
            continue
        labels = {}
        if genres.get(track_id):
            labels["genre"] = genres[track_id][0]
        if tags.get(track_id):
            labels["tags"] = join_tags(clean_tag(tag) for tag in tags[track_id])
        out.append(Track(track_id, present[track_id], None, labels))
    return out


def read_lists(path: Path, column: str) -> dict[str, list[str]]:
    """id -> the comma-separated entries of ``column``, from one of Music4All's tab-separated ``id_*.csv`` files, in
    the file's order (the first genre is the main one)."""
    require(path, f"Music4All's tab-separated metadata with columns 'id' and '{column}'")
    with open(path, encoding="utf-8", newline="") as handle:
        # QUOTE_NONE: tags are free text from Last.fm and may contain quote characters.
        rows = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = [name.strip() for name in next(rows, [])]
        if "id" not in header or column not in header:
            raise DatasetLayoutError(f"{path}: expected tab-separated columns 'id' and '{column}', found {header}")
        id_at, value_at = header.index("id"), header.index(column)
        out: dict[str, list[str]] = {}
        for number, row in enumerate(rows, 2):
            if not row:
                continue
            if len(row) <= max(id_at, value_at):
                raise DatasetLayoutError(f"{path}:{number}: expected {len(header)} tab-separated fields, got {row}")
            entries = [entry.strip() for entry in row[value_at].split(",")]
            out[row[id_at].strip()] = [entry for entry in entries if entry]
    return out
