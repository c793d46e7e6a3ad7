"""What a dataset adapter returns: the audio files of a dataset as its publisher distributes it, with labels and
official splits in the suite's one label convention.

Label columns (all optional, present where the dataset has them):
``genre`` (str), ``tags`` ('/'-joined str of tags), ``style`` (str), ``arousal`` and ``valence`` (float),
``instrument`` (str). Splits are ``train``, ``valid``, ``test``, or None where the dataset has no official split
(pre-training corpora; the prepare step then draws a seeded random split).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".opus", ".mp3", ".aiff", ".aif")
SPLITS = ("train", "valid", "test")
TAG_SEPARATOR = "/"


class DatasetLayoutError(ValueError):
    """The dataset folder does not look as its publisher distributes it; the message names the path and what's
    missing."""


@dataclass(frozen=True)
class Track:
    track_id: str  # unique within the dataset; names the feature file (may contain '/')
    audio: Path  # the source audio file
    split: str | None = None  # train | valid | test | None
    labels: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.split is not None and self.split not in SPLITS:
            raise ValueError(f"{self.track_id}: split must be one of {SPLITS} or None, got {self.split!r}")


def require(path: Path, what: str) -> Path:
    """``path`` if it exists, else a DatasetLayoutError saying what was expected there."""
    if not path.exists():
        raise DatasetLayoutError(f"{path}: not found; expected {what}")
    return path


def audio_files(root: Path) -> list[Path]:
    """Audio files below ``root``, sorted, by suffix (case-insensitive)."""
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())


def join_tags(tags) -> str:
    return TAG_SEPARATOR.join(sorted(dict.fromkeys(str(t) for t in tags)))
