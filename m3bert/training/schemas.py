"""Typed schemas for the config groups the trainer reads, registered in Hydra's ConfigStore.

A yaml option that lists ``<group>_schema`` first in its defaults is validated against the dataclass when the config
is composed, so ``trainer.max_steps=abc`` or a misspelt key fails before anything runs.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from m3bert.models.encoder import M3BERTConfig


@dataclass
class TrainerConfig:
    max_steps: int = 10_000  # optimizer steps; may be raised when resuming a finished run
    batch_size: int = 8  # clips per process and micro-step
    grad_accum: int = 1  # micro-steps per optimizer step
    precision: str = "auto"  # auto (bf16 on GPUs that support it, else fp32) | bf16 | fp16 | fp32
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    grad_clip: float = 1.0  # max global gradient norm; 0 disables clipping
    log_every: int = 10
    val_every: int = 1000
    val_batches: int = 50  # validation batches per evaluation (0 = the whole validation set)
    monitor: str = "val/loss"  # validation metric that picks best.pt (and early stopping)
    monitor_mode: str = "min"  # min | max
    patience: int = 0  # stop after this many evaluations without improvement; 0 never stops early
    save_every: int = 1000
    keep: int = 2  # step checkpoints kept besides best.pt
    image_every: int = 1000  # reconstruction figure period; 0 disables figures
    num_workers: int = 2  # data-loading processes
    progress: bool = True  # progress bar on rank zero
    compile: bool = False  # torch.compile the model (worth it on GPUs for long runs)


@dataclass
class PathsConfig:
    data_dir: str = "data"  # prepared features (manifests + .npy), one folder per dataset
    audio_dir: str = "audio"  # datasets' audio as distributed, one folder per dataset
    experiments_dir: str = "experiments"
    multirun_dir: str = "multirun"


def run_folder_name(overrides: str) -> str:
    """A single path component from Hydra's ``override_dirname``: slashes in values (paths) are replaced, and
    a name too long for a file system is cut and suffixed with a hash of the whole, so it stays unique."""
    name = overrides.replace("/", "_")
    if len(name) > 180:
        name = f"{name[:160]}-{hashlib.sha1(name.encode()).hexdigest()[:10]}"
    return name


def register() -> None:
    if not OmegaConf.has_resolver("run_folder"):
        OmegaConf.register_new_resolver("run_folder", run_folder_name)
    if not OmegaConf.has_resolver("sweep_folder"):
        from m3bert.training.records import sweep_folder

        OmegaConf.register_new_resolver("sweep_folder", sweep_folder)
    store = ConfigStore.instance()
    store.store(group="trainer", name="trainer_schema", node=TrainerConfig)
    store.store(group="model", name="model_schema", node=M3BERTConfig)
    store.store(group="paths", name="paths_schema", node=PathsConfig)


register()
