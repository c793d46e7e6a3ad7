"""MTG-Jamendo (Bogdanov et al. 2019): 55k full tracks with genre, instrument and mood/theme tags; M3BERT pre-trains
on it and fine-tunes on its mood/theme subset.

Layout as distributed (the metadata is the ``data/`` folder of the dataset's git repository, the audio comes from
its download script; ``root/data`` is used if present, else ``root``)::

    root/raw_30s/audio/14/214.mp3                  # or 214.low.mp3 (the low-quality download)
    root/data/autotagging.tsv                      # every track, every tag
    root/data/autotagging_moodtheme.tsv            # one file per subset: _top50tags, _genre, _instrument
    root/data/splits/split-0/autotagging_moodtheme-train.tsv   # -validation.tsv, -test.tsv; split-0 ... split-4

Every tsv has a header and rows ``TRACK_ID ARTIST_ID ALBUM_ID PATH DURATION TAG TAG ...``: tab-separated with a
variable number of trailing tag fields (``genre---rock``, ``mood/theme---happy``, ``instrument---piano``), so lines
are parsed here rather than by pandas.

Labels: ``tags``. For a one-category subset (moodtheme, genre, instrument) the category prefix is dropped
(``happy``); for ``all`` and ``top50tags`` it is kept so tags of different categories stay apart, with the '/' of
``mood/theme`` written '_' so the '/'-joined tags split back cleanly (``mood_theme---happy``).

Splits: ``with_splits=True`` (fine-tuning) reads the official ``split-<split>`` train/validation/test files of the
subset and returns the tracks they list; ``with_splits=False`` (pre-training) reads the subset file, no split.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from m3bert.adapters.base import DatasetLayoutError, Track, clean_tag, join_tags, keep_present, require

log = logging.getLogger(__name__)
# subset -> (file stem, the one tag category it holds, or None for mixed categories)
SUBSETS = {
    "all": ("autotagging", None),
    "top50tags": ("autotagging_top50tags", None),
    "moodtheme": ("autotagging_moodtheme", "mood/theme"),
    "genre": ("autotagging_genre", "genre"),
    "instrument": ("autotagging_instrument", "instrument"),
}
SPLIT_FILES = {"train": "train", "valid": "validation", "test": "test"}
HEADER = ("TRACK_ID", "ARTIST_ID", "ALBUM_ID", "PATH", "DURATION")
TAG_PREFIX = "---"


def tracks(
    root: str | Path,
    subset: str = "moodtheme",
    split: int = 0,
    with_splits: bool = True,
    audio_dir: str | Path = "raw_30s/audio",
    exclude_test_of: Sequence[str] = (),
) -> list[Track]:
    """One Track per MTG-Jamendo track of ``subset`` whose audio is present; id = ``TRACK_ID`` (``track_0000214``).

    subset: all | moodtheme | top50tags | genre | instrument.
    split: which official split, ``splits/split-<split>`` (0-4), read when ``with_splits``.
    with_splits: True: the tracks of the official train/validation/test files, split set; False: every track of
        the subset file, split None.
    audio_dir: the folder holding ``NN/<id>.mp3``, relative to ``root`` (or absolute).
    exclude_test_of: subsets (e.g. ``[moodtheme, top50tags]``) whose official ``split-<split>`` test tracks are
        left out, so that a pre-training corpus never holds the audio a fine-tuning study tests on.
    """
    if subset not in SUBSETS:
        raise ValueError(f"mtg_jamendo: subset must be one of {list(SUBSETS)}, got {subset!r}")
    root = require(Path(root), "the MTG-Jamendo folder (raw_30s/audio/ and the data/ folder of tsv files)")
    audio_root = require(root / audio_dir, "the MTG-Jamendo audio tree, NN/<track number>.mp3")
    stem, category = SUBSETS[subset]
    metadata = root / "data" if (root / "data").is_dir() else root

    rows: dict[str, tuple[str, list[str], str | None, Path]] = {}  # track id -> (PATH, tags, split, tsv file)
    if with_splits:
        split_dir = require(metadata / "splits" / f"split-{split}", f"the official split folder split-{split}")
        for name, file_suffix in SPLIT_FILES.items():
            tsv = split_dir / f"{stem}-{file_suffix}.tsv"
            for track_id, path, tags in read_tsv(tsv):
                if track_id in rows:
                    raise DatasetLayoutError(
                        f"{tsv}: {track_id} is also in {rows[track_id][3]}; a track belongs to one split"
                    )
                rows[track_id] = (path, tags, name, tsv)
    else:
        tsv = metadata / f"{stem}.tsv"
        for track_id, path, tags in read_tsv(tsv):
            rows[track_id] = (path, tags, None, tsv)

    if exclude_test_of:
        unknown = [name for name in exclude_test_of if name not in SUBSETS]
        if unknown:
            raise ValueError(f"mtg_jamendo: exclude_test_of takes subsets of {list(SUBSETS)}, got {unknown}")
        split_dir = require(metadata / "splits" / f"split-{split}", f"the official split folder split-{split}")
        held_out = {
            track_id
            for name in exclude_test_of
            for track_id, _, _ in read_tsv(split_dir / f"{SUBSETS[name][0]}-{SPLIT_FILES['test']}.tsv")
        }
        left_out = [track_id for track_id in rows if track_id in held_out]
        for track_id in left_out:
            del rows[track_id]
        log.info(
            "mtg_jamendo: left out %d tracks that the %s test split%s hold",
            len(left_out),
            "/".join(exclude_test_of),
            "s" if len(exclude_test_of) > 1 else "",
        )

    present = keep_present({i: audio_file(audio_root, row[0]) for i, row in rows.items()}, audio_root, log)
    out = []
    for track_id in sorted(present):
        _, tags, name, tsv = rows[track_id]
        labels = {"tags": join_tags(tag_label(t, category, f"{tsv}: {track_id}") for t in tags)} if tags else {}
        out.append(Track(track_id, present[track_id], name, labels))
    return out


def read_tsv(path: Path) -> list[tuple[str, str, list[str]]]:
    """(TRACK_ID, PATH, tags) per row of an MTG-Jamendo tsv."""
    require(path, "an MTG-Jamendo tsv: TRACK_ID ARTIST_ID ALBUM_ID PATH DURATION TAGS... (tab-separated)")
    out = []
    with open(path, encoding="utf-8") as handle:
        header = tuple(handle.readline().rstrip("\r\n").split("\t"))
        if header[: len(HEADER)] != HEADER:
            raise DatasetLayoutError(f"{path}: expected a header starting {'<TAB>'.join(HEADER)}, got {header}")
        for number, line in enumerate(handle, 2):
            fields = line.rstrip("\r\n").split("\t")
            if fields == [""]:
                continue
            if len(fields) < len(HEADER):
                raise DatasetLayoutError(
                    f"{path}:{number}: expected at least {len(HEADER)} tab-separated fields "
                    f"(TRACK_ID ... DURATION, then tags), got {len(fields)}"
                )
            out.append((fields[0], fields[3], [tag for tag in fields[len(HEADER) :] if tag.strip()]))
    return out


def audio_file(audio_root: Path, relative: str) -> Path:
    """The audio of a tsv PATH (``14/214.mp3``): that file, or the low-quality download ``14/214.low.mp3`` where
    only that one is there."""
    path = audio_root / relative
    low = path.with_name(path.name.removesuffix(".mp3") + ".low.mp3")
    return low if not path.is_file() and low.is_file() else path


def tag_label(tag: str, category: str | None, where: str) -> str:
    """A tsv tag as a label: without its category prefix for a one-category subset, else with it, '/'-safe."""
    if category is None:
        return clean_tag(tag)
    prefix, sep, name = tag.partition(TAG_PREFIX)
    if not sep or prefix != category:
        raise DatasetLayoutError(
            f"{where}: tag {tag!r} is not of the form '{category}{TAG_PREFIX}<tag>' that "
            f"this subset's files hold; is the subset right?"
        )
    return clean_tag(name)
