"""Process-group setup for ``torchrun`` launches; a single process needs none of it."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Context:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def setup(device_type: str) -> Context:
    """Join the process group that ``torchrun`` describes in the environment (NCCL on GPUs, gloo on CPUs)."""
    if "RANK" not in os.environ or dist.is_initialized():
        return Context()
    backend = "nccl" if device_type == "cuda" else "gloo"
    dist.init_process_group(backend=backend)
    context = Context(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    if device_type == "cuda":
        torch.cuda.set_device(context.local_rank)
    return context


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def all_sum(tensor: torch.Tensor, context: Context) -> torch.Tensor:
    """Sum of ``tensor`` over ranks (a copy; the input is left alone)."""
    tensor = tensor.detach().clone()
    if context.enabled:
        dist.all_reduce(tensor)
    return tensor


def gather_objects(obj, context: Context) -> list:
    """``obj`` of every rank, in rank order (a collective: every rank must call it)."""
    if not context.enabled:
        return [obj]
    gathered = [None] * context.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def barrier(context: Context) -> None:
    """Wait until every rank gets here (a no-op in a single process)."""
    if context.enabled:
        dist.barrier()
