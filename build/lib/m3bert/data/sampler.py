"""An epoch-based, resumable, distributed sampler that yields keys for reproducible random crops."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class EpochSampler(Sampler):
    """Shuffles rows once per epoch (seeded by ``(seed, epoch)``) and deals consecutive global batches to ranks.

    Global batch ``b`` of an epoch is ``perm[b * G:(b + 1) * G]`` with ``G = batch_size * world_size``; rank ``r``
    takes its ``r``-th slice of ``batch_size`` rows, so one process with ``batch_size * world_size`` sees exactly the
    same clips per step as ``world_size`` processes. With ``weights``, an epoch draws rows with replacement in
    proportion to them instead of shuffling. Yields ``(row, seed, epoch)`` keys; the incomplete last global
    batch is dropped. ``set_position(epoch, batch)`` makes the next iteration start there (resume); ``epochs=None``
    iterates forever, so one DataLoader (and its worker processes) serves a whole run.
    """

    def __init__(
        self,
        size: int,
        batch_size: int,
        world_size: int = 1,
        rank: int = 0,
        seed: int = 0,
        shuffle: bool = True,
        weights: torch.Tensor | None = None,
        epochs: int | None = 1,
    ):
        self.size, self.batch_size, self.world_size, self.rank = size, batch_size, world_size, rank
        self.seed, self.shuffle, self.weights, self.epochs = seed, shuffle, weights, epochs
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
        if self.epochs is None:
            raise TypeError("an endless EpochSampler (epochs=None) has no length")
        return (self.epochs * self.batches_per_epoch - self.start_batch) * self.batch_size

    def order(self, epoch: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        if self.weights is not None:  # an epoch is `size` draws with replacement
            return torch.multinomial(self.weights, self.size, replacement=True, generator=generator)
        if self.shuffle:
            return torch.randperm(self.size, generator=generator)
        return torch.arange(self.size)

    def __iter__(self) -> Iterator[tuple[int, int, int]]:
        per_step = self.batch_size * self.world_size
        epoch, start = self.epoch, self.start_batch
        while self.epochs is None or epoch < self.epoch + self.epochs:
            order = self.order(epoch)
            for b in range(start, self.batches_per_epoch):
                first = b * per_step + self.rank * self.batch_size
                for row in order[first : first + self.batch_size].tolist():
                    yield row, self.seed, epoch
            epoch, start = epoch + 1, 0


def shard(size: int, world_size: int, rank: int) -> list[int]:
    """Rows of an evaluation set that ``rank`` evaluates: every clip exactly once across ranks."""
    return list(range(rank, size, world_size))
