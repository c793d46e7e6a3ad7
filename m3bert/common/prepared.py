"""The prepared-folder layout: what ``python -m m3bert.prepare`` writes and every reader of it finds, named once.

    <folder>/manifest.csv                  every clip (track_id, file_path, length, split, labels...)
    <folder>/train.csv, valid.csv, test.csv the clips of each split (same columns)
    <folder>/features/<track id>.npy       (frames, feature_dim) per clip, the manifests' file_path
    <folder>/features/<track id>.stats.npy (2, feature_dim): the clip's per-channel mean and scale (unnormalised)
    <folder>/normalization.npz             per-channel mean and std of the training split (normalization=dataset)
    <folder>/validated.json                which manifests' files passed the checks (m3bert.data.validation)
    <folder>/summary.json                  counts, hours, failures by reason, wall time
    <folder>/failures.csv                  clips that could not be used, with the reason

A packed folder (:mod:`m3bert.data.packing`) has the same manifests, pointing into ``shards/`` instead, and keeps
the clip statistics in one ``clip_stats.npy`` (clips, 2, feature_dim), a clip's row in its ``stats_row`` column.
"""

from __future__ import annotations

from pathlib import Path

SPLITS = ("train", "valid", "test")
MANIFEST = "manifest.csv"
FEATURES = "features"
SHARDS = "shards"
NORMALIZATION = "normalization.npz"
VALIDATED = "validated.json"
SUMMARY = "summary.json"
FAILURES = "failures.csv"
STATS_SUFFIX = ".stats.npy"
CLIP_STATS = "clip_stats.npy"  # a packed folder's (clips, 2, feature_dim) clip statistics
STATS_ROW = "stats_row"  # the packed manifests' column: a clip's row in CLIP_STATS


def split_manifest_name(split: str) -> str:
    """``train.csv`` for ``train``; an error naming the splits for anything else."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    return f"{split}.csv"


def split_manifest(folder: str | Path, split: str) -> Path:
    return Path(folder) / split_manifest_name(split)


def manifest_names() -> list[str]:
    """Every manifest a prepared folder may hold: ``manifest.csv``, then one per split."""
    return [MANIFEST, *(split_manifest_name(split) for split in SPLITS)]


def feature_stem(track_id: str) -> str:
    """A clip's feature file, relative to the folder and without its suffix (segments add ``.segNNN``)."""
    return f"{FEATURES}/{track_id}"


def stats_path(feature_file: str | Path) -> Path:
    """Where a feature file's clip statistics live: ``features/x.npy`` -> ``features/x.stats.npy``."""
    path = Path(feature_file)
    return path.with_name(path.name.removesuffix(".npy") + STATS_SUFFIX)


def is_prepared(folder: str | Path) -> bool:
    """Whether ``python -m m3bert.prepare`` has written ``folder`` (its training split)."""
    return split_manifest(folder, "train").is_file()
