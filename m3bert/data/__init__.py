"""Datasets of frame features and the batching that feeds the encoder."""

from m3bert.data.manifest import (
    Batch,
    Clip,
    ClipDataset,
    ConcatClipDataset,
    ManifestDataset,
    ManifestError,
    RandomFeatureDataset,
    SourcesDataset,
    collate,
    read_manifest,
    stats_path,
)
from m3bert.data.sampler import EpochSampler, shard

__all__ = [
    "Batch",
    "Clip",
    "ClipDataset",
    "ConcatClipDataset",
    "EpochSampler",
    "ManifestDataset",
    "ManifestError",
    "RandomFeatureDataset",
    "SourcesDataset",
    "collate",
    "read_manifest",
    "shard",
    "stats_path",
]
