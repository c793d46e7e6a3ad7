"""Per-clip mean/variance normalisation (CMVN) of padded feature batches, and the normalisation a model reads its
features with (:class:`Normalization`: per file, as the paper, or with one set of training-split statistics)."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from m3bert.common import prepared


def cmvn(features: torch.Tensor, frame_lengths: torch.Tensor | None = None, eps: float = 1e-8) -> torch.Tensor:
    """Give every dimension of every clip zero mean and unit variance over that clip's valid frames.

    Args:
        features: ``(batch, frames, dims)``.
        frame_lengths: ``(batch,)`` valid frames per clip; ``None`` means all frames are valid.
        eps: added to the variance, so a constant dimension (e.g. a silent mel band) maps to zeros instead
            of dividing by zero.
    Returns:
        ``(batch, frames, dims)``, same dtype; padding frames are set to 0 and never enter the statistics.
    """
    return cmvn_with_stats(features, frame_lengths, eps)[0]


def cmvn_with_stats(
    features: torch.Tensor, frame_lengths: torch.Tensor | None = None, eps: float = 1e-8
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`cmvn` and the statistics it used: ``(normalised (batch, frames, dims), stats (batch, 2, dims))``.

    ``stats[:, 0]`` is each clip's per-channel mean and ``stats[:, 1]`` its scale ``sqrt(var + eps)``, both of the
    unnormalised features, so ``normalised * stats[:, 1:2] + stats[:, 0:1]`` gives the valid frames back (up to
    float rounding). They are what a clip-level "mean ⊕ std of the features" baseline reads, and what
    :class:`Normalization` needs to turn per-file-normalised features into any other normalisation.
    """
    batch, n_frames, _ = features.shape
    if frame_lengths is None:
        frame_lengths = torch.full((batch,), n_frames, dtype=torch.long, device=features.device)
    if int(frame_lengths.min()) < 1:
        raise ValueError(f"cmvn needs at least one valid frame per clip, got frame_lengths={frame_lengths.tolist()}")
    mask = (torch.arange(n_frames, device=features.device)[None, :] < frame_lengths[:, None])[..., None]
    count = frame_lengths.to(features.dtype).view(batch, 1, 1)
    # Statistics of x - x[first frame]: the same mean-free result, but a constant dimension becomes exact
    # zeros, where a float32 mean of e.g. -1131 (the MFCC-0 of silence) would leave ~1e-4 residues that the
    # epsilon then scales up to O(1). It also helps whenever a dimension's spread is small next to its offset.
    first = features[:, :1]
    x = (features - first).masked_fill(~mask, 0.0)
    mean = x.sum(dim=1, keepdim=True) / count
    # Two passes (mean, then centred squares) rather than E[x^2] - E[x]^2, which cancels badly in float32.
    centred = (x - mean).masked_fill(~mask, 0.0)
    var = centred.square().sum(dim=1, keepdim=True) / count
    return centred * torch.rsqrt(var + eps), torch.cat([first + mean, torch.sqrt(var + eps)], dim=1)


def cmvn_in_place(x: np.ndarray, eps: float = 1e-8, rows: int = 8192) -> tuple[np.ndarray, np.ndarray]:
    """:func:`cmvn_with_stats` of one clip ``x`` (frames, dims) in numpy, in place and ``rows`` rows at a time so
    that ``x`` may be a memory map of a long file. Statistics are float64, over x - x[0] as in :func:`cmvn_with_stats`
    (a constant column becomes exact zeros). Returns ``(x, stats)`` with stats (2, dims) float32: mean and scale."""
    first = x[0].astype(np.float64)
    blocks = [slice(a, a + rows) for a in range(0, len(x), rows)]
    mean = sum((x[b].astype(np.float64) - first).sum(0) for b in blocks) / len(x)
    var = sum(np.square(x[b].astype(np.float64) - first - mean).sum(0) for b in blocks) / len(x)
    scale = 1.0 / np.sqrt(var + eps)
    for b in blocks:
        x[b] = ((x[b].astype(np.float64) - first - mean) * scale).astype(x.dtype)
    return x, np.stack([first + mean, np.sqrt(var + eps)]).astype(np.float32)


NORMALIZATIONS = ("per_file", "dataset")


