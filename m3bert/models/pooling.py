"""Pooling frame sequences into clip vectors over their valid frames: one definition for clip embeddings
(``extract``, :class:`m3bert.inference.representations.Representation`), HEAR scene embeddings and task heads.

``mean``: the average frame. ``max``: the per-channel maximum. ``mean_std``: statistics pooling, the mean and the
(population) standard deviation side by side, so a clip's spread over time survives as well as its average.
``mean_std_max``: all three side by side.

The default clip embedding (``extract``'s ``clip/``, HEAR's scene embedding, ``evaluate``'s ``mean_over_layers``) is
every hidden state pooled to mean ⊕ std ⊕ max, averaged over the hidden states (:func:`clip_embedding`): on held-out
real music it scored level with the best single layer that cross-validation picks per fold and ahead of the last
layer's mean ⊕ std, and it needs no labels to choose (README, "Which objective wins on real music?").
"""

from __future__ import annotations

import torch

POOLINGS = ("mean", "max", "mean_std", "mean_std_max")
CLIP_POOLING = "mean_std_max"  # of each hidden state, in the default clip embedding
STD_FLOOR = 1e-10  # variance floor before the square root: a constant channel gets std 1e-5 and a finite gradient


def pooled_dim(dim: int, how: str) -> int:
    """Width of the pooled vector of ``dim``-wide frames."""
    check_pooling(how)
    return {"mean_std": 2, "mean_std_max": 3}.get(how, 1) * dim


def clip_embedding(per_layer: torch.Tensor) -> torch.Tensor:
    """The default clip embedding from (..., layers, 3 hidden) hidden states pooled with :data:`CLIP_POOLING`:
    their average over the layers, (..., 3 hidden)."""
    return per_layer.float().mean(-2)


def check_pooling(how: str, allowed: tuple[str, ...] = POOLINGS) -> None:
    if how not in allowed:
        raise ValueError(f"pooling must be one of {allowed}, got {how!r}")


class RunningPool:
    """:func:`masked_pool` of a sequence that arrives in chunks (a long file streamed through the encoder), holding
    only (..., dim) accumulators: float64 sums and squares (no cancellation worth fearing) and a running maximum."""

    def __init__(self) -> None:
        self.frames = 0
        self.total = self.squares = self.peak = None

    def add(self, chunk: torch.Tensor) -> None:
        """chunk: (..., frames, dim), every frame valid."""
        x = chunk.double()
        total, squares, peak = x.sum(-2), x.square().sum(-2), chunk.float().amax(-2)
        if self.total is None:
            self.total, self.squares, self.peak = total, squares, peak
        else:
            self.total += total
            self.squares += squares
            self.peak = torch.maximum(self.peak, peak)
        self.frames += chunk.shape[-2]

    def result(self, how: str) -> torch.Tensor:
        """(..., dim) for ``mean`` and ``max``, (..., 2 * dim) for ``mean_std``, (..., 3 * dim) for ``mean_std_max``;
        float32."""
        check_pooling(how)
        if self.total is None:
            raise ValueError("RunningPool.result before any chunk was added")
        if how == "max":
            return self.peak
        mean = self.total / self.frames
        if how == "mean":
            return mean.float()
        std = (self.squares / self.frames - mean.square()).clamp_min(STD_FLOOR).sqrt()
        statistics = torch.cat([mean, std], dim=-1).float()
        return torch.cat([statistics, self.peak.float()], dim=-1) if how == "mean_std_max" else statistics


def masked_pool(x: torch.Tensor, valid: torch.Tensor | None, how: str) -> torch.Tensor:
    """Pool ``x`` (..., frames, dim) over the frames where ``valid`` (..., frames) is true (None: all frames).

    Returns (..., dim) for ``mean`` and ``max``, (..., 2 * dim) for ``mean_std`` ([mean, std]), (..., 3 * dim) for
    ``mean_std_max`` ([mean, std, max]); computed in float32
    at least.
    """
    check_pooling(how)
    x = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
    if valid is None:
        valid = torch.ones(x.shape[:-1], dtype=torch.bool, device=x.device)
    mask = valid[..., None]
    if how == "max":
        return x.masked_fill(~mask, float("-inf")).amax(-2)
    count = mask.sum(-2).clamp_min(1).to(x.dtype)
    mean = x.masked_fill(~mask, 0.0).sum(-2) / count
    if how == "mean":
        return mean
    var = (x - mean[..., None, :]).masked_fill(~mask, 0.0).square().sum(-2) / count
    statistics = torch.cat([mean, var.clamp_min(STD_FLOOR).sqrt()], dim=-1)
    if how == "mean_std_max":
        return torch.cat([statistics, masked_pool(x, valid, "max")], dim=-1)
    return statistics
