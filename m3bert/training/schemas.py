"""Typed schemas for the config groups the trainer reads, registered in Hydra's ConfigStore, and the valid range
of every numeric key of ``python -m m3bert.train``.

A yaml option that lists ``<group>_schema`` first in its defaults is validated against the dataclass when the config
is composed, so ``trainer.max_steps=abc`` or a misspelt key fails before anything runs. Ranges (``ranged`` fields
here, :data:`TRAIN_RULES` for the groups without a schema) are checked by :func:`check_train_config`, which the
``hydra.callbacks.validate`` callback of ``conf/train.yaml`` runs before Hydra makes the run folder, so
``trainer.batch_size=0`` leaves nothing behind.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hydra.core.config_store import ConfigStore
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

from m3bert.common.configs import Rule, check_config, ranged, schema_rules
from m3bert.common.errors import ConfigError
from m3bert.features.config import block_columns
from m3bert.models.encoder import M3BERTConfig
from m3bert.training.records import run_folder_name, sweep_folder

PRECISIONS = ("auto", "bf16", "fp16", "fp32")


@dataclass
class TrainerConfig:
    max_steps: int = ranged(10_000, low=1)  # optimizer steps; may be raised when resuming a finished run
    batch_size: int = ranged(8, low=1)  # clips per process and micro-step
    grad_accum: int = ranged(1, low=1)  # micro-steps per optimizer step
    precision: str = ranged("auto", choices=PRECISIONS)  # auto (bf16 where native: GPUs, CPUs with bf16) | ...
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    grad_clip: float = ranged(1.0, low=0)  # max global gradient norm; 0 disables clipping
    log_every: int = ranged(10, low=1)
    val_every: int = ranged(1000, low=1)
    val_batches: int = ranged(50, low=0)  # validation batches per evaluation (0 = the whole validation set)
    monitor: str = "val/loss"  # validation metric that picks best.pt (and early stopping)
    monitor_mode: str = ranged("min", choices=("min", "max"))
    patience: int = ranged(0, low=0)  # stop after this many evaluations without improvement; 0 never stops early
    save_every: int = ranged(1000, low=1)
    keep: int = ranged(2, low=0)  # step checkpoints kept besides best.pt
    image_every: int = ranged(1000, low=0)  # reconstruction figure period; 0 disables figures
    num_workers: int = ranged(2, low=0)  # data-loading processes
    progress: bool = True  # progress bar on rank zero
    compile: bool = False  # torch.compile the model (worth it on GPUs for long runs)


POSITIVE, NON_NEGATIVE, FRACTION = Rule(low=0, low_open=True), Rule(low=0), Rule(low=0, high=1)
# Numeric keys of the groups without a schema (a key of an option not chosen is skipped). The masker's own checks
# (masking.ratio, masking.replace) and the architecture's (M3BERTConfig) run too, by building them.
TRAIN_RULES = {
    **schema_rules(TrainerConfig, "trainer"),
    "model.dropout": FRACTION,
    "model.attention_dropout": FRACTION,
    "model.max_positions": Rule(low=1),
    "dataset.feature_dim": Rule(low=1),
    "dataset.max_frames": Rule(low=1, optional=True),
    "dataset.eval_max_frames": Rule(low=1, optional=True),
    "dataset.temperature": POSITIVE,
    "masking.frames.min_span": Rule(low=1),
    "masking.frames.max_span": Rule(low=1),
    "masking.frames.geometric_p": Rule(low=0, high=1, low_open=True),
    "masking.channels.min_width": Rule(low=1),
    "masking.channels.max_width": Rule(low=1),
    "masking.patches.patch_frames": Rule(low=1),
    "masking.patches.patch_channels": Rule(low=1),
    "optimizer.lr": POSITIVE,
    "optimizer.eps": POSITIVE,
    "optimizer.weight_decay": NON_NEGATIVE,
    "scheduler.warmup_steps": NON_NEGATIVE,
    "scheduler.final_ratio": FRACTION,
    "objective.huber_delta": POSITIVE,
    "objective.num_codebooks": Rule(low=1),
    "objective.codebook_size": Rule(low=1),
    "objective.codebook_dim": Rule(low=1),
    "objective.temperature": POSITIVE,
    "objective.projection_dim": Rule(low=1),
    "objective.head_hidden": Rule(low=1),
    "objective.head_dropout": FRACTION,
    "encoder.lr_scale": NON_NEGATIVE,
    "encoder.cache_gb": NON_NEGATIVE,
}


def check_train_config(cfg: DictConfig) -> None:
    """Check the numeric keys of a composed ``train`` config before anything runs.

    Raises:
        ConfigError: naming the first bad key as on the command line, its value and the valid range.
    """
    check_config(cfg, TRAIN_RULES)
    check_encoder_source(cfg)
    try:
        if cfg.get("model") is not None:
            M3BERTConfig(**OmegaConf.to_container(cfg.model, resolve=True))
        if cfg.get("masking") is not None and "_target_" in cfg.masking:
            instantiate(cfg.masking)
    except InstantiationException as err:
        if isinstance(err.__cause__, ValueError):
            raise ConfigError(str(err.__cause__)) from err
        raise
    except ValueError as err:
        raise ConfigError(str(err)) from err


def check_encoder_source(cfg: DictConfig) -> None:
    """A run that loads a pre-trained encoder (fine-tuning ``encoder.mode=frozen|finetune``, probing) names one,
    before any folder is made or data read."""
    encoder = cfg.get("encoder")
    if encoder is None or encoder.get("checkpoint") is not None:
        return
    probing = "probing" in str(OmegaConf.select(cfg, "stage._target_", default="") or "")
    uses_encoder = "encoder" in (cfg.get("objective") or {})
    if probing or (uses_encoder and encoder.get("mode") in ("frozen", "finetune")):
        what = "probing" if probing else f"encoder.mode={encoder.mode}"
        raise ConfigError(
            f"encoder.checkpoint: {what} needs a pre-trained encoder; set encoder.checkpoint=<pre-training run "
            "folder, exported model folder or .pt file>, or train without one with encoder.mode=scratch|baseline"
        )


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


def feature_columns(*names: str, _root_) -> ListConfig:
    """``${feature_columns:log_mel,log_cqt_chroma}``: the [start, stop) columns of those blocks of ``features``."""
    # A ListConfig, not a list: OmegaConf's in-place resolution (Hydra's instantiate) can't put a list into a node.
    return ListConfig(list(block_columns(dict(_root_.features.blocks), names, f"features={_root_.features.name}")))


def frame_rate(*, _root_) -> float:
    """``${frame_rate:}``: frames per second of ``features`` (what masking settings in seconds are converted with)."""
    return _root_.features.sample_rate / _root_.features.hop_length


def register() -> None:
    """Register the typed schemas with Hydra's ConfigStore and the resolvers (``run_folder``, ``feature_columns``,
    ``sweep_folder``) with OmegaConf; idempotent. Every entry point that composes configs calls it first."""
    if not OmegaConf.has_resolver("run_folder"):
        OmegaConf.register_new_resolver("run_folder", run_folder_name)
    if not OmegaConf.has_resolver("feature_columns"):
        OmegaConf.register_new_resolver("feature_columns", feature_columns)
    if not OmegaConf.has_resolver("frame_rate"):
        OmegaConf.register_new_resolver("frame_rate", frame_rate)
    if not OmegaConf.has_resolver("sweep_folder"):
        OmegaConf.register_new_resolver("sweep_folder", sweep_folder)
    store = ConfigStore.instance()
    store.store(group="trainer", name="trainer_schema", node=TrainerConfig)
    store.store(group="model", name="model_schema", node=M3BERTConfig)
    store.store(group="paths", name="paths_schema", node=PathsConfig)
    store.store(group="features", name="features_schema", node=FeatureSetConfig)
    store.store(group="probe", name="probe_schema", node=ProbeConfig)
