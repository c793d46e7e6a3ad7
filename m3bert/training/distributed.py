"""Process-group setup for ``torchrun`` launches and for scheduler jobs of several tasks (SLURM, submitit); a
single process needs none of it."""

from __future__ import annotations

import hashlib
import os
import re
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


def scheduler_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """torchrun's variables (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``) for a
    process that a scheduler started as one task of several, so that a job of ``nodes x tasks_per_node`` tasks is
    one data-parallel run: a submitit job (``hydra/launcher=slurm`` or ``submitit_local``) or plain ``srun``.

    Empty where torchrun already set them or the job has one task. ``MASTER_ADDR`` / ``MASTER_PORT`` already in the
    environment win; otherwise the first node of the job and a port drawn from the job id (the same on every task).
    """
    env = os.environ if environ is None else environ
    if "RANK" in env:
        return {}
    if env.get("SUBMITIT_EXECUTOR"):  # submitit knows its executors' variables (SLURM_*, SUBMITIT_LOCAL_*)
        from submitit import JobEnvironment

        job = JobEnvironment()
        rank, world, local, first_node, job_id = (
            job.global_rank,
            job.num_tasks,
            job.local_rank,
            job.hostnames[0],
            job.job_id,
        )
    elif "SLURM_PROCID" in env and "SLURM_NTASKS" in env:
        rank, world, local = int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"]), int(env.get("SLURM_LOCALID", 0))
        first_node, job_id = first_host(env.get("SLURM_JOB_NODELIST", "127.0.0.1")), env.get("SLURM_JOB_ID", "0")
    else:
        return {}
    if world < 2:
        return {}
    port = env.get("MASTER_PORT") or str(20_000 + int(hashlib.sha256(str(job_id).encode()).hexdigest(), 16) % 40_000)
    return {
        "RANK": str(rank),
        "WORLD_SIZE": str(world),
        "LOCAL_RANK": str(local),
        "MASTER_ADDR": env.get("MASTER_ADDR") or first_node,
        "MASTER_PORT": port,
    }


def first_host(nodelist: str) -> str:
    """The first host of a SLURM node list: ``gpu[03-05,09],cpu1`` -> ``gpu03``."""
    match = re.match(r"([^,\[]+)(?:\[([^\],-]+))?", nodelist.strip())
    if not match:
        raise ValueError(f"SLURM_JOB_NODELIST={nodelist!r} names no host; set MASTER_ADDR")
    return match.group(1) + (match.group(2) or "")


def adopt_scheduler_env() -> None:
    """Put :func:`scheduler_env`'s variables into the environment (once; later calls find ``RANK`` set)."""
    os.environ.update(scheduler_env())


def setup(device_type: str) -> Context:
    """Join the process group that ``torchrun`` (or a scheduler job, see :func:`scheduler_env`) describes in the
    environment (NCCL on GPUs, gloo on CPUs)."""
    adopt_scheduler_env()
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
