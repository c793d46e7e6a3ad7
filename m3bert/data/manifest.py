"""Feature datasets: a manifest csv indexing ``.npy`` frame features, and generated features for smoke runs.

A manifest has one row per clip with ``file_path`` (relative to the csv's folder, or absolute), ``length`` in frames
and optional label columns. Each ``.npy`` holds ``(frames, feature_dim)`` float32 or float16 features, normalised
per file; beside it, ``<name>.stats.npy`` holds the clip's (2, feature_dim) mean and scale of the unnormalised
features, from which any other :class:`~m3bert.features.Normalization` is applied at read time. In a packed manifest
(an ``offset`` column) many clips share one shard file.
"""

from __future__ import annotations

import bisect
import io
import logging
import math
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from m3bert.common.configs import config_dir
from m3bert.common.prepared import CLIP_STATS, STATS_ROW, VALIDATED, split_manifest, split_manifest_name, stats_path
from m3bert.data.validation import (
    Header,
    ManifestError,
    check_shape,
    is_validated,
    manifest_key,
    read_frames,
    read_header,
    record_validated,
    validate_rows,
)
from m3bert.features.normalize import Normalization

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("file_path", "length")


class Clip(NamedTuple):
    features: torch.Tensor  # (frames, feature_dim) float32
    index: int  # row in the manifest
    labels: dict[str, torch.Tensor] = {}  # per-clip targets, each of a fixed shape per key
    start: int = 0  # first frame of the crop in its file


class Batch(NamedTuple):
    features: torch.Tensor  # (batch, frames, feature_dim), zero-padded
    lengths: torch.Tensor  # (batch,) valid frames per clip
    indices: torch.Tensor  # (batch,) manifest rows
    labels: dict[str, torch.Tensor] = {}  # key -> (batch, ...) targets, zero where a clip has none
    present: dict[str, torch.Tensor] = {}  # key -> (batch,) bool, whether each clip carries that label
    starts: torch.Tensor | None = None  # (batch,) first frame of each crop in its file

    def to(self, device: torch.device | str) -> Batch:
        move = lambda t: t.to(device, non_blocking=True)  # noqa: E731
        return Batch(
            move(self.features),
            move(self.lengths),
            move(self.indices),
            {k: move(v) for k, v in self.labels.items()},
            {k: move(v) for k, v in self.present.items()},
            None if self.starts is None else move(self.starts),
        )


def collate(clips: list[Clip]) -> Batch:
    """Pad clips to the longest and stack their labels; a label missing from a clip is zero-filled and marked
    absent in ``present`` (clips of several datasets, each labelled for its own task, share batches)."""
    lengths = torch.tensor([c.features.shape[0] for c in clips])
    # empty, not zeros: clips are mostly full-length crops, and zeroing a batch first costs as much as filling it.
    features = torch.empty(len(clips), int(lengths.max()), clips[0].features.shape[1])
    for row, clip in enumerate(clips):
        features[row, : clip.features.shape[0]] = clip.features
        features[row, clip.features.shape[0] :] = 0
    labels, present = {}, {}
    for key in dict.fromkeys(k for c in clips for k in c.labels):
        example = next(c.labels[key] for c in clips if key in c.labels)
        present[key] = torch.tensor([key in c.labels for c in clips])
        labels[key] = torch.stack([c.labels.get(key, torch.zeros_like(example)) for c in clips])
    indices, starts = torch.tensor([c.index for c in clips]), torch.tensor([c.start for c in clips])
    return Batch(features, lengths, indices, labels, present, starts)


CROPS = ("random", "windows", "start", "center")