@dataclass(frozen=True)
class Normalization:
    """How per-file-normalised features (what a prepared folder stores, what the front end computes) become encoder
    input; the model's own choice, carried in its checkpoint and its exported ``config.json``.

    ``per_file``: unchanged (the paper's CMVN: every clip's channels at zero mean and unit variance, which removes
    each clip's mean spectrum and level). ``dataset``: ``(x - mean) / std`` of the unnormalised features with one
    per-channel ``mean`` and ``std`` (computed on a training split), so clip-level differences in level and
    spectrum survive.
    """

    kind: str = "per_file"
    mean: tuple[float, ...] = ()  # dataset: (dims,) per-channel mean of the unnormalised features
    std: tuple[float, ...] = ()  # dataset: (dims,) per-channel standard deviation, > 0

    def __post_init__(self) -> None:
        if self.kind not in NORMALIZATIONS:
            raise ValueError(f"features.normalization must be one of {NORMALIZATIONS}, got {self.kind!r}")
        if self.kind == "dataset":
            if not self.mean or len(self.mean) != len(self.std):
                raise ValueError("dataset normalisation needs per-channel mean and std of the same length")
            if min(self.std) <= 0 or not all(math.isfinite(v) for v in (*self.mean, *self.std)):
                raise ValueError("dataset normalisation needs finite means and positive standard deviations")
        elif self.mean or self.std:
            raise ValueError(f"{self.kind} normalisation takes no statistics")

    @property
    def needs_clip_stats(self) -> bool:
        return self.kind != "per_file"

    def check_dim(self, dim: int, where: str) -> None:
        if self.kind == "dataset" and len(self.mean) != dim:
            raise ValueError(f"{where}: normalisation statistics have {len(self.mean)} channels, features {dim}")

    def apply(self, features: torch.Tensor, clip_stats: torch.Tensor | None) -> torch.Tensor:
        """Encoder input from one clip's per-file-normalised ``features`` (frames, dims) and its ``clip_stats``
        (2, dims) (:func:`cmvn_with_stats`; unused, and may be None, for ``per_file``); float32 out."""
        if self.kind == "per_file":
            return features
        if clip_stats is None:
            raise ValueError(f"{self.kind} normalisation needs the clip's statistics (cmvn_with_stats)")
        mean = torch.tensor(self.mean, dtype=torch.float32, device=features.device)
        std = torch.tensor(self.std, dtype=torch.float32, device=features.device)
        clip_stats = clip_stats.to(features.device, torch.float32)
        # One per-channel affine map: unnormalise with the clip's statistics, normalise with the dataset's.
        return features.float() * (clip_stats[1] / std) + (clip_stats[0] - mean) / std

    def to_dict(self) -> dict:
        return {"kind": self.kind, **({"mean": list(self.mean), "std": list(self.std)} if self.mean else {})}

    @classmethod
    def from_dict(cls, data: dict | str | None) -> Normalization:
        """From :meth:`to_dict`'s output, a bare kind, or None (``per_file``: what models without a record used)."""
        if data is None:
            return cls()
        if isinstance(data, str):
            return cls(data)
        return cls(data["kind"], tuple(map(float, data.get("mean", ()))), tuple(map(float, data.get("std", ()))))

    @classmethod
    def pooled(cls, parts: Sequence[Normalization], shares: Sequence[float]) -> Normalization:
        """The ``dataset`` statistics of a mixture of datasets, each drawn with its share (any positive scale):
        the mixture's per-channel mean and std (law of total variance)."""
        if len(parts) != len(shares) or not parts or any(p.kind != "dataset" for p in parts):
            raise ValueError("pooled statistics need one share per dataset normalisation")
        weights = np.asarray(shares, dtype=np.float64)[:, None] / float(np.sum(shares))
        means = np.array([p.mean for p in parts], dtype=np.float64)
        variances = np.array([p.std for p in parts], dtype=np.float64) ** 2
        mean = (weights * means).sum(0)
        std = np.sqrt((weights * (variances + (means - mean) ** 2)).sum(0))
        return cls("dataset", tuple(map(float, mean)), tuple(map(float, std)))

    @classmethod
    def from_folder(cls, folder: str | os.PathLike) -> Normalization:
        """The ``dataset`` statistics that ``python -m m3bert.prepare`` stored in ``folder/normalization.npz``."""
        path = Path(folder) / prepared.NORMALIZATION
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: missing, so features.normalization=dataset has no statistics; rerun python -m "
                "m3bert.prepare for this folder (it adds them and re-extracts only clips that lack statistics)"
            )
        with np.load(path) as stored:
            return cls("dataset", tuple(map(float, stored["mean"])), tuple(map(float, stored["std"])))


def dataset_statistics(clip_stats: np.ndarray, frames: np.ndarray, eps: float = 1e-8) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std over all frames of many clips, from each clip's (2, dims) statistics.

    Args:
        clip_stats: (clips, 2, dims) per-clip mean and scale (:func:`cmvn_with_stats`). frames: (clips,) frames.
    Returns:
        (mean, std), each (dims,) float64; the pooled variance counts each clip's frames (law of total variance).
    """
    weights = np.asarray(frames, dtype=np.float64)[:, None]
    mean_c, scale_c = clip_stats[:, 0].astype(np.float64), clip_stats[:, 1].astype(np.float64)
    total = weights.sum()
    mean = (weights * mean_c).sum(0) / total
    # sqrt(var + eps) was stored; var = scale^2 - eps. Within-clip plus between-clip variance.
    var = (weights * (np.maximum(scale_c**2 - eps, 0.0) + (mean_c - mean) ** 2)).sum(0) / total
    return mean, np.sqrt(var + eps)
