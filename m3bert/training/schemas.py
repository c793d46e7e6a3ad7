"""Typed schemas for the config groups the trainer reads, registered in Hydra's ConfigStore.

A yaml option that lists ``<group>_schema`` first in its defaults is validated against the dataclass when the config
is composed, so ``trainer.max_steps=abc`` or a misspelt key fails before anything runs.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from hydra.core.config_store import ConfigStore
from omegaconf import ListConfig, OmegaConf

from m3bert.features.config import block_columns
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
class FeatureSetConfig:
    name: str = "m3bert324"  # a registered feature set (m3bert.features.FEATURE_SETS)
    sample_rate: int = 44100  # Hz
    hop_length: int = 1024  # samples per frame
    dim: int = 324  # channels per frame
    normalization: str = "per_file"  # per_file (the paper's CMVN) | dataset (training-split statistics)
    blocks: dict[str, list[int]] = field(default_factory=dict)  # name -> [start, stop) columns


@dataclass
class ProbeConfig:
    learning_rates: list[float] = field(default_factory=lambda: [1e-4, 1e-3, 1e-2])  # grid, chosen on validation
    head: str = "mlp"  # mlp | linear
    head_hidden: int = 512
    head_dropout: float = 0.2
    weight_decay: float = 0.0
    epochs: int = 100
    patience: int = 15  # epochs without a better validation metric before a probe stops
    batch_size: int = 64
    progress: bool = True


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


def feature_columns(*names: str, _root_) -> ListConfig:
    """``${feature_columns:log_mel,log_cqt_chroma}``: the [start, stop) columns of those blocks of ``features``."""
    # A ListConfig, not a list: OmegaConf's in-place resolution (Hydra's instantiate) can't put a list into a node.
    return ListConfig(list(block_columns(dict(_root_.features.blocks), names, f"features={_root_.features.name}")))


def register() -> None:
    if not OmegaConf.has_resolver("run_folder"):
        OmegaConf.register_new_resolver("run_folder", run_folder_name)
    if not OmegaConf.has_resolver("feature_columns"):
        OmegaConf.register_new_resolver("feature_columns", feature_columns)
    store = ConfigStore.instance()
    store.store(group="trainer", name="trainer_schema", node=TrainerConfig)
    store.store(group="model", name="model_schema", node=M3BERTConfig)
    store.store(group="paths", name="paths_schema", node=PathsConfig)
    store.store(group="features", name="features_schema", node=FeatureSetConfig)
    store.store(group="probe", name="probe_schema", node=ProbeConfig)


register()
