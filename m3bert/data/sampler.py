"""An epoch-based, resumable, distributed sampler that yields keys for reproducible random crops."""

from __future__ import annotations

from typing import Iterator

import torch
from torch.utils.data import Sampler


class EpochSampler(Sampler):
    """Shuffles rows once per epoch (seeded by ``(seed, epoch)``) and deals consecutive global batches to ranks.

    Global batch ``b`` of an epoch is ``perm[b * G:(b + 1) * G]`` with ``G = batch_size * world_size``; rank ``r``
    takes its ``r``-th slice of ``batch_size`` rows, so one process with ``batch_size * world_size`` sees exactly the
    same clips per step as ``world_size`` processes. With ``weights``, an epoch draws rows with replacement in
    proportion to them instead of shuffling. Yields ``(row, seed, epoch)`` keys; the incomplete last global
    batch is dropped. ``set_position(epoch, batch)`` makes the next iteration start there (resume).
    """

    def __init__(self, size: int, batch_size: int, world_size: int = 1, rank: int = 0, seed: int = 0,
                 shuffle: bool = True, weights: torch.Tensor | None = None):
        self.size, self.batch_size, self.world_size, self.rank = size, batch_size, world_size, rank
        self.seed, self.shuffle, self.weights = seed, shuffle, weights
        self.epoch, self.start_batch = 0, 0
        if self.batches_per_epoch == 0:
            raise ValueError(
                f"the dataset has {size} clips, fewer than one global batch of {batch_size} x {world_size} "
                "processes; lower trainer.batch_size or add data"
            )

    @property
    def batches_per_epoch(self) -> int:
        return self.size // (self.batch_size * self.world_size)

    def set_position(self, epoch: int, batch: int) -> None:
        self.epoch, self.start_batch = epoch, batch

    def __len__(self) -> int:
        return (self.batches_per_epoch - self.start_batch) * self.batch_size

    def __iter__(self) -> Iterator[tuple[int, int, int]]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        if self.weights is not None:  # an epoch is `size` draws with replacement
            order = torch.multinomial(self.weights, self.size, replacement=True, generator=generator)
        elif self.shuffle:
            order = torch.randperm(self.size, generator=generator)
        else:
            order = torch.arange(self.size)
        per_step = self.batch_size * self.world_size
        for b in range(self.start_batch, self.batches_per_epoch):
            first = b * per_step + self.rank * self.batch_size
            for row in order[first : first + self.batch_size].tolist():
                yield row, self.seed, self.epoch


def shard(size: int, world_size: int, rank: int) -> list[int]:
    """Rows of an evaluation set that ``rank`` evaluates: every clip exactly once across ranks."""
    return list(range(rank, size, world_size))
