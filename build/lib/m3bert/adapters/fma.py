"""Free Music Archive (Defferrard et al. 2017), with its official artist-filtered split.

Layout as distributed (``fma_<subset>.zip`` and ``fma_metadata.zip`` unzipped side by side)::

    root/fma_small/000/000002.mp3       # fma_medium/, fma_large/ (30 s clips) or fma_full/ (full tracks)
    root/fma_metadata/tracks.csv

``tracks.csv`` has two header rows naming (group, column) pairs, then a ``track_id`` row, then one row per track::

    ,album,...,set,set,track,...,track,track,...
    ,comments,...,split,subset,bit_rate,...,genre_top,genres_all,...
    track_id,,,...
    2,0,...,training,small,256000,...,Hip-Hop,[21],...

Columns read: ``(set, split)`` (training / validation / test -> train / valid / test), ``(set, subset)`` (small /
medium / large; the subsets are nested, small in medium in large) and ``(track, genre_top)`` -> ``genre``. Many
medium and large tracks have no top genre: they are kept, without a ``genre`` label, for pre-training. Only tracks
whose file is on disk are returned; the rest are skipped and counted.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import pandas as pd

from m3bert.adapters.base import DatasetLayoutError, Track, keep_present, require

log = logging.getLogger(__name__)
# subset -> the (set, subset) values it includes: fma_full has every track, as full-length audio.
SUBSETS = {
    "small": ("small",),
    "medium": ("small", "medium"),
    "large": ("small", "medium", "large"),
    "full": ("small", "medium", "large"),
}
SPLITS = {"training": "train", "validation": "valid", "test": "test"}
COLUMNS = {"split": ("set", "split"), "subset": ("set", "subset"), "genre": ("track", "genre_top")}


def tracks(root: str | Path, subset: str = "small") -> list[Track]:
    """One Track per FMA track of ``subset`` present in ``root/fma_<subset>``, id = the 6-digit zero-padded track id
    (``000002``), with the official split and ``genre`` = genre_top where there is one."""
    if subset not in SUBSETS:
        raise ValueError(f"fma: subset must be one of {list(SUBSETS)}, got {subset!r}")
    root = require(Path(root), f"the FMA folder (fma_{subset}/ and fma_metadata/)")
    audio_dir = require(root / f"fma_{subset}", f"the FMA {subset} audio, NNN/NNNNNN.mp3 (unzipped fma_{subset}.zip)")
    table = read_tracks(root / "fma_metadata" / "tracks.csv")
    table = table[table["subset"].isin(SUBSETS[subset])]

    rows = {f"{track_id:06d}": row for track_id, row in zip(table.index, table.itertuples(index=False), strict=True)}
    if len(rows) < len(table):
        raise DatasetLayoutError(f"{root / 'fma_metadata' / 'tracks.csv'}: some track ids appear twice")
    present = keep_present({i: audio_dir / i[:3] / f"{i}.mp3" for i in rows}, audio_dir, log)
    out = []
    for track_id, path in present.items():
        row = rows[track_id]
        if row.split not in SPLITS:
            raise DatasetLayoutError(
                f"{root / 'fma_metadata' / 'tracks.csv'}: track {track_id} has split "
                f"{row.split!r}; expected one of {list(SPLITS)}"
            )
        labels = {"genre": row.genre} if row.genre else {}
        out.append(Track(track_id, path, SPLITS[row.split], labels))
    return sorted(out, key=lambda t: t.track_id)


def read_tracks(path: Path) -> pd.DataFrame:
    """The columns of ``tracks.csv`` the adapter needs (split, subset, genre as str; '' where empty), indexed by
    track id. Only those columns are parsed: the full file has 50-odd, many of them long free text."""
    require(path, "FMA's tracks.csv (from fma_metadata.zip), with its two header rows")
    with open(path, encoding="utf-8", newline="") as handle:
        rows = csv.reader(handle)
        groups, names, index_row = next(rows, []), next(rows, []), next(rows, [])
    header = list(zip(groups, names, strict=False))  # a short row just lacks columns
    if not index_row or index_row[0] != "track_id":
        raise DatasetLayoutError(f"{path}: expected two header rows then a 'track_id' row, as in fma_metadata.zip")
    positions = {}
    for key, column in COLUMNS.items():
        if column not in header:
            raise DatasetLayoutError(f"{path}: no column {column} in the two header rows")
        positions[key] = header.index(column)
    table = pd.read_csv(
        path, header=None, skiprows=3, usecols=[0, *positions.values()], dtype=str, keep_default_na=False
    )
    # Without a header, pandas names columns by their position in the file.
    table = table.rename(columns={position: key for key, position in positions.items()})
    ids = pd.to_numeric(table[0], errors="coerce")
    if ids.isna().any():
        raise DatasetLayoutError(f"{path}: track_id {table[0][ids.isna()].iloc[0]!r} is not a number")
    return table.drop(columns=0).set_index(ids.astype(int).rename("track_id"))
