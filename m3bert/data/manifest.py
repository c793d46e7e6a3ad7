"""Feature datasets: a manifest csv indexing ``.npy`` frame features, and generated features for smoke runs.

A manifest has one row per clip with ``file_path`` (relative to the csv's folder, or absolute), ``length`` in frames
and optional label columns. Each ``.npy`` holds ``(frames, feature_dim)`` float features, normalised per file; beside
it, ``<name>.stats.npy`` holds the clip's (2, feature_dim) mean and scale of the unnormalised features (written by
``python -m m3bert.prepare``), from which any other :class:`~m3bert.features.Normalization` is applied at read time.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from m3bert.features.normalize import Normalization

REQUIRED_COLUMNS = ("file_path", "length")


class ManifestError(ValueError):
    """A manifest or one of its feature files is unusable; the message names the file, row and problem."""


class Clip(NamedTuple):
    features: torch.Tensor  # (frames, feature_dim) float32
    index: int  # row in the manifest
    labels: dict[str, torch.Tensor] = {}  # per-clip targets, each of a fixed shape per key


class Batch(NamedTuple):
    features: torch.Tensor  # (batch, frames, feature_dim), zero-padded
    lengths: torch.Tensor  # (batch,) valid frames per clip
    indices: torch.Tensor  # (batch,) manifest rows
    labels: dict[str, torch.Tensor] = {}  # key -> (batch, ...) targets, zero where a clip has none
    present: dict[str, torch.Tensor] = {}  # key -> (batch,) bool, whether each clip carries that label

    def to(self, device: torch.device | str) -> Batch:
        move = lambda t: t.to(device, non_blocking=True)  # noqa: E731
        return Batch(
            move(self.features),
            move(self.lengths),
            move(self.indices),
            {k: move(v) for k, v in self.labels.items()},
            {k: move(v) for k, v in self.present.items()},
        )


def stats_path(feature_file: str | Path) -> Path:
    """Where a feature file's clip statistics live: ``features/x.npy`` -> ``features/x.stats.npy``."""
    path = Path(feature_file)
    return path.with_name(path.name.removesuffix(".npy") + ".stats.npy")


def collate(clips: list[Clip]) -> Batch:
    """Pad clips to the longest and stack their labels; a label missing from a clip is zero-filled and marked
    absent in ``present`` (clips of several datasets, each labelled for its own task, share batches)."""
    lengths = torch.tensor([c.features.shape[0] for c in clips])
    features = torch.zeros(len(clips), int(lengths.max()), clips[0].features.shape[1])
    for row, clip in enumerate(clips):
        features[row, : clip.features.shape[0]] = clip.features
    labels, present = {}, {}
    for key in dict.fromkeys(k for c in clips for k in c.labels):
        example = next(c.labels[key] for c in clips if key in c.labels)
        present[key] = torch.tensor([key in c.labels for c in clips])
        labels[key] = torch.stack([c.labels.get(key, torch.zeros_like(example)) for c in clips])
    return Batch(features, lengths, torch.tensor([c.index for c in clips]), labels, present)


def crop_start(length: int, max_frames: int | None, mode: str, key: tuple[int, ...]) -> int:
    """First frame of the crop. ``random`` draws from a generator keyed by (seed, epoch, index), so a clip's crop
    is the same whichever worker loads it and after a resume."""
    if max_frames is None or length <= max_frames or mode == "start":
        return 0
    if mode == "center":
        return (length - max_frames) // 2
    return int(np.random.default_rng(key).integers(0, length - max_frames + 1))


class ClipDataset(Dataset):
    """What the trainer reads: items are :class:`Clip` s, indexed by row or by ``(row, seed, epoch)`` (from
    :class:`m3bert.data.sampler.EpochSampler`, so random crops are reproducible)."""

    #: (len(self),) per-clip sampling weights, or None for plain shuffling.
    sampling_weights: torch.Tensor | None = None
    #: how the clips' features were normalised; the trainer records it in checkpoints (the model's own choice).
    normalization: Normalization = Normalization()


