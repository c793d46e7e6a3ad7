"""Any folder of audio files, walked recursively: your own music, or a dataset with no adapter of its own.

Each audio file (see ``AUDIO_SUFFIXES``) is one track, with its path relative to the root, minus the suffix, as id.
``label_from_parent="genre"`` takes the genre from the folder holding each file, for the common
``root/<class>/<file>`` layout.

Hydra::

    _target_: m3bert.adapters.folder.tracks
    root: ${oc.env:M3BERT_AUDIO,data/my_music}
    label_from_parent: genre
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


def tracks(root: str | Path, label_from_parent: str | None = None) -> list[Track]:
    """One Track per audio file below ``root``, sorted by id, with no split.

    label_from_parent: a label name (``genre``, ``style`` or ``instrument``) set to the name of the folder directly
    holding each file; then every file must sit in a subfolder of ``root``.
    """
    root = require(Path(root), "a folder of audio files")
    if label_from_parent is not None and label_from_parent not in PARENT_LABELS:
        raise ValueError(f"folder: label_from_parent must be one of {PARENT_LABELS} or None, got {label_from_parent!r}")
    files = audio_files(root)
    if not files:
        raise DatasetLayoutError(f"{root}: no audio files found (looked recursively for {', '.join(AUDIO_SUFFIXES)})")
    out = []
    for path in files:
        labels = {}
        if label_from_parent is not None:
            if path.parent == root:
                raise DatasetLayoutError(
                    f"{path}: sits directly in {root}, so it has no folder to take its "
                    f"{label_from_parent} from; put each file in a folder named by its label"
                )
            labels[label_from_parent] = path.parent.name
        out.append(Track(relative_id(path, root), path, None, labels))
    return check_unique(out, root)
