"""GTZAN (Tzanetakis & Cook 2002): 1000 30 s excerpts, 100 in each of 10 genres; M3BERT's genre classification task.

Layout, either as distributed by marsyas (``.au`` files) or as the Kaggle copy (``.wav``, under ``Data/``)::

    root/genres/blues/blues.00000.au               # or root/genres_original/..., root/Data/genres_original/...
    root/genres/classical/classical.00000.wav      # or the genre folders directly in root

Track id: ``<genre>/<genre>.000NN`` whatever the folder or codec; label ``genre`` = the folder. (The Kaggle copy's
``jazz.00054.wav`` is known to be unreadable; the prepare step reports it as a failure.)

Splits (option ``split``):
- ``"fault_filtered"`` (default): the artist-filtered split of Kereliuk, Sturm & Larsen (2015), 443 / 197 / 290
  train / valid / test files, leaving out 70 faulty ones. It ships with the package (``gtzan_fault_filtered/``, see
  its README for provenance); ``split_dir`` points at other lists of the same form (``train.txt``, ``valid.txt``,
  ``test.txt`` or ``*_filtered.txt``, one ``genre/genre.000NN.wav`` per line). Only listed files are returned.
- ``"random"``: all files, a seeded split stratified by genre (default 80/10/10).
- None: all files, no split.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from m3bert.adapters.base import AUDIO_SUFFIXES, SPLITS, DatasetLayoutError, Track, check_unique, keep_present, require
from m3bert.adapters.splits import DEFAULT_FRACTIONS, random_split

log = logging.getLogger(__name__)
GENRES = ("blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock")
SUFFIXES = (*AUDIO_SUFFIXES, ".au")  # the original marsyas distribution is Sun .au
FAULT_FILTERED = Path(__file__).with_name("gtzan_fault_filtered")
GENRE_FOLDERS = ("genres", "genres_original", "Data/genres_original", ".")


def tracks(
    root: str | Path,
    split: str | None = "fault_filtered",
    split_dir: str | Path | None = None,
    seed: int = 0,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
) -> list[Track]:
    """GTZAN tracks with ``genre``, sorted by id; see the module docstring for ``split``.

    split_dir: a folder of split lists to use instead of the shipped fault-filtered one (``split="fault_filtered"``).
    seed, fractions: of the ``"random"`` split.
    """
    if split not in ("fault_filtered", "random", None):
        raise ValueError(f"gtzan: split must be 'fault_filtered', 'random' or None, got {split!r}")
    genres_dir = find_genres(require(Path(root), "the GTZAN folder (genres/<genre>/<genre>.000NN.wav)"))
    everything = check_unique(
        [
            Track(f"{genre}/{path.stem}", path, None, {"genre": genre})
            for genre in GENRES
            for path in sorted((genres_dir / genre).glob(f"{genre}.*"))
            if path.suffix.lower() in SUFFIXES and path.is_file()
        ],
        genres_dir,
    )
    if not everything:
        raise DatasetLayoutError(f"{genres_dir}: the genre folders hold no audio files named <genre>.000NN.<wav|au>")
    if split is None:
        return sorted(everything, key=lambda t: t.track_id)
    if split == "random":
        return random_split(everything, fractions, seed, stratify="genre")

    lists = read_split_lists(Path(split_dir) if split_dir is not None else FAULT_FILTERED)
    by_id = {t.track_id: t for t in everything}
    # A listed file that isn't on disk gets a path that doesn't exist either, so keep_present skips and counts it.
    present = keep_present(
        {i: by_id[i].audio if i in by_id else genres_dir / f"{i}.wav" for i in lists}, genres_dir, log
    )
    return sorted((Track(i, present[i], lists[i], by_id[i].labels) for i in present), key=lambda t: t.track_id)


def find_genres(root: Path) -> Path:
    """The folder holding the ten genre folders: ``root/genres``, ``root/genres_original``,
    ``root/Data/genres_original`` or ``root`` itself."""
    for name in GENRE_FOLDERS:
        candidate = root / name
        if any((candidate / genre).is_dir() for genre in GENRES):
            return candidate
    raise DatasetLayoutError(
        f"{root}: no GTZAN genre folders ({', '.join(GENRES)}) in any of "
        f"{', '.join(n for n in GENRE_FOLDERS if n != '.')} or in the folder itself"
    )


def read_split_lists(folder: Path) -> dict[str, str]:
    """track id -> split, from ``train``/``valid``/``test`` list files (``.txt`` or ``_filtered.txt``) in
    ``folder``, one ``genre/genre.000NN.wav`` per line ('#' comments allowed)."""
    require(folder, "a folder of GTZAN split lists: train.txt, valid.txt, test.txt")
    paths = {}
    for split in SPLITS:
        candidates = [folder / f"{split}.txt", folder / f"{split}_filtered.txt"]
        paths[split] = next((c for c in candidates if c.is_file()), None)
        if paths[split] is None:
            raise DatasetLayoutError(
                f"{folder}: no {split}.txt or {split}_filtered.txt; expected one GTZAN file "
                "name per line, like blues/blues.00029.wav"
            )
    out: dict[str, str] = {}
    for split, path in paths.items():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            entry = line.strip()
            if not entry or entry.startswith("#"):
                continue
            track_id = list_entry_id(entry)
            if track_id is None:
                raise DatasetLayoutError(
                    f"{path}:{number}: {entry!r} is not a GTZAN file name (like blues/blues.00029.wav)"
                )
            if track_id in out:
                raise DatasetLayoutError(f"{path}:{number}: {entry} is already in the {out[track_id]} list")
            out[track_id] = split
    return out


def list_entry_id(entry: str) -> str | None:
    """``blues/blues.00029.wav``, ``blues.00029.au`` or ``blues.00029`` -> ``blues/blues.00029``; None if the
    entry names no GTZAN file."""
    name = PurePosixPath(entry.replace("\\", "/")).name
    stem = name[: -len(Path(name).suffix)] if Path(name).suffix.lower() in SUFFIXES else name
    genre, _, number = stem.partition(".")
    if genre not in GENRES or not number.isdigit():
        return None
    return f"{genre}/{stem}"
