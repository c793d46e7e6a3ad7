"""Datasets of frame features and the batching that feeds the encoder."""

from m3bert.data.manifest import (
    Batch,
    Clip,
    ClipDataset,
    ManifestDataset,
    ManifestError,
    RandomFeatureDataset,
    collate,
    read_manifest,
    stats_path,
)
from m3bert.data.sampler import EpochSampler, shard

__all__ = [
    "Batch",
    "Clip",
    "ClipDataset",
    "EpochSampler",
    "ManifestDataset",
    "ManifestError",
    "RandomFeatureDataset",
    "collate",
    "read_manifest",
    "shard",
    "stats_path",
]