class ManifestDataset(ClipDataset):
    """Clips listed in a manifest csv, memory-mapped and cropped to at most ``max_frames`` frames.

    Items are indexed by row, or by ``(row, seed, epoch)`` from :class:`m3bert.data.sampler.EpochSampler` so that
    random crops are reproducible.

    ``normalization``: ``"per_file"`` (the stored features as they are), ``"dataset"`` (with the statistics of the
    manifest's folder, ``normalization.npz``), or a :class:`~m3bert.features.Normalization` (e.g. a pre-trained
    model's own, for fine-tuning on another folder).
    """

    def __init__(
        self,
        manifest: str,
        feature_dim: int,
        max_frames: int | None = None,
        crop: str = "random",
        min_frames: int = 1,
        check_files: bool = True,
        normalization: str | Normalization = "per_file",
    ):
        self.manifest = Path(manifest)
        if isinstance(normalization, str):
            folder = self.manifest.parent
            normalization = (
                Normalization.from_folder(folder) if normalization == "dataset" else Normalization(normalization)
            )
        normalization.check_dim(feature_dim, str(self.manifest))
        self.normalization = normalization
        if crop not in ("random", "start", "center"):
            raise ValueError(f"dataset crop must be random, start or center, got {crop!r}")
        self.feature_dim, self.max_frames, self.crop = feature_dim, max_frames, crop
        self.table = read_manifest(self.manifest, min_frames)
        root = self.manifest.parent
        self.paths = [p if Path(p).is_absolute() else str(root / p) for p in self.table["file_path"]]
        if check_files:
            # Reading only the headers is cheap, so every file is checked up front rather than an hour into a run.
            for row in range(len(self.paths)):
                self._open(row)
                if normalization.needs_clip_stats:
                    self._stats(row)

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def lengths(self) -> np.ndarray:
        return self.table["length"].to_numpy()

    def _where(self, row: int, path: str) -> str:
        return f"{path} (row {row + 2} of {self.manifest})"  # +2: header line and 1-based numbering

    def _open(self, row: int) -> np.ndarray:
        """Memory-map row's features, checking that the file exists and has shape (frames, feature_dim)."""
        path = self.paths[row]
        if not Path(path).is_file():
            raise ManifestError(f"{self._where(row, path)}: feature file is missing")
        try:
            array = np.load(path, mmap_mode="r")
        except (ValueError, OSError, EOFError) as err:
            raise ManifestError(f"{self._where(row, path)}: not a readable .npy file ({err})") from err
        if array.ndim != 2 or array.shape[1] != self.feature_dim:
            raise ManifestError(
                f"{self._where(row, path)}: shape {tuple(array.shape)}, expected (frames, {self.feature_dim}); "
                "was it extracted with another feature set? (dataset.feature_dim)"
            )
        return array

    def _stats(self, row: int) -> np.ndarray:
        """Row's (2, feature_dim) clip statistics (mean and scale of the unnormalised features)."""
        path = stats_path(self.paths[row])
        try:
            stats = np.load(path)
        except (ValueError, OSError, EOFError) as err:
            raise ManifestError(
                f"{self._where(row, str(path))}: no readable clip statistics ({type(err).__name__}), which "
                f"{self.normalization.kind} normalisation needs; rerun python -m m3bert.prepare for this folder (it "
                "re-extracts only the clips that lack them)"
            ) from err
        if stats.shape != (2, self.feature_dim) or not np.isfinite(stats).all():
            raise ManifestError(f"{self._where(row, str(path))}: clip statistics of shape {stats.shape} or non-finite")
        return stats

    def __getitem__(self, key: int | tuple[int, int, int]) -> Clip:
        row, *seed = key if isinstance(key, tuple) else (key,)
        array = self._open(row)
        start = crop_start(array.shape[0], self.max_frames, self.crop, (*seed, row))
        stop = array.shape[0] if self.max_frames is None else start + self.max_frames
        clip = np.array(array[start:stop], dtype=np.float32)  # a copy: the memory map is read-only
        if not np.isfinite(clip).all():
            raise ManifestError(
                f"{self._where(row, self.paths[row])}: features contain NaN or inf; re-extract this file"
            )
        features = torch.from_numpy(clip)
        if self.normalization.needs_clip_stats:
            features = self.normalization.apply(features, torch.from_numpy(self._stats(row)))
        return Clip(features, row)


def read_manifest(path: Path, min_frames: int = 1) -> pd.DataFrame:
    if not path.is_file():
        raise ManifestError(f"{path}: manifest not found (set dataset.root or the M3BERT_DATA variable)")
    try:
        table = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ManifestError(f"{path}: not a readable csv ({err})") from err
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise ManifestError(f"{path}: missing column(s) {missing}; a manifest needs {list(REQUIRED_COLUMNS)}")
    if table.empty:
        raise ManifestError(f"{path}: manifest has no rows")
    lengths = pd.to_numeric(table["length"], errors="coerce")
    bad = lengths.isna() | (lengths < min_frames)
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise ManifestError(
            f"{path}: row {row + 2} has length {table['length'].iloc[row]!r}; lengths must be whole numbers of "
            f"frames >= {min_frames}"
        )
    table["length"] = lengths.astype(int)
    return table


class RandomFeatureDataset(ClipDataset):
    """Generated features with learnable structure (smooth, correlated channels), for tests and smoke runs only.

    Each clip mixes a few slowly varying sinusoids through a fixed random projection, plus noise; clip ``i`` is the
    same every time it is read.
    """

    def __init__(
        self,
        num_clips: int,
        feature_dim: int,
        min_frames: int,
        max_frames: int,
        seed: int = 0,
        components: int = 8,
        noise: float = 0.1,
    ):
        if not 1 <= min_frames <= max_frames:
            raise ValueError(f"random dataset needs 1 <= min_frames <= max_frames, got {min_frames}, {max_frames}")
        self.num_clips, self.feature_dim, self.seed = num_clips, feature_dim, seed
        self.min_frames, self.max_frames, self.noise = min_frames, max_frames, noise
        rng = np.random.default_rng(seed)
        self.mixing = rng.standard_normal((components, feature_dim)).astype(np.float32) / math.sqrt(components)
        self.table = pd.DataFrame(
            {
                "file_path": [f"random_{i:05d}" for i in range(num_clips)],
                "length": rng.integers(min_frames, max_frames + 1, num_clips),
            }
        )

    def __len__(self) -> int:
        return self.num_clips

    @property
    def lengths(self) -> np.ndarray:
        return self.table["length"].to_numpy()

    def __getitem__(self, key: int | tuple[int, int, int]) -> Clip:
        row = key[0] if isinstance(key, tuple) else key
        rng = np.random.default_rng((self.seed, row))
        frames = int(self.table["length"].iloc[row])
        t = np.arange(frames, dtype=np.float32)[:, None]
        freq = rng.uniform(0.01, 0.2, self.mixing.shape[0]).astype(np.float32)
        phase = rng.uniform(0, 2 * np.pi, self.mixing.shape[0]).astype(np.float32)
        x = np.sin(t * freq + phase) @ self.mixing
        x += self.noise * rng.standard_normal(x.shape).astype(np.float32)
        return Clip(torch.from_numpy(x), row)