def crop_start(length: int, max_frames: int | None, mode: str, key: tuple[int, ...]) -> int:
    """First frame of the crop. ``random`` draws from a generator keyed by (seed, epoch, index), so a clip's crop
    is the same whichever worker loads it and after a resume; ``windows`` draws one of the half-overlapping
    windows that start at multiples of ``max_frames // 2`` (a finite set of crops per clip, which a frozen
    encoder's state cache can hold)."""
    if max_frames is None or length <= max_frames or mode == "start":
        return 0
    if mode == "center":
        return (length - max_frames) // 2
    rng = np.random.default_rng(key)
    if mode == "windows":
        hop = max(max_frames // 2, 1)
        return hop * int(rng.integers(0, (length - max_frames) // hop + 1))
    return int(rng.integers(0, length - max_frames + 1))


class ClipDataset(Dataset):
    """What the trainer reads: items are :class:`Clip` s, indexed by row or by ``(row, seed, epoch)`` (from
    :class:`m3bert.data.sampler.EpochSampler`, so random crops are reproducible)."""

    #: (len(self),) per-clip sampling weights, or None for plain shuffling.
    sampling_weights: torch.Tensor | None = None
    #: how the clips' features were normalised; the trainer records it in checkpoints (the model's own choice).
    normalization: Normalization = Normalization()

    def use_crop(self, mode: str) -> None:
        """Crop every clip this way from now on (one of :data:`CROPS`)."""
        raise NotImplementedError(f"{type(self).__name__} has no crop to change")


class ManifestDataset(ClipDataset):
    """Clips listed in a manifest csv, cropped to at most ``max_frames`` frames (float32 out, whether the files
    hold float32 or float16); a read fetches only the crop's bytes.

    Items are indexed by row, or by ``(row, seed, epoch)`` from :class:`m3bert.data.sampler.EpochSampler` so that
    random crops are reproducible. A manifest with an ``offset`` column is *packed*: ``file_path`` names a shard
    holding many clips back to back and a row's clip is frames ``offset:offset + length`` of it.

    With ``check_files``, the files are validated once per manifest (see :mod:`m3bert.data.validation`): if the
    folder's ``validated.json`` already covers this manifest's content, start-up opens no file at all; otherwise
    every file is checked (header and NaN scan) and the result stored. Every read checks its own file again.

    ``normalization``: ``"per_file"`` (the stored features as they are), ``"dataset"`` (with the statistics of the
    manifest's folder, ``normalization.npz``), or a :class:`~m3bert.features.Normalization` or its ``to_dict``
    record (e.g. a pre-trained model's own, for fine-tuning on another folder).
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
        elif not isinstance(normalization, Normalization):  # a recorded one (a model's, handed down by the trainer)
            normalization = Normalization.from_dict(normalization)
        normalization.check_dim(feature_dim, str(self.manifest))
        self.normalization = normalization
        if crop not in CROPS:
            raise ValueError(f"dataset crop must be one of {', '.join(CROPS)}, got {crop!r}")
        self.feature_dim, self.max_frames, self.crop = feature_dim, max_frames, crop
        content = read_bytes(self.manifest)
        self.table = read_manifest(self.manifest, min_frames, content)
        # Plain arrays rather than a list of path objects: a million rows cost seconds and hundreds of MB as
        # Python objects, and numpy buffers are not copied page by page into every DataLoader worker.
        self.root = str(self.manifest.parent)
        self.files = self.table["file_path"].to_numpy(dtype=str)
        self._lengths = self.table["length"].to_numpy(dtype=np.int64)
        self.offsets = self.table["offset"].to_numpy(dtype=np.int64) if "offset" in self.table else None
        self.stats_rows = self.table[STATS_ROW].to_numpy(dtype=np.int64) if STATS_ROW in self.table else None
        self._headers: dict[str, Header] = {}  # shard path -> header, per process (packed layout only)
        if check_files:
            self.validate(content)
            if normalization.needs_clip_stats:
                for row in range(len(self)):
                    self._stats(row)

    def validate(self, content: bytes) -> None:
        key = manifest_key(content, self.feature_dim)
        folder, name = self.manifest.parent, self.manifest.name
        if is_validated(folder, name, key):
            return
        started = time.perf_counter()
        log.info("Validating %d feature files of %s (once; the result is stored in %s)", len(self), name, VALIDATED)
        validate_rows(
            [self.path(row) for row in range(len(self))], self._lengths, self.offsets, self.feature_dim, self._where
        )
        record_validated(folder, name, key, len(self), by="ManifestDataset")
        log.info("Validated %s in %.1f s", name, time.perf_counter() - started)

    def __len__(self) -> int:
        return len(self.files)

    @property
    def lengths(self) -> np.ndarray:
        return self._lengths

    def path(self, row: int) -> str:
        return os.path.join(self.root, self.files[row])  # an absolute file_path stays as it is

    def _where(self, row: int) -> str:
        return f"{self.path(row)} (row {row + 2} of {self.manifest})"  # +2: header line and 1-based numbering

    def _header(self, row: int) -> tuple[Header, int]:
        """Row's file header, checked against the row, and the row's first frame in that file."""
        path = self.path(row)
        offset = None if self.offsets is None else int(self.offsets[row])
        header = self._headers.get(path) if offset is not None else None
        if header is None:
            header = read_header(path, self._where(row))
            if offset is not None:
                self._headers[path] = header  # a shard serves many rows: its header is read once per process
        check_shape(header, self._where(row), self.feature_dim, int(self._lengths[row]), offset)
        return header, offset or 0

    def _stats(self, row: int) -> np.ndarray:
        """Row's (2, feature_dim) clip statistics (mean and scale of the unnormalised features)."""
        if self.offsets is not None:
            return self._packed_stats(row)
        path = stats_path(self.path(row))
        try:
            stats = np.load(path)
        except (ValueError, OSError, EOFError) as err:
            raise ManifestError(
                f"{path} (row {row + 2} of {self.manifest}): no readable clip statistics ({type(err).__name__}), which "
                f"{self.normalization.kind} normalisation needs; rerun python -m m3bert.prepare for this folder (it "
                "re-extracts only the clips that lack them)"
            ) from err
        if stats.shape != (2, self.feature_dim) or not np.isfinite(stats).all():
            raise ManifestError(
                f"{path} (row {row + 2} of {self.manifest}): clip statistics of shape {stats.shape} or non-finite"
            )
        return stats

    def _packed_stats(self, row: int) -> np.ndarray:
        """Row's clip statistics in a packed folder: row ``stats_row`` of its ``clip_stats.npy``."""
        path = self.manifest.parent / CLIP_STATS
        if self.stats_rows is None or not path.is_file():
            raise ManifestError(
                f"{self.manifest}: {self.normalization.kind} normalisation needs per-clip statistics, which this "
                f"packed folder lacks ({CLIP_STATS} and its {STATS_ROW} column); pack it again from a folder "
                "that python -m m3bert.prepare made (it writes the statistics), or train on the unpacked folder"
            )
        if "_clip_stats" not in self.__dict__:  # memory-mapped once per process
            self._clip_stats = np.load(path, mmap_mode="r")
        stats = np.array(self._clip_stats[self.stats_rows[row]])
        if stats.shape != (2, self.feature_dim) or not np.isfinite(stats).all():
            raise ManifestError(f"{path} (row {row + 2} of {self.manifest}): clip statistics not finite (2, dims)")
        return stats

    def __getitem__(self, key: int | tuple[int, int, int]) -> Clip:
        row, *seed = key if isinstance(key, tuple) else (key,)
        header, first = self._header(row)
        length = int(self._lengths[row])
        start = crop_start(length, self.max_frames, self.crop, (*seed, row))
        count = length - start if self.max_frames is None else min(self.max_frames, length - start)
        # Only the crop's bytes are read, straight into a fresh array: no memory map (whose page faults cost more
        # than the read) and no second copy.
        clip = read_frames(self.path(row), header, first + start, count, self._where(row)).astype(
            np.float32, copy=False
        )
        if not np.isfinite(clip).all():
            raise ManifestError(f"{self._where(row)}: features contain NaN or inf; re-extract this file")
        features = torch.from_numpy(clip)
        if self.normalization.needs_clip_stats:
            features = self.normalization.apply(features, torch.from_numpy(self._stats(row)))
        return Clip(features, row, start=start)

    def use_crop(self, mode: str) -> None:
        if mode not in CROPS:
            raise ValueError(f"dataset crop must be one of {', '.join(CROPS)}, got {mode!r}")
        self.crop = mode

    def __getstate__(self) -> dict:
        state = {**self.__dict__, "_headers": {}}  # each worker reads its own headers and maps its own statistics
        state.pop("_clip_stats", None)
        return state


def how_to_prepare(folder: Path) -> str:
    """The command that makes the prepared ``folder``: the adapter of the same name where there is one (a task's
    folder ``mtg_jamendo_moodtheme`` comes from ``dataset=mtg_jamendo_moodtheme``), else the generic folder one."""
    recipe = Path(config_dir()) / "dataset" / f"{folder.name}.yaml"
    if folder.name != "folder" and recipe.is_file() and "source:" in recipe.read_text():
        return f"python -m m3bert.prepare dataset={folder.name}"
    return f"python -m m3bert.prepare dataset=folder dataset.root=<your audio> out={folder}"


def read_bytes(path: Path) -> bytes:
    if not path.is_file():
        raise ManifestError(
            f"{path}: manifest not found; make it with `{how_to_prepare(path.parent)}`, or point dataset.root "
            "(dataset.sources.<name>.root for several corpora, or the M3BERT_DATA variable) at the folder where it "
            "was prepared"
        )
    return path.read_bytes()


def read_manifest(path: Path, min_frames: int = 1, content: bytes | None = None) -> pd.DataFrame:
    """The manifest's table, its lengths checked; ``content``: its bytes if already read."""
    content = read_bytes(path) if content is None else content
    try:
        table = pd.read_csv(io.BytesIO(content))
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
    if "offset" in table:
        offsets = pd.to_numeric(table["offset"], errors="coerce")
        bad = offsets.isna() | (offsets < 0) | (offsets % 1 != 0)
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise ManifestError(
                f"{path}: row {row + 2} has offset {table['offset'].iloc[row]!r}; offsets are whole frames >= 0"
            )
        table["offset"] = offsets.astype(int)
    return table


class ConcatClipDataset(ClipDataset):
    """Several clip datasets one after the other (rows of part 0, then of part 1, ...).

    ``shares`` (one per part, any positive scale; None for plain shuffling, i.e. parts drawn in proportion to their
    size) is how often each part is drawn, spread evenly over its clips: shares (1, 1) draw two parts equally often
    whatever their sizes.
    """

    def __init__(self, parts: Sequence[ClipDataset], shares: Sequence[float] | None = None):
        if not parts:
            raise ValueError("ConcatClipDataset needs at least one part")
        if shares is not None and (len(shares) != len(parts) or any(not s > 0 for s in shares)):
            raise ValueError(f"need one positive share per part ({len(parts)}), got {list(shares)}")
        self.parts, self.shares = list(parts), None if shares is None else [float(s) for s in shares]
        self.offsets = np.cumsum([0] + [len(p) for p in self.parts]).tolist()

    def __len__(self) -> int:
        return self.offsets[-1]

    def locate(self, row: int) -> tuple[int, int]:
        """(part, row within the part) of a row."""
        part = bisect.bisect_right(self.offsets, row) - 1
        return part, row - self.offsets[part]

    def __getitem__(self, key) -> Clip:
        row, *seed = key if isinstance(key, tuple) else (key,)
        part, local = self.locate(row)
        clip = self.parts[part][(local, *seed) if seed else local]
        return clip._replace(index=row)

    def use_crop(self, mode: str) -> None:
        for part in self.parts:
            part.use_crop(mode)

    @property
    def sampling_weights(self) -> torch.Tensor | None:
        """(len(self),) per-clip weights: each part's share divided evenly among its clips; None without shares."""
        if self.shares is None:
            return None
        total = sum(self.shares)
        return torch.cat([torch.full((len(p),), s / total / len(p)) for p, s in zip(self.parts, self.shares)])


class SourcesDataset(ConcatClipDataset):
    """One split of several prepared folders at once (pre-training on several corpora, ``dataset=sources``).

    ``sources`` maps a name to ``{root: <prepared folder>, weight: <share of draws> | null}``: with every weight
    null the clips of all folders are shuffled together (a folder is drawn in proportion to its size); otherwise
    every source needs a weight, and source ``i`` is drawn ``weight_i / sum(weights)`` of the time.
    """

    def __init__(
        self,
        sources: Mapping[str, Mapping],
        split: str,
        feature_dim: int,
        max_frames: int | None = None,
        crop: str = "random",
        normalization: str = "per_file",
    ):
        if not sources:
            raise ValueError("dataset.sources is empty: list the prepared folders, e.g. {msd: {root: data/msd}}")
        manifest = split_manifest_name(split)
        self.names = list(sources)
        weights = [sources[name].get("weight") for name in self.names]
        given = [w is not None for w in weights]
        if any(given) and not all(given):
            missing = [n for n, g in zip(self.names, given) if not g]
            raise ValueError(f"dataset.sources: {missing} have no weight; give every source one, or none at all")
        roots = [Path(sources[name]["root"]) for name in self.names]
        self.normalization = Normalization(normalization) if normalization != "dataset" else None
        if self.normalization is None:
            # One set of statistics for the mixture the sampler draws: each corpus weighted by its share of the
            # draws (its training frames when no weights are given), so every split and the checkpoint agree.
            shares = (
                weights
                if all(given)
                else [read_manifest(split_manifest(root, "train"))["length"].sum() for root in roots]
            )
            self.normalization = Normalization.pooled([Normalization.from_folder(root) for root in roots], shares)
        parts = [
            ManifestDataset(str(root / manifest), feature_dim, max_frames, crop, normalization=self.normalization)
            for root in roots
        ]
        super().__init__(parts, weights if all(given) else None)


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
