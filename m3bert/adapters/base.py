"""What a dataset adapter returns: the audio files of a dataset as its publisher distributes it, with labels and
official splits in the suite's one label convention.

Label columns (all optional, present where the dataset has them):
``genre`` (str), ``tags`` ('/'-joined str of tags), ``style`` (str), ``arousal`` and ``valence`` (float),
``instrument`` (str). Splits are ``train``, ``valid``, ``test``, or None where the dataset has no official split
(pre-training corpora; the prepare step then draws a seeded random split).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from m3bert.common.prepared import SPLITS  # the adapters' split names are the prepared folder's

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".opus", ".mp3", ".aiff", ".aif")
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


# Helpers shared by the adapters (added with them).


def relative_id(path: Path, root: Path) -> str:
    """A stable track id for a file found by walking ``root``: its path relative to ``root``, '/'-separated, without
    the audio suffix (``blues/blues.00000``), so the same file keeps its id on any machine and for any codec."""
    return path.relative_to(root).with_suffix("").as_posix()


def check_unique(tracks: list[Track], where: Path) -> list[Track]:
    """``tracks`` unchanged, or a DatasetLayoutError if two share an id (their feature files would overwrite each
    other), naming both audio files."""
    seen: dict[str, Path] = {}
    for track in tracks:
        if track.track_id in seen:
            raise DatasetLayoutError(
                f"{where}: track id {track.track_id!r} is given to both {seen[track.track_id]} and {track.audio}; "
                "keep one copy of each recording (e.g. not both a .wav and an .mp3)"
            )
        seen[track.track_id] = track.audio
    return tracks


def keep_present(expected: dict[str, Path], where: Path, log: logging.Logger) -> dict[str, Path]:
    """The entries of ``expected`` (track id -> the audio file its metadata names) whose file exists.

    Partial downloads are common, so a metadata row without its audio is skipped and counted in a warning rather than
    failing the run; but none present at all almost always means a wrong folder, which is an error.
    """
    present = {track_id: path for track_id, path in expected.items() if path.is_file()}
    missing = [track_id for track_id in expected if track_id not in present]
    if expected and not present:
        example = next(iter(expected.values()))
        raise DatasetLayoutError(
            f"{where}: none of the {len(expected)} audio files named by the metadata exist "
            f"(first expected: {example}); is the audio folder right?"
        )
    if missing:
        log.warning(
            "%s: skipped %d of %d metadata rows whose audio file is missing (first: %s); partial download?",
            where,
            len(missing),
            len(expected),
            ", ".join(missing[:5]),
        )
    return present


def clean_tag(tag: str) -> str:
    """A tag safe to '/'-join: surrounding whitespace removed and any '/' inside it (MTG-Jamendo's ``mood/theme``,
    Last.fm's ``singer/songwriter``) replaced by '_', so :func:`join_tags` output splits back into the same tags."""
    return tag.strip().replace(TAG_SEPARATOR, "_")
