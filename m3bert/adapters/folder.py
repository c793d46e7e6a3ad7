"""Any folder of audio files, walked recursively: your own music, or a dataset with no adapter of its own.

Each audio file (see ``AUDIO_SUFFIXES``) is one track, with its path relative to the root, minus the suffix, as id.
``label_from_parent="genre"`` takes the genre from the folder holding each file, for the common
``root/<class>/<file>`` layout. ``labels=<csv>`` adds the columns of a table with a ``track_id`` column (ids as
above) as labels of the files it names, and a ``split`` column, if it has one, as their split.

Hydra::

    _target_: m3bert.adapters.folder.tracks
    root: ${oc.env:M3BERT_AUDIO,data/my_music}
    label_from_parent: genre
    labels: null
"""

from __future__ import annotations

from pathlib import Path

from m3bert.adapters.base import (
    AUDIO_SUFFIXES,
    DatasetLayoutError,
    Track,
    audio_files,
    check_unique,
    relative_id,
    require,
)

# The string-valued labels of the convention in base.py; a folder name can't be a number or a tag list.
PARENT_LABELS = ("genre", "style", "instrument")


def tracks(root: str | Path, label_from_parent: str | None = None, labels: str | Path | None = None) -> list[Track]:
    """One Track per audio file below ``root``, sorted by id, with no split (unless ``labels`` gives one).

    label_from_parent: a label name (``genre``, ``style`` or ``instrument``) set to the name of the folder directly
    holding each file; then every file must sit in a subfolder of ``root``.
    labels: a csv with a ``track_id`` column and label columns (empty cells: no label), and optionally ``split``;
    every id it lists must be a file below ``root``.
    """
    root = require(Path(root), "a folder of audio files")
    if label_from_parent is not None and label_from_parent not in PARENT_LABELS:
        raise ValueError(f"folder: label_from_parent must be one of {PARENT_LABELS} or None, got {label_from_parent!r}")
    files = audio_files(root)
    if not files:
        raise DatasetLayoutError(f"{root}: no audio files found (looked recursively for {', '.join(AUDIO_SUFFIXES)})")
    table = read_labels(Path(labels)) if labels is not None else {}
    out = []
    for path in files:
        track_id = relative_id(path, root)
        given = dict(table.pop(track_id, {}))
        split = given.pop("split", None)
        if label_from_parent is not None:
            if path.parent == root:
                raise DatasetLayoutError(
                    f"{path}: sits directly in {root}, so it has no folder to take its "
                    f"{label_from_parent} from; put each file in a folder named by its label"
                )
            given[label_from_parent] = path.parent.name
        out.append(Track(track_id, path, split, given))
    if table:
        raise DatasetLayoutError(
            f"{labels}: names {len(table)} track(s) with no audio file below {root}, e.g. {sorted(table)[:3]}; "
            "ids are paths below the root without the suffix"
        )
    return check_unique(out, root)


def read_labels(path: Path) -> dict[str, dict]:
    """track id -> its non-empty cells of the ``labels`` csv (other than ``track_id``)."""
    import pandas as pd

    table = pd.read_csv(require(path, "a csv of labels with a track_id column"), dtype={"track_id": str})
    if "track_id" not in table.columns:
        raise DatasetLayoutError(f"{path}: no track_id column (columns: {', '.join(table.columns)})")
    rows = table.set_index("track_id").to_dict("index")
    return {tid: {k: v for k, v in row.items() if not pd.isna(v)} for tid, row in rows.items()}
