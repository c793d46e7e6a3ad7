"""DEAM (Aljanaki, Yang & Soleymani 2017): 1802 songs with arousal and valence ratings; M3BERT's emotion
regression task.

Layout as distributed (``DEAM_audio.zip`` and ``DEAM_Annotations.zip`` unzipped side by side)::

    root/MEMD_audio/2.mp3
    root/annotations/annotations averaged per song/song_level/static_annotations_averaged_songs_1_2000.csv
    root/annotations/annotations averaged per song/song_level/static_annotations_averaged_songs_2000_2058.csv

The csvs have columns ``song_id, valence_mean, valence_std, arousal_mean, arousal_std`` (the second has more), with
spaces after the commas. Labels: ``arousal`` = arousal_mean, ``valence`` = valence_mean: already averaged over
raters, on DEAM's 1-9 scale (not rescaled here). One Track per annotated song; songs whose audio is missing are
skipped and counted. DEAM has no official split: ``split="random"`` (default) draws a seeded one; None leaves it
to the prepare step.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from m3bert.adapters.base import DatasetLayoutError, Track, keep_present, require
from m3bert.adapters.splits import DEFAULT_FRACTIONS, split_option

log = logging.getLogger(__name__)
ANNOTATIONS = Path("annotations", "annotations averaged per song", "song_level")
ANNOTATION_FILES = ("static_annotations_averaged_songs_1_2000.csv", "static_annotations_averaged_songs_2000_2058.csv")
COLUMNS = ("song_id", "valence_mean", "arousal_mean")


def tracks(
    root: str | Path, split: str | None = "random", seed: int = 0, fractions: Sequence[float] = DEFAULT_FRACTIONS
) -> list[Track]:
    """DEAM songs with ``arousal`` and ``valence``, id = the song id (``"2"``), sorted by id.

    split: ``"random"`` (seeded, ``fractions`` train/valid/test) or None.
    """
    root = require(Path(root), "the DEAM folder (MEMD_audio/ and annotations/)")
    audio_dir = require(root / "MEMD_audio", "DEAM's audio, MEMD_audio/<song_id>.mp3 (unzipped DEAM_audio.zip)")
    ratings = pd.concat([read_annotations(root / ANNOTATIONS / name) for name in ANNOTATION_FILES])
    repeated = ratings["song_id"][ratings["song_id"].duplicated()]
    if len(repeated):
        raise DatasetLayoutError(f"{root / ANNOTATIONS}: song {repeated.iloc[0]} is annotated twice")

    by_id = {str(row.song_id): row for row in ratings.itertuples(index=False)}
    present = keep_present({i: audio_dir / f"{i}.mp3" for i in by_id}, audio_dir, log)
    out = [
        Track(i, path, None, {"arousal": float(by_id[i].arousal_mean), "valence": float(by_id[i].valence_mean)})
        for i, path in present.items()
    ]
    return split_option(sorted(out, key=lambda t: t.track_id), split, fractions, seed, None, "deam")


def read_annotations(path: Path) -> pd.DataFrame:
    """song_id (int), valence_mean, arousal_mean (float) of one static-annotations csv; header spaces stripped."""
    require(path, f"DEAM's static song-level annotations (unzipped DEAM_Annotations.zip), columns {', '.join(COLUMNS)}")
    table = pd.read_csv(path, skipinitialspace=True)
    table.columns = [str(c).strip() for c in table.columns]
    absent = [c for c in COLUMNS if c not in table.columns]
    if absent:
        raise DatasetLayoutError(f"{path}: no column(s) {absent}; found {list(table.columns)}")
    table = table[list(COLUMNS)].apply(pd.to_numeric, errors="coerce")
    bad = table.index[table.isna().any(axis=1)]
    if len(bad):
        raise DatasetLayoutError(
            f"{path}: empty or non-numeric {', '.join(COLUMNS)} on line(s) {[int(i) + 2 for i in bad[:5]]}"
        )
    return table.astype({"song_id": int})
