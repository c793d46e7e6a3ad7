"""Datasets of frame features and the batching that feeds the encoder."""

# Where a clip's statistics live is the prepared folder's layout (m3bert.common.prepared); readers import it here too.
from m3bert.common.prepared import stats_path
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
